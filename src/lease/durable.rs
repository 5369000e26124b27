//! The syncs that make a one-shot attach's complete lease durable, done by a forked child
//! (`src/forked.rs`) that may finish after the command has exited. Side effects: that child (a
//! session of its own; SIGTERM, SIGHUP and SIGINT ignored, so that a service manager or a
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
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Test-only: the child sleeps this many milliseconds before its syncs (a slow disk).
/// `test-hooks` builds only; a shipped binary ignores it.
#[cfg(feature = "test-hooks")]
pub const SLOW_SYNC_ENV: &str = "DOCKER_NETATTACH_TEST_SLOW_SYNC_MS";

/// A child making a record and directories durable.
#[derive(Debug)]
pub struct ChildSync {
    pid: libc::pid_t,
    answer: OwnedFd,
}

/// Forks a child that `fdatasync`s `record`, then `fsync`s each of `dirs` in order, and
/// answers 0 or the first errno.
pub fn start(record: &File, dirs: &[File]) -> io::Result<ChildSync> {
    let (answer_r, answer_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut keep = [0 as RawFd; 4];
    let n = 2 + dirs.len();
    if n > keep.len() {
        return Err(io::Error::other("too many directories for one sync child"));
    }
    keep[0] = answer_w.as_raw_fd();
    keep[1] = record.as_raw_fd();
    for (k, d) in keep[2..n].iter_mut().zip(dirs) {
        *k = d.as_raw_fd();
    }
    let delay = slow_sync();
    // SAFETY: the child runs only async-signal-safe system calls (close_range, nanosleep,
    // fdatasync, fsync, write, _exit) on values prepared before the fork, and never returns
    // into Rust code, so no lock another thread held at the fork is ever needed there.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => child(&keep[..n], delay),
        nix::unistd::ForkResult::Parent { child } => {
            drop(answer_w);
            Ok(ChildSync {
                pid: child.as_raw(),
                answer: answer_r,
            })
        }
    }
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

/// The child: `keep` is the answer pipe, the record, then the directories.
fn child(keep: &[RawFd], delay: libc::timespec) -> ! {
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        // Should the descriptors not close (`forked::can_outlive` asked whether they can), the
        // syncs are still done: the caller's output is held a moment longer, nothing is lost.
        crate::forked::close_all_but(keep);
        crate::forked::detach_from_caller();
        let mut code = 0;
        if (delay.tv_sec, delay.tv_nsec) != (0, 0) {
            libc::nanosleep(&delay, std::ptr::null_mut());
        }
        if libc::fdatasync(keep[1]) != 0 {
            code = nix::errno::Errno::last_raw();
        }
        for &dir in &keep[2..] {
            if code == 0 && libc::fsync(dir) != 0 {
                code = nix::errno::Errno::last_raw();
            }
        }
        let bytes = code.to_ne_bytes();
        libc::write(keep[0], bytes.as_ptr().cast(), bytes.len());
        libc::_exit(0)
    }
}

impl ChildSync {
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The child's answer when it has come, without waiting.
    pub fn answer_now(&self) -> Option<io::Result<()>> {
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&self.answer),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => None,
            // Reaped when it has ended already; else by init once this process has exited.
            Ok(_) => Some(self.read_answer(Some(nix::sys::wait::WaitPidFlag::WNOHANG))),
            Err(e) => Some(Err(e.into())),
        }
    }

    /// Waits for the child's answer, and for its end.
    pub fn wait(self) -> io::Result<()> {
        self.read_answer(None)
    }

    fn read_answer(&self, reap: Option<nix::sys::wait::WaitPidFlag>) -> io::Result<()> {
        let mut buf = [0u8; 4];
        let read = loop {
            match nix::unistd::read(&self.answer, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        // It answers just before its `_exit`.
        while let Err(nix::errno::Errno::EINTR) =
            nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), reap)
        {}
        match read {
            Ok(4) => match i32::from_ne_bytes(buf) {
                0 => Ok(()),
                errno => Err(io::Error::from_raw_os_error(errno)),
            },
            Ok(_) => Err(io::Error::other("the sync child ended without an answer")),
            Err(e) => Err(e.into()),
        }
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
