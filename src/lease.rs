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
//! <state>/watch.lock                        shared flock of a running `watch` (src/watch_lock.rs)
//! <state>/by-container/<container-id>@<network-id>
//!                                           symlink whose target *text* is the address (an index;
//!                                           it is read with readlink, never followed)
//! <state>/quarantine/<network-id>/<ip>[~n]   a lease file that could not be read, set aside by
//!                                           `gc`; its address stays taken until a person
//!                                           deletes it
//! ```
//! A lease is created by writing a temporary file, fsyncing it and hard-linking it to `<ip>`:
//! `link(2)` fails with EEXIST when the address is taken, so even without the lock two writers
//! can never hold the same address, and a reader never sees a half-written record. Every other
//! write (completion, the index, bridge markers) is write-temporary + fsync + rename over the old
//! name, and every change is followed by an fsync of its directory: after a crash or a SIGKILL
//! each name holds the old record or the new one, never neither. The IPv6 name of a dual-stack
//! lease is linked before and unlinked after its IPv4 name, so while a lease exists both of its
//! addresses are taken.
//!
//! A file that cannot be read (garbage, a planted symlink, a record under the wrong name) blocks
//! no one: readers skip it and report it ([`Scan::corrupt`]), its address still counts as taken,
//! and `gc` moves it to `quarantine/`, where it stays taken and visible.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::endpoint::Mac;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/docker-netattach";

/// One attachment's record (one JSON file per address): see src/attachment.rs.
pub use crate::attachment::Attachment as Lease;

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

/// What an index entry says.
enum IndexEntry {
    Missing,
    Points(Ipv4Addr),
    Corrupt(String),
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

    fn leases_dir(&self) -> PathBuf {
        self.root.join("leases")
    }

    fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Addresses leased on a network, and those of its quarantined files (from file names
    /// alone: a readdir or two, no reads).
    pub fn taken(&self, network_id: &str) -> Result<Taken> {
        let mut taken = Taken::default();
        let dirs = [
            self.network_dir(network_id)?,
            self.quarantine_dir().join(network_id),
        ];
        for dir in dirs {
            for ip in addresses_named_in(&dir)? {
                match ip {
                    IpAddr::V4(_) => taken.v4.insert(crate::ipam::key(ip)),
                    IpAddr::V6(_) => taken.v6.insert(crate::ipam::key(ip)),
                };
            }
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

    fn index_entry(&self, container_id: &str, network_id: &str) -> Result<IndexEntry> {
        let index = self.index_path(container_id, network_id)?;
        match fs::read_link(&index) {
            Ok(t) => Ok(match t.to_str().and_then(|t| t.parse::<Ipv4Addr>().ok()) {
                Some(ip) => IndexEntry::Points(ip),
                None => IndexEntry::Corrupt(format!("its target {t:?} is not an IPv4 address")),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(IndexEntry::Missing),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                Ok(IndexEntry::Corrupt("it is not a symlink".into()))
            }
            Err(e) => Err(state_err(&index, e)),
        }
    }

    /// The lease a container holds on a network, found through the index (or, when the index
    /// entry is corrupt, by reading the network's lease files: the leases are the truth).
    pub fn find(&self, container_id: &str, network_id: &str) -> Result<Option<Lease>> {
        let ip = match self.index_entry(container_id, network_id)? {
            IndexEntry::Missing => return Ok(None),
            IndexEntry::Corrupt(_) => return self.search(container_id, network_id),
            IndexEntry::Points(ip) => ip,
        };
        let path = self.network_dir(network_id)?.join(ip.to_string());
        match read_lease(&path)? {
            Some(lease) if lease.container_id == container_id => Ok(Some(lease)),
            _ => Ok(None),
        }
    }

    /// The container's lease on a network, by reading every readable lease file of it.
    fn search(&self, container_id: &str, network_id: &str) -> Result<Option<Lease>> {
        for file in sorted_entries(&self.network_dir(network_id)?)? {
            if !is_v4_name(&file) {
                continue;
            }
            if let Ok(Some(l)) = read_lease(&file) {
                if l.container_id == container_id {
                    return Ok(Some(l));
                }
            }
        }
        Ok(None)
    }

    /// Index entries that do not hold an address.
    pub fn corrupt_indexes(&self) -> Result<Vec<CorruptIndex>> {
        let mut out = Vec::new();
        for index in sorted_entries(&self.by_container())? {
            let Some((cid, net)) = file_name(&index).and_then(|n| n.split_once('@')) else {
                continue;
            };
            if cid.starts_with('.') {
                continue;
            }
            if let Ok(IndexEntry::Corrupt(error)) = self.index_entry(cid, net) {
                out.push(CorruptIndex { path: index, error });
            }
        }
        Ok(out)
    }

    /// Points the index entry of (container, network) at `ip`, replacing what was there.
    fn write_index(&self, container_id: &str, network_id: &str, ip: Ipv4Addr) -> Result<()> {
        let index = self.index_path(container_id, network_id)?;
        let dir = self.by_container();
        let tmp = dir.join(format!(
            ".tmp.{container_id}@{network_id}.{}",
            std::process::id()
        ));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(ip.to_string(), &tmp).map_err(|e| state_err(&tmp, e))?;
        if let Err(e) = fs::rename(&tmp, &index) {
            let _ = fs::remove_file(&tmp);
            return Err(state_err(&index, e));
        }
        fsync_dir(&dir)
    }

    /// Records a lease; fails with `Taken` when the address is already leased (or held by a
    /// quarantined file).
    pub fn insert(&self, _lock: &StoreLock, lease: &Lease) -> Result<(), InsertError> {
        let dir = self.network_dir(&lease.network_id)?;
        ensure_private_dir(&dir)?;
        let quarantined = addresses_named_in(&self.quarantine_dir().join(&lease.network_id))?;
        let wanted = std::iter::once(IpAddr::V4(lease.v4.ip)).chain(lease.ip6().map(IpAddr::V6));
        for ip in wanted {
            if quarantined.contains(&ip) {
                return Err(InsertError::Taken(ip));
            }
        }
        // The index first, the lease second (and `remove` the other way round): a command
        // killed in between leaves an index entry without a lease (ignored, swept by gc), never a
        // lease its container cannot find (which would make it take a second address).
        self.write_index(&lease.container_id, &lease.network_id, lease.v4.ip)?;
        let written = self.write_new(&dir, lease);
        if written.is_err() {
            let _ = fs::remove_file(self.index_path(&lease.container_id, &lease.network_id)?);
        }
        written
    }

    /// Links a new record to its names: the IPv6 name first, so that while the IPv4 name (the
    /// lease) exists, both addresses are taken.
    fn write_new(&self, dir: &Path, lease: &Lease) -> Result<(), InsertError> {
        let tmp = write_temporary(dir, lease)?;
        let result = link_new(&tmp, dir, lease);
        let _ = fs::remove_file(&tmp);
        fsync_dir(dir)?;
        result.map_err(|(ip, name, e)| {
            if e.kind() == ErrorKind::AlreadyExists {
                InsertError::Taken(ip)
            } else {
                state_err(&name, e).into()
            }
        })
    }

    /// Removes a lease and its index entry; already gone is fine. The IPv4 name goes first,
    /// then the IPv6 name (only while it still holds this lease's record).
    pub fn remove(&self, _lock: &StoreLock, lease: &Lease) -> Result<()> {
        let dir = self.network_dir(&lease.network_id)?;
        let path = dir.join(lease.v4.ip.to_string());
        if read_lease(&path)?.is_some_and(|l| l.container_id == lease.container_id) {
            remove_names(&path, lease)?;
        }
        let index = self.index_path(&lease.container_id, &lease.network_id)?;
        if fs::read_link(&index).is_ok_and(|t| t.as_os_str() == lease.v4.ip.to_string().as_str()) {
            remove_if_present(&index)?;
            fsync_dir(&self.by_container())?;
        }
        Ok(())
    }

    /// Marks a lease complete: a new record, renamed over the IPv6 name and then over the IPv4
    /// name. Each name holds the old record or the new one at every moment, never neither.
    pub fn mark_complete(&self, lock: &StoreLock, lease: &Lease) -> Result<()> {
        let mut done = lease.clone();
        done.complete = true;
        self.rewrite(lock, &done)
    }

    /// Replaces the record of an address (held by the same lease) atomically, by rename: old or
    /// new, never neither. A restarted container's re-attach writes its new record over the old
    /// one, and its rollback writes the old one back.
    pub fn rewrite(&self, _lock: &StoreLock, lease: &Lease) -> Result<()> {
        let dir = self.network_dir(&lease.network_id)?;
        let path = dir.join(lease.v4.ip.to_string());
        let tmp = write_temporary(&dir, lease)?;
        if let Some(ip6) = lease.ip6() {
            let tmp6 = dir.join(format!(".tmp.{ip6}.{}", std::process::id()));
            let _ = fs::remove_file(&tmp6);
            let path6 = dir.join(ip6.to_string());
            let renamed = fs::hard_link(&tmp, &tmp6)
                .and_then(|()| fs::rename(&tmp6, &path6))
                .map_err(|e| state_err(&path6, e));
            if renamed.is_err() {
                let _ = fs::remove_file(&tmp6);
                let _ = fs::remove_file(&tmp);
            }
            renamed?;
        }
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            state_err(&path, e)
        })?;
        fsync_dir(&dir)
    }

    /// Reads the records of one network directory into `scan`: readable leases (unless
    /// `quarantined`) and files that cannot be read. Each file is read once.
    fn scan_dir(
        &self,
        dir: &Path,
        network_id: &str,
        quarantined: bool,
        scan: &mut Scan,
    ) -> Result<()> {
        let files = sorted_entries(dir)?;
        // The IPv6 names by file identity (a dual-stack record has both), once one is needed.
        let mut v6: Option<BTreeMap<(u64, u64), Ipv6Addr>> = None;
        for file in &files {
            // Hidden temporaries and the IPv6 links of dual-stack leases are not read: a
            // record is read once, by its IPv4 name.
            let Some(ip @ IpAddr::V4(_)) = address_of(file) else {
                continue;
            };
            let error = if quarantined {
                record_error(file)
            } else {
                match read_lease(file) {
                    Ok(Some(lease)) => {
                        scan.leases.push(lease);
                        continue;
                    }
                    Ok(None) => continue,
                    Err(e) => format!("{e:#}"),
                }
            };
            let v6 = v6.get_or_insert_with(|| {
                files
                    .iter()
                    .filter_map(|f| {
                        let IpAddr::V6(ip) = address_of(f)? else {
                            return None;
                        };
                        let m = fs::symlink_metadata(f).ok()?;
                        Some(((m.dev(), m.ino()), ip))
                    })
                    .collect()
            });
            let ip6 = fs::symlink_metadata(file)
                .ok()
                .and_then(|m| v6.get(&(m.dev(), m.ino())).copied());
            scan.corrupt.push(CorruptLease {
                path: file.clone(),
                network_id: network_id.to_string(),
                ip,
                ip6,
                quarantined,
                error,
            });
        }
        Ok(())
    }

    /// Every readable lease (in address order per network), and every file that is not.
    pub fn scan(&self) -> Result<Scan> {
        let mut scan = Scan::default();
        for net in sorted_entries(&self.leases_dir())? {
            let network_id = file_name(&net).unwrap_or_default().to_string();
            self.scan_dir(&net, &network_id, false, &mut scan)?;
        }
        for net in sorted_entries(&self.quarantine_dir())? {
            let network_id = file_name(&net).unwrap_or_default().to_string();
            self.scan_dir(&net, &network_id, true, &mut scan)?;
        }
        scan.leases
            .sort_by_key(|l| (l.network.clone(), u32::from(l.v4.ip)));
        Ok(scan)
    }

    /// Every readable lease, in address order per network; files that cannot be read are
    /// skipped (see [`LeaseStore::scan`]).
    pub fn all(&self) -> Result<Vec<Lease>> {
        Ok(self.scan()?.leases)
    }

    /// Moves a corrupt lease file (all its names) to `quarantine/<network-id>/`. At every
    /// moment each address has a name in `leases/` or in `quarantine/` (link first, unlink
    /// after), so it never becomes free. Returns the new path of its IPv4 name.
    fn quarantine(&self, c: &CorruptLease) -> Result<PathBuf> {
        let qdir = self.quarantine_dir().join(&c.network_id);
        ensure_private_dir(&self.quarantine_dir())?;
        ensure_private_dir(&qdir)?;
        let dir = self.network_dir(&c.network_id)?;
        let mut moved = None;
        let names = std::iter::once(c.ip).chain(c.ip6.map(IpAddr::V6));
        for ip in names {
            let src = dir.join(ip.to_string());
            let mut n = 0;
            let dst = loop {
                let dst = match n {
                    0 => qdir.join(ip.to_string()),
                    n => qdir.join(format!("{ip}~{n}")),
                };
                match fs::hard_link(&src, &dst) {
                    Ok(()) => break dst,
                    Err(e) if e.kind() == ErrorKind::AlreadyExists && n < 1000 => n += 1,
                    Err(e) => return Err(state_err(&src, e)),
                }
            };
            fsync_dir(&qdir)?;
            remove_if_present(&src)?;
            fsync_dir(&dir)?;
            moved.get_or_insert(dst);
        }
        moved.ok_or_else(|| anyhow!("nothing to quarantine"))
    }

    /// Repairs what killed commands and damaged files left, under the lock: removes temporary
    /// files (every writer holds the lock, so under it none is in use), sets corrupt lease
    /// files aside (their addresses stay taken), rebuilds corrupt index entries from their
    /// lease, and removes index entries whose lease is gone and IPv6 names whose lease is gone.
    pub fn sweep(&self, _lock: &StoreLock) -> Result<usize> {
        let mut removed = 0;
        let dirs = sorted_entries(&self.leases_dir())?
            .into_iter()
            .chain([self.by_container(), self.root.join("bridges")]);
        for dir in dirs {
            for file in sorted_entries(&dir)? {
                if file_name(&file).is_some_and(|n| n.starts_with(".tmp.")) {
                    remove_if_present(&file)?;
                    removed += 1;
                }
            }
        }
        for c in self.scan()?.corrupt.iter().filter(|c| !c.quarantined) {
            match self.quarantine(c) {
                Ok(to) => {
                    tracing::warn!(
                        "lease file {} is corrupt ({}); moved to {}, where {} stays reserved",
                        c.path.display(),
                        c.error,
                        to.display(),
                        c.ip
                    );
                    removed += 1;
                }
                Err(e) => tracing::warn!(
                    "lease file {} is corrupt and could not be set aside: {e:#}",
                    c.path.display()
                ),
            }
        }
        // Leases their container's index does not lead to (left by older versions killed
        // between writing the lease and its index): the address is free again; the interface,
        // if any, belongs to the lease the index names. A corrupt index entry is rebuilt.
        for net in sorted_entries(&self.leases_dir())? {
            for file in sorted_entries(&net)? {
                if !is_v4_name(&file) {
                    continue;
                }
                let Ok(Some(lease)) = read_lease(&file) else {
                    continue;
                };
                let (cid, nid) = (&lease.container_id, &lease.network_id);
                let indexed = match self.index_entry(cid, nid) {
                    Ok(IndexEntry::Corrupt(_)) => {
                        self.write_index(cid, nid, lease.v4.ip)?;
                        removed += 1;
                        true
                    }
                    _ => self
                        .find(cid, nid)
                        .ok()
                        .flatten()
                        .is_some_and(|l| l.v4.ip == lease.v4.ip),
                };
                if !indexed {
                    remove_names(&file, &lease)?;
                    removed += 1;
                }
            }
            // IPv6 names whose lease is gone (a remove killed between its two unlinks).
            for file in sorted_entries(&net)? {
                let Some(IpAddr::V6(ip6)) = address_of(&file) else {
                    continue;
                };
                let Ok(record) = read_record(&file) else {
                    continue; // corrupt: reported by scan, kept (its address stays taken)
                };
                let owner = net.join(record.v4.ip.to_string());
                let quarantined = net
                    .file_name()
                    .map(|n| self.quarantine_dir().join(n))
                    .and_then(|q| addresses_named_in(&q).ok())
                    .is_some_and(|q| q.contains(&IpAddr::V4(record.v4.ip)));
                let orphan = match read_lease(&owner) {
                    // Its lease was set aside as corrupt: nobody can tell whether the address
                    // is used, so it stays taken.
                    Ok(None) => !quarantined,
                    Ok(Some(l)) => l.container_id != record.container_id || l.ip6() != Some(ip6),
                    Err(_) => false,
                };
                if orphan && record.ip6() == Some(ip6) {
                    remove_if_present(&file)?;
                    fsync_dir(&net)?;
                    removed += 1;
                }
            }
        }
        for index in sorted_entries(&self.by_container())? {
            let Some((cid, net)) = file_name(&index).and_then(|n| n.split_once('@')) else {
                continue;
            };
            let ip = fs::read_link(&index).ok();
            let lease = ip
                .as_ref()
                .and_then(|ip| ip.to_str())
                .map(|ip| self.leases_dir().join(net).join(ip));
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
        fsync_dir(&self.by_container())?;
        Ok(removed)
    }

    /// Remembers that we created bridge `name` (a marker file written durably).
    pub fn mark_bridge(&self, _lock: &StoreLock, name: &str) -> Result<()> {
        check_component(name, "bridge name")?;
        let dir = self.root.join("bridges");
        ensure_private_dir(&dir)?;
        let path = dir.join(name);
        let tmp = dir.join(format!(".tmp.{name}.{}", std::process::id()));
        write_file(&tmp, b"created by docker-netattach attach --bridge\n")?;
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            state_err(&path, e)
        })?;
        fsync_dir(&dir)
    }

    pub fn bridge_marked(&self, name: &str) -> bool {
        check_component(name, "bridge name").is_ok()
            && fs::symlink_metadata(self.root.join("bridges").join(name)).is_ok_and(|m| m.is_file())
    }

    /// The bridges `attach --bridge` created (marked), by name.
    pub fn marked_bridges(&self) -> Result<Vec<String>> {
        Ok(sorted_entries(&self.root.join("bridges"))?
            .into_iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .filter(|n| self.bridge_marked(n))
            .collect())
    }

    pub fn unmark_bridge(&self, _lock: &StoreLock, name: &str) -> Result<()> {
        check_component(name, "bridge name")?;
        let dir = self.root.join("bridges");
        remove_if_present(&dir.join(name))?;
        match fs::symlink_metadata(&dir) {
            Ok(_) => fsync_dir(&dir),
            Err(_) => Ok(()),
        }
    }
}

/// Links the temporary record `tmp` to the lease's names, IPv6 first; on failure nothing of
/// this record is left under either name. The error carries the address and path that failed.
fn link_new(
    tmp: &Path,
    dir: &Path,
    lease: &Lease,
) -> Result<(), (IpAddr, PathBuf, std::io::Error)> {
    let path = dir.join(lease.v4.ip.to_string());
    let path6 = lease.ip6().map(|ip6| (ip6, dir.join(ip6.to_string())));
    if let Some((ip6, p6)) = &path6 {
        fs::hard_link(tmp, p6).map_err(|e| (IpAddr::V6(*ip6), p6.clone(), e))?;
    }
    fs::hard_link(tmp, &path).map_err(|e| {
        if let Some((_, p6)) = &path6 {
            if same_file(tmp, p6) {
                let _ = fs::remove_file(p6);
            }
        }
        (IpAddr::V4(lease.v4.ip), path.clone(), e)
    })
}

/// Removes the IPv4 name of a lease, then its IPv6 name if that still holds this lease's
/// record (never another lease's name), then syncs the directory.
fn remove_names(path: &Path, lease: &Lease) -> Result<()> {
    let path6 = lease
        .ip6()
        .map(|ip6| (ip6, path.with_file_name(ip6.to_string())));
    let ours6 = path6.as_ref().is_some_and(|(ip6, p6)| {
        same_file(path, p6)
            || read_record(p6).is_ok_and(|r| {
                r.container_id == lease.container_id
                    && r.v4.ip == lease.v4.ip
                    && r.ip6() == Some(*ip6)
            })
    });
    remove_if_present(path)?;
    if let (true, Some((_, p6))) = (ours6, &path6) {
        remove_if_present(p6)?;
    }
    match path.parent() {
        Some(dir) => fsync_dir(dir),
        None => Ok(()),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// fsync(2) of a directory, so that the names just created, renamed or removed in it survive
/// a crash.
fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| state_err(dir, e))
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

/// The address a store file is named for (`<ip>` or, in quarantine, `<ip>~<n>`).
fn address_of(path: &Path) -> Option<IpAddr> {
    let name = file_name(path)?;
    name.split('~').next()?.parse().ok()
}

/// The name of a lease record proper (an IPv4 address; not a temporary, not an IPv6 link).
fn is_v4_name(path: &Path) -> bool {
    file_name(path).is_some_and(|n| !n.starts_with('.') && n.parse::<Ipv4Addr>().is_ok())
}

/// Addresses named by the files of `dir` (none when it does not exist).
fn addresses_named_in(dir: &Path) -> Result<BTreeSet<IpAddr>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(state_err(dir, e)),
    };
    let mut out = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| state_err(dir, e))?;
        if let Some(ip) = address_of(&entry.path()) {
            out.insert(ip);
        }
    }
    Ok(out)
}

/// Why a quarantined file still cannot be read (or that it can now).
fn record_error(path: &Path) -> String {
    match read_record(path) {
        Err(e) => format!("{e:#}"),
        Ok(_) => "readable now; if it is right, move it back under leases/".into(),
    }
}

/// Writes a lease record to `.tmp.<ip>.<pid>` in `dir` (0600, never through a link, fsynced),
/// ready to be linked or renamed into place.
fn write_temporary(dir: &Path, lease: &Lease) -> Result<PathBuf> {
    let tmp = dir.join(format!(".tmp.{}.{}", lease.v4.ip, std::process::id()));
    let mut body = serde_json::to_vec_pretty(lease).context("cannot encode lease")?;
    body.push(b'\n');
    write_file(&tmp, &body)?;
    Ok(tmp)
}

/// Creates `path` (0600, never through a link) with `body`, and fsyncs it.
fn write_file(path: &Path, body: &[u8]) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| state_err(path, e))?;
    let written = file.write_all(body).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(state_err(path, e));
    }
    Ok(())
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
    let lease = match read_record(path) {
        Ok(l) => l,
        Err(e)
            if e.downcast_ref::<std::io::Error>().map(|e| e.kind())
                == Some(ErrorKind::NotFound) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(e.context(format!(
                "lease file {} is corrupt{CORRUPT_HINT}",
                path.display()
            )));
        }
    };
    let expected = file_name(path).unwrap_or_default();
    if lease.v4.ip.to_string() != expected {
        bail!(
            "lease file {} is corrupt: it records address {} instead of {expected}{CORRUPT_HINT}",
            path.display(),
            lease.v4.ip
        );
    }
    Ok(Some(lease))
}

const CORRUPT_HINT: &str = " (its address stays reserved; `docker-netattach gc` sets it aside, `docker-netattach doctor` tells how to release it)";

/// Reads and parses one record without following symlinks and without checking its name.
fn read_record(path: &Path) -> Result<Lease> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let text = std::io::read_to_string(file)?;
    parse_lease(text)
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
        // A new directory's name must survive a crash as well as the files about to go in it.
        Ok(()) => return dir.parent().map_or(Ok(()), fsync_dir),
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
            [crate::ipam::key(IpAddr::V4(a.v4.ip))]
                .into_iter()
                .collect()
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
        a.v6 = Some(crate::attachment::V6Part::sample("fd00::5"));
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
        a.v6 = Some(crate::attachment::V6Part::sample("fd00::5"));
        store.insert(&lock, &a).unwrap();
        let taken = store.taken("netid").unwrap();
        assert_eq!((taken.v4.len(), taken.v6.len()), (1, 1));
        assert_eq!(store.all().unwrap(), vec![a.clone()]);
        let mut b = lease("bbb", "10.0.0.6");
        b.v6 = a.v6;
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
    fn a_corrupt_lease_is_skipped_reported_quarantined_and_still_taken() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let good = lease("aaa", "10.0.0.5");
        store.insert(&lock, &good).unwrap();
        let dir = store.root().join("leases/netid");
        fs::write(dir.join("10.0.0.9"), "{ truncated").unwrap();
        fs::hard_link(dir.join("10.0.0.9"), dir.join("fd00::9")).unwrap();
        let key = |ip: &str| crate::ipam::key(ip.parse().unwrap());
        let scan = store.scan().unwrap();
        assert_eq!(scan.leases, vec![good.clone()]);
        assert_eq!(scan.corrupt.len(), 1);
        assert!(
            scan.corrupt[0].error.contains("10.0.0.9 is corrupt"),
            "{:?}",
            scan.corrupt
        );
        assert_eq!(scan.corrupt[0].ip6, Some("fd00::9".parse().unwrap()));
        assert_eq!(store.all().unwrap(), vec![good.clone()]);
        assert!(store.sweep(&lock).unwrap() >= 1);
        let scan = store.scan().unwrap();
        assert_eq!(scan.leases, vec![good.clone()]);
        assert!(scan.corrupt[0].quarantined);
        assert_eq!(
            scan.corrupt[0].path,
            store.root().join("quarantine/netid/10.0.0.9")
        );
        assert!(!dir.join("10.0.0.9").exists() && !dir.join("fd00::9").exists());
        let taken = store.taken("netid").unwrap();
        assert!(taken.v4.contains(&key("10.0.0.9")) && taken.v6.contains(&key("fd00::9")));
        assert!(matches!(
            store.insert(&lock, &lease("bbb", "10.0.0.9")),
            Err(InsertError::Taken(_))
        ));
        // A second corrupt file for the same address is set aside next to the first.
        fs::write(dir.join("10.0.0.9"), "junk").unwrap();
        store.sweep(&lock).unwrap();
        assert!(store.root().join("quarantine/netid/10.0.0.9~1").exists());
        assert_eq!(store.scan().unwrap().corrupt.len(), 2);
    }

    #[test]
    fn a_corrupt_index_entry_is_found_around_and_rebuilt() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let a = lease("aaa", "10.0.0.5");
        store.insert(&lock, &a).unwrap();
        let index = store.root().join("by-container/aaa@netid");
        fs::remove_file(&index).unwrap();
        fs::write(&index, "x").unwrap();
        assert_eq!(store.find("aaa", "netid").unwrap(), Some(a.clone()));
        assert_eq!(store.corrupt_indexes().unwrap().len(), 1);
        store.sweep(&lock).unwrap();
        assert_eq!(store.all().unwrap(), vec![a.clone()]);
        assert_eq!(fs::read_link(&index).unwrap(), Path::new("10.0.0.5"));
        assert!(store.corrupt_indexes().unwrap().is_empty());
    }

    #[test]
    fn an_ipv6_name_is_swept_only_when_its_lease_is_gone() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let dir = store.root().join("leases/netid");
        let mut a = lease("aaa", "10.0.0.5");
        a.v6 = Some(crate::attachment::V6Part::sample("fd00::5"));
        let mut b = lease("bbb", "10.0.0.6");
        b.v6 = Some(crate::attachment::V6Part::sample("fd00::6"));
        store.insert(&lock, &a).unwrap();
        store.insert(&lock, &b).unwrap();
        // `a` lost its IPv4 name (a remove killed between its unlinks); `b`'s IPv4 record was
        // replaced by garbage (a new file: its IPv6 name still holds the readable record).
        fs::remove_file(dir.join("10.0.0.5")).unwrap();
        fs::remove_file(dir.join("10.0.0.6")).unwrap();
        fs::write(dir.join("10.0.0.6"), "junk").unwrap();
        store.sweep(&lock).unwrap();
        assert!(!dir.join("fd00::5").exists(), "the orphan IPv6 name stayed");
        assert!(
            dir.join("fd00::6").exists(),
            "the corrupt lease's IPv6 address was freed"
        );
        let taken = store.taken("netid").unwrap();
        assert!(
            taken
                .v6
                .contains(&crate::ipam::key("fd00::6".parse().unwrap()))
        );
    }

    #[test]
    fn removing_never_takes_another_lease_s_ipv6_name() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let mut a = lease("aaa", "10.0.0.5");
        a.v6 = Some(crate::attachment::V6Part::sample("fd00::5"));
        // `a` lost its IPv6 name (an older version killed in mark_complete), and `b` got it.
        store.insert(&lock, &a).unwrap();
        fs::remove_file(store.root().join("leases/netid/fd00::5")).unwrap();
        let mut b = lease("bbb", "10.0.0.6");
        b.v6 = a.v6;
        store.insert(&lock, &b).unwrap();
        store.remove(&lock, &a).unwrap();
        assert!(store.root().join("leases/netid/fd00::5").exists());
        assert_eq!(store.all().unwrap(), vec![b]);
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

    #[test]
    fn a_symlinked_state_dir_is_refused() {
        let d = tempdir::Dir::new();
        std::os::unix::fs::symlink("/tmp", d.0.join("link")).unwrap();
        let err = LeaseStore::open(&d.0.join("link")).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
