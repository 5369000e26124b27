//! The syncs that make a one-shot attach's complete lease durable, done by a child
//! (`src/forked.rs`) that may finish after the command has exited. Side effects: that child (a
//! session of its own; every signal blocked, so that a service manager or a
//! terminal that stops what the command left does not cut its few milliseconds short);
//! `fdatasync`/`fsync` of the descriptors it is given.
//!
//! Why: after a few tens of milliseconds of idleness this VM's disk takes 1-1.8 ms for a flush
//! (0.08 ms back to back; `fdatasync` of a 500-byte record, then the directory's `fsync`,
//! 0.4-0.8 ms more), and an attach that waited for them at its commit took 3.0-3.6 ms after
//! 30-300 ms of idleness instead of 1.8-2.1 (scripts/bench_idle.py, a build without the
//! syncs). A thread cannot take them off the command's time: a process is reaped only once
//! each of its threads has left the kernel, and a thread inside `fdatasync` leaves it when the
//! disk has answered. A child process can: the command returns when the lease is in place, and
//! the child makes it durable a moment later (or at once, when its answer came before the
//! commit: then the command knows the outcome, and a failure fails the attach as before).
//!
//! What a crash of the machine in that moment can leave: the lease's reservation (its attach
//! interrupted, as by a crash a millisecond earlier), or the complete record under its name(s)
//! with its data lost (an unreadable lease file, IPv4 or IPv6 name, which `gc` sets aside and
//! `doctor` explains). A
//! crash ends the attachment anyway; what is at stake is the intent `watch` applies when the
//! container starts again. Only a one-shot `attach` leaves syncs to a child
//! ([`Syncer::let_syncs_outlive`](super::Syncer::let_syncs_outlive)); the daemon waits for
//! them on its lease-sync thread, and so does an attach run in a container with a PID namespace
//! of its own (`forked::can_outlive`: the container's end would take the child with it).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Test-only: the child sleeps this many milliseconds before its syncs (a slow disk).
/// `test-hooks` builds only; a shipped binary ignores it.
#[cfg(feature = "test-hooks")]
pub const SLOW_SYNC_ENV: &str = "DOCKER_NETATTACH_TEST_SLOW_SYNC_MS";

/// A child making a record and directories durable.
#[derive(Debug)]
pub struct ChildSync(crate::forked::Child);

/// The child's job: the record, then up to two directories.
#[derive(Clone, Copy)]
struct Syncs {
    record: RawFd,
    dirs: [RawFd; 2],
    ndirs: usize,
    delay: libc::timespec,
}

/// Starts a child (`forked::spawn`) that `fdatasync`s `record`, then `fsync`s each of `dirs`
/// in order, and answers 0 or the first errno.
pub fn start(record: &File, dirs: &[File]) -> io::Result<ChildSync> {
    let mut job = Syncs {
        record: record.as_raw_fd(),
        dirs: [-1; 2],
        ndirs: dirs.len(),
        delay: slow_sync(),
    };
    let Some(slots) = job.dirs.get_mut(..dirs.len()) else {
        return Err(io::Error::other("too many directories for one sync child"));
    };
    for (k, d) in slots.iter_mut().zip(dirs) {
        *k = d.as_raw_fd();
    }
    let keep = [job.record, job.dirs[0], job.dirs[1]];
    // SAFETY: `syncs` makes only `sys` calls, indexes nothing that could panic, and its job
    // holds descriptor numbers and a timespec, no pointer.
    unsafe { crate::forked::spawn(&keep[..1 + dirs.len()], job, syncs) }.map(ChildSync)
}

/// The child's work. Should the other descriptors not close (`forked::can_outlive` asked
/// whether they can), the syncs are still done: the caller's output is held a moment longer,
/// nothing is lost.
fn syncs(job: &Syncs, _closed: bool) -> i32 {
    use crate::forked::sys;
    if (job.delay.tv_sec, job.delay.tv_nsec) != (0, 0) {
        sys::nanosleep(&job.delay);
    }
    let mut code = sys::fdatasync(job.record);
    for &dir in job.dirs.get(..job.ndirs).unwrap_or(&[]) {
        if code == 0 {
            code = sys::fsync(dir);
        }
    }
    code
}

#[cfg(feature = "test-hooks")]
fn slow_sync() -> libc::timespec {
    let ms: i64 = std::env::var(SLOW_SYNC_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    libc::timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    }
}

#[cfg(not(feature = "test-hooks"))]
fn slow_sync() -> libc::timespec {
    libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    }
}

impl ChildSync {
    pub fn pid(&self) -> libc::pid_t {
        self.0.pid()
    }

    /// The child's answer when it has come, without waiting.
    pub fn answer_now(&self) -> Option<io::Result<()>> {
        self.0.answer_now().map(|a| a.and_then(outcome))
    }

    /// Waits for the child's answer, and for its end.
    pub fn wait(self) -> io::Result<()> {
        self.0.wait().and_then(outcome)
    }
}

fn outcome(code: i32) -> io::Result<()> {
    match code {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(dir: &std::path::Path) -> File {
        let mut f = File::create(dir.join("r")).unwrap();
        f.write_all(b"{}\n").unwrap();
        f
    }

    #[test]
    fn the_child_answers_that_the_record_and_directories_are_synced() {
        let tmp = tempfile::tempdir().unwrap();
        let f = record(tmp.path());
        let dirs = [File::open(tmp.path()).unwrap()];
        let c = start(&f, &dirs).unwrap();
        assert!(c.pid() > 0);
        c.wait().unwrap();
    }

    #[test]
    fn a_failed_sync_is_the_answer() {
        // fsync of a pipe fails with EINVAL: the child reports it.
        let tmp = tempfile::tempdir().unwrap();
        let f = record(tmp.path());
        let (r, _w) = nix::unistd::pipe().unwrap();
        let dirs = [File::from(r)];
        let err = start(&f, &dirs).unwrap().wait().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    }

    #[test]
    fn its_answer_is_there_without_waiting_once_it_came() {
        let tmp = tempfile::tempdir().unwrap();
        let f = record(tmp.path());
        let c = start(&f, &[]).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let answer = loop {
            if let Some(a) = c.answer_now() {
                break a;
            }
            assert!(std::time::Instant::now() < deadline, "no answer in 10 s");
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        answer.unwrap();
    }
}
