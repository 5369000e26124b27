//! Configuration inside the container's namespace: sysctls, addresses, `lo` and the interface
//! up, routes, and the announcement to the bridge's neighbours. Through a netlink socket opened
//! in that namespace ([`Rtnl::connect_in`]); the sysctls through /proc/sys files opened there
//! (`worker::inside`), or by a thread that is inside already.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, anyhow};
use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{
    AfSpecInet, AfSpecUnspec, InetDevConf, LinkAttribute, LinkMessage, State,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::{LinkUnspec, RouteMessageBuilder};

use super::{Rtnl, addr_err, carrier, errno, nl_err};
use crate::endpoint::Route;

impl Rtnl {
    /// Container side, in this order: the interface's sysctls (IPv6 off as Docker does when
    /// there is no IPv6 address), then, pipelined, `arp_notify`, `lo` up, the interface up (so
    /// that the kernel handles its carrier while the rest is set up) and its addresses (IPv6
    /// with `nodad`: usable at once), then the default routes, when asked for and the container
    /// has none yet, and the `--route`s. Last, when asked, the announcement, which carries the
    /// interface's MAC (derived or `--mac`) to the gateway and the neighbours. Must run on a
    /// thread inside the container's namespace (or with `netns` naming it).
    pub async fn configure_interface(&self, cfg: &InterfaceConfig<'_>) -> Result<()> {
        let InterfaceConfig {
            ifname, ifindex, ..
        } = *cfg;
        let v6_off = if cfg.v6.is_some() { "0" } else { "1" };
        let sysctls = || -> Result<()> {
            if let Err(e) = sysctl(&format!("ipv6/conf/{ifname}/disable_ipv6"), v6_off) {
                if cfg.v6.is_some() {
                    return Err(e);
                }
                tracing::debug!("IPv6 left as is: {e:#}");
            }
            if cfg.v6.is_some() {
                // No duplicate address detection on the link-local address either.
                sysctl(&format!("ipv6/conf/{ifname}/accept_dad"), "0")?;
            }
            Ok(())
        };
        match cfg.netns {
            Some(ns) => crate::worker::inside(ns, sysctls)??,
            None => sysctls()?,
        }
        let lo = LinkUnspec::new_with_index(LOOPBACK_INDEX).up().build();
        let up = LinkUnspec::new_with_index(ifindex).up().build();
        let (ip, len) = cfg.v4;
        let add_v4 = self
            .handle
            .address()
            .add(ifindex, IpAddr::V4(ip), len)
            .execute();
        let add_v6 = async {
            let Some((ip6, len6)) = cfg.v6 else {
                return Ok(());
            };
            let mut req = self.handle.address().add(ifindex, IpAddr::V6(ip6), len6);
            let msg = req.message_mut();
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            req.execute().await
        };
        // Sent one after the other without waiting for each answer (the kernel handles them in
        // this order), then the answers are read: one round trip instead of five. The interface
        // goes up before its addresses are added, so that the kernel's linkwatch handles the
        // carrier (until then neither veth end passes packets) while the rest is configured.
        let (arp_res, lo_res, up_res, v4_res, v6_res) = futures::join!(
            self.set_arp_notify(ifindex, ifname),
            self.handle.link().set(lo).execute(),
            self.handle.link().set(up).execute(),
            add_v4,
            add_v6
        );
        arp_res?;
        up_res.map_err(|e| nl_err(&e, &format!("bring {ifname} up")))?;
        v4_res.map_err(|e| addr_err(&e, IpAddr::V4(ip), len))?;
        if let Some((ip6, len6)) = cfg.v6 {
            v6_res.map_err(|e| addr_err(&e, IpAddr::V6(ip6), len6))?;
        }
        lo_res.map_err(|e| nl_err(&e, "bring lo up"))?;
        if let Some(gw) = cfg.gateway4 {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(ifindex)
                .build();
            self.add_default(route, &gw.to_string()).await?;
        }
        if let Some(gw6) = cfg.gateway6 {
            let route = RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(gw6)
                .output_interface(ifindex)
                .build();
            self.add_default(route, &gw6.to_string()).await?;
        }
        for r in cfg.routes {
            self.add_route(ifindex, r).await?;
        }
        if let Some(announce) = cfg.announce {
            self.announce(announce).await?;
        }
        Ok(())
    }

    /// `arp_notify=1` on an interface through netlink (IFLA_AF_SPEC/AF_INET/IFLA_INET_CONF, only
    /// that one value is sent). Unlike writing /proc/sys/net/ipv4/conf/*/arp_notify it also works
    /// where /proc/sys is mounted read-only, as in a container (the tool run from its image).
    async fn set_arp_notify(&self, ifindex: u32, ifname: &str) -> Result<()> {
        let mut conf = InetDevConf::default();
        conf.arp_notify = 1;
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
                AfSpecInet::DevConfRequest(conf),
            ])]));
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| nl_err(&e, &format!("set arp_notify on {ifname}")))
    }

    /// Makes the neighbours learn our MAC now. The gratuitous ARP that `arp_notify` sends as the
    /// link comes up is usually lost: each end only passes packets once the kernel's linkwatch
    /// has handled its carrier change and replaced its `noop` qdisc, which drops everything
    /// (perf, skb:kfree_skb: the gateway's ARP reply dropped with QDISC_DROP at the host end, in
    /// 9 of 20 attaches that waited for the bridge port state alone). The port state is no
    /// proof: a port enslaved before it has a carrier shows "forwarding" until linkwatch first
    /// runs (its operational state is still "unknown" then). So wait until both ends are
    /// operationally up and the port forwards, then have the kernel resolve the gateway
    /// (NTF_USE): its ARP request carries our address and MAC, which the gateway and every
    /// bridge neighbour holding a stale entry take over, and the kernel retries it if it is
    /// lost. No packet socket: closing one costs an RCU grace period (8–16 ms measured here).
    /// Without `a.arp` only the wait: until both ends pass packets, a neighbour's question (the
    /// host's first ARP request) would be dropped and asked again only a second later. The wait
    /// first has the kernel settle both ends' carrier at once (`carrier.rs`: the host end from
    /// this thread, the container's through this connection's socket); only where that does
    /// not answer "link" for both does it poll for the kernel's worker.
    pub async fn announce(&self, a: Announce<'_>) -> Result<()> {
        // The host end through the host's /sys (two small files: cheaper than a netlink
        // request); where that is not the host's (no such files), the port is not waited for.
        let port = format!("/sys/class/net/{}/brport/state", a.host_port);
        let oper = format!("/sys/class/net/{}/operstate", a.host_port);
        // Read into a small buffer on the stack: this loop may turn many times, and a one-shot
        // command frees nothing (src/arena.rs).
        let reads = |path: &str, want: &str| -> std::io::Result<bool> {
            use std::io::Read;
            let mut buf = [0u8; 16];
            let n = std::fs::File::open(path)?.read(&mut buf)?;
            Ok(buf[..n].trim_ascii() == want.as_bytes())
        };
        let waiting = std::time::Instant::now();
        let deadline = waiting + std::time::Duration::from_millis(500);
        // The host end from this thread (in the host's namespace, as the /sys files above are),
        // the container's end through this connection's socket (in the container's namespace).
        let settled = carrier::settle(a.host_port)
            .and_then(|host| Ok(host && self.settle_carrier(a.ifname)?));
        tracing::debug!(?settled, "carrier settled");
        let (mut host_us, mut ctr_us) = match settled {
            Ok(true) => (Some(0), Some(0)),
            _ => (None, None),
        };
        while host_us.is_none() || ctr_us.is_none() {
            if host_us.is_none() {
                let ready = match (reads(&oper, "up"), reads(&port, "3")) {
                    (Ok(up), Ok(forwards)) => up && forwards,
                    _ => true,
                };
                if ready {
                    host_us = Some(waiting.elapsed().as_micros() as u64);
                }
            }
            if ctr_us.is_none() && self.passes_packets(a.ifname).await? {
                ctr_us = Some(waiting.elapsed().as_micros() as u64);
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            // Blocks the thread: this is the attach's own (the command's main thread or a
            // daemon job's), nothing else waits on it.
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        tracing::debug!(host_us, ctr_us, "both ends pass packets");
        if !a.arp {
            return Ok(());
        }
        // Should the first request still go unanswered, the kernel would retry only after a
        // second. So watch the entry and, while it stays unresolved, ask again soon, a few
        // times.
        let started = std::time::Instant::now();
        for attempt in 1..=ANNOUNCE_TRIES {
            let mut req = self
                .handle
                .neighbours()
                .add(a.ifindex, IpAddr::V4(a.gateway));
            req.message_mut().header.state = NeighbourState::None;
            match req.flags(NeighbourFlags::Use).execute().await {
                Ok(()) => {}
                // The container resolved the gateway already (it answered someone).
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(nl_err(&e, &format!("resolve the gateway {}", a.gateway))),
            }
            let until = std::time::Instant::now() + announce_wait(attempt);
            loop {
                match self.neighbour_state(a.ifindex, a.gateway).await? {
                    Some(NeighbourState::Incomplete) | Some(NeighbourState::None) | None => {}
                    Some(_) => {
                        tracing::debug!(
                            attempt,
                            us = started.elapsed().as_micros() as u64,
                            "gateway resolved"
                        );
                        return Ok(());
                    }
                }
                if std::time::Instant::now() >= until {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            // After the last try the entry stays: the kernel goes on asking once a second.
            if attempt < ANNOUNCE_TRIES {
                self.forget_neighbour(a.ifindex, a.gateway).await;
            }
        }
        tracing::debug!(gateway = %a.gateway, "the gateway did not answer our announcement yet");
        Ok(())
    }

    /// Whether interface `name` passes packets: its operational state is up. The kernel's
    /// linkwatch sets it while handling the carrier change, right before it puts the real qdisc
    /// in place of `noop` (which drops what is sent); IFLA_QDISC would not tell, it names the
    /// qdisc to come as soon as the interface is up.
    pub async fn passes_packets(&self, name: &str) -> Result<bool> {
        let mut stream = self.handle.link().get().match_name(name).execute();
        let msg = stream
            .try_next()
            .await
            .map_err(|e| nl_err(&e, &format!("look up interface {name}")))?;
        Ok(msg.is_some_and(|m| {
            m.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::OperState(State::Up)))
        }))
    }

    /// State of the neighbour entry for `ip` on interface `index` (None: no entry).
    async fn neighbour_state(&self, index: u32, ip: Ipv4Addr) -> Result<Option<NeighbourState>> {
        let mut stream = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| nl_err(&e, "list neighbours"))?
        {
            let dst = msg.attributes.iter().any(|a| {
                matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) if *d == ip)
            });
            if msg.header.ifindex == index && dst {
                return Ok(Some(msg.header.state));
            }
        }
        Ok(None)
    }

    /// Deletes an unresolved neighbour entry so that the next NTF_USE asks at once.
    async fn forget_neighbour(&self, index: u32, ip: Ipv4Addr) {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        let _ = self.handle.neighbours().del(msg).execute().await;
    }

    /// Adds one `--route` on interface `ifindex`.
    async fn add_route(&self, ifindex: u32, r: &Route) -> Result<()> {
        let len = r.to.prefix_len();
        let msg = match (r.to.network(), r.via) {
            (IpAddr::V4(to), IpAddr::V4(via)) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(to, len)
                .gateway(via)
                .output_interface(ifindex)
                .build(),
            (IpAddr::V6(to), IpAddr::V6(via)) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(to, len)
                .gateway(via)
                .output_interface(ifindex)
                .build(),
            _ => {
                return Err(anyhow!(
                    "route {r}: the gateway is of another address family"
                ));
            }
        };
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| match errno(&e) {
                Some(libc::EEXIST) => anyhow!(
                    "the container already has a route to {}; remove it (ip route del {}) or leave out --route {}",
                    r.to,
                    r.to,
                    r.to
                ),
                _ => nl_err(&e, &format!("add route {r}")),
            })
    }

    async fn add_default(&self, route: RouteMessage, gw: &str) -> Result<()> {
        match self.handle.route().add(route).execute().await {
            Ok(()) => Ok(()),
            // Never replace a default route the container already has.
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                tracing::info!("the container already has a default route; kept it");
                Ok(())
            }
            Err(e) => Err(nl_err(&e, &format!("add default route via {gw}"))),
        }
    }
}

/// What `configure_interface` sets up.
#[derive(Debug, Clone, Copy)]
pub struct InterfaceConfig<'a> {
    pub ifname: &'a str,
    pub ifindex: u32,
    pub v4: (Ipv4Addr, u8),
    pub v6: Option<(Ipv6Addr, u8)>,
    /// Default routes to add (None: leave the routes alone).
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    /// Further routes (`--route`), each via a gateway in the interface's subnet.
    pub routes: &'a [Route],
    /// Announce the address to the bridge's neighbours once the host end forwards.
    pub announce: Option<Announce<'a>>,
    /// The namespace whose /proc/sys the sysctls go to (`None`: this thread is inside it).
    pub netns: Option<&'a crate::netns::Netns>,
}

/// How to announce: through the gateway of the subnet, once `host_port` forwards.
#[derive(Debug, Clone, Copy)]
pub struct Announce<'a> {
    /// The container's interface.
    pub ifindex: u32,
    pub ifname: &'a str,
    pub gateway: Ipv4Addr,
    /// The host end of the veth (its states read from the host's /sys, which every thread
    /// sees).
    pub host_port: &'a str,
    /// Send the request (the bridge floods it to every port: it costs the sender one copy per
    /// port, see `neighbour.rs`). Without it the announcement only waits until both ends pass
    /// packets, so that the first neighbour to ask is answered.
    pub arp: bool,
}

/// Writes /proc/sys/net/<key>. The file belongs to the network namespace of the thread that
/// opens it, so called from a thread inside a namespace it configures that namespace.
fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/net/{key}");
    std::fs::write(&path, value).map_err(|e| anyhow!("cannot write {value} to {path}: {e}"))
}

/// Announcement requests before giving up (the kernel keeps retrying once a second).
const ANNOUNCE_TRIES: usize = 5;
/// How long announcement request `attempt` (from 1) may go unanswered before it is sent again:
/// 0.5 ms, then twice as long each time (0.5 + 1 + 2 + 4 + 8 ms in all). An answer takes 90–180
/// µs here, but about 1 first request in 5 goes unanswered (5 of 24 attaches, measured with `-vv`
/// on the release build): with a fixed 2 ms wait each of those cost ~2.3 ms, so the first retry
/// comes sooner, and the later ones leave a loaded machine more time.
fn announce_wait(attempt: usize) -> std::time::Duration {
    let shift = attempt.saturating_sub(1).min(ANNOUNCE_TRIES) as u32;
    std::time::Duration::from_micros(500 << shift)
}

/// The loopback device is always the first device registered in a network namespace.
const LOOPBACK_INDEX: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_asks_again_soon_then_waits_longer() {
        let waits: Vec<u128> = (1..=ANNOUNCE_TRIES)
            .map(|a| announce_wait(a).as_micros())
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000]);
    }
}
