//! rtnetlink adapter. Side effects: creates, configures and deletes interfaces, addresses and
//! routes in the namespace of the thread that opened the connection.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{Result, anyhow};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// The facts about an interface that we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub alias: Option<String>,
    pub up: bool,
    pub controller: Option<u32>,
}

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

/// A netlink connection bound to the current thread's network namespace.
pub struct Rtnl {
    handle: Handle,
}

impl Rtnl {
    /// Opens a socket and drives it on the current tokio runtime.
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| anyhow!("cannot open a netlink socket: {e}"))?;
        tokio::spawn(conn);
        Ok(Rtnl { handle })
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

    /// The first IPv4 address on an interface (used as the gateway when Docker omits it).
    pub async fn first_ipv4(&self, index: u32) -> Result<Option<Ipv4Addr>> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| nl_err(&e, "list addresses"))?
        {
            for attr in msg.attributes {
                if let AddressAttribute::Local(IpAddr::V4(a)) | AddressAttribute::Address(IpAddr::V4(a)) = attr {
                    return Ok(Some(a));
                }
            }
        }
        Ok(None)
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
        self.handle.link().add(msg).execute().await.map_err(|e| {
            match errno(&e) {
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
            }
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

    /// Container side: link and `lo` up, address with the subnet's prefix, default route via
    /// the gateway.
    pub async fn configure_inside(
        &self,
        ifindex: u32,
        ip: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        let lo = LinkUnspec::new_with_index(LOOPBACK_INDEX).up().build();
        let up = LinkUnspec::new_with_index(ifindex).up().build();
        let add_addr = self
            .handle
            .address()
            .add(ifindex, IpAddr::V4(ip), prefix_len)
            .execute();
        let (lo_res, up_res, addr_res) = futures::join!(
            self.handle.link().set(lo).execute(),
            self.handle.link().set(up).execute(),
            add_addr
        );
        addr_res.map_err(|e| match errno(&e) {
            Some(libc::EEXIST) => anyhow!("address {ip} is already set in the container"),
            _ => nl_err(&e, &format!("add address {ip}/{prefix_len}")),
        })?;
        lo_res.map_err(|e| nl_err(&e, "bring lo up"))?;
        up_res.map_err(|e| nl_err(&e, "bring the interface up"))?;
        if let Some(gw) = gateway {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(ifindex)
                .build();
            self.handle.route().add(route).execute().await.map_err(|e| match errno(&e) {
                Some(libc::EEXIST) => anyhow!(
                    "the container already has a default route; pass --no-default-route or remove it"
                ),
                _ => nl_err(&e, &format!("add default route via {gw}")),
            })?;
        }
        Ok(())
    }
}

/// The loopback device is always the first device registered in a network namespace.
const LOOPBACK_INDEX: u32 = 1;

fn iface(msg: LinkMessage) -> Iface {
    let mut out = Iface {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        alias: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        controller: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => out.name = n,
            LinkAttribute::Mtu(m) => out.mtu = m,
            LinkAttribute::IfAlias(a) => out.alias = Some(a),
            LinkAttribute::Controller(c) => out.controller = Some(c),
            _ => {}
        }
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
        Some(libc::EPERM) | Some(libc::EACCES) => anyhow!(
            "cannot {doing}: operation not permitted; docker-netattach needs root or CAP_NET_ADMIN"
        ),
        Some(code) => anyhow!(
            "cannot {doing}: {}",
            std::io::Error::from_raw_os_error(code)
        ),
        None => anyhow!("cannot {doing}: {e}"),
    }
}
