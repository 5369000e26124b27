//! Filesystem helpers shared by the stores: remove-if-present, a private file created with
//! O_EXCL and fsynced, the write-temporary-then-rename replacement, fsync of a directory, a
//! `flock(2)`ed lock file, and a directory's names in few system calls. Side effects: the paths
//! they are given only.
//!
//! Every helper returns the `io::Error` (with the path it concerns, where two paths are
//! involved); the callers put it in their own sentences.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The names in directory `dir` (without `.` and `..`), in the file system's order. Read with
/// `getdents64` into a 32 KiB buffer: the index of 200 leases (entries of ~150 bytes) is one
/// call, where `fs::read_dir` takes ~16 (musl's `readdir` reads 2 KiB at a time).
pub(crate) fn names_in(dir: &Path) -> io::Result<Vec<OsString>> {
    let dir = File::open(dir)?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = Vec::new();
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which we own; the
        // descriptor is open for the whole call.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if n == 0 {
            return Ok(out);
        }
        out.extend(dirent_names(&buf[..n]).map(|n| OsStr::from_bytes(n).to_owned()));
    }
}

/// The names in a buffer of `struct linux_dirent64` records (ino: 8 bytes, off: 8, reclen: 2,
/// type: 1, then the name, NUL-terminated and padded), without `.` and `..`; stops at a record
/// that does not fit.
fn dirent_names(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        loop {
            let reclen = usize::from(u16::from_ne_bytes(buf.get(16..18)?.try_into().ok()?));
            let record = buf.get(..reclen).filter(|_| reclen > 19)?;
            buf = &buf[reclen..];
            let name = &record[19..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                return Some(name);
            }
        }
    })
}

/// Removes a file; `Ok(false)` when it was not there.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `path` (O_EXCL, `mode`, never through a link) with `body`, and fsyncs it. A file
/// that could not be written completely is removed again.
pub(crate) fn create_private(path: &Path, body: &[u8], mode: u32) -> io::Result<()> {
    create_private_file(path, body, mode).and_then(|file| {
        file.sync_all().inspect_err(|_| {
            let _ = fs::remove_file(path);
        })
    })
}

/// Creates `path` as [`create_private`] does but does not fsync it: the open file is returned
/// so that the caller can make it durable when (and on whichever thread) it must be.
pub(crate) fn create_private_file(path: &Path, body: &[u8], mode: u32) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    match file.write_all(body) {
        Ok(()) => Ok(file),
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

/// An I/O error and the path it concerns.
#[derive(Debug)]
pub(crate) struct PathError {
    pub path: PathBuf,
    pub error: io::Error,
}

/// Replaces `path` atomically with `body`: a fresh temporary `tmp` (a stale one is removed
/// first; see [`create_private`]), fsynced, renamed over `path`. `path` holds the old content
/// or the new one at every moment, never neither; nothing of `tmp` is left after an error. The
/// caller fsyncs the directory ([`fsync_dir`]) when the new name must survive a crash.
pub(crate) fn write_atomic(
    tmp: &Path,
    path: &Path,
    body: &[u8],
    mode: u32,
) -> Result<(), PathError> {
    let _ = fs::remove_file(tmp);
    create_private(tmp, body, mode).map_err(|error| PathError {
        path: tmp.to_path_buf(),
        error,
    })?;
    fs::rename(tmp, path).map_err(|error| {
        let _ = fs::remove_file(tmp);
        PathError {
            path: path.to_path_buf(),
            error,
        }
    })
}

/// fsync(2) of a directory, so that the names just created, renamed or removed in it survive
/// a crash.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Why a lock file could not be locked.
#[derive(Debug)]
pub(crate) enum LockError {
    /// It could not be opened (or created).
    Open(io::Error),
    /// `flock(2)` refused.
    Lock(Errno),
}

/// Opens (creating, 0600, never through a link) the lock file `path` and takes `arg` on it.
/// The lock is released when the returned value is dropped (and by the kernel at exit).
pub(crate) fn flock(path: &Path, arg: FlockArg) -> Result<Flock<File>, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(LockError::Open)?;
    Flock::lock(file, arg).map_err(|(_, e)| LockError::Lock(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_in_lists_what_read_dir_lists_across_several_buffers() {
        let d = tempfile::tempdir().unwrap();
        // 600 names of 129 bytes (as in by-container/): ~90 KiB of records, three buffers.
        let mut want = std::collections::BTreeSet::new();
        for i in 0..600 {
            let name = format!("{:064x}@{:064x}", i, 600 - i);
            std::os::unix::fs::symlink("172.17.0.9", d.path().join(&name)).unwrap();
            want.insert(OsString::from(name));
        }
        fs::write(d.path().join(".tmp.x"), "").unwrap();
        want.insert(".tmp.x".into());
        let got: std::collections::BTreeSet<_> = names_in(d.path()).unwrap().into_iter().collect();
        let listed: std::collections::BTreeSet<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(got, want);
        assert_eq!(got, listed);
        assert!(
            names_in(tempfile::tempdir().unwrap().path())
                .unwrap()
                .is_empty()
        );
        let missing = names_in(&d.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let not_a_dir = names_in(&d.path().join(".tmp.x")).unwrap_err();
        assert_eq!(not_a_dir.raw_os_error(), Some(libc::ENOTDIR));
    }

    #[test]
    fn dirent_records_are_parsed_and_a_cut_record_ends_the_list() {
        let record = |name: &str| {
            let mut r = vec![0u8; 19];
            r.extend_from_slice(name.as_bytes());
            r.push(0);
            while r.len() % 8 != 0 {
                r.push(0);
            }
            let len = r.len() as u16;
            r[16..18].copy_from_slice(&len.to_ne_bytes());
            r
        };
        let mut buf = [record("."), record(".."), record("a"), record("172.17.0.2")].concat();
        let names: Vec<_> = dirent_names(&buf).collect();
        assert_eq!(names, [b"a".as_slice(), b"172.17.0.2"]);
        buf.extend_from_slice(&record("cut")[..12]);
        assert_eq!(dirent_names(&buf).count(), 2);
        buf.extend_from_slice(&[0u8; 30]);
        assert_eq!(dirent_names(&buf).count(), 2, "a zero length ends the list");
    }

    #[test]
    fn removing_a_missing_path_is_ok_false() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        assert!(!remove_if_present(&p).unwrap());
        fs::write(&p, "x").unwrap();
        assert!(remove_if_present(&p).unwrap());
        assert!(!p.exists());
    }

    #[test]
    fn write_atomic_replaces_privately_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let (tmp, path) = (d.path().join(".tmp.f"), d.path().join("f"));
        fs::write(&path, "old").unwrap();
        fs::write(&tmp, "stale").unwrap();
        write_atomic(&tmp, &path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!tmp.exists());
        fsync_dir(d.path()).unwrap();
    }

    #[test]
    fn write_atomic_never_follows_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let (tmp, path) = (d.path().join(".tmp.f"), d.path().join("f"));
        // A link planted as the temporary is removed, not written through; one planted as the
        // target is replaced, not followed.
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomic(&tmp, &path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // create_private refuses an existing link outright.
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        assert!(create_private(&tmp, b"x", 0o600).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn the_temporary_is_gone_after_an_error() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join(".tmp.f");
        // Renaming a file over a non-empty directory fails.
        let path = d.path().join("dir");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        let err = write_atomic(&tmp, &path, b"new", 0o600).unwrap_err();
        assert_eq!(err.path, path);
        assert!(!tmp.exists());
    }

    #[test]
    fn a_lock_is_exclusive_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let held = flock(&p, FlockArg::LockExclusive).unwrap();
        assert!(matches!(
            flock(&p, FlockArg::LockExclusiveNonblock),
            Err(LockError::Lock(Errno::EWOULDBLOCK))
        ));
        drop(held);
        assert!(flock(&p, FlockArg::LockExclusiveNonblock).is_ok());
    }
}
