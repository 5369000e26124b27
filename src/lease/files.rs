//! The file-level steps of the store on disk: naming, reading and writing one record,
//! linking and unlinking its names, private directories. Side effects: the paths given only.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{Lease, parse_lease, state_err};
use crate::fsutil;

/// Links the temporary record `tmp` to the lease's names, IPv6 first; on failure nothing of
/// this record is left under either name. The error carries the address and path that failed.
pub(super) fn link_new(
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
/// record (never another lease's name), then syncs the directory (a removal must survive a
/// crash: a lease that came back would be re-applied when its container starts).
pub(super) fn remove_names(path: &Path, lease: &Lease) -> Result<()> {
    unlink_names(path, lease)?;
    match path.parent() {
        Some(dir) => fsync_dir(dir),
        None => Ok(()),
    }
}

/// [`remove_names`] without the directory's sync (the caller syncs it).
pub(super) fn unlink_names(path: &Path, lease: &Lease) -> Result<()> {
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
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// fsync(2) of a directory, so that the names just created, renamed or removed in it survive
/// a crash.
pub(super) fn fsync_dir(dir: &Path) -> Result<()> {
    fsutil::fsync_dir(dir).map_err(|e| state_err(dir, e))
}

pub(super) fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

/// The address a store file is named for (`<ip>` or, in quarantine, `<ip>~<n>`).
pub(super) fn address_of(path: &Path) -> Option<IpAddr> {
    let name = file_name(path)?;
    name.split('~').next()?.parse().ok()
}

/// The name of a lease record proper (an IPv4 address; not a temporary, not an IPv6 link).
pub(super) fn is_v4_name(path: &Path) -> bool {
    file_name(path).is_some_and(|n| !n.starts_with('.') && n.parse::<Ipv4Addr>().is_ok())
}

/// Addresses named by the files of `dir` (none when it does not exist).
pub(super) fn addresses_named_in(dir: &Path) -> Result<BTreeSet<IpAddr>> {
    let names = match fsutil::names_in(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(state_err(dir, e)),
    };
    Ok(names
        .iter()
        .filter_map(|n| address_of(Path::new(n)))
        .collect())
}

/// Why a quarantined file still cannot be read (or that it can now).
pub(super) fn record_error(path: &Path) -> String {
    match read_record(path) {
        Err(e) => format!("{e:#}"),
        Ok(_) => "readable now; if it is right, move it back under leases/".into(),
    }
}

/// Writes a lease record to `.tmp.<ip>.<pid>[.<tag>]` in `dir` (0600, never through a link),
/// ready to be linked or renamed into place. Not synced: the open file is returned for the
/// caller to sync when the record must survive a crash of the machine (see `disk.rs`).
pub(super) fn write_temporary(dir: &Path, lease: &Lease, tag: &str) -> Result<(PathBuf, File)> {
    let tmp = temporary_path(dir, lease, tag);
    let file = write_record(&tmp, lease).map_err(|e| state_err(&tmp, e))?;
    Ok((tmp, file))
}

/// The name [`write_temporary`] writes to.
pub(super) fn temporary_path(dir: &Path, lease: &Lease, tag: &str) -> PathBuf {
    dir.join(format!(".tmp.{}.{}{tag}", lease.v4.ip, std::process::id()))
}

/// Writes `lease` to the new file `path` (0600, never through a link), replacing a leftover
/// (removed only when there is one: an unlink that finds nothing costs as much as one that
/// does, on the path of every attach).
pub(super) fn write_record(path: &Path, lease: &Lease) -> std::io::Result<File> {
    let mut body = serde_json::to_vec_pretty(lease).map_err(std::io::Error::other)?;
    body.push(b'\n');
    match fsutil::create_private_file(path, &body, 0o600) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            fsutil::create_private_file(path, &body, 0o600)
        }
        other => other,
    }
}

pub(super) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let names = match fsutil::names_in(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(state_err(dir, e)),
    };
    let mut paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    paths.sort();
    Ok(paths)
}

/// Reads one lease file without following symlinks; `None` when it does not exist.
pub(super) fn read_lease(path: &Path) -> Result<Option<Lease>> {
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
pub(super) fn read_record(path: &Path) -> Result<Lease> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let text = std::io::read_to_string(file)?;
    parse_lease(text)
}

/// Removes a file; already gone is fine.
pub(super) fn remove_if_present(path: &Path) -> Result<()> {
    fsutil::remove_if_present(path)
        .map(|_| ())
        .map_err(|e| state_err(path, e))
}

pub(super) fn ensure_private_dir(dir: &Path) -> Result<()> {
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
