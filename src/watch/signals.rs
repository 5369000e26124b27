//! SIGTERM and SIGINT for the daemon, without tokio's `signal` feature: a handler writes a byte
//! to a pipe that the runtime watches (as tokio's own signal driver does). Why not tokio's: once
//! that feature is compiled in, every runtime that enables I/O builds its signal driver (a
//! socket pair and its registration), the one-shot commands' too, which never need it (~45 µs
//! of each command's start, docs/benchmarks.md). Side effects: the two signals' handlers, a pipe.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The pipe's write end, for the handler (-1 until [`shutdown`] made it).
static WRITE_END: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let fd = WRITE_END.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; `fd` is the pipe's write end, which is never
        // closed; a full pipe (EAGAIN, non-blocking) loses nothing: one byte is enough.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// Resolves at the first SIGTERM or SIGINT after it is first polled; the default action
/// (the end of the process) stays when the handlers cannot be installed.
pub async fn shutdown() {
    match listen() {
        Ok(fd) => loop {
            let Ok(mut ready) = fd.readable().await else {
                return std::future::pending().await;
            };
            let mut buf = [0u8; 16];
            match nix::unistd::read(fd.get_ref(), &mut buf) {
                Ok(n) if n > 0 => return,
                Err(nix::errno::Errno::EINTR) => {}
                _ => ready.clear_ready(),
            }
        },
        Err(e) => {
            tracing::warn!("cannot handle SIGTERM and SIGINT ({e}); they end the daemon at once");
            std::future::pending().await
        }
    }
}

fn listen() -> nix::Result<AsyncFd<OwnedFd>> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // Kept open for the life of the process (the handler may run at any time).
    WRITE_END.store(write.into_raw_fd(), Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only loads an atomic and calls write(2), both async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    // SAFETY: the AsyncFd owns the pipe's read end (an OwnedFd): it stays open and the same
    // descriptor for as long as it is registered.
    unsafe { AsyncFd::register_with_interest(read, Interest::READABLE) }.map_err(|e| {
        let e = std::io::Error::from(e);
        nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL))
    })
}
