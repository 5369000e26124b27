//! Children of a one-shot command: work that may go on after the command has exited.
//! Side effects: a child process, whose life ends with its one job.
//!
//! A child shares the command's memory (clone with `CLONE_VM`, as posix_spawn's child does
//! until its exec) but is a process of its own: its own copy of the descriptor table and of
//! the signal handlers, its own thread group, so that it outlives the command's exit (the
//! memory stays mapped until both have ended). A fork would copy the page tables instead, with
//! the memory map locked against the command's other threads meanwhile, and leave every page
//! copy-on-write for the command's remaining work. Against forked children, an attach took
//! 0.12-0.14 ms less with this one (about what it took with no child at all: a fork cost it
//! 0.14-0.21 ms) and a detach 0.12-0.13 ms less (`scripts/bench_ab.py -n 200 --pick`); with
//! 200 containers attached 0.25 and 0.32 ms less (`--attached 200`; docs/benchmarks.md,
//! 2026-12-05 (06:00)).
//!
//! So the child touches nothing the command owns: it runs on a stack mapped for it (a guard
//! page below), on a frame copied there before it starts (its job, which holds no pointer, and
//! the descriptors it keeps), makes only raw system calls (`sys.rs`: libc's would store
//! errno through the starting thread's thread pointer), allocates nothing, takes no lock and
//! never returns into the command's code. It first closes every descriptor but the ones it
//! needs: it must not hold the caller's stdout open after the command exits (a
//! `$(docker-netattach …)` ends when the command does), nor the store's lock. It reports the
//! job's result (0 or an errno) through a pipe. Where the child cannot share the memory (raw
//! calls not written for the architecture, glibc before 2.25: `sys::shares_memory`; an
//! emulator that refuses `CLONE_VM` outside a thread, as qemu-user does with EINVAL) it gets a
//! copy of it, as a fork's child does, and runs the same code.
//! Users: the detach's RTM_DELLINK (`link/unregister.rs`) and the syncs that make an attach's
//! lease durable (`lease/durable.rs`).

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

pub mod sys;

/// At most this many descriptors are kept by a child, its answer pipe included.
const MAX_KEEP: usize = 8;
/// The child's stack, its frame at the top; a guard page below it.
const STACK: usize = 64 * 1024;

/// A child started by [`spawn`]: reaped once its answer has been read; when dropped before, by
/// the next [`spawn`] of this process once it has ended, or by init when the command exits
/// first.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    answer: OwnedFd,
    stack: Stack,
    reaped: Cell<bool>,
}

/// Starts a child that closes every descriptor but `keep`, leaves the caller's session (its
/// terminal's signals are not for it), runs `run(&job, closed)` (`closed`: whether the other
/// descriptors could be closed) and answers its result. Every signal stays blocked in the
/// child (it waits for none; SIGKILL and a fault of its own still end it): a service manager
/// or `timeout` stopping what a command left behind does not cut its short job off, and no
/// handler of the command's ever runs in it.
///
/// # Safety
/// `run` runs in a process that shares this one's memory, possibly after this process has
/// exited: it may only make the calls of [`sys`] and must not allocate, panic (an abort there
/// would signal the thread that called `spawn`: its thread pointer is that thread's), take a
/// lock or touch thread-local storage; `job` must hold no pointer into this process's memory
/// (the `'static` bound keeps references out, not raw pointers).
pub unsafe fn spawn<J: Copy + 'static>(
    keep: &[RawFd],
    job: J,
    run: fn(&J, bool) -> i32,
) -> io::Result<Child> {
    if keep.len() >= MAX_KEEP {
        return Err(io::Error::other("too many descriptors for a child to keep"));
    }
    if keep.iter().any(|&fd| fd < 0) {
        return Err(io::Error::other(
            "a child cannot keep a negative descriptor",
        ));
    }
    reap_ended();
    let (answer_r, answer_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut kept = [-1; MAX_KEEP];
    kept[..keep.len()].copy_from_slice(keep);
    kept[keep.len()] = answer_w.as_raw_fd();
    let frame = Frame {
        keep: kept,
        kept: keep.len() + 1,
        run,
        job,
    };
    let stack = Stack::new()?;
    let at = stack.frame_at::<Frame<J>>();
    let shared = sys::shares_memory();
    // Every signal blocked while the child starts, as posix_spawn does: it inherits that mask
    // and keeps it, so that no handler of this process runs in it (with this thread's thread
    // pointer) and no default action ends it before its job is done.
    let all = nix::sys::signal::SigSet::all();
    let mut before = nix::sys::signal::SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&all),
        Some(&mut before),
    )?;
    // SAFETY: `at` lies in the child's stack mapping, aligned for a frame and below its end
    // (`frame_at`); nothing else uses that mapping. The child starts on the stack below the
    // frame, runs `entry` (system calls of `sys` only, on the frame; the caller's contract
    // for `run`) and ends with its return.
    let (pid, started) = unsafe {
        at.write(frame);
        let start = |flags| {
            let pid = libc::clone(entry::<J>, at.cast(), libc::SIGCHLD | flags, at.cast());
            (pid, (pid < 0).then(io::Error::last_os_error))
        };
        match start(if shared { libc::CLONE_VM } else { 0 }) {
            // An emulator that runs no CLONE_VM child outside a thread (qemu-user): a copy of
            // the memory, as on a system where the child cannot share it.
            (_, Some(e)) if shared && e.raw_os_error() == Some(libc::EINVAL) => start(0),
            started => started,
        }
    };
    let started = started.map_or(Ok(()), Err);
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&before),
        None,
    )?;
    started?;
    drop(answer_w);
    Ok(Child {
        pid,
        answer: answer_r,
        stack,
        reaped: Cell::new(false),
    })
}

/// What the child finds at the top of its stack.
#[repr(C)]
struct Frame<J> {
    /// The descriptors it keeps, its answer pipe last.
    keep: [RawFd; MAX_KEEP],
    kept: usize,
    run: fn(&J, bool) -> i32,
    job: J,
}

/// The child's code: on its own stack, with the command's memory shared (see the module's
/// doc); returning ends it (the clone wrapper's exit).
extern "C" fn entry<J>(frame: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `spawn` wrote the frame before it started this child, and nothing writes it
    // since.
    let f = unsafe { &*frame.cast::<Frame<J>>() };
    let keep = f.keep.get(..f.kept).unwrap_or(&[]);
    let closed = close_all_but(keep);
    sys::setsid();
    let code = (f.run)(&f.job, closed);
    if let Some(&answer) = keep.last() {
        let _ = sys::write(answer, &code.to_ne_bytes());
    }
    0
}

impl Child {
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The pipe its answer comes through, to poll beside other descriptors.
    pub fn answer_fd(&self) -> BorrowedFd<'_> {
        self.answer.as_fd()
    }

    /// Its answer when it has come, without waiting.
    pub fn answer_now(&self) -> Option<io::Result<i32>> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.answer.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => None,
            Ok(_) => Some(self.answer()),
            Err(e) => Some(Err(e.into())),
        }
    }

    /// Waits for its answer, and for its end.
    pub fn wait(self) -> io::Result<i32> {
        self.answer()
    }

    /// Reads its answer, then reaps it (it answers just before it ends).
    fn answer(&self) -> io::Result<i32> {
        let mut buf = [0u8; 4];
        let read = loop {
            match nix::unistd::read(&self.answer, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        let pid = nix::unistd::Pid::from_raw(self.pid);
        loop {
            match nix::sys::wait::waitpid(pid, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => self.reaped.set(true),
                // Reaped by someone else: it has ended all the same.
                Err(nix::errno::Errno::ECHILD) => self.reaped.set(true),
                Err(_) => {}
            }
            break;
        }
        match read {
            Ok(4) => Ok(i32::from_ne_bytes(buf)),
            Ok(_) => Err(io::Error::other("the child ended without an answer")),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Its stack is unmapped only once it has ended: left to `reap_ended` until then (a
        // detach of many containers starts one child after another).
        if !self.reaped.get() {
            let stack = std::mem::replace(&mut self.stack, Stack::EMPTY);
            left().push((self.pid, stack));
        }
    }
}

/// Children dropped before they ended, with their stacks.
fn left() -> std::sync::MutexGuard<'static, Vec<(libc::pid_t, Stack)>> {
    static LEFT: std::sync::Mutex<Vec<(libc::pid_t, Stack)>> = std::sync::Mutex::new(Vec::new());
    LEFT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reaps the children left that have ended, and unmaps their stacks.
fn reap_ended() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    left().retain(|(pid, _)| {
        match waitpid(nix::unistd::Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => true,
            // Ended (or reaped by someone else): its stack goes with the entry.
            Ok(_) | Err(_) => false,
        }
    });
}

/// A child's stack: `STACK` bytes above a guard page, unmapped when dropped.
#[derive(Debug)]
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: a mapping this value alone owns; moved with the `Child` that holds it.
unsafe impl Send for Stack {}

impl Stack {
    const EMPTY: Stack = Stack {
        base: std::ptr::null_mut(),
        len: 0,
    };

    fn new() -> io::Result<Stack> {
        let page = page_size();
        let len = STACK + page;
        // SAFETY: a new private anonymous mapping; the guard page made inaccessible is ours.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let stack = Stack { base, len };
            if libc::mprotect(base, page, libc::PROT_NONE) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(stack)
        }
    }

    /// Where a `T` goes at the top of the stack (64-byte aligned); the stack grows down from
    /// there.
    fn frame_at<T>(&self) -> *mut T {
        const {
            assert!(std::mem::align_of::<T>() <= 64 && std::mem::size_of::<T>() <= STACK / 16);
        }
        let end = self.base as usize + self.len;
        ((end - std::mem::size_of::<T>()) & !63) as *mut T
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.base.is_null() {
            // SAFETY: our own mapping, no longer used (no child, or one that has ended).
            unsafe { libc::munmap(self.base, self.len) };
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// Closes every descriptor of the child but `keep`. False when it could not (no close_range:
/// a kernel before 5.9, a seccomp profile): the job is told, and the syncs are done all the
/// same (`lease/durable.rs`; a child is started there only where [`can_outlive`] found
/// close_range allowed), the RTM_DELLINK is not sent (`link/unregister.rs`: the caller deletes
/// the plain way rather than leave its stdout to the child).
fn close_all_but(keep: &[RawFd]) -> bool {
    // Sorted without allocating: at most a handful of descriptors.
    let mut kept = [RawFd::MAX; MAX_KEEP];
    let Some(slots) = kept.get_mut(..keep.len()) else {
        return false;
    };
    slots.copy_from_slice(keep);
    slots.sort_unstable();
    let mut closed = true;
    let mut next: u32 = 0;
    for &fd in slots.iter() {
        let fd = fd as u32;
        if fd > next {
            closed &= sys::close_range(next, fd - 1) == 0;
        }
        next = next.max(fd.saturating_add(1));
    }
    closed & (sys::close_range(next, u32::MAX) == 0)
}

/// Whether a child left running after this process exits will be reaped by an init that goes
/// on, holding nothing of ours: this process is in the host's PID namespace and is not its
/// init, and the child can close what it must not hold ([`close_all_but`]). (In a container with a
/// PID namespace of its own, the container's init takes every process of the namespace with
/// it when it exits. One that shares the host's, `--pid host`, may see the runtime kill what
/// its command left once the command ends: a child killed there leaves its syncs to the
/// kernel's writeback, seconds later.) Asked once per process.
pub fn can_outlive() -> bool {
    static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAN.get_or_init(|| {
        // PROC_PID_INIT_INO: the inode number of the initial PID namespace (linux/proc_ns.h).
        const HOST_PID_NS: &str = "pid:[4026531836]";
        let host_ns =
            std::fs::read_link("/proc/self/ns/pid").is_ok_and(|t| t.as_os_str() == HOST_PID_NS);
        // close_range(2) present (Linux 5.9) and allowed (a seccomp profile may refuse it):
        // asked with an empty range of descriptors, which closes nothing.
        // SAFETY: closes no descriptor (u32::MAX is never open).
        let close_range = unsafe {
            let last = libc::c_long::from(u32::MAX);
            libc::syscall(libc::SYS_close_range, last, last, 0 as libc::c_long) == 0
        };
        host_ns && std::process::id() != 1 && close_range
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that waits for a byte on socket `fd` and answers how many it read (or the errno).
    fn read_one(fd: &RawFd, closed: bool) -> i32 {
        if !closed {
            return -1;
        }
        let mut b = [0u8; 1];
        match sys::recv(*fd, &mut b) {
            Ok(n) => n as i32,
            Err(errno) => errno,
        }
    }

    fn open_fds(pid: libc::pid_t) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
            .collect();
        fds.sort();
        fds
    }

    // SAFETY (every `spawn` below): `read_one` makes only a `sys` call and cannot panic; its
    // job is a descriptor number.

    #[test]
    fn the_child_keeps_only_its_descriptors_leaves_the_session_and_answers_its_job() {
        let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        let unrelated = std::fs::File::open("/proc/self/status").unwrap();
        let child = unsafe { spawn(&[r.as_raw_fd()], r.as_raw_fd(), read_one) }.unwrap();
        assert!(
            child.answer_now().is_none(),
            "answered before its byte came"
        );
        // While it waits: its descriptors are the kept one and its answer pipe's writing end.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let fds = loop {
            let fds = open_fds(child.pid());
            if fds.len() == 2 || std::time::Instant::now() > deadline {
                break fds;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert_eq!(fds.len(), 2, "{fds:?}");
        assert!(fds.contains(&r.as_raw_fd()), "{fds:?}");
        assert!(!fds.contains(&unrelated.as_raw_fd()), "{fds:?}");
        assert!(!fds.contains(&1), "holds stdout: {fds:?}");
        // A session of its own; every signal blocked, SIGTERM does not end it.
        let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(child.pid()))).unwrap();
        assert_eq!(sid.as_raw(), child.pid());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        std::io::Write::write_all(&mut w, b"x").unwrap();
        let pid = child.pid();
        assert_eq!(child.wait().unwrap(), 1);
        // Reaped.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_failure_of_the_job_is_its_answer() {
        // Reading a closed descriptor: the child answers EBADF.
        let child = unsafe { spawn(&[], 1000, read_one) }.unwrap();
        assert_eq!(child.wait().unwrap(), libc::EBADF);
    }

    #[test]
    fn a_child_dropped_before_its_end_is_reaped_by_a_later_spawn() {
        let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        let child = unsafe { spawn(&[r.as_raw_fd()], r.as_raw_fd(), read_one) }.unwrap();
        let pid = child.pid();
        drop(child);
        assert!(left().iter().any(|(p, _)| *p == pid));
        std::io::Write::write_all(&mut w, b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while left().iter().any(|(p, _)| *p == pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "child {pid} not reaped"
            );
            unsafe { spawn(&[], 1000, read_one) }
                .unwrap()
                .wait()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn too_many_descriptors_are_refused() {
        let keep = [0; MAX_KEEP];
        let err = unsafe { spawn(&keep, 0, read_one) }.unwrap_err();
        assert!(err.to_string().contains("too many"), "{err}");
    }
}
