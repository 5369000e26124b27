//! The lease store: the record of each attachment ([`Lease`]), the small interface the
//! allocator and `gc` decide against ([`Store`]), and its backend on disk ([`DiskStore`], in
//! `lease/disk.rs`, which documents the layout of the state directory). Side effects: files
//! under the state directory only (through the backend).
//!
//! - `lease/disk.rs`: the store on disk: open, lock, insert/remove/rewrite, the index, bridge
//!   markers;
//! - `lease/scan.rs`: reading every record, readable or not;
//! - `lease/repair.rs`: `sweep` and the quarantine of corrupt lease files;
//! - `lease/files.rs`: the file-level steps (one record, its names, private directories);
//! - `lease/hint.rs`: where each lease's host veth is, for a detach that needs no RTNL lock;
//! - `lease/reboot.rs`: what a crash of the machine left of an attach, put in place once per boot;
//! - `lease/memory.rs` (tests only): the same interface in memory.
//!
//! A file that cannot be read (garbage, a planted symlink, a record under the wrong name) blocks
//! no one: readers skip it and report it ([`Scan::corrupt`]), its address still counts as taken,
//! and `gc` moves it to `quarantine/`, where it stays taken and visible.

use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use nix::fcntl::Flock;

use crate::endpoint::Mac;

mod disk;
pub mod durable;
mod files;
pub mod hint;
#[cfg(test)]
pub(crate) mod memory;
mod reboot;
mod repair;
mod scan;
mod syncer;

pub use disk::{Completion, DiskStore, Prepared};
pub use syncer::{Syncer, Ticket};

/// The store every command opens: the one on disk.
pub type LeaseStore = DiskStore;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/docker-netattach";

/// One attachment's record (one JSON file per address): see src/attachment.rs.
pub use crate::attachment::Attachment as Lease;

pub use crate::model::Taken;

/// A file under `leases/` (or `quarantine/`) that cannot be read as a lease. Its name still
/// reserves its address: we cannot know whether an interface uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptLease {
    pub path: PathBuf,
    pub network_id: String,
    /// The address its name reserves.
    pub ip: IpAddr,
    /// The IPv6 name of the same file (a dual-stack record), if any.
    pub ip6: Option<Ipv6Addr>,
    /// Set aside by `gc` under `quarantine/`.
    pub quarantined: bool,
    /// Why it cannot be read.
    pub error: String,
}

/// What the lease files hold: the readable leases, and the files that are not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub leases: Vec<Lease>,
    pub corrupt: Vec<CorruptLease>,
}

/// An index entry that does not hold an address (not a symlink, or another target text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptIndex {
    pub path: PathBuf,
    pub error: String,
}

/// Proof that the caller holds the store lock; released on drop.
pub struct StoreLock {
    _held: Held,
}

/// What a [`StoreLock`] holds.
enum Held {
    /// The `flock(2)` of `<state>/lock`.
    File { _flock: Flock<File> },
    /// Nothing: the in-memory store of the tests is used by one thread.
    #[cfg(test)]
    Memory,
}

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("{0} is already leased")]
    Taken(IpAddr),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What the allocator and `gc`'s decisions need of a lease store (the CNI plugins' `store`):
/// the lock, the taken addresses, the leases, and the three changes. [`DiskStore`] is the one
/// implementation outside the tests; its inherent methods of the same names are these.
pub trait Store {
    /// Takes the exclusive store lock (blocks while another command holds it).
    fn lock(&self) -> Result<StoreLock>;
    /// Addresses leased (or otherwise held, e.g. by a quarantined file) on a network.
    fn taken(&self, network_id: &str) -> Result<Taken>;
    /// Whether `ip` is leased on a network now (a quarantined file is not asked: `insert`
    /// checks those). The default asks [`taken`](Self::taken); the disk store looks up the one
    /// name instead of listing the directory.
    fn leased(&self, network_id: &str, ip: IpAddr) -> Result<bool> {
        let taken = self.taken(network_id)?;
        let key = crate::ipam::key(ip);
        Ok(match ip {
            IpAddr::V4(_) => taken.v4.contains(&key),
            IpAddr::V6(_) => taken.v6.contains(&key),
        })
    }
    /// The lease a container holds on a network.
    fn find(&self, container_id: &str, network_id: &str) -> Result<Option<Lease>>;
    /// Every lease a container holds, on any network.
    fn of_container(&self, container_id: &str) -> Result<Vec<Lease>>;
    /// Every readable lease, in address order per network name.
    fn all(&self) -> Result<Vec<Lease>>;
    /// Records a lease; `Taken` when one of its addresses is held already.
    fn insert(&self, lock: &StoreLock, lease: &Lease) -> Result<(), InsertError>;
    /// Marks a lease complete (its attach finished).
    fn mark_complete(&self, lock: &StoreLock, lease: &Lease) -> Result<()>;
    /// Removes a lease (only while its address is held by this lease's container).
    fn remove(&self, lock: &StoreLock, lease: &Lease) -> Result<()>;
}

/// Parses a lease record (outside input: a file anyone with root could have edited).
pub fn parse_lease(text: String) -> Result<Lease> {
    let lease: Lease = serde_json::from_str(&text)?;
    if lease.v4.prefix_len > 32 {
        bail!("prefix length {} is larger than 32", lease.v4.prefix_len);
    }
    check_component(&lease.container_id, "container id")?;
    check_component(&lease.network_id, "network id")?;
    crate::names::validate_ifname(&lease.host_ifname)?;
    crate::names::validate_ifname(&lease.ifname)?;
    crate::names::validate_netns_name(&lease.netns_name)?;
    lease.mac.parse::<Mac>().map_err(|e| anyhow!("mac: {e}"))?;
    Ok(lease)
}

/// A single, harmless path component.
fn check_component(s: &str, what: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        bail!("{what} '{s}' cannot be used as a file name in the state directory")
    }
}

fn state_err(path: &Path, e: std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        ErrorKind::PermissionDenied => {
            " (run as root, or point --state-dir / DOCKER_NETATTACH_STATE_DIR at a writable directory)"
        }
        _ => "",
    };
    anyhow!("state directory: {}: {e}{hint}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease on network `netid` for tests of the store.
    pub(crate) fn lease(cid: &str, ip: &str) -> Lease {
        Lease {
            network_id: "netid".into(),
            netns_name: format!("ns-{cid}"),
            ..Lease::sample(cid, &format!("name-{cid}"), ip)
        }
    }

    #[test]
    fn endpoint_options_round_trip_and_old_leases_still_load() {
        let mut l = lease("aaa", "10.0.0.5");
        let old = serde_json::to_string(&l).unwrap();
        assert!(!old.contains("mtu") && !old.contains("routes"), "{old}");
        let back = parse_lease(old).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.endpoint_opts().mtu, None);
        assert!(back.endpoint_opts().routes.is_empty());
        l.mac = "02:00:00:aa:bb:cc".into();
        l.mtu = Some(1400);
        l.routes = vec![crate::endpoint::Route {
            to: "10.9.0.0/16".parse().unwrap(),
            via: "10.0.0.1".parse().unwrap(),
        }];
        let text = serde_json::to_string(&l).unwrap();
        assert!(
            text.contains(r#""routes":[{"to":"10.9.0.0/16","via":"10.0.0.1"}]"#),
            "{text}"
        );
        let back = parse_lease(text).unwrap();
        assert_eq!(back, l);
        let opts = back.endpoint_opts();
        assert_eq!(
            opts.mac.map(|m| m.to_string()).as_deref(),
            Some("02:00:00:aa:bb:cc")
        );
        assert_eq!(opts.mtu, Some(1400));
        assert_eq!(opts.routes[0].via, Some("10.0.0.1".parse().unwrap()));
        l.mac = "01:00:5e:00:00:01".into();
        let err = parse_lease(serde_json::to_string(&l).unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("multicast"), "{err:#}");
    }

    #[test]
    fn hostile_records_are_refused() {
        let mut l = lease("aaa", "10.0.0.1");
        l.netns_name = "../../etc".into();
        assert!(parse_lease(serde_json::to_string(&l).unwrap()).is_err());
        let mut l = lease("aaa", "10.0.0.1");
        l.container_id = "../x".into();
        assert!(parse_lease(serde_json::to_string(&l).unwrap()).is_err());
        assert!(parse_lease("[]".into()).is_err());
    }
}
