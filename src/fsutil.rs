//! Filesystem helpers shared by the stores: remove-if-present, a private file created with
//! O_EXCL and fsynced, the write-temporary-then-rename replacement, fsync of a directory, and a
//! `flock(2)`ed lock file. Side effects: the paths they are given only.
//!
//! Every helper returns the `io::Error` (with the path it concerns, where two paths are
//! involved); the callers put it in their own sentences.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

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
