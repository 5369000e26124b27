//! The lease store on disk ([`DiskStore`]). Side effects: files under the state directory only.
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
//! <state>/veths/<host-ifname>                where the lease's host veth is (its index, its
//!                                           peer's): a detach proves the veth is its own
//!                                           without the RTNL lock (`hint.rs`); not synced
//! <state>/quarantine/<network-id>/<ip>[~n]   a lease file that could not be read, set aside by
//!                                           `gc`; its address stays taken until a person
//!                                           deletes it
//! <state>/boot                              symlink whose target text is the boot ID of the
//!                                           commands that last used the directory (`reboot.rs`)
//! ```
//! A lease is created by writing a temporary file and hard-linking it to `<ip>`: `link(2)` fails
//! with EEXIST when the address is taken, so even without the lock two writers can never hold
//! the same address, and a reader never sees a half-written record. Every other write
//! (completion, a changed index entry, bridge markers) is write-temporary + rename over the old
//! name: after a SIGKILL each name holds the old record or the new one, never neither (a new
//! index entry is one symlink(2), which is as atomic). The IPv6 name of a
//! dual-stack lease is linked before and unlinked after its IPv4 name, so while a lease exists
//! both of its addresses are taken.
//!
//! What must survive a crash of the machine (fsync) is what outlives the attachment: a crash ends
//! every namespace and veth, so a reservation in the middle of an attach (an incomplete lease, its
//! index entry) is worthless afterwards and is not synced; the complete lease (the intent `watch`
//! re-applies when the container starts again), a `pending` lease, a removal and a bridge marker
//! are. The completion is prepared while the attach runs ([`Completion`]): the complete record is
//! written and synced on the lease-sync thread, then its temporary name (its directory), and the
//! index entry synced on its second thread at the same time (in a one-shot attach: by a child the
//! thread starts, `forked.rs`), during the kernel work, so that completing costs one rename and no sync: a crash
//! that loses the rename leaves the complete record under its temporary name, which the first
//! command of the next boot puts in place (`reboot.rs`). (Measured on this VM's ext4: fdatasync of
//! a record 0.5–0.75 ms, fsync of a directory 0.25–0.4 ms; five of them were a third of an attach;
//! the last one, after the rename, was 0.22–0.3 ms of a 3.6–4 ms attach.) A one-shot attach has
//! those syncs done by a child and does not wait for a late answer: its lease is then
//! durable a moment after the command has exited (`durable.rs`).
//!
//! The reads of every record ([`DiskStore::scan`]) are in `scan.rs`, the repairs
//! ([`DiskStore::sweep`]) in `repair.rs`, the file-level steps in `files.rs`.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use nix::fcntl::FlockArg;

use super::durable;
use super::files::{
    addresses_named_in, ensure_private_dir, fsync_dir, is_v4_name, link_new, read_lease,
    remove_if_present, sorted_entries, unlink_names, write_record, write_temporary,
};
use super::syncer::{Syncer, Ticket};
use super::{Held, InsertError, Lease, Store, StoreLock, Taken, check_component, state_err};
use crate::fsutil::{self, LockError};

/// What an index entry says.
pub(super) enum IndexEntry {
    Missing,
    Points(Ipv4Addr),
    Corrupt(String),
}

/// The store in a state directory (see the layout above).
#[derive(Debug, Clone)]
pub struct DiskStore {
    pub(super) root: PathBuf,
}

impl DiskStore {
    /// Opens (creating when missing) the state directory. Refuses a symlinked or foreign-owned
    /// or world-writable directory so that nobody can redirect our writes.
    pub fn open(root: &Path) -> Result<Self> {
        let store = DiskStore {
            root: root.to_path_buf(),
        };
        for dir in [
            root.to_path_buf(),
            store.root.join("leases"),
            store.by_container(),
        ] {
            ensure_private_dir(&dir)?;
        }
        store.after_boot();
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
        let lock = fsutil::flock(&path, FlockArg::LockExclusive).map_err(|e| match e {
            LockError::Open(e) => state_err(&path, e),
            LockError::Lock(e) => anyhow!("cannot lock {}: {e}", path.display()),
        })?;
        Ok(StoreLock {
            _held: Held::File { _flock: lock },
        })
    }

    pub(super) fn by_container(&self) -> PathBuf {
        self.root.join("by-container")
    }

    pub(super) fn network_dir(&self, network_id: &str) -> Result<PathBuf> {
        check_component(network_id, "network id")?;
        Ok(self.root.join("leases").join(network_id))
    }

    pub(super) fn index_path(&self, container_id: &str, network_id: &str) -> Result<PathBuf> {
        check_component(container_id, "container id")?;
        check_component(network_id, "network id")?;
        Ok(self
            .by_container()
            .join(format!("{container_id}@{network_id}")))
    }

    pub(super) fn leases_dir(&self) -> PathBuf {
        self.root.join("leases")
    }

    pub(super) fn quarantine_dir(&self) -> PathBuf {
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

    /// Whether `ip` is leased on a network now: one lookup of its name in the network's
    /// directory, no listing. (Quarantined files are `insert`'s to check.)
    pub fn leased(&self, network_id: &str, ip: IpAddr) -> Result<bool> {
        let path = self.network_dir(network_id)?.join(ip.to_string());
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(state_err(&path, e)),
        }
    }

    /// [`taken`](Self::taken) of every network that holds leases, read without the lock: an
    /// attach reads them while Docker answers and confirms its pick under the lock with
    /// [`leased`](Self::leased). Nothing when there are more than `max` such networks (or the
    /// directory cannot be read): the attach then lists its network's directory under the lock
    /// as before.
    pub fn taken_ahead(&self, max: usize) -> std::collections::BTreeMap<String, Taken> {
        match self.networks() {
            Ok(networks) if networks.len() <= max => networks
                .into_iter()
                .filter_map(|n| {
                    let taken = self.taken(&n).ok()?;
                    Some((n, taken))
                })
                .collect(),
            _ => Default::default(),
        }
    }

    /// The IDs of the networks that hold leases (the directories `leases/` lists), sorted.
    fn networks(&self) -> Result<Vec<String>> {
        let dir = self.leases_dir();
        let mut networks: Vec<String> = fsutil::names_in(&dir)
            .map_err(|e| state_err(&dir, e))?
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .filter(|n| !n.starts_with('.') && check_component(n, "network id").is_ok())
            .collect();
        networks.sort_unstable();
        Ok(networks)
    }

    /// The container (and `--netns` target) IDs that the index lists, each with its network
    /// IDs: one directory listing, no lease read. A lease without an index entry (written by
    /// hand) is not among them.
    pub fn indexed(&self) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
        let dir = self.by_container();
        let mut out = std::collections::BTreeMap::<String, Vec<String>>::new();
        for name in fsutil::names_in(&dir).map_err(|e| state_err(&dir, e))? {
            if let Some((id, net)) = name.to_str().and_then(|n| n.split_once('@')) {
                if !id.starts_with('.') {
                    out.entry(id.to_string()).or_default().push(net.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Every lease a container (or `--netns` target) holds, on any network, in network ID
    /// order: one index entry looked up per network that has leases (`leases/` lists them, a
    /// handful), not a listing of the whole index (an entry per lease: at 200 leases that
    /// listing was 0.15 ms of an attach, half of what the lease step grew by). The same leases
    /// as a listing would find: a lease is found through its index entry, in its network's
    /// directory.
    pub fn of_container(&self, container_id: &str) -> Result<Vec<Lease>> {
        check_component(container_id, "container id")?;
        let mut out = Vec::new();
        for net in self.networks()? {
            if let Some(lease) = self.find(container_id, &net)? {
                out.push(lease);
            }
        }
        Ok(out)
    }

    pub(super) fn index_entry(&self, container_id: &str, network_id: &str) -> Result<IndexEntry> {
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

    /// Points the index entry of (container, network) at `ip`, replacing what was there. A
    /// new entry is made under its name at once (symlink(2) is atomic: the name is there
    /// whole or not at all); an existing one is replaced by a temporary symlink renamed over
    /// it, so that it never goes missing.
    pub(super) fn write_index(
        &self,
        container_id: &str,
        network_id: &str,
        ip: Ipv4Addr,
    ) -> Result<()> {
        let index = self.index_path(container_id, network_id)?;
        match std::os::unix::fs::symlink(ip.to_string(), &index) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(state_err(&index, e)),
        }
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
        // Synced with the completion (or by `sync`): see the module doc.
        Ok(())
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
        let (tmp, _file) = write_temporary(dir, lease, "")?;
        let result = link_new(&tmp, dir, lease);
        let _ = fs::remove_file(&tmp);
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
    pub fn remove(&self, lock: &StoreLock, lease: &Lease) -> Result<()> {
        match self.remove_unsynced(lock, lease)? {
            Some(dir) => fsync_dir(&dir),
            None => Ok(()),
        }
    }

    /// [`remove`](Self::remove), leaving the sync of the lease's directory to the caller:
    /// the directory to sync (after the lock is released, so that concurrent detaches do not
    /// wait for each other's syncs), `None` when nothing was removed. The removal is durable
    /// once that sync returns.
    pub fn remove_unsynced(&self, _lock: &StoreLock, lease: &Lease) -> Result<Option<PathBuf>> {
        let dir = self.network_dir(&lease.network_id)?;
        let path = dir.join(lease.v4.ip.to_string());
        let mut removed = None;
        if read_lease(&path)?.is_some_and(|l| l.container_id == lease.container_id) {
            // The complete record a killed attach left (`reboot.rs`) goes first: the next boot
            // would otherwise put a lease removed since back in place.
            remove_if_present(&super::reboot::complete_path(&dir, lease.v4.ip))?;
            unlink_names(&path, lease)?;
            removed = Some(dir);
        }
        // An index entry left by a crash points at no lease of this container: ignored, and
        // swept by gc. So its removal is not synced.
        let index = self.index_path(&lease.container_id, &lease.network_id)?;
        if fs::read_link(&index).is_ok_and(|t| t.as_os_str() == lease.v4.ip.to_string().as_str()) {
            remove_if_present(&index)?;
        }
        // The veth's hint goes with the lease (not synced either: worthless after a crash). A
        // hint that cannot be removed fails nothing: it only ever proves the interface its
        // attach made, and `gc` sweeps it.
        if removed.is_some() {
            let name =
                crate::plan::host_ifname(&lease.container_id, &lease.network_id, &lease.ifname);
            if let Err(e) = super::hint::remove(&self.root, &name) {
                tracing::warn!("{e:#}; `docker-netattach gc` removes it");
            }
        }
        Ok(removed)
    }

    /// Makes the removals in `dir` that [`remove_unsynced`](Self::remove_unsynced) left
    /// durable.
    pub fn sync_removals(&self, dir: &Path) -> Result<()> {
        fsync_dir(dir)
    }

    /// Marks a lease complete: a new record, renamed over the IPv6 name and then over the IPv4
    /// name. Each name holds the old record or the new one at every moment, never neither.
    pub fn mark_complete(&self, lock: &StoreLock, lease: &Lease) -> Result<()> {
        let completion = self.prepare_completion(lock, lease, &Syncer::inline())?;
        self.commit(lock, completion)
    }

    /// Replaces the record of an address (held by the same lease) atomically, by rename: old or
    /// new, never neither, and durably. A rollback writes the old record of a re-attach back.
    pub fn rewrite(&self, _lock: &StoreLock, lease: &Lease) -> Result<()> {
        let dir = self.network_dir(&lease.network_id)?;
        let (tmp, file) = write_temporary(&dir, lease, "")?;
        if let Err(e) = file.sync_data() {
            let _ = fs::remove_file(&tmp);
            return Err(state_err(&tmp, e));
        }
        put_in_place(&dir, &tmp, lease)?;
        fsync_dir(&dir)
    }

    /// [`rewrite`](Self::rewrite) without the syncs, for the record a re-attach starts with
    /// (made durable by its [`commit`](Self::commit)).
    pub fn rewrite_reservation(&self, lock: &StoreLock, lease: &Lease) -> Result<()> {
        let dir = self.network_dir(&lease.network_id)?;
        let (tmp, _file) = write_temporary(&dir, lease, "")?;
        self.install(lock, Prepared::new(dir, tmp, lease))
    }

    /// Writes `lease` ahead, without the lock, for [`install`](Self::install) to put in place
    /// under it: a file creation (0.05-0.7 ms on this ext4) is then not on the path of the
    /// commands queued on the lock. (`detach` marks its leases incomplete this way.)
    pub fn prepare_reservation(&self, lease: &Lease) -> Result<Prepared> {
        let dir = self.network_dir(&lease.network_id)?;
        // Unique beyond the process ID (written without the lock: two detaches in different
        // PID namespaces may share one). A `gc` may sweep it before it is installed.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let (tmp, _file) = write_temporary(&dir, lease, &format!("{AHEAD}{nanos:08x}"))?;
        Ok(Prepared::new(dir, tmp, lease))
    }

    /// Puts a record written ahead in place of the lease's names, as
    /// [`rewrite_reservation`](Self::rewrite_reservation) does (no sync). The record is an
    /// incomplete one (a detach's, a re-attach's reservation): a complete record a killed attach
    /// left for the address (`reboot.rs`) goes first, so that no restart brings it back.
    pub fn install(&self, _lock: &StoreLock, mut p: Prepared) -> Result<()> {
        p.installed = true;
        remove_if_present(&super::reboot::complete_path(&p.dir, p.lease.v4.ip))?;
        put_in_place(&p.dir, &p.tmp, &p.lease)
    }

    /// Makes an inserted lease durable at once (a `pending` lease, which is an intent of its
    /// own): its record, its names and its index entry.
    pub fn sync(&self, lease: &Lease) -> Result<()> {
        let dir = self.network_dir(&lease.network_id)?;
        let path = dir.join(lease.v4.ip.to_string());
        File::open(&path)
            .and_then(|f| f.sync_data())
            .map_err(|e| state_err(&path, e))?;
        fsync_dir(&dir)?;
        fsync_dir(&self.by_container())
    }

    /// Prepares the completion of `lease` (just inserted, or rewritten for a re-attach): `syncer`
    /// writes the complete record under a temporary name and syncs it, and the index entry,
    /// while the attach does its kernel work; for a one-shot attach
    /// ([`Syncer::let_syncs_outlive`]) a child syncs them, which may end after the
    /// command (`durable.rs`).
    pub fn prepare_completion(
        &self,
        _lock: &StoreLock,
        lease: &Lease,
        syncer: &Syncer,
    ) -> Result<Completion> {
        let mut done = lease.clone();
        done.complete = true;
        let dir = self.network_dir(&done.network_id)?;
        // Written, not only synced, on the lease-sync thread: creating a file costs 0.05-0.4 ms
        // on this VM's ext4 (more after many recent deletions), off the attach's path there.
        let tmp = super::reboot::complete_path(&dir, done.v4.ip);
        let index_dir = self.by_container();
        let (path, record, lease_dir) = (tmp.clone(), done.clone(), dir.clone());
        let beside = syncer.beside();
        let may_outlive = syncer.syncs_may_outlive();
        let synced = syncer.run(move || {
            let file = write_record(&path, &record)?;
            if may_outlive && crate::forked::can_outlive() {
                let dirs = [File::open(&lease_dir)?, File::open(&index_dir)?];
                match durable::start(&file, &dirs) {
                    Ok(child) => return Ok(Synced::InChild(child)),
                    // No child (a process limit): synced here, as the daemon's are.
                    Err(e) => {
                        tracing::debug!(
                            "cannot start a child to sync the lease ({e}); syncing here"
                        )
                    }
                }
            }
            // The index entry's directory is synced on the second thread while this one syncs
            // the record: one journal commit for both on ext4 instead of two in a row (~0.15
            // ms). Both are durable before `commit` renames the record into place.
            let index = beside.run(move || fsutil::fsync_dir(&index_dir));
            // Then the record's temporary name: from here on a crash of the machine leaves the
            // complete record where the next boot finds it (`reboot.rs`), so the rename that
            // commits it needs no sync of its own. (Cheap after the record's sync: on ext4 with
            // a journal, that sync's commit carried the name already.)
            let record = file
                .sync_data()
                .and_then(|()| fsutil::fsync_dir(&lease_dir));
            let index = index.synced();
            record.and(index).map(|()| Synced::Done)
        });
        Ok(Completion {
            lease: done,
            dir,
            tmp,
            synced: Some(synced),
        })
    }

    /// Commits a lease prepared by [`prepare_completion`](Self::prepare_completion): waits for
    /// its record and renames it over the names. The complete lease is durable when this
    /// returns, without a sync of its own: its record and the record's temporary name were
    /// synced ahead, so should a crash of the machine lose the rename, the first command of the
    /// next boot puts the record in place (`reboot.rs`). Unless a child syncs them and has not
    /// answered yet: then it is durable when the child ends, a moment later (`durable.rs`).
    pub fn commit(&self, _lock: &StoreLock, mut c: Completion) -> Result<()> {
        let synced = c.synced.take().map_or_else(
            || {
                Err(std::io::Error::other(
                    "the completion was committed already",
                ))
            },
            Ticket::synced,
        );
        match synced.map_err(|e| state_err(&c.tmp, e))? {
            Synced::Done => {}
            Synced::InChild(child) => match child.answer_now() {
                Some(answer) => answer.map_err(|e| state_err(&c.tmp, e))?,
                None => tracing::debug!(
                    pid = child.pid(),
                    "the lease is made durable by a child that may end after this command"
                ),
            },
        }
        put_in_place(&c.dir, &c.tmp, &c.lease)
    }

    /// Remembers that we created bridge `name` (a marker file written durably).
    pub fn mark_bridge(&self, _lock: &StoreLock, name: &str) -> Result<()> {
        check_component(name, "bridge name")?;
        let dir = self.root.join("bridges");
        ensure_private_dir(&dir)?;
        let path = dir.join(name);
        let tmp = dir.join(format!(".tmp.{name}.{}", std::process::id()));
        let body = b"created by docker-netattach attach --bridge\n";
        fsutil::write_atomic(&tmp, &path, body, 0o600).map_err(|e| state_err(&e.path, e.error))?;
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

/// Renames the record `tmp` over the names of `lease` in `dir`: the IPv6 name first, then the
/// IPv4 name. Each name holds the old record or the new one at every moment, never neither;
/// nothing of `tmp` is left after an error.
pub(super) fn put_in_place(dir: &Path, tmp: &Path, lease: &Lease) -> Result<()> {
    if let Some(ip6) = lease.ip6() {
        let tmp6 = dir.join(format!(".tmp.{ip6}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp6);
        let path6 = dir.join(ip6.to_string());
        let renamed = fs::hard_link(tmp, &tmp6)
            .and_then(|()| fs::rename(&tmp6, &path6))
            .map_err(|e| state_err(&path6, e));
        if renamed.is_err() {
            let _ = fs::remove_file(&tmp6);
            let _ = fs::remove_file(tmp);
        }
        renamed?;
    }
    let path = dir.join(lease.v4.ip.to_string());
    fs::rename(tmp, &path).map_err(|e| {
        let _ = fs::remove_file(tmp);
        state_err(&path, e)
    })
}

/// A lease's completion, prepared while its attach runs ([`DiskStore::prepare_completion`]).
/// Dropped without [`DiskStore::commit`] (the attach failed), it removes its record.
pub struct Completion {
    lease: Lease,
    dir: PathBuf,
    tmp: PathBuf,
    synced: Option<Ticket<std::io::Result<Synced>>>,
}

/// How far a completion's syncs are when its record is written.
enum Synced {
    Done,
    /// A child syncs them (`durable.rs`).
    InChild(durable::ChildSync),
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(t) = self.synced.take() {
            if let Some(Ok(Synced::InChild(child))) = t.wait() {
                let _ = child.wait();
            }
        }
        // Its name was synced: its removal is, or a crash could bring it back for the next
        // boot to put in place (`reboot.rs`). Only on the way out of a failed attach.
        if fs::remove_file(&self.tmp).is_ok() {
            let _ = fsutil::fsync_dir(&self.dir);
        }
    }
}

/// What the temporary file of a record written ahead carries in its name.
const AHEAD: &str = ".ahead.";

/// A lease record written ahead ([`DiskStore::prepare_reservation`]); its temporary file is
/// removed when it is dropped without being installed.
pub struct Prepared {
    dir: PathBuf,
    tmp: PathBuf,
    lease: Lease,
    installed: bool,
}

impl Prepared {
    fn new(dir: PathBuf, tmp: PathBuf, lease: &Lease) -> Prepared {
        Prepared {
            dir,
            tmp,
            lease: lease.clone(),
            installed: false,
        }
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.installed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Store for DiskStore {
    fn lock(&self) -> Result<StoreLock> {
        DiskStore::lock(self)
    }
    fn taken(&self, network_id: &str) -> Result<Taken> {
        DiskStore::taken(self, network_id)
    }
    fn leased(&self, network_id: &str, ip: IpAddr) -> Result<bool> {
        DiskStore::leased(self, network_id, ip)
    }
    fn find(&self, container_id: &str, network_id: &str) -> Result<Option<Lease>> {
        DiskStore::find(self, container_id, network_id)
    }
    fn of_container(&self, container_id: &str) -> Result<Vec<Lease>> {
        DiskStore::of_container(self, container_id)
    }
    fn all(&self) -> Result<Vec<Lease>> {
        DiskStore::all(self)
    }
    fn insert(&self, lock: &StoreLock, lease: &Lease) -> Result<(), InsertError> {
        DiskStore::insert(self, lock, lease)
    }
    fn mark_complete(&self, lock: &StoreLock, lease: &Lease) -> Result<()> {
        DiskStore::mark_complete(self, lock, lease)
    }
    fn remove(&self, lock: &StoreLock, lease: &Lease) -> Result<()> {
        DiskStore::remove(self, lock, lease)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::lease::files::temporary_path;
    pub(crate) use crate::lease::tests::lease;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn tmp_store() -> (tempfile::TempDir, DiskStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(&dir.path().join("state")).unwrap();
        (dir, store)
    }

    /// `leased` looks up one name: a lease's IPv4 and IPv6 names are leased, a temporary or
    /// another network's lease is not. `taken_ahead` gives every network's taken set, or none
    /// when there are more networks than asked for.
    #[test]
    fn leased_looks_up_one_name_and_taken_ahead_reads_each_network() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let mut l = lease("c1", "10.9.0.5");
        l.v6 = Some(crate::attachment::V6Part {
            ip: "fd00::5".parse().unwrap(),
            prefix_len: 64,
            gateway: None,
        });
        store.insert(&lock, &l).unwrap();
        let mut other = lease("c2", "10.9.0.6");
        other.network_id = "othernet".into();
        store.insert(&lock, &other).unwrap();
        fs::write(
            store.network_dir("netid").unwrap().join(".tmp.10.9.0.7.1"),
            "",
        )
        .unwrap();
        let leased = |ip: &str| store.leased("netid", ip.parse().unwrap()).unwrap();
        assert!(leased("10.9.0.5") && leased("fd00::5"));
        assert!(!leased("10.9.0.6") && !leased("10.9.0.7") && !leased("10.9.0.8"));

        let ahead = store.taken_ahead(4);
        assert_eq!(ahead.len(), 2);
        assert_eq!(ahead["netid"], store.taken("netid").unwrap());
        assert_eq!(ahead["othernet"], store.taken("othernet").unwrap());
        assert!(store.taken_ahead(1).is_empty());
    }

    #[test]
    fn a_lease_file_is_private_and_named_for_its_address() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let a = lease("aaa", "172.17.255.254");
        store.insert(&lock, &a).unwrap();
        let mode = fs::metadata(store.root().join("leases/netid/172.17.255.254"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::read_link(store.root().join("by-container/aaa@netid")).unwrap(),
            Path::new("172.17.255.254")
        );
    }

    /// The taken addresses are the names of the network's lease files (IPv4 and IPv6 names)
    /// and of its quarantined files (`<ip>~<n>` too); a temporary, a name that is no address
    /// (or not UTF-8) and another network's files are not.
    #[test]
    fn the_taken_addresses_are_the_names_of_the_lease_and_quarantined_files() {
        use std::os::unix::ffi::OsStrExt;
        let (_d, store) = tmp_store();
        let (net, quarantine) = (store.root().join("leases/netid"), store.quarantine_dir());
        for dir in [
            &net,
            &quarantine.join("netid"),
            &store.root().join("leases/other"),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        for name in [
            "10.0.0.9",
            "fd00::9",
            ".tmp.10.0.0.8.77",
            ".tmp.10.0.0.7.complete",
            "README",
        ] {
            fs::write(net.join(name), "").unwrap();
        }
        fs::write(net.join(std::ffi::OsStr::from_bytes(b"10.0.0.6\xff")), "").unwrap();
        for name in ["10.0.0.5", "10.0.0.4~2", "fd00::4~1"] {
            fs::write(quarantine.join("netid").join(name), "").unwrap();
        }
        fs::write(store.root().join("leases/other/10.0.0.3"), "").unwrap();
        let key = |s: &str| crate::ipam::key(s.parse().unwrap());
        let taken = store.taken("netid").unwrap();
        let v4: Vec<u128> = ["10.0.0.4", "10.0.0.5", "10.0.0.9"].map(key).into();
        assert_eq!(taken.v4.into_iter().collect::<Vec<_>>(), v4);
        let v6: Vec<u128> = ["fd00::4", "fd00::9"].map(key).into();
        assert_eq!(taken.v6.into_iter().collect::<Vec<_>>(), v6);
        assert_eq!(store.taken("none-here").unwrap(), Taken::default());
    }

    /// A container's leases on every network, found through the index, in network ID order;
    /// not another container's, not a lease without its index entry (written by hand: left to
    /// `gc`), nothing for an index entry whose lease is gone; a corrupt entry is made up for by
    /// reading its network's leases.
    #[test]
    fn the_leases_of_a_container_are_those_its_index_entries_find_on_each_network() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let on = |net: &str, cid: &str, ip: &str| Lease {
            network_id: net.into(),
            ..lease(cid, ip)
        };
        let (a2, a1) = (on("net2", "aaa", "10.2.0.9"), on("net1", "aaa", "10.1.0.9"));
        for l in [
            &a2,
            &a1,
            &on("net1", "bbb", "10.1.0.8"),
            &on("net3", "bbb", "10.3.0.8"),
        ] {
            store.insert(&lock, l).unwrap();
        }
        assert_eq!(
            store.of_container("aaa").unwrap(),
            vec![a1.clone(), a2.clone()]
        );
        assert_eq!(store.of_container("ccc").unwrap(), vec![]);

        let by_hand = on("net3", "aaa", "10.3.0.9");
        store.insert(&lock, &by_hand).unwrap();
        fs::remove_file(store.index_path("aaa", "net3").unwrap()).unwrap();
        store
            .write_index("aaa", "net4", "10.4.0.9".parse().unwrap())
            .unwrap();
        fs::write(
            store.index_path("aaa", "net2").unwrap().with_extension("x"),
            "",
        )
        .unwrap();
        assert_eq!(
            store.of_container("aaa").unwrap(),
            vec![a1.clone(), a2.clone()]
        );

        fs::remove_file(store.index_path("aaa", "net1").unwrap()).unwrap();
        std::os::unix::fs::symlink("garbage", store.index_path("aaa", "net1").unwrap()).unwrap();
        assert_eq!(store.of_container("aaa").unwrap(), vec![a1, a2]);
    }

    /// A new index entry is made under its name at once; an existing one (another address,
    /// or a leftover that is no symlink) is replaced; a temporary record left by a killed
    /// process of the same PID is written over. Nothing temporary stays behind.
    #[test]
    fn index_entries_are_made_or_replaced_and_leftovers_written_over() {
        let (_d, store) = tmp_store();
        let index = store.root().join("by-container/aaa@netid");
        store
            .write_index("aaa", "netid", "172.17.0.5".parse().unwrap())
            .unwrap();
        assert_eq!(fs::read_link(&index).unwrap(), Path::new("172.17.0.5"));
        store
            .write_index("aaa", "netid", "172.17.0.6".parse().unwrap())
            .unwrap();
        assert_eq!(fs::read_link(&index).unwrap(), Path::new("172.17.0.6"));
        fs::remove_file(&index).unwrap();
        fs::write(&index, "not a symlink").unwrap();
        store
            .write_index("aaa", "netid", "172.17.0.7".parse().unwrap())
            .unwrap();
        assert_eq!(fs::read_link(&index).unwrap(), Path::new("172.17.0.7"));
        assert_eq!(fsutil::names_in(&store.by_container()).unwrap().len(), 1);

        let a = lease("aaa", "172.17.0.7");
        let dir = store.network_dir("netid").unwrap();
        ensure_private_dir(&dir).unwrap();
        let tmp = temporary_path(&dir, &a, "");
        fs::write(&tmp, "left by a killed attach").unwrap();
        let lock = store.lock().unwrap();
        store.insert(&lock, &a).unwrap();
        assert_eq!(store.find("aaa", "netid").unwrap(), Some(a));
        assert!(!tmp.exists());
    }

    #[test]
    fn a_record_written_ahead_replaces_the_lease_when_installed_and_leaves_nothing_otherwise() {
        let (_d, store) = tmp_store();
        let lock = store.lock().unwrap();
        let a = lease("aaa", "172.17.255.254");
        store.insert(&lock, &a).unwrap();
        drop(lock);
        let temporaries = || {
            fs::read_dir(store.root().join("leases/netid"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(".tmp.")
                })
                .count()
        };
        let undone = Lease {
            complete: false,
            ..a.clone()
        };
        // Dropped without the lock ever being taken: its file goes, the lease is unchanged.
        drop(store.prepare_reservation(&undone).unwrap());
        assert_eq!(temporaries(), 0);
        assert_eq!(store.find("aaa", "netid").unwrap(), Some(a.clone()));
        // Installed under the lock: the lease now reads as the record written ahead.
        let ahead = store.prepare_reservation(&undone).unwrap();
        assert_eq!(temporaries(), 1);
        let lock = store.lock().unwrap();
        store.install(&lock, ahead).unwrap();
        assert_eq!(temporaries(), 0);
        assert_eq!(store.find("aaa", "netid").unwrap(), Some(undone.clone()));
        // Swept by a gc before it was installed: an error (detach then rewrites in place), and
        // the lease is untouched.
        store.rewrite_reservation(&lock, &a).unwrap();
        drop(lock);
        let ahead = store.prepare_reservation(&undone).unwrap();
        let lock = store.lock().unwrap();
        assert_eq!(store.sweep(&lock).unwrap(), 1);
        assert!(store.install(&lock, ahead).is_err());
        assert_eq!(store.find("aaa", "netid").unwrap(), Some(a));
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
    fn a_symlinked_state_dir_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", d.path().join("link")).unwrap();
        let err = DiskStore::open(&d.path().join("link"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
