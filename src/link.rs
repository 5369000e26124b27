//! rtnetlink adapter. Side effects: creates, configures and deletes interfaces, addresses and
//! routes in the namespace the connection's socket was opened in ([`Rtnl::connect`]: the
//! calling thread's; [`Rtnl::connect_in`]: a container's, from the calling thread).

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Result, anyhow};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};

pub mod carrier;
mod inside;
mod neighbour;
mod nsid;
pub mod unregister;
pub use inside::{Announce, InterfaceConfig};
pub use neighbour::{Cached, announcement_corrects};

use rtnetlink::packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};

pub use crate::model::{Iface, Peer};

/// What the veth pair looks like.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    /// Set as the host end's ifalias so the interface tells whom it belongs to.
    pub host_alias: &'a str,
    pub bridge_index: u32,
    pub peer_name: &'a str,
    pub peer_mac: [u8; 6],
    pub mtu: u32,
}

/// A `struct ifreq` naming interface `name` (the rest zero), for the interface ioctls; `None`
/// for a name no interface can have (empty, a NUL in it, or too long for IFNAMSIZ with its NUL).
fn ifreq_named(name: &str) -> Option<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    // SAFETY: `ifreq` is plain data (a name and a union of integers and pointers): all zeroes
    // is a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Some(req)
}

/// A netlink connection bound to the current thread's network namespace.
pub struct Rtnl {
    handle: Handle,
    /// A duplicate of the connection's socket, for the name lookups of [`Rtnl::index_of`].
    socket: OwnedFd,
}

impl Rtnl {
    /// Opens a socket and drives it on the current tokio runtime.
    pub fn connect() -> Result<Self> {
        // Strict checking makes the kernel filter dumps (addresses of one interface) itself.
        let (conn, handle, _) = rtnetlink::new_connection_with_strict_check()
            .map_err(|e| anyhow!("cannot open a netlink socket: {e}"))?;
        Self::drive(conn, handle)
    }

    /// Opens a socket inside `ns` (from the calling thread, which stays where it is) and drives
    /// it on the current tokio runtime: every request on it acts in `ns`.
    pub fn connect_in(ns: &crate::netns::Netns) -> Result<Self> {
        let (conn, handle, _) =
            crate::worker::inside(ns, rtnetlink::new_connection_with_strict_check)?.map_err(
                |e| anyhow!("cannot open a netlink socket in the container's namespace: {e}"),
            )?;
        Self::drive(conn, handle)
    }

    /// Drives the connection on the current tokio runtime, keeping a duplicate of its socket.
    fn drive(
        mut conn: rtnetlink::proto::Connection<
            rtnetlink::packet_route::RouteNetlinkMessage,
            rtnetlink::sys::TokioSocket,
        >,
        handle: Handle,
    ) -> Result<Self> {
        let raw = conn.socket_mut().as_raw_fd();
        // SAFETY: the connection owns this open descriptor and outlives the borrow (one line).
        let socket = unsafe { BorrowedFd::borrow_raw(raw) }
            .try_clone_to_owned()
            .map_err(|e| anyhow!("cannot duplicate the netlink socket: {e}"))?;
        tokio::spawn(conn);
        Ok(Rtnl { handle, socket })
    }

    /// Sends one request that is not a dump and returns the kernel's answer: its first
    /// message (`None`: it sent none), or the error it answered with.
    async fn ask(
        &self,
        msg: RouteNetlinkMessage,
    ) -> Result<Option<RouteNetlinkMessage>, rtnetlink::Error> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST;
        let answers = self.handle.clone().request(req)?;
        let mut answers = std::pin::pin!(answers);
        while let Some(answer) = futures::StreamExt::next(&mut answers).await {
            match answer.payload {
                NetlinkPayload::InnerMessage(m) => return Ok(Some(m)),
                NetlinkPayload::Error(e) => return Err(rtnetlink::Error::NetlinkError(e)),
                _ => {}
            }
        }
        Ok(None)
    }

    /// The index of interface `name` in this connection's namespace, `None` when there is
    /// none. Asked with the SIOCGIFINDEX ioctl on the connection's own socket (the kernel
    /// answers it in the socket's namespace, from its name table under RCU): unlike an
    /// RTM_GETLINK it never waits for the RTNL lock that every creation and deletion of an
    /// interface holds, so under concurrent deletions an existence check costs one syscall.
    /// For existence only; [`link_by_name`](Self::link_by_name) reads the interface.
    pub fn index_of(&self, name: &str) -> Result<Option<u32>> {
        // No interface has a name that does not make an `ifreq`.
        let Some(mut req) = ifreq_named(name) else {
            return Ok(None);
        };
        // SAFETY: `req` is a valid, NUL-terminated `struct ifreq` that lives across the call;
        // the kernel writes `ifr_ifindex` into it.
        let rc = unsafe {
            libc::ioctl(
                self.socket.as_raw_fd(),
                libc::SIOCGIFINDEX as _,
                &mut req as *mut libc::ifreq,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENODEV) => Ok(None),
                _ => Err(anyhow!("cannot look up interface {name}: {e}")),
            };
        }
        // SAFETY: SIOCGIFINDEX answered by filling in the union's `ifru_ifindex`.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        Ok(u32::try_from(index).ok())
    }

    /// Has the kernel settle interface `name`'s pending carrier change now, in this
    /// connection's namespace ([`carrier::settle_on`]); whether it has a carrier.
    pub fn settle_carrier(&self, name: &str) -> std::io::Result<bool> {
        carrier::settle_on(self.socket.as_fd(), name)
    }

    /// Looks an interface up by name; `None` when there is none.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Iface>> {
        let mut stream = self.handle.link().get().match_name(name).execute();
        match stream.try_next().await {
            Ok(Some(msg)) => Ok(Some(iface(msg))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err(&e, &format!("look up interface {name}"))),
        }
    }

    /// Creates the veth pair in one request: host end up and enslaved to the bridge, peer placed
    /// directly into the namespace `netns` under its final name, MAC and MTU. (The peer cannot
    /// be created up: the kernel opens it before the pair is linked and answers ENOTCONN.)
    pub async fn create_veth(&self, spec: &VethSpec<'_>, netns: BorrowedFd<'_>) -> Result<()> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.peer_name.to_string())
            .address(spec.peer_mac.to_vec())
            .mtu(spec.mtu)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(spec.host_name, spec.peer_name)
            .mtu(spec.mtu)
            .controller(spec.bridge_index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| match errno(&e) {
                Some(libc::EEXIST) => anyhow!(
                    "interface {} already exists on the host or {} already exists in the container",
                    spec.host_name,
                    spec.peer_name
                ),
                Some(libc::ERANGE) => anyhow!(
                    "interface name {} or {} is longer than 15 bytes",
                    spec.host_name,
                    spec.peer_name
                ),
                _ => nl_err(&e, &format!("create veth {}", spec.host_name)),
            })?;
        // The kernel ignores IFLA_IFALIAS on creation, so the alias is a second, cheap request.
        let mut alias = LinkMessage::default();
        alias.header.index = 0;
        alias
            .attributes
            .push(LinkAttribute::IfName(spec.host_name.to_string()));
        alias
            .attributes
            .push(LinkAttribute::IfAlias(spec.host_alias.to_string()));
        self.handle
            .link()
            .set(alias)
            .execute()
            .await
            .map_err(|e| nl_err(&e, &format!("set the alias of {}", spec.host_name)))
    }

    /// Every interface of this namespace (one dump request); `gc` scans it for our host veths.
    pub async fn links(&self) -> Result<Vec<Iface>> {
        let mut stream = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| nl_err(&e, "list interfaces"))?
        {
            out.push(iface(msg));
        }
        Ok(out)
    }

    /// Deletes an interface; `Ok(false)` when it was already gone.
    pub async fn delete(&self, index: u32) -> Result<bool> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(nl_err(&e, &format!("delete interface #{index}"))),
        }
    }

    /// Every address on an interface, with its prefix length.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>> {
        let mut req = self.handle.address().get().set_link_index_filter(index);
        // The kernel filters too (the socket has strict checking on): the dump then holds this
        // interface's addresses only, not one message per address of every host veth.
        req.message_mut().header.index = index;
        let mut stream = req.execute();
        let mut out = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| nl_err(&e, "list addresses"))?
        {
            let len = msg.header.prefix_len;
            for attr in msg.attributes {
                if let AddressAttribute::Local(a) = attr {
                    out.push((a, len));
                } else if let AddressAttribute::Address(a) = attr {
                    if !out.iter().any(|(o, _)| *o == a) {
                        out.push((a, len));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Creates a bridge with a fixed MAC (a bridge that takes its ports' lowest MAC changes it,
    /// and flushes its neighbour table, as ports come and go), up. A bridge of that name that
    /// exists already (EEXIST) is returned as [`Made::Existing`]: the caller uses it and records
    /// no undo. The address is a second step ([`Rtnl::add_address`]), after the caller has
    /// recorded the undo of a bridge it created.
    pub async fn create_bridge(&self, name: &str, mac: [u8; 6]) -> Result<Made> {
        let msg = LinkBridge::new(name).address(mac.to_vec()).up().build();
        let created = match self.handle.link().add(msg).execute().await {
            Ok(()) => true,
            Err(e) if errno(&e) == Some(libc::EEXIST) => false,
            Err(e) => return Err(nl_err(&e, &format!("create bridge {name}"))),
        };
        let br = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| anyhow!("bridge {name} vanished right after it was created"))?;
        Ok(if created {
            Made::Created(br)
        } else {
            Made::Existing(br)
        })
    }

    /// Adds an address to an interface; already there is success.
    pub async fn add_address(&self, index: u32, addr: IpAddr, prefix_len: u8) -> Result<()> {
        match self
            .handle
            .address()
            .add(index, addr, prefix_len)
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(addr_err(&e, addr, prefix_len)),
        }
    }
}

/// Whether `create_bridge` made the bridge or found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// This call created it: the caller owns it (and undoes it on failure).
    Created(Iface),
    /// It existed already (EEXIST): someone else's, used as it is and never deleted by us.
    Existing(Iface),
}

fn addr_err(e: &rtnetlink::Error, ip: IpAddr, len: u8) -> anyhow::Error {
    match errno(e) {
        Some(libc::EEXIST) => anyhow!("address {ip} is already set in the container"),
        _ => nl_err(e, &format!("add address {ip}/{len}")),
    }
}

fn iface(msg: LinkMessage) -> Iface {
    let mut out = Iface {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        alias: None,
        controller: None,
        veth: false,
        peer: None,
    };
    let (mut peer_index, mut peer_nsid) = (None, None);
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => out.name = n,
            LinkAttribute::Mtu(m) => out.mtu = m,
            LinkAttribute::IfAlias(a) => out.alias = Some(a),
            LinkAttribute::Controller(c) => out.controller = Some(c),
            LinkAttribute::Link(i) => peer_index = Some(i),
            LinkAttribute::LinkNetNsId(n) => peer_nsid = Some(n),
            LinkAttribute::LinkInfo(infos) => {
                out.veth = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
            }
            _ => {}
        }
    }
    if out.veth {
        out.peer = peer_index.map(|index| Peer {
            index,
            nsid: peer_nsid,
        });
    }
    out
}

/// The errno of a kernel NACK.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// A netlink error as a sentence; EPERM names the privilege.
pub fn nl_err(e: &rtnetlink::Error, doing: &str) -> anyhow::Error {
    match errno(e) {
        Some(code) => code_err(code, doing),
        None => anyhow!("cannot {doing}: {e}"),
    }
}

/// A kernel errno as a sentence; EPERM names the privilege.
fn code_err(code: i32, doing: &str) -> anyhow::Error {
    match code {
        libc::EPERM | libc::EACCES => anyhow!(
            "cannot {doing}: operation not permitted; docker-netattach needs root or CAP_NET_ADMIN"
        ),
        _ => anyhow!(
            "cannot {doing}: {}",
            std::io::Error::from_raw_os_error(code)
        ),
    }
}
