//! Whether a `watch` daemon serves a state directory. Side effects: `<state>/watch.lock` only.
//!
//! The daemon holds a shared `flock(2)` on `<state>/watch.lock` for as long as it runs (two
//! daemons on one directory may both hold it); a command that wants to know whether a start
//! will be seen tries an exclusive lock without waiting: refused means a daemon holds it. The
//! kernel drops the lock when the daemon exits, however it exits, so a stale answer is
//! impossible.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::fsutil::{self, LockError};

/// Held by the daemon while it runs; released on drop (and by the kernel at exit).
pub struct Serving {
    _lock: Flock<File>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("watch.lock")
}

/// Takes the daemon's shared lock (the state directory must exist: `LeaseStore::open` made it).
pub fn hold(state_dir: &Path) -> Result<Serving> {
    let path = path(state_dir);
    let lock = fsutil::flock(&path, FlockArg::LockShared).map_err(|e| match e {
        LockError::Open(e) => anyhow!("cannot open {}: {e}", path.display()),
        LockError::Lock(e) => anyhow!("cannot lock {}: {e}", path.display()),
    })?;
    Ok(Serving { _lock: lock })
}

/// Whether a daemon holds the lock of `state_dir` now. `false` when the file does not exist
/// (no daemon ever ran here) or cannot be read.
pub fn served(state_dir: &Path) -> bool {
    let path = path(state_dir);
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return false,
        Err(_) => return false,
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_free) => false,
        Err((_, Errno::EWOULDBLOCK)) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_and_released_on_drop() {
        let dir = std::env::temp_dir().join(format!("netattach-wl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!served(&dir));
        let held = hold(&dir).unwrap();
        assert!(served(&dir));
        // a second daemon on the same directory may hold it too
        let second = hold(&dir).unwrap();
        drop(held);
        assert!(served(&dir));
        drop(second);
        assert!(!served(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
