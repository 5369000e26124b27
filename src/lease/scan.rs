//! Reading every record of the store: the readable leases and the files that are not.
//! Side effects: none (reads under the state directory only).

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Result;

use super::disk::{DiskStore, IndexEntry};
use super::files::{address_of, file_name, read_lease, record_error, sorted_entries};
use super::{CorruptIndex, CorruptLease, Lease, Scan};

impl DiskStore {
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
}
