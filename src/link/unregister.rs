//! Deleting a veth and returning once the kernel has *unregistered* it, not once it has freed
//! it. Side effects: a short-lived child process (`forked.rs`) that sends the RTM_DELLINK and stays in
//! the kernel until the deletion ends; a netlink socket subscribed to link notifications.
//!
//! Why: a deletion holds the request's sender ~15–25 ms on this kernel, but most of that is
//! spent *after* the link is gone. `unregister_netdevice_many` takes the pair (a veth's peer is
//! queued with it) off every list (no name, no index, no `/sys/class/net` entry), runs the
//! protocols' unregister notifiers (addresses, routes, neighbours and the bridge port go) and
//! then sends RTM_DELLINK to listeners, host end first, peer second; after that the sender
//! waits, outside the RTNL lock, for an `rcu_barrier()` and the last references
//! (`netdev_run_todo`) before the kernel frees the memory and acknowledges the request.
//! Measured here (python, `ip link del` of a veth whose peer is in a namespace, 15 runs):
//! the notification arrives 6 ms after the `ip` process is started, `ip` exits after 24 ms.
//!
//! So the request is sent by a child process that lives on through that tail, while this
//! process waits for the two RTM_DELLINK notifications (the peer's from its namespace, through
//! `NETLINK_LISTEN_ALL_NSID`) and returns: from then on nothing of the pair is visible or
//! usable anywhere. The child also reports the kernel's answer through a pipe, which decides
//! when a notification cannot (a refused request, a lost notification): then the parent waits
//! for the whole deletion, as a plain request would.
//!
//! The child runs only raw system calls on a copy of the request (`forked::spawn`), so any
//! process may use this; it closes every descriptor but its socket and pipe first, so that it
//! holds neither the caller's stdout (a `$(docker-netattach detach …)` ends when
//! the command does) nor a lock. Only the one-shot `detach` uses it: the daemon has no caller
//! waiting.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::model::Peer;

const SOL_NETLINK: i32 = 270;
const NETLINK_LISTEN_ALL_NSID: i32 = 8;
const RTM_DELLINK: u16 = 17;
const NLMSG_ERROR: u16 = 2;
/// SOL_SOCKET option (asm-generic; the libc crate does not name it for Linux).
const SO_ATTACH_FILTER: libc::c_int = 26;

/// How a deletion ended, as far as this process waited for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Unregistered (both ends, when the peer is known); the kernel may still be freeing it.
    Unregistered,
    /// The whole deletion ended (the kernel's answer came first).
    Done,
    /// There was no such link.
    Missing,
}

/// Deletes link `index` of this thread's namespace, whose veth peer is `peer`, and returns
/// once both are unregistered. An error when the kernel refuses (the caller may try the plain
/// way) or nothing is heard within `limit`.
pub fn delete(index: u32, peer: Option<Peer>, limit: Duration) -> Result<Deleted> {
    let indexes: Vec<u32> = std::iter::once(index)
        .chain(peer.map(|p| p.index))
        .collect();
    let listener = listen(peer.is_some_and(|p| p.nsid.is_some()), &indexes)?;
    let sender = Socket::new(NETLINK_ROUTE).map_err(|e| anyhow!("netlink socket: {e}"))?;
    sender
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| anyhow!("netlink connect: {e}"))?;
    let request = dellink(index, sender.as_raw_fd());
    // SAFETY: `send_dellink` makes only `sys` calls and cannot panic (`ack_code` neither); its
    // job holds a descriptor number and a copy of the request, no pointer.
    let child = unsafe { crate::forked::spawn(&[sender.as_raw_fd()], request, send_dellink) }
        .map_err(|e| anyhow!("cannot start a process to delete interface #{index}: {e}"))?;
    drop(sender);
    wait(&listener, child, index, peer, limit)
}

/// A socket that hears every link notification, from the peers' namespaces too when `all_ns`.
fn listen(all_ns: bool, indexes: &[u32]) -> Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE).map_err(|e| anyhow!("netlink socket: {e}"))?;
    // Before the subscription, so that nothing else is ever queued: many detaches at once
    // would otherwise each receive every other's notifications (and overflow).
    if let Err(e) = only_dellink_of(&s, indexes) {
        tracing::debug!("cannot filter link notifications: {e}");
    }
    s.bind(&SocketAddr::new(0, 0))
        .map_err(|e| anyhow!("netlink bind: {e}"))?;
    s.add_membership(libc::RTNLGRP_LINK)
        .map_err(|e| anyhow!("cannot listen to link notifications: {e}"))?;
    if all_ns {
        // Needs CAP_NET_BROADCAST; without it the peer's notification is not heard and the
        // kernel's answer decides instead.
        if let Err(e) = s.set_listen_all_namespaces(true) {
            tracing::debug!("NETLINK_LISTEN_ALL_NSID: {e}");
        }
    }
    Ok(s)
}

/// A classic BPF socket filter that passes only RTM_DELLINK messages of interfaces `indexes`
/// (a peer's index may repeat in another namespace: [`wait`] checks the namespace too).
fn only_dellink_of(s: &Socket, indexes: &[u32]) -> std::io::Result<()> {
    let mut code = filter_code(indexes);
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `code`, which outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The filter's program. Netlink headers are in host byte order, BPF loads in network byte
/// order: the constants are the host's bytes read big-endian.
fn filter_code(indexes: &[u32]) -> Vec<libc::sock_filter> {
    let op = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let n = indexes.len() as u8;
    let kind = u32::from(u16::from_be_bytes(RTM_DELLINK.to_ne_bytes()));
    let mut code = vec![
        op(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 4, 0, 0), // nlmsg_type
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, kind, 0, n + 1),
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 20, 0, 0), // ifi_index
    ];
    for (k, index) in indexes.iter().enumerate() {
        let k = k as u8;
        let want = u32::from_be_bytes(index.to_ne_bytes());
        code.push(op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            want,
            n - k,
            0,
        ));
    }
    code.push(op(libc::BPF_RET | libc::BPF_K, 0, 0, 0)); // drop
    code.push(op(libc::BPF_RET | libc::BPF_K, u32::MAX, 0, 0)); // pass
    code
}

/// An RTM_DELLINK request and the connected socket it goes out on, as the child sends it (a
/// copy in its job: the child may outlive this process's memory).
#[derive(Clone, Copy)]
struct DelLink {
    socket: RawFd,
    bytes: [u8; 64],
    len: usize,
}

fn dellink(index: u32, socket: RawFd) -> DelLink {
    let mut link = LinkMessage::default();
    link.header.index = index;
    let mut msg = NetlinkMessage::from(RouteNetlinkMessage::DelLink(link));
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.header.sequence_number = 1;
    msg.finalize();
    // An ifinfomsg without attributes: 32 bytes.
    let len = msg.buffer_len();
    assert!(len <= 64, "an RTM_DELLINK request of {len} bytes");
    let mut request = DelLink {
        socket,
        bytes: [0; 64],
        len,
    };
    msg.serialize(&mut request.bytes[..request.len]);
    request
}

impl DelLink {
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// The child's job (`forked::spawn`, the socket kept): the request sent, the kernel's answer
/// (0 or an errno) returned. When the child could not close the other descriptors (no
/// close_range: a kernel before 5.9, a seccomp profile), nothing is sent: the caller deletes
/// the plain way rather than leave its stdout to the child.
fn send_dellink(request: &DelLink, closed: bool) -> i32 {
    use crate::forked::sys;
    if !closed {
        return libc::ENOSYS;
    }
    if let Err(errno) = sys::send(request.socket, request.as_bytes()) {
        return errno;
    }
    let mut ack = [0u8; 64];
    match sys::recv(request.socket, &mut ack) {
        Ok(n) => ack_code(ack.get(..n).unwrap_or(&[])).unwrap_or(libc::EPROTO),
        Err(errno) => errno,
    }
}

/// The errno of an NLMSG_ERROR answer (0: success).
fn ack_code(buf: &[u8]) -> Option<i32> {
    let kind = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
    if kind != NLMSG_ERROR {
        return None;
    }
    Some(i32::from_ne_bytes(buf.get(16..20)?.try_into().ok()?).wrapping_neg())
}

fn wait(
    listener: &Socket,
    child: crate::forked::Child,
    index: u32,
    peer: Option<Peer>,
    limit: Duration,
) -> Result<Deleted> {
    let deadline = Instant::now() + limit;
    let mut host_gone = false;
    let mut peer_gone = peer.is_none();
    let mut listening = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!(i32);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "the kernel did not delete interface #{index} within {} s",
                limit.as_secs()
            );
        }
        let timeout =
            PollTimeout::try_from(left.as_millis().max(1) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(child.answer_fd(), PollFlags::POLLIN)];
        if listening {
            fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => bail!("poll: {e}"),
        }
        let answered = fds[0].any().unwrap_or(false);
        let heard = listening && fds.get(1).and_then(|f| f.any()).unwrap_or(false);
        // The notifications are queued before the kernel answers the child, so when both are
        // ready the notifications are read first.
        if !heard {
            if answered {
                return read_answer(child, index);
            }
            continue;
        }
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let (len, nsid) = match recvmsg::<()>(
            listener.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT,
        ) {
            // Control data cut short: the namespace it came from is not known.
            Ok(m) if m.flags.contains(MsgFlags::MSG_CTRUNC) => continue,
            Ok(m) => {
                let Ok(mut cmsgs) = m.cmsgs() else {
                    continue;
                };
                let nsid = cmsgs.find_map(|c| match c {
                    ControlMessageOwned::Unknown(u)
                        if u.cmsg_header.cmsg_level == SOL_NETLINK
                            && u.cmsg_header.cmsg_type == NETLINK_LISTEN_ALL_NSID =>
                    {
                        u.data_bytes
                            .get(..4)?
                            .try_into()
                            .ok()
                            .map(i32::from_ne_bytes)
                    }
                    _ => None,
                });
                (m.bytes, nsid)
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            Err(e) => {
                // ENOBUFS: notifications were lost; the kernel's answer decides.
                tracing::debug!("link notifications: {e}; waiting for the kernel's answer");
                listening = false;
                continue;
            }
        };
        for (kind, ifindex) in deleted_links(&buf[..len]) {
            if kind != RTM_DELLINK {
                continue;
            }
            match nsid {
                None if ifindex == index => host_gone = true,
                n if peer.is_some_and(|p| p.index == ifindex && p.nsid == n) => peer_gone = true,
                _ => {}
            }
        }
        if host_gone && peer_gone {
            return Ok(Deleted::Unregistered);
        }
    }
}

fn read_answer(child: crate::forked::Child, index: u32) -> Result<Deleted> {
    match child.wait() {
        Ok(0) => Ok(Deleted::Done),
        Ok(libc::ENODEV) => Ok(Deleted::Missing),
        Ok(code) => Err(super::code_err(code, &format!("delete interface #{index}"))),
        Err(e) => bail!("no answer from the process deleting interface #{index}: {e}"),
    }
}

/// (message type, interface index) of each link message of family AF_UNSPEC in a datagram (an
/// AF_BRIDGE RTM_DELLINK only says a port left its bridge).
fn deleted_links(mut buf: &[u8]) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    while buf.len() >= 24 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let index = i32::from_ne_bytes([buf[20], buf[21], buf[22], buf[23]]);
        if buf[16] == libc::AF_UNSPEC as u8 {
            out.push((kind, index as u32));
        }
        let step = ((len + 3) & !3).min(buf.len());
        buf = &buf[step..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dellink_request_names_the_index_and_asks_for_an_answer() {
        let request = dellink(42, -1);
        let b = request.as_bytes();
        assert_eq!(b.len(), 32);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), RTM_DELLINK);
        let flags = u16::from_ne_bytes([b[6], b[7]]);
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(deleted_links(b), vec![(RTM_DELLINK, 42)]);
    }

    #[test]
    fn answers_and_datagrams_are_read_by_their_headers() {
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENODEV).to_ne_bytes());
        assert_eq!(ack_code(&err), Some(libc::ENODEV));
        err[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert_eq!(ack_code(&err), Some(0));
        assert_eq!(ack_code(&[0; 3]), None);
        let mut two = dellink(7, -1).as_bytes().to_vec();
        two.extend(dellink(9, -1).as_bytes());
        assert_eq!(
            deleted_links(&two),
            vec![(RTM_DELLINK, 7), (RTM_DELLINK, 9)]
        );
        assert!(deleted_links(&[1, 2, 3]).is_empty());
    }
}
