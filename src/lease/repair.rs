//! Repairs of the store on disk, under the lock: temporaries of killed writers, corrupt lease
//! files set aside in `quarantine/`, corrupt index entries rebuilt, orphan names removed.
//! Side effects: files under the state directory only.

use std::fs;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Result, anyhow};

use super::disk::{DiskStore, IndexEntry};
use super::files::{
    address_of, addresses_named_in, ensure_private_dir, file_name, fsync_dir, is_v4_name,
    read_lease, read_record, remove_if_present, remove_names, sorted_entries,
};
use super::{CorruptLease, StoreLock, hint, reboot, state_err};

impl DiskStore {
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
    /// files (every writer holds the lock, so under it none is in use — but for a record that a
    /// detach writes ahead of taking it: should it go, that detach writes it again under the
    /// lock; the complete record of an attach killed in this boot goes too, its lease stays
    /// incomplete, for `gc` to judge), sets corrupt lease
    /// files aside (their addresses stay taken), rebuilds corrupt index entries from their
    /// lease, and removes index entries whose lease is gone and IPv6 names whose lease is gone.
    pub fn sweep(&self, _lock: &StoreLock) -> Result<usize> {
        let mut removed = 0;
        let dirs = sorted_entries(&self.leases_dir())?.into_iter().chain([
            self.by_container(),
            self.root.join("bridges"),
            self.root.join(hint::DIR),
            self.root.clone(),
        ]);
        // A complete record of an earlier boot is for its put-back (`reboot.rs`), which a
        // failure has held up: left for the command that does it.
        let this_boot = reboot::marked_this_boot(&self.root);
        for dir in dirs {
            let mut complete = false;
            for file in sorted_entries(&dir)? {
                if let Some(name) = file_name(&file).filter(|n| n.starts_with(".tmp.")) {
                    if name.ends_with(reboot::COMPLETE) {
                        if !this_boot {
                            continue;
                        }
                        complete = true;
                    }
                    remove_if_present(&file)?;
                    removed += 1;
                }
            }
            // A complete record's name was synced (`reboot.rs`): so is its removal, or a crash
            // could bring it back for the next boot to put in place.
            if complete {
                fsync_dir(&dir)?;
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
        // Veth hints whose lease is gone (a command killed between removing the lease and its
        // hint). Not synced: hints never are.
        let owned: std::collections::BTreeSet<String> = self
            .all()?
            .iter()
            .map(|l| crate::plan::host_ifname(&l.container_id, &l.network_id, &l.ifname))
            .collect();
        for name in hint::names(&self.root).map_err(|e| state_err(&self.root.join(hint::DIR), e))? {
            if !owned.contains(&name) {
                hint::remove(&self.root, &name)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use crate::lease::InsertError;
    use crate::lease::disk::tests::{lease, tmp_store};

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
}
