//! Has the kernel handle an interface's pending carrier change now, on the calling thread,
//! instead of in its linkwatch worker. Side effects: that interface's queueing discipline and
//! operational state are what they would be a moment later anyway.
//!
//! A fresh veth end drops everything sent through it (its `noop` qdisc) until linkwatch has
//! handled its carrier change, in a kernel worker that runs when the scheduler lets it (on an
//! idle machine usually within the few hundred microseconds the rest of the configuration
//! takes, later on a busy one); an attach must not return before then (the host's first ARP
//! request would be dropped and asked again a second later), so it used to poll both ends
//! (two /sys reads and an RTM_GETLINK: 0.12–0.4 ms even when they were ready at once). The
//! ethtool "get link" request (`ETHTOOL_GLINK`) makes the kernel settle the interface's pending
//! linkwatch event first (`ethtool_op_get_link`, which veth uses, calls `linkwatch_sync_dev`):
//! the end passes packets when the request returns, and the answer says whether it has a
//! carrier.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `SIOCETHTOOL` (linux/sockios.h) and `ETHTOOL_GLINK` (linux/ethtool.h).
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GLINK: u32 = 0x0000_000a;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Settles interface `name`'s pending carrier change, in the network namespace of the calling
/// thread (through a socket opened for it); returns whether it has a carrier.
pub fn settle(name: &str) -> io::Result<bool> {
    // SAFETY: a plain socket call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor we just opened and own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    settle_on(sock.as_fd(), name)
}

/// [`settle`], in the network namespace of `socket` (any socket: the kernel hands the request
/// to `dev_ioctl` in the socket's namespace, e.g. a netlink connection's, [`super::Rtnl`]).
pub fn settle_on(socket: BorrowedFd<'_>, name: &str) -> io::Result<bool> {
    let mut req =
        super::ifreq_named(name).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GLINK,
        data: 0,
    };
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: `req` and the `value` it points to live across the call; the kernel reads the
    // name and writes one `ethtool_value`.
    let rc = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            SIOCETHTOOL as _,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data != 0)
}
