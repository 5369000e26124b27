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
//! - `lease/memory.rs` (tests only): the same interface in memory.
//!
//! A file that cannot be read (garbage, a planted symlink, a record under the wrong name) blocks
//! no one: readers skip it and report it ([`Scan::corrupt`]), its address still counts as taken,
//! and `gc` moves it to `quarantine/`, where it stays taken and visible.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use crate::endpoint::{EndpointOpts, Mac, Route, RouteArg};

mod disk;
mod files;
#[cfg(test)]
pub(crate) mod memory;
mod repair;
mod scan;

pub use disk::DiskStore;

/// The store every command opens: the one on disk.
pub type LeaseStore = DiskStore;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/docker-netattach";

/// One attachment: the address it holds and everything needed to undo it later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub container_id: String,
    pub container_name: String,
    pub network: String,
    pub network_id: String,
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The container interface's MAC: derived from the address (`02:42:` + its bytes) or
    /// `--mac`. Given again on re-attach (see [`Lease::endpoint_opts`]).
    pub mac: String,
    pub host_ifname: String,
    pub ifname: String,
    pub netns_name: String,
    /// Pid whose namespace was attached, and that namespace's identity (st_dev, st_ino of
    /// /proc/<pid>/ns/net): a later command compares them so that it never acts on another
    /// process's namespace after the Pid is reused.
    pub pid: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    /// The path the netns link points at, for a namespace that is not a container's
    /// (`--netns`); empty for containers, whose path is /proc/<pid>/ns/net.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len6: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Whether this attachment set the container's default route(s).
    #[serde(default)]
    pub default_route: bool,
    /// Name servers written to /etc/netns/<netns_name>/resolv.conf (`--dns`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    /// `--mtu`, when it was given (otherwise the network's MTU applies). Absent in older leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// `--route`s, each with the gateway it was resolved to. Absent in older leases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// False from the moment the address is reserved until every step of the attach is done:
    /// a lease left incomplete belongs to an attach that was killed, and is cleaned up by the
    /// next attach of that container or by `gc`.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
    /// Reserved for a container that was not running when it was attached (no namespace yet:
    /// `pid` and the namespace identity are 0). Its next start applies it (`watch`, or a plain
    /// `attach` once it runs); the address stays taken meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

fn complete_by_default() -> bool {
    true
}

impl Lease {
    /// The namespace path this lease attached: /proc/<pid>/ns/net or the `--netns` path.
    pub fn netns_source(&self) -> PathBuf {
        if self.netns_path.is_empty() {
            crate::netns::proc_path(self.pid)
        } else {
            PathBuf::from(&self.netns_path)
        }
    }

    /// The endpoint options this lease was made with (`--mac`, `--mtu`, `--route`), as
    /// [`crate::attach::AttachOpts::endpoint`] takes them: whoever re-attaches from a lease sets
    /// `endpoint: lease.endpoint_opts()` and gets the same MAC, MTU and routes back. (A lease
    /// of an older version gives its derived MAC, no MTU and no routes: what it had.)
    pub fn endpoint_opts(&self) -> EndpointOpts {
        EndpointOpts {
            mac: self.mac.parse::<Mac>().ok(),
            mtu: self.mtu,
            routes: self.routes.iter().copied().map(RouteArg::from).collect(),
        }
    }

    pub fn netns_id(&self) -> crate::netns::NsId {
        crate::netns::NsId {
            dev: self.netns_dev,
            ino: self.netns_ino,
        }
    }
}

#[cfg(test)]
impl Lease {
    /// A plausible lease for unit tests; tests override the fields they care about.
    pub(crate) fn sample(container_id: &str, name: &str, ip: &str) -> Lease {
        let ip: Ipv4Addr = ip.parse().expect("test address");
        Lease {
            container_id: container_id.into(),
            container_name: name.into(),
            network: "bridge".into(),
            network_id: "n".into(),
            bridge: "docker0".into(),
            ip,
            prefix_len: 16,
            gateway: Ipv4Addr::new(172, 17, 0, 1),
            mac: crate::plan::format_mac(crate::plan::mac_for(ip)),
            host_ifname: "vna01234567abcd".into(),
            ifname: "eth0".into(),
            netns_name: name.into(),
            pid: 1,
            netns_dev: 4,
            netns_ino: 5,
            netns_path: String::new(),
            ip6: None,
            prefix_len6: None,
            gateway6: None,
            default_route: true,
            dns: vec![],
            mtu: None,
            routes: vec![],
            complete: true,
            pending: false,
        }
    }
}

/// Addresses taken on one network, per family (keys of `ipam::key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    pub v4: BTreeSet<u128>,
    pub v6: BTreeSet<u128>,
}

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
    if lease.prefix_len > 32 {
        bail!("prefix length {} is larger than 32", lease.prefix_len);
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
