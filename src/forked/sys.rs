//! The system calls a child of [`spawn`](super::spawn) may make, raw: each returns the kernel's
//! answer as is (a negative errno on failure) and touches no memory but its arguments.
//!
//! Why not libc's: its wrappers store a failure's errno in thread-local memory, and a child
//! sharing the command's memory runs with the thread pointer of the thread that started it,
//! so that store would land in that thread's errno while it runs. On an architecture without
//! an implementation here the child gets a copy of the memory instead ([`shares_memory`]
//! false), and these calls are libc's `syscall`, whose errno is then the child's own.

use std::os::fd::RawFd;

/// Whether [`spawn`](super::spawn)'s child may share the command's memory: these calls are raw
/// here, and the C library's `clone` writes nothing into the calling thread's memory (glibc
/// before 2.25 stored the child's pid in the caller's thread descriptor when `CLONE_VM` came
/// without `CLONE_THREAD`; musl never did).
pub fn shares_memory() -> bool {
    cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) && clean_clone()
}

#[cfg(target_env = "gnu")]
fn clean_clone() -> bool {
    // SAFETY: glibc returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 25)
}

#[cfg(not(target_env = "gnu"))]
fn clean_clone() -> bool {
    true
}

/// System call `n` with up to six arguments; the result, or `-errno`.
///
/// # Safety
/// The arguments must be what system call `n` expects (pointers to memory valid for it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn call(n: libc::c_long, [a, b, c, d, e, f]: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller's contract; `syscall` clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            in("r8") e,
            in("r9") f,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn call(n: libc::c_long, [a, b, c, d, e, f]: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller's contract; `svc 0` returns in x0 and clobbers nothing else.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            in("x3") d,
            in("x4") e,
            in("x5") f,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn call(n: libc::c_long, [a, b, c, d, e, f]: [usize; 6]) -> isize {
    // SAFETY: the caller's contract. The child has a memory of its own here (`shares_memory`).
    let r = unsafe { libc::syscall(n, a, b, c, d, e, f) } as isize;
    if r < 0 {
        -(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as isize)
    } else {
        r
    }
}

/// A result as a count, or `Err(errno)`.
fn count(r: isize) -> Result<usize, i32> {
    if r < 0 {
        Err(-r as i32)
    } else {
        Ok(r as usize)
    }
}

/// 0 or the errno of a result.
fn errno(r: isize) -> i32 {
    count(r).err().unwrap_or(0)
}

/// close_range(first, last, 0).
pub fn close_range(first: u32, last: u32) -> i32 {
    // SAFETY: closes descriptors of the calling process only.
    errno(unsafe {
        call(
            libc::SYS_close_range,
            [first as usize, last as usize, 0, 0, 0, 0],
        )
    })
}

/// setsid().
pub fn setsid() -> i32 {
    // SAFETY: no arguments.
    errno(unsafe { call(libc::SYS_setsid, [0, 0, 0, 0, 0, 0]) })
}

/// fdatasync(fd).
pub fn fdatasync(fd: RawFd) -> i32 {
    // SAFETY: a descriptor number only.
    errno(unsafe { call(libc::SYS_fdatasync, [fd as usize, 0, 0, 0, 0, 0]) })
}

/// fsync(fd).
pub fn fsync(fd: RawFd) -> i32 {
    // SAFETY: a descriptor number only.
    errno(unsafe { call(libc::SYS_fsync, [fd as usize, 0, 0, 0, 0, 0]) })
}

/// nanosleep(t, NULL).
pub fn nanosleep(t: &libc::timespec) -> i32 {
    // SAFETY: `t` is read during the call.
    errno(unsafe {
        call(
            libc::SYS_nanosleep,
            [t as *const libc::timespec as usize, 0, 0, 0, 0, 0],
        )
    })
}

/// write(fd, buf): bytes written, or `Err(errno)`.
pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is read during the call.
    count(unsafe {
        call(
            libc::SYS_write,
            [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
        )
    })
}

/// send(fd, buf, 0), as sendto without an address: bytes sent, or `Err(errno)`.
pub fn send(fd: RawFd, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is read during the call; no address.
    count(unsafe {
        call(
            libc::SYS_sendto,
            [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
        )
    })
}

/// recv(fd, buf, 0), as recvfrom without an address: bytes received, or `Err(errno)`.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is written during the call, within its length; no address.
    count(unsafe {
        call(
            libc::SYS_recvfrom,
            [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
        )
    })
}
