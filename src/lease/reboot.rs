//! What a crash of the machine leaves of an attach, put in place by the first command of the
//! next boot. Side effects: files under the state directory only.
//!
//! An attach commits its lease by renaming the complete record over its reservation, without
//! a sync after the rename (`DiskStore::commit`): the record and its temporary name
//! (`.tmp.<ip>.complete`, one per address: the reservation holds the address) were synced while
//! the kernel work ran, so a crash can lose the rename, never the record (unless the attach
//! returned before its sync child answered, `durable.rs`: a crash in that moment may leave the
//! reservation, or the record in place without its data). `<state>/boot`, a
//! symlink whose target text is the boot ID of the commands that last used the directory,
//! tells the first command of a new boot to look: under the lock, it puts each complete record
//! left under such a name in place of its lease, and only then marks the directory with its
//! own boot.
//!
//! Such a record outlives its attach only while the lease it completes does: an attach that
//! fails removes it (synced, with the reservation), and so does every removal of a lease
//! (`DiskStore::remove_unsynced`: detach, gc, a re-attach elsewhere), before the lease's own
//! names; `gc` sweeps those of attaches killed in this boot. So the record found after a
//! restart belongs to an attach that was stopped after its lease step (~0.7 ms after the
//! reservation, during its kernel work or later, done or not) by the crash, or by a kill
//! nothing cleaned up before the restart; its lease is kept as the intent it records, which
//! `watch` applies when the container starts again, like every other lease after a reboot.
//! The reservation under the address may have come back from the crash empty (its data is
//! never synced: a crash ends the interface it was for) or not at all: the record goes in
//! over it or under the free name, never over another container's lease.

use std::fs;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::disk::{DiskStore, IndexEntry, put_in_place};
use super::files::{
    addresses_named_in, file_name, fsync_dir, link_new, read_lease, read_record, remove_if_present,
    sorted_entries,
};
use super::{Lease, StoreLock, state_err};

/// The marker's name under the state directory.
const MARK: &str = "boot";
/// What the temporary name of a complete record ends with.
pub(super) const COMPLETE: &str = ".complete";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's ID (None when /proc cannot tell), read once per process.
pub fn boot_id() -> Option<String> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| Some(fs::read_to_string(BOOT_ID).ok()?.trim().to_string()))
        .clone()
}

/// Whether the state directory `root` is marked with this boot: what a crash left in it has
/// been put in place (`gc` leaves complete records alone until then).
pub(super) fn marked_this_boot(root: &Path) -> bool {
    boot_id().is_some_and(|now| read_mark(&root.join(MARK)).as_deref() == Some(now.as_str()))
}

/// Where an attach writes the complete record of its lease on `ip` in `dir` (the network's
/// lease directory) before it commits it.
pub(super) fn complete_path(dir: &Path, ip: Ipv4Addr) -> PathBuf {
    dir.join(format!(".tmp.{ip}{COMPLETE}"))
}

/// What became of one record left under its temporary name.
enum Left {
    /// Put in place: the lease is complete.
    Kept(Box<Lease>),
    /// Nothing to put in place (unreadable, or its address or network is another lease's now).
    Dropped(String),
}

impl DiskStore {
    /// Puts in place what a crash left, once per boot (`open` calls it): a readlink and a read
    /// of /proc when the directory is marked with this boot already. A directory without a
    /// mark (new, or used by an older version only) is marked, nothing more. It fails no
    /// command: what it could not do is a warning, and the next command tries again.
    pub(super) fn after_boot(&self) {
        let Some(now) = boot_id() else {
            return;
        };
        if marked_this_boot(&self.root) {
            return;
        }
        if let Err(e) = self.look_after_boot(&self.root.join(MARK), &now) {
            tracing::warn!(
                "{e:#}; a lease whose attach a restart of the machine interrupted may still be incomplete (the next command tries again)"
            );
        }
    }

    fn look_after_boot(&self, mark: &Path, now: &str) -> Result<()> {
        // Taken for the first command of a boot only. (No caller holds the lock when it opens
        // the store: flock(2) locks per open file, so this would wait for itself.)
        let lock = self.lock()?;
        if let Some(before) = read_mark(mark) {
            if before == now {
                return Ok(()); // another command did it meanwhile
            }
            self.keep_interrupted(&lock)?;
        }
        self.write_mark(mark, now)
    }

    /// Puts every complete record left under its temporary name in place (see the module doc).
    fn keep_interrupted(&self, lock: &StoreLock) -> Result<()> {
        let mut kept = false;
        for net in sorted_entries(&self.leases_dir())? {
            let left: Vec<PathBuf> = sorted_entries(&net)?
                .into_iter()
                .filter(|p| file_name(p).and_then(address_of_complete).is_some())
                .collect();
            for tmp in &left {
                match self.put_back(lock, &net, tmp)? {
                    Left::Kept(lease) => {
                        kept = true;
                        tracing::info!(
                            "kept the lease of {} ({}) on {}: its attach was interrupted by a restart of the machine",
                            lease.container_name,
                            lease.v4.ip,
                            lease.network
                        );
                    }
                    Left::Dropped(why) => {
                        tracing::info!("removed {} ({why})", tmp.display());
                        remove_if_present(tmp)?;
                    }
                }
            }
            if !left.is_empty() {
                fsync_dir(&net)?;
            }
        }
        if kept {
            fsync_dir(&self.by_container())?;
        }
        Ok(())
    }

    /// Puts the complete record `tmp` in place of its lease's names: over the reservation
    /// (whole, or come back empty from the crash) or under the free names. An I/O error leaves
    /// it where it is, for the next command.
    fn put_back(&self, _lock: &StoreLock, net: &Path, tmp: &Path) -> Result<Left> {
        let record = match read_record(tmp) {
            Ok(r) => r,
            Err(e) if is_io(&e) => return Err(e.context(format!("cannot read {}", tmp.display()))),
            Err(e) => return Ok(Left::Dropped(format!("unreadable: {e:#}"))),
        };
        let named = file_name(tmp).and_then(address_of_complete);
        if !record.complete
            || named != Some(record.v4.ip)
            || file_name(net) != Some(record.network_id.as_str())
        {
            return Ok(Left::Dropped("not the complete lease its name says".into()));
        }
        let (cid, nid, ip) = (&record.container_id, &record.network_id, record.v4.ip);
        let quarantined = addresses_named_in(&self.quarantine_dir().join(nid))?;
        if std::iter::once(IpAddr::V4(ip))
            .chain(record.ip6().map(IpAddr::V6))
            .any(|a| quarantined.contains(&a))
        {
            return Ok(Left::Dropped("its address is quarantined".into()));
        }
        let path = net.join(ip.to_string());
        match read_lease(&path) {
            Ok(Some(l)) if l.container_id == *cid => put_in_place(net, tmp, &record)?,
            Ok(Some(_)) => return Ok(Left::Dropped("its address is another lease's".into())),
            Ok(None) => {
                if let Some(other) = self.find(cid, nid)?.filter(|l| l.v4.ip != ip) {
                    return Ok(Left::Dropped(format!(
                        "its container holds {} on that network",
                        other.v4.ip
                    )));
                }
                // The IPv6 name may have come back without the IPv4 one: the lease's own when it
                // holds this record or another of this container.
                let own6 = record.ip6().is_some_and(|ip6| {
                    read_record(&net.join(ip6.to_string()))
                        .is_ok_and(|r| r.container_id == *cid && r.v4.ip == ip)
                });
                if own6 {
                    put_in_place(net, tmp, &record)?;
                } else {
                    match link_new(tmp, net, &record) {
                        Ok(()) => {}
                        Err((a, _, e)) if e.kind() == ErrorKind::AlreadyExists => {
                            return Ok(Left::Dropped(format!("{a} is another lease's")));
                        }
                        Err((_, p, e)) => return Err(state_err(&p, e)),
                    }
                }
            }
            // What the crash left of the reservation (its data is not synced): ours when the
            // container's index entry names the address.
            Err(e) if is_io(&e) => return Err(e),
            Err(_) if matches!(self.index_entry(cid, nid)?, IndexEntry::Points(i) if i == ip) => {
                put_in_place(net, tmp, &record)?
            }
            Err(_) => return Ok(Left::Dropped("its address holds an unreadable file".into())),
        }
        // Left where a rename found the same file under the target name (a put-back killed
        // after its link; a crash between the commit's two renames, dual-stack).
        remove_if_present(tmp)?;
        if let Some(ip6) = record.ip6() {
            remove_if_present(&net.join(format!(".tmp.{ip6}.{}", std::process::id())))?;
        }
        self.write_index(cid, nid, ip)?;
        Ok(Left::Kept(Box::new(record)))
    }

    /// Marks the directory with this boot: a symlink renamed into place, synced (a mark lost
    /// to a crash would hide what the crash left from the next boot).
    fn write_mark(&self, mark: &Path, now: &str) -> Result<()> {
        let tmp = self
            .root
            .join(format!(".tmp.{MARK}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(now, &tmp).map_err(|e| state_err(&tmp, e))?;
        if let Err(e) = fs::rename(&tmp, mark) {
            let _ = fs::remove_file(&tmp);
            return Err(state_err(mark, e));
        }
        fsync_dir(&self.root)
    }
}

/// An error reading a file (worth another try), not one of its content.
fn is_io(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() != ErrorKind::InvalidData)
}

fn read_mark(mark: &Path) -> Option<String> {
    match fs::read_link(mark) {
        Ok(t) => t.to_str().map(str::to_string),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(_) => Some(String::new()), // not a symlink: a mark of no boot
    }
}

/// The address in `.tmp.<ip>.complete`.
fn address_of_complete(name: &str) -> Option<Ipv4Addr> {
    name.strip_prefix(".tmp.")?
        .strip_suffix(COMPLETE)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::Syncer;
    use crate::lease::disk::tests::{lease, tmp_store};

    /// An attach of `cid` on `ip` as a crash leaves it after its lease step: the incomplete
    /// reservation under the address, the complete record synced under its temporary name.
    fn interrupted(store: &DiskStore, cid: &str, ip: &str) -> Lease {
        interrupt(store, lease(cid, ip))
    }

    /// [`interrupted`] for a lease of the caller's making.
    fn interrupt(store: &DiskStore, mut l: Lease) -> Lease {
        let lock = store.lock().unwrap();
        l.complete = false;
        store.insert(&lock, &l).unwrap();
        let completion = store
            .prepare_completion(&lock, &l, &Syncer::inline())
            .unwrap();
        std::mem::forget(completion); // the crash: no commit, no cleanup
        l
    }

    /// Marks the state directory with another boot, as the next boot finds it.
    fn mark_earlier_boot(store: &DiskStore) {
        let mark = store.root().join(MARK);
        fs::remove_file(&mark).unwrap();
        std::os::unix::fs::symlink("an earlier boot", &mark).unwrap();
    }

    /// The store as the first command of the next boot opens it.
    fn next_boot(store: &DiskStore) -> DiskStore {
        mark_earlier_boot(store);
        DiskStore::open(store.root()).unwrap()
    }

    fn names(store: &DiskStore) -> Vec<String> {
        crate::fsutil::names_in(&store.root().join("leases/netid"))
            .unwrap()
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    fn temporaries(store: &DiskStore) -> Vec<String> {
        names(store)
            .into_iter()
            .filter(|n| n.starts_with(".tmp."))
            .collect()
    }

    fn complete_of(store: &DiskStore, cid: &str) -> Option<(String, bool)> {
        let l = store.find(cid, "netid").unwrap()?;
        Some((l.v4.ip.to_string(), l.complete))
    }

    #[test]
    fn the_next_boot_keeps_the_lease_of_an_attach_a_crash_interrupted_whatever_came_back_of_its_reservation()
     {
        let (_d, store) = tmp_store();
        assert_eq!(read_mark(&store.root().join(MARK)), boot_id());
        interrupted(&store, "aaa", "172.17.0.5");
        // The reservation came back empty (its data is never synced) ...
        interrupted(&store, "bbb", "172.17.0.6");
        fs::write(store.root().join("leases/netid/172.17.0.6"), "").unwrap();
        // ... or not at all, nor its index entry.
        interrupted(&store, "ccc", "172.17.0.7");
        fs::remove_file(store.root().join("leases/netid/172.17.0.7")).unwrap();
        fs::remove_file(store.root().join("by-container/ccc@netid")).unwrap();

        let store = next_boot(&store);
        for (cid, ip) in [
            ("aaa", "172.17.0.5"),
            ("bbb", "172.17.0.6"),
            ("ccc", "172.17.0.7"),
        ] {
            assert_eq!(complete_of(&store, cid), Some((ip.into(), true)), "{cid}");
        }
        assert_eq!(temporaries(&store), Vec::<String>::new());
        assert_eq!(read_mark(&store.root().join(MARK)), boot_id());
    }

    #[test]
    fn in_the_boot_that_made_it_a_record_left_behind_is_not_put_in_place_and_gc_removes_it() {
        let (_d, store) = tmp_store();
        interrupted(&store, "aaa", "172.17.0.5");
        let store = DiskStore::open(store.root()).unwrap();
        assert_eq!(
            complete_of(&store, "aaa"),
            Some(("172.17.0.5".into(), false))
        );
        assert_eq!(temporaries(&store).len(), 1);
        let lock = store.lock().unwrap();
        store.sweep(&lock).unwrap();
        drop(lock);
        assert_eq!(temporaries(&store), Vec::<String>::new());
        let store = next_boot(&store);
        assert_eq!(
            complete_of(&store, "aaa"),
            Some(("172.17.0.5".into(), false))
        );
    }

    /// A killed attach, then a detach (or gc, or a re-attach elsewhere: every removal): the
    /// lease does not come back in the next boot.
    #[test]
    fn a_lease_removed_after_its_attach_was_killed_stays_removed() {
        let (_d, store) = tmp_store();
        let a = interrupted(&store, "aaa", "172.17.0.5");
        let lock = store.lock().unwrap();
        store.remove(&lock, &a).unwrap();
        drop(lock);
        assert_eq!(temporaries(&store), Vec::<String>::new());
        let store = next_boot(&store);
        assert_eq!(complete_of(&store, "aaa"), None);
        assert_eq!(names(&store), Vec::<String>::new());
    }

    #[test]
    fn a_record_left_behind_never_takes_an_address_or_network_another_lease_holds() {
        let (_d, store) = tmp_store();
        let dir = store.root().join("leases/netid");
        // aaa's reservation of .5 was lost; .5 is another container's now.
        interrupted(&store, "aaa", "172.17.0.5");
        fs::remove_file(dir.join("172.17.0.5")).unwrap();
        fs::remove_file(store.root().join("by-container/aaa@netid")).unwrap();
        let lock = store.lock().unwrap();
        let other = lease("ccc", "172.17.0.5");
        store.insert(&lock, &other).unwrap();
        drop(lock);
        // ddd's reservation of .7 was lost, and ddd holds .8 on that network now.
        interrupted(&store, "ddd", "172.17.0.7");
        fs::remove_file(dir.join("172.17.0.7")).unwrap();
        let lock = store.lock().unwrap();
        store.insert(&lock, &lease("ddd", "172.17.0.8")).unwrap();
        drop(lock);
        // A record left half written; an unreadable file under an address nobody's index
        // names.
        fs::write(dir.join(".tmp.172.17.0.9.complete"), "{").unwrap();
        interrupted(&store, "eee", "172.17.0.10");
        fs::write(dir.join("172.17.0.10"), "").unwrap();
        fs::remove_file(store.root().join("by-container/eee@netid")).unwrap();

        let store = next_boot(&store);
        assert_eq!(store.find("ccc", "netid").unwrap(), Some(other));
        assert_eq!(complete_of(&store, "aaa"), None);
        assert_eq!(
            complete_of(&store, "ddd"),
            Some(("172.17.0.8".into(), true))
        );
        assert_eq!(complete_of(&store, "eee"), None);
        let names = names(&store);
        assert!(
            !names.iter().any(|n| n == "172.17.0.7" || n == "172.17.0.9"),
            "{names:?}"
        );
        assert_eq!(temporaries(&store), Vec::<String>::new());
    }

    /// A killed attach, then a detach that marked the lease incomplete and was killed or
    /// failed: what the user tried to detach does not come back complete.
    #[test]
    fn a_lease_a_detach_marked_incomplete_does_not_come_back_complete() {
        let (_d, store) = tmp_store();
        let a = interrupted(&store, "aaa", "172.17.0.5");
        let lock = store.lock().unwrap();
        let marked = store.prepare_reservation(&a).unwrap();
        store.install(&lock, marked).unwrap();
        drop(lock);
        let store = next_boot(&store);
        assert_eq!(
            complete_of(&store, "aaa"),
            Some(("172.17.0.5".into(), false))
        );
    }

    /// The put-back waits when it could not run (a warning): gc does not remove its records.
    #[test]
    fn gc_leaves_an_earlier_boots_records_to_their_put_back() {
        let (_d, store) = tmp_store();
        interrupted(&store, "aaa", "172.17.0.5");
        mark_earlier_boot(&store);
        let lock = store.lock().unwrap();
        store.sweep(&lock).unwrap();
        drop(lock);
        assert_eq!(temporaries(&store).len(), 1);
        let store = DiskStore::open(store.root()).unwrap();
        assert_eq!(
            complete_of(&store, "aaa"),
            Some(("172.17.0.5".into(), true))
        );
    }

    /// Dual-stack: the IPv6 name came back without the IPv4 one; a put-back killed after
    /// linking the record under the address.
    #[test]
    fn what_a_crash_or_a_killed_put_back_left_of_the_names_is_completed() {
        let (_d, store) = tmp_store();
        let dir = store.root().join("leases/netid");
        let mut l = lease("aaa", "172.17.0.5");
        l.v6 = Some(crate::attachment::V6Part::sample("fd00::5"));
        interrupt(&store, l);
        fs::remove_file(dir.join("172.17.0.5")).unwrap();
        interrupted(&store, "bbb", "172.17.0.6");
        fs::remove_file(dir.join("172.17.0.6")).unwrap();
        fs::hard_link(dir.join(".tmp.172.17.0.6.complete"), dir.join("172.17.0.6")).unwrap();

        let store = next_boot(&store);
        let kept = store.find("aaa", "netid").unwrap().unwrap();
        assert!(kept.complete && kept.ip6().is_some(), "{kept:?}");
        assert_eq!(
            read_record(&dir.join("fd00::5")).unwrap(),
            kept,
            "the IPv6 name holds the complete record"
        );
        assert_eq!(
            complete_of(&store, "bbb"),
            Some(("172.17.0.6".into(), true))
        );
        assert_eq!(temporaries(&store), Vec::<String>::new());
    }

    #[test]
    fn a_directory_without_a_mark_is_marked_and_nothing_more() {
        let (_d, store) = tmp_store();
        interrupted(&store, "aaa", "172.17.0.5");
        fs::remove_file(store.root().join(MARK)).unwrap();
        let store = DiskStore::open(store.root()).unwrap();
        assert_eq!(
            complete_of(&store, "aaa"),
            Some(("172.17.0.5".into(), false))
        );
        assert_eq!(read_mark(&store.root().join(MARK)), boot_id());
    }

    #[test]
    fn only_complete_temporary_names_are_read_as_such() {
        assert_eq!(
            address_of_complete(".tmp.172.17.0.5.complete"),
            Some(Ipv4Addr::new(172, 17, 0, 5))
        );
        for name in [
            ".tmp.172.17.0.5.4242",
            ".tmp.172.17.0.5.4242.complete",
            ".tmp.172.17.0.5.4242.ahead.0000abcd",
            ".tmp.fd00::5.complete",
            "172.17.0.5",
        ] {
            assert_eq!(address_of_complete(name), None, "{name}");
        }
    }
}
