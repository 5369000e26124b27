//! Forked children of a one-shot command: work that may go on after the command has exited.
//! Side effects: a child process, whose life ends with its one job.
//!
//! Such a child is forked from a process with other threads, so it runs only async-signal-safe
//! system calls on memory prepared before the fork (no allocation, no lock another thread may
//! have held) and never returns into Rust code. It first closes every descriptor but the ones
//! it needs: it must not hold the caller's stdout open after the command exits (a
//! `$(docker-netattach …)` ends when the command does), nor the store's lock.
//! Users: the detach's RTM_DELLINK (`link/unregister.rs`) and the syncs that make an attach's
//! lease durable (`lease/durable.rs`).

use std::os::fd::RawFd;

/// Makes a forked child that outlives the command alone: a session of its own (the terminal's
/// and the caller's process group's signals are not for it) and SIGTERM, SIGHUP and SIGINT
/// ignored (a service manager stopping what a command left behind, `timeout`), so that its
/// short job ends. SIGKILL still ends it.
///
/// # Safety
/// Only in a forked child (async-signal-safe calls only).
pub unsafe fn detach_from_caller() {
    // SAFETY: setsid and sigaction are async-signal-safe; the action is a plain SIG_IGN.
    unsafe {
        libc::setsid();
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
            libc::sigaction(sig, &ignore, std::ptr::null_mut());
        }
    }
}

/// Closes every descriptor of this (forked, single-threaded) process but `keep`. False when
/// it could not (no close_range: a kernel before 5.9, a seccomp profile): the caller then does
/// not go on holding them (`link/unregister.rs`), or forked only where [`can_outlive`] found
/// close_range allowed (`lease/durable.rs`).
///
/// # Safety
/// Only in a forked child, which owns every descriptor it closes.
pub unsafe fn close_all_but(keep: &[RawFd]) -> bool {
    // The system call itself: musl's libc has no close_range wrapper.
    let close_range = |first: u32, last: u32| {
        let (first, last) = (first as libc::c_long, last as libc::c_long);
        // SAFETY: closes descriptors of this process only (the caller's contract).
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_long) == 0 }
    };
    // Sorted without allocating: at most a handful of descriptors.
    let mut kept = [RawFd::MAX; 8];
    if keep.len() > kept.len() || keep.iter().any(|&fd| fd < 0) {
        return false;
    }
    kept[..keep.len()].copy_from_slice(keep);
    kept[..keep.len()].sort_unstable();
    let mut closed = true;
    let mut next: u32 = 0;
    for &fd in &kept[..keep.len()] {
        let fd = fd as u32;
        if fd > next {
            closed &= close_range(next, fd - 1);
        }
        next = next.max(fd + 1);
    }
    closed & close_range(next, u32::MAX)
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
