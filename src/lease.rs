//! Lease store on disk. Side effects: files under the state directory only.
//!
//! Layout (all owned by root, directories 0700, files 0600):
//! ```text
//! <state>/lock                              flock(2)ed by every command that changes state
//! <state>/leases/<network-id>/<ip>          one JSON `Lease` per address; its name is the address
//!                                           (an IPv6 address of a dual-stack lease is a second
//!                                           hard link to the same record)
//! <state>/bridges/<name>                     marker: `attach --bridge` created this bridge, so
//!                                           `detach` deletes it once it has no ports left
//! <state>/by-container/<container-id>@<network-id>
//!                                           symlink whose target *text* is the address (an index;
//!                                           it is read with readlink, never followed)
//! ```
//! A lease is created by writing a temporary file and hard-linking it to `<ip>`: `link(2)` fails
//! with EEXIST when the address is taken, so even without the lock two writers can never hold the
//! same address, and a reader never sees a half-written record.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

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
    /// False from the moment the address is reserved until every step of the attach is done:
    /// a lease left incomplete belongs to an attach that was killed, and is cleaned up by the
    /// next attach of that container or by `gc`.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
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
            complete: true,
        }
    }
}

/// Addresses taken on one network, per family (keys of `ipam::key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    pub v4: BTreeSet<u128>,
    pub v6: BTreeSet<u128>,
}

/// Proof that the caller holds the store lock; released on drop.
pub struct StoreLock {
    _lock: Flock<File>,
}

#[derive(Debug, Clone)]
pub struct LeaseStore {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("{0} is already leased")]
    Taken(IpAddr),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl LeaseStore {
    /// Opens (creating when missing) the state directory. Refuses a symlinked or foreign-owned
    /// or world-writable directory so that nobody can redirect our writes.
    pub fn open(root: &Path) -> Result<Self> {
        let store = LeaseStore {
            root: root.to_path_buf(),
        };
        for dir in [
            root.to_path_buf(),
            store.root.join("leases"),
            store.by_container(),
        ] {
            ensure_private_dir(&dir)?;
        }
        Ok(store)
    }

    /// Opens the store for reading without creating anything; `None` when it does not exist.
    pub fn open_existing(root: &Path) -> Result<Option<Self>> {
        match fs::symlink_metadata(root) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_err(root, e)),
            Ok(_) => Self::open(root).map(Some),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the exclusive store lock (blocks while another command holds it).
    pub fn lock(&self) -> Result<StoreLock> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| state_err(&path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow!("cannot lock {}: {e}", path.display()))?;
        Ok(StoreLock { _lock: lock })
    }

    fn by_container(&self) -> PathBuf {
        self.root.join("by-container")
    }

    fn network_dir(&self, network_id: &str) -> Result<PathBuf> {
        check_component(network_id, "network id")?;
        Ok(self.root.join("leases").join(network_id))
    }

    fn index_path(&self, container_id: &str, network_id: &str) -> Result<PathBuf> {
        check_component(container_id, "container id")?;
        check_component(network_id, "network id")?;
        Ok(self
            .by_container()
            .join(format!("{container_id}@{network_id}")))
    }

    /// Addresses leased on a network (from file names alone: one readdir, no reads).
    pub fn taken(&self, network_id: &str) -> Result<Taken> {
        let dir = self.network_dir(network_id)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Taken::default()),
            Err(e) => return Err(state_err(&dir, e)),
        };
        let mut taken = Taken::default();
        for entry in entries {
            let entry = entry.map_err(|e| state_err(&dir, e))?;
            match entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            {
                Some(ip @ IpAddr::V4(_)) => taken.v4.insert(crate::ipam::key(ip)),
                Some(ip @ IpAddr::V6(_)) => taken.v6.insert(crate::ipam::key(ip)),
                None => false,
            };
        }
        Ok(taken)
    }

    /// Every lease a container (or `--netns` target) holds, on any network.
    pub fn of_container(&self, container_id: &str) -> Result<Vec<Lease>> {
        check_component(container_id, "container id")?;
        let dir = self.by_container();
        let prefix = format!("{container_id}@");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| state_err(&dir, e))? {
            let entry = entry.map_err(|e| state_err(&dir, e))?;
            let name = entry.file_name();
            if let Some(net) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) {
                if let Some(lease) = self.find(container_id, net)? {
                    out.push(lease);
                }
            }
        }
        Ok(out)
    }

    /// The lease a container holds on a network, found through the index.
    pub fn find(&self, container_id: &str, network_id: &str) -> Result<Option<Lease>> {
        let index = self.index_path(container_id, network_id)?;
        let target = match fs::read_link(&index) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state_err(&index, e)),
        };
        let Some(ip) = target.to_str().and_then(|t| t.parse::<Ipv4Addr>().ok()) else {
            bail!(
                "index entry {} is corrupt; remove it and run `docker-netattach gc`",
                index.display()
            );
        };
        let path = self.network_dir(network_id)?.join(ip.to_string());
        match read_lease(&path)? {
            Some(lease) if lease.container_id == container_id => Ok(Some(lease)),
            _ => Ok(None),
        }
    }

    /// Records a lease; fails with `Taken` when the address is already leased.
    pub fn insert(&self, _lock: &StoreLock, lease: &Lease) -> Result<(), InsertError> {
        let dir = self.network_dir(&lease.network_id)?;
        ensure_private_dir(&dir)?;
        // The index first, the lease second (and `remove` the other way round): a command
        // killed in between leaves an index entry without a lease (ignored, swept by gc), never a
        // lease its container cannot find (which would make it take a second address).
        let index = self.index_path(&lease.container_id, &lease.network_id)?;
        let _ = fs::remove_file(&index);
        std::os::unix::fs::symlink(lease.ip.to_string(), &index)
            .map_err(|e| state_err(&index, e))?;
        let written = self.write_new(&dir, lease);
        if written.is_err() {
            let _ = fs::remove_file(&index);
        }
        written
    }

    fn write_new(&self, dir: &Path, lease: &Lease) -> Result<(), InsertError> {
        let path = dir.join(lease.ip.to_string());
        let tmp = write_temporary(dir, lease)?;
        let linked = fs::hard_link(&tmp, &path);
        let linked6 = match (&linked, lease.ip6) {
            (Ok(()), Some(ip6)) => {
                let path6 = dir.join(ip6.to_string());
                fs::hard_link(&tmp, &path6).map_err(|e| {
                    let _ = fs::remove_file(&path);
                    (IpAddr::V6(ip6), path6, e)
                })
            }
            _ => Ok(()),
        };
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(InsertError::Taken(IpAddr::V4(lease.ip)));
            }
            Err(e) => return Err(state_err(&path, e).into()),
        }
        match linked6 {
            Ok(()) => Ok(()),
            Err((ip6, _, e)) if e.kind() == ErrorKind::AlreadyExists => {
                Err(InsertError::Taken(ip6))
            }
            Err((_, path6, e)) => Err(state_err(&path6, e).into()),
        }
    }

    /// Removes a lease and its index entry; already gone is fine.
    pub fn remove(&self, _lock: &StoreLock, lease: &Lease) -> Result<()> {
        let path = self
            .network_dir(&lease.network_id)?
            .join(lease.ip.to_string());
        if read_lease(&path)?.is_some_and(|l| l.container_id == lease.container_id) {
            if let Some(ip6) = lease.ip6 {
                remove_if_present(&path.with_file_name(ip6.to_string()))?;
            }
            remove_if_present(&path)?;
        }
        let index = self.index_path(&lease.container_id, &lease.network_id)?;
        if fs::read_link(&index).is_ok_and(|t| t.as_os_str() == lease.ip.to_string().as_str()) {
            remove_if_present(&index)?;
        }
        Ok(())
    }

    /// Marks a lease complete: rewrites its record (atomically, by rename) and re-links the
    /// IPv6 name of a dual-stack lease to the new record.
    pub fn mark_complete(&self, lock: &StoreLock, lease: &Lease) -> Result<()> {
        let mut done = lease.clone();
        done.complete = true;
        self.rewrite(lock, &done)
    }

    /// Replaces the record of an address (held by the same lease) atomically, by rename: old or
    /// new, never neither. A restarted container's re-attach writes its new record over the old
    /// one, and its rollback writes the old one back.
    pub fn rewrite(&self, _lock: &StoreLock, lease: &Lease) -> Result<()> {
        let done = lease;
        let dir = self.network_dir(&lease.network_id)?;
        let path = dir.join(lease.ip.to_string());
        let tmp = write_temporary(&dir, done)?;
        fs::rename(&tmp, &path).map_err(|e| state_err(&path, e))?;
        if let Some(ip6) = lease.ip6 {
            let path6 = dir.join(ip6.to_string());
            remove_if_present(&path6)?;
            fs::hard_link(&path, &path6).map_err(|e| state_err(&path6, e))?;
        }
        Ok(())
    }

    /// Removes what killed commands left half-written: temporary lease files (every writer holds
    /// the lock, so under it none is in use) and index entries whose lease is gone.
    pub fn sweep(&self, _lock: &StoreLock) -> Result<usize> {
        let mut removed = 0;
        for net in sorted_entries(&self.root.join("leases"))? {
            for file in sorted_entries(&net)? {
                if file
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".tmp."))
                {
                    remove_if_present(&file)?;
                    removed += 1;
                }
            }
        }
        // Leases their container's index does not lead to (left by older versions killed
        // between writing the lease and its index): the address is free again; the interface,
        // if any, belongs to the lease the index names.
        for net in sorted_entries(&self.root.join("leases"))? {
            for file in sorted_entries(&net)? {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if name.starts_with('.') || name.contains(':') {
                    continue;
                }
                let Ok(Some(lease)) = read_lease(&file) else {
                    continue;
                };
                let indexed = self
                    .find(&lease.container_id, &lease.network_id)
                    .ok()
                    .flatten()
                    .is_some_and(|l| l.ip == lease.ip);
                if !indexed {
                    if let Some(ip6) = lease.ip6 {
                        remove_if_present(&file.with_file_name(ip6.to_string()))?;
                    }
                    remove_if_present(&file)?;
                    removed += 1;
                }
            }
        }
        for index in sorted_entries(&self.by_container())? {
            let Some((cid, net)) = index
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('@'))
            else {
                continue;
            };
            let ip = fs::read_link(&index).ok();
            let lease = ip
                .as_ref()
                .and_then(|ip| ip.to_str())
                .map(|ip| self.root.join("leases").join(net).join(ip));
            let alive = match lease {
                Some(path) => read_lease(&path)
                    .ok()
                    .flatten()
                    .is_some_and(|l| l.container_id == cid),
                None => false,
            };
            if !alive {
                remove_if_present(&index)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Remembers that we created bridge `name`.
    pub fn mark_bridge(&self, _lock: &StoreLock, name: &str) -> Result<()> {
        check_component(name, "bridge name")?;
        let dir = self.root.join("bridges");
        ensure_private_dir(&dir)?;
        let path = dir.join(name);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map(drop)
            .map_err(|e| state_err(&path, e))
    }

    pub fn bridge_marked(&self, name: &str) -> bool {
        check_component(name, "bridge name").is_ok()
            && fs::symlink_metadata(self.root.join("bridges").join(name)).is_ok_and(|m| m.is_file())
    }

    pub fn unmark_bridge(&self, _lock: &StoreLock, name: &str) -> Result<()> {
        check_component(name, "bridge name")?;
        remove_if_present(&self.root.join("bridges").join(name))
    }

    /// Every lease, in address order per network.
    pub fn all(&self) -> Result<Vec<Lease>> {
        let leases_dir = self.root.join("leases");
        let mut out = Vec::new();
        for net in sorted_entries(&leases_dir)? {
            for file in sorted_entries(&net)? {
                let name = file.file_name();
                let name = name.and_then(|n| n.to_str()).unwrap_or_default();
                // Hidden temporaries, and the IPv6 links of dual-stack leases (read once, by
                // their IPv4 name).
                if name.starts_with('.') || name.contains(':') {
                    continue;
                }
                if let Some(lease) = read_lease(&file)? {
                    out.push(lease);
                }
            }
        }
        out.sort_by_key(|l| (l.network.clone(), u32::from(l.ip)));
        Ok(out)
    }
}

/// Writes a lease record to `.tmp.<ip>.<pid>` in `dir` (0600, never through a link), ready to
/// be linked or renamed into place.
fn write_temporary(dir: &Path, lease: &Lease) -> Result<PathBuf> {
    let tmp = dir.join(format!(".tmp.{}.{}", lease.ip, std::process::id()));
    let body = serde_json::to_vec_pretty(lease).context("cannot encode lease")?;
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| state_err(&tmp, e))?;
    file.write_all(&body)
        .and_then(|_| file.write_all(b"\n"))
        .map_err(|e| state_err(&tmp, e))?;
    Ok(tmp)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(state_err(dir, e)),
    };
    let mut paths = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| state_err(dir, e))?;
    paths.sort();
    Ok(paths)
}

/// Reads one lease file without following symlinks; `None` when it does not exist.
fn read_lease(path: &Path) -> Result<Option<Lease>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state_err(path, e)),
    };
    let lease = parse_lease(std::io::read_to_string(file).map_err(|e| state_err(path, e))?)
        .with_context(|| {
            format!(
                "lease file {} is corrupt; move it away and run `docker-netattach gc`",
                path.display()
            )
        })?;
    let expected = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if lease.ip.to_string() != expected {
        bail!(
            "lease file {} records address {} instead of {expected}; move it away and run `docker-netattach gc`",
            path.display(),
            lease.ip
        );
    }
    Ok(Some(lease))
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
    Ok(lease)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(state_err(path, e)),
    }
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

fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| state_err(dir, e))?;
            return Ok(());
        }
        Err(e) => return Err(state_err(dir, e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| state_err(dir, e))?;
    if !meta.is_dir() {
        bail!(
            "state path {} is not a directory (a symlink or a file); remove it or choose another --state-dir",
            dir.display()
        );
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() == 0 && euid != 0 {
        bail!(
            "state directory {} belongs to root (you are uid {euid}); run docker-netattach as root (sudo)",
            dir.display()
        );
    }
    if meta.uid() != euid || meta.permissions().mode() & 0o022 != 0 {
        bail!(
            "state directory {} must be owned by uid {euid} and not writable by others; fix with `chown {euid} {0} && chmod 700 {0}`",
            dir.display()
        );
    }
    Ok(())
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

    pub(crate) fn lease(cid: &str, ip: &str) -> Lease {
        Lease {
            network_id: "netid".into(),
            netns_name: format!("ns-{cid}"),
            ..Lease::sample(cid, &format!("name-{cid}"), ip)
        }
    }

    fn tmp_store() -> (tempdir::Dir, LeaseStore) {
        let dir = tempdir::Dir::new();
        let store = LeaseStore::open(&dir.0.join("state")).unwrap();
        (dir, store)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "netattach-unit-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn insert_find_taken_remove_roundtrip() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let a = lease("aaa", "172.17.255.254");
        store.insert(&lock, &a).unwrap();
        assert_eq!(store.find("aaa", "netid").unwrap(), Some(a.clone()));
        assert_eq!(store.find("bbb", "netid").unwrap(), None);
        assert_eq!(
            store.taken("netid").unwrap().v4,
            [crate::ipam::key(IpAddr::V4(a.ip))].into_iter().collect()
        );
        assert_eq!(store.of_container("aaa").unwrap(), vec![a.clone()]);
        let mode = fs::metadata(store.root().join("leases/netid/172.17.255.254"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.all().unwrap(), vec![a.clone()]);
        store.remove(&lock, &a).unwrap();
        store.remove(&lock, &a).unwrap();
        assert_eq!(store.find("aaa", "netid").unwrap(), None);
        assert_eq!(store.taken("netid").unwrap(), Taken::default());
    }

    #[test]
    fn completing_a_lease_and_sweeping_what_killed_writers_left() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let mut a = lease("aaa", "10.0.0.5");
        a.ip6 = Some("fd00::5".parse().unwrap());
        a.complete = false;
        store.insert(&lock, &a).unwrap();
        assert!(!store.find("aaa", "netid").unwrap().unwrap().complete);
        store.mark_complete(&lock, &a).unwrap();
        assert!(store.find("aaa", "netid").unwrap().unwrap().complete);
        let v6 = std::fs::read_to_string(store.root().join("leases/netid/fd00::5")).unwrap();
        assert!(v6.contains("\"complete\": true"), "{v6}");
        std::fs::write(store.root().join("leases/netid/.tmp.10.0.0.9.1"), "{").unwrap();
        std::os::unix::fs::symlink("10.0.0.77", store.root().join("by-container/zzz@netid"))
            .unwrap();
        assert_eq!(store.sweep(&lock).unwrap(), 2);
        assert_eq!(store.sweep(&lock).unwrap(), 0);
        assert!(store.find("aaa", "netid").unwrap().is_some());
    }

    #[test]
    fn a_dual_stack_lease_reserves_both_addresses() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let mut a = lease("aaa", "10.0.0.5");
        a.ip6 = Some("fd00::5".parse().unwrap());
        store.insert(&lock, &a).unwrap();
        let taken = store.taken("netid").unwrap();
        assert_eq!((taken.v4.len(), taken.v6.len()), (1, 1));
        assert_eq!(store.all().unwrap(), vec![a.clone()]);
        let mut b = lease("bbb", "10.0.0.6");
        b.ip6 = a.ip6;
        assert!(matches!(
            store.insert(&lock, &b),
            Err(InsertError::Taken(IpAddr::V6(_)))
        ));
        // The loser left nothing: its IPv4 address is free again.
        assert_eq!(store.taken("netid").unwrap().v4.len(), 1);
        store.remove(&lock, &a).unwrap();
        assert_eq!(store.taken("netid").unwrap(), Taken::default());
    }

    #[test]
    fn the_same_address_is_never_leased_twice() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        store.insert(&lock, &lease("aaa", "10.0.0.5")).unwrap();
        assert!(matches!(
            store.insert(&lock, &lease("bbb", "10.0.0.5")),
            Err(InsertError::Taken(_))
        ));
        // The loser's removal must not delete the winner's lease.
        store.remove(&lock, &lease("bbb", "10.0.0.5")).unwrap();
        assert!(store.find("aaa", "netid").unwrap().is_some());
    }

    #[test]
    fn corrupt_lease_is_a_named_error_but_still_counts_as_taken() {
        let (_d, store) = tmp_store();
        let dir = store.root().join("leases/netid");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("10.0.0.9"), "{ truncated").unwrap();
        let err = format!("{:#}", store.all().unwrap_err());
        assert!(err.contains("10.0.0.9 is corrupt"), "{err}");
        assert!(
            store
                .taken("netid")
                .unwrap()
                .v4
                .contains(&crate::ipam::key(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))))
        );
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

    #[test]
    fn a_symlinked_state_dir_is_refused() {
        let d = tempdir::Dir::new();
        std::os::unix::fs::symlink("/tmp", d.0.join("link")).unwrap();
        let err = LeaseStore::open(&d.0.join("link")).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
