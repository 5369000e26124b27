//! Pure: what an attachment's facts decide (its addresses, gateway, MAC, MTU, routes, interface
//! name, the lease record), the same for a running target and a pending reservation. No I/O
//! but the lease store's reads in `pick_addresses` and `pick_addresses_ahead`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, anyhow, bail};

use super::{AttachOpts, DEFAULT_IFNAME};
use crate::address::{self, Choice};
use crate::attachment::{V4Part, V6Part};
use crate::endpoint::{self, EndpointOpts, Family, Mac};
use crate::ipam::Subnet;
use crate::lease::{Lease, Store};
use crate::model::{Iface, NetworkInfo, NsId, SubnetConfig, Taken};
use crate::names;
use crate::plan;
use crate::target::Target;

/// Refuses `--ip` that differs from the address `lease` holds on `network`.
pub(super) fn refuse_other_ip(
    opts: &AttachOpts,
    lease: &Lease,
    name: &str,
    network: &NetworkInfo,
) -> Result<()> {
    if let Some(want) = opts.ip.filter(|w| *w != lease.v4.ip) {
        bail!(
            "'{name}' already holds {} on network '{}'; run `docker-netattach detach {name}` before asking for {want}",
            lease.v4.ip,
            network.name,
        );
    }
    Ok(())
}

/// What `--mtu` may go up to: what the bridge itself carries.
pub(super) fn bridge_mtu(bridge: Option<&Iface>, network: &NetworkInfo) -> u32 {
    bridge.map(|b| b.mtu).or(network.mtu).unwrap_or(1500)
}

/// What an attachment's addresses decide, the same whether the container runs now or only
/// later: the gateway, the MAC (`--mac` or derived from the address), `--mtu` checked against
/// the bridge, and the `--route`s resolved.
pub(super) struct Decided {
    pub(super) v4: V4Part,
    pub(super) v6: Option<V6Part>,
    pub(super) mac: Mac,
    pub(super) mtu: Option<u32>,
    pub(super) routes: Vec<endpoint::Route>,
}

pub(super) fn decide_endpoint(
    endpoint: &EndpointOpts,
    network: &NetworkInfo,
    bridge_mtu: u32,
    v4: &Choice<Ipv4Addr>,
    v6: Option<&Choice<Ipv6Addr>>,
    no_gateway: impl FnOnce() -> anyhow::Error,
) -> Result<Decided> {
    let gateway = v4.gateway.ok_or_else(no_gateway)?;
    let mtu = endpoint
        .mtu
        .map(|m| endpoint::check_mtu(m, &network.bridge, bridge_mtu, v6.is_some()))
        .transpose()?;
    let routes = routes_of(endpoint, v4, gateway, v6)?;
    Ok(Decided {
        v4: V4Part {
            ip: v4.ip,
            prefix_len: v4.prefix_len,
            gateway,
        },
        v6: v6.map(|c| V6Part {
            ip: c.ip,
            prefix_len: c.prefix_len,
            gateway: c.gateway,
        }),
        mac: endpoint.mac.unwrap_or(Mac(plan::mac_for(v4.ip))),
        mtu,
        routes,
    })
}

/// The parts of a record that its addresses do not decide: who is attached where, and how.
pub(super) struct Names<'a> {
    pub(super) id: &'a str,
    pub(super) name: &'a str,
    pub(super) network: &'a NetworkInfo,
    pub(super) host_ifname: String,
    pub(super) ifname: String,
    pub(super) netns_name: String,
    pub(super) default_route: bool,
    pub(super) dns: Vec<IpAddr>,
}

/// The namespace a record attaches: a running target's, or none yet (a `pending` lease).
pub(super) enum Ns<'a> {
    Of(&'a Target),
    Pending,
}

impl Decided {
    /// The attachment record. A running target's starts incomplete (the transaction completes
    /// it); a pending one is complete as it is.
    pub(super) fn into_lease(self, n: Names<'_>, ns: Ns<'_>) -> Lease {
        let pending = matches!(ns, Ns::Pending);
        let (pid, id, netns_path) = match ns {
            Ns::Of(t) if t.is_container => (t.pid, t.ns.id, String::new()),
            Ns::Of(t) => (t.pid, t.ns.id, t.ns.source.display().to_string()),
            Ns::Pending => (0, NsId { dev: 0, ino: 0 }, String::new()),
        };
        Lease {
            container_id: n.id.to_string(),
            container_name: n.name.to_string(),
            network: n.network.name.clone(),
            network_id: n.network.id.clone(),
            bridge: n.network.bridge.clone(),
            v4: self.v4,
            mac: self.mac.to_string(),
            host_ifname: n.host_ifname,
            ifname: n.ifname,
            netns_name: n.netns_name,
            pid,
            netns_dev: id.dev,
            netns_ino: id.ino,
            netns_path,
            v6: self.v6,
            default_route: n.default_route,
            dns: n.dns,
            mtu: self.mtu,
            routes: self.routes,
            complete: pending,
            pending,
        }
    }
}

/// `--route`s resolved against the attachment's own subnets and gateways.
pub(super) fn routes_of(
    endpoint: &EndpointOpts,
    v4: &Choice<Ipv4Addr>,
    gateway: Ipv4Addr,
    v6: Option<&Choice<Ipv6Addr>>,
) -> Result<Vec<endpoint::Route>> {
    let family = |ip: IpAddr, len: u8, gateway: Option<IpAddr>| -> Result<Family> {
        let subnet = Subnet::new(ip, len).map_err(|e| anyhow!("{ip}/{len}: {e}"))?;
        Ok(Family { subnet, gateway })
    };
    let v4_family = family(IpAddr::V4(v4.ip), v4.prefix_len, Some(IpAddr::V4(gateway)))?;
    let v6_family = match v6 {
        Some(c) => Some(family(
            IpAddr::V6(c.ip),
            c.prefix_len,
            c.gateway.map(IpAddr::V6),
        )?),
        None => None,
    };
    let mut own = vec![IpAddr::V4(v4.ip)];
    own.extend(v6.map(|c| IpAddr::V6(c.ip)));
    endpoint::resolve_routes(&endpoint.routes, &own, v4_family, v6_family)
}

/// The allocator over a store: the addresses a new lease on `network` gets (or the check of
/// the asked-for `want`), from what the store holds there; with what it holds.
pub(crate) fn pick_addresses(
    store: Option<&dyn Store>,
    network: &NetworkInfo,
    gw4: &[Option<IpAddr>],
    gw6: &[Option<IpAddr>],
    want: (Option<Ipv4Addr>, Option<Ipv6Addr>),
) -> Result<(Taken, Choice<Ipv4Addr>, Option<Choice<Ipv6Addr>>)> {
    let taken = match store {
        Some(s) => s.taken(&network.id)?,
        None => Taken::default(),
    };
    let (v4, v6) = pick_from(store, &taken, network, gw4, gw6, want)?;
    Ok((taken, v4, v6))
}

/// [`pick_addresses`] from a taken set read ahead (without the store lock, while Docker
/// answered: `DiskStore::taken_ahead`), confirmed under the lock: the chosen addresses must not
/// be leased now. If one is (another attach leased it meanwhile), or the pick from what was
/// read ahead fails, the pick is made again from the store, as without a read-ahead. (A stale
/// set can only hold addresses freed meanwhile, skipped, or miss ones leased meanwhile, which
/// the confirmation catches; `insert` refuses a taken address in any case.)
pub(crate) fn pick_addresses_ahead(
    store: Option<&dyn Store>,
    ahead: Option<Taken>,
    network: &NetworkInfo,
    gw4: &[Option<IpAddr>],
    gw6: &[Option<IpAddr>],
    want: (Option<Ipv4Addr>, Option<Ipv6Addr>),
) -> Result<(Taken, Choice<Ipv4Addr>, Option<Choice<Ipv6Addr>>)> {
    if let (Some(s), Some(taken)) = (store, ahead) {
        if let Ok((v4, v6)) = pick_from(store, &taken, network, gw4, gw6, want) {
            let chosen =
                std::iter::once(IpAddr::V4(v4.ip)).chain(v6.as_ref().map(|c| IpAddr::V6(c.ip)));
            let mut free = true;
            for ip in chosen {
                free &= !s.leased(&network.id, ip)?;
            }
            if free {
                return Ok((taken, v4, v6));
            }
            tracing::debug!("an address read ahead was leased meanwhile; picking again");
        }
    }
    pick_addresses(store, network, gw4, gw6, want)
}

/// The addresses picked against `taken`.
fn pick_from(
    store: Option<&dyn Store>,
    taken: &Taken,
    network: &NetworkInfo,
    gw4: &[Option<IpAddr>],
    gw6: &[Option<IpAddr>],
    want: (Option<Ipv4Addr>, Option<Ipv6Addr>),
) -> Result<(Choice<Ipv4Addr>, Option<Choice<Ipv6Addr>>)> {
    // Only asked to explain a refused --ip/--ip6: whose lease holds it.
    let leased_to = |ip: IpAddr| {
        let leases = store?.all().ok()?;
        leases
            .into_iter()
            .find(|l| l.network_id == network.id && l.holds(ip))
            .map(|l| l.container_name)
    };
    let v4 = address::pick_v4(network, gw4, taken, want.0, &leased_to)?;
    let v6 = address::pick_v6(network, gw6, taken, want.1, &leased_to)?;
    Ok((v4, v6))
}

/// A Linux bridge outside Docker, described like a Docker network.
pub(super) fn plain_bridge(
    name: &str,
    subnet: Subnet,
    gateway: Option<Ipv4Addr>,
) -> Result<NetworkInfo> {
    names::validate_ifname(name)?;
    if subnet.is_ipv6() {
        bail!("--subnet {subnet}: give an IPv4 subnet");
    }
    if let Some(g) = gateway.filter(|g| !subnet.contains(IpAddr::V4(*g))) {
        bail!("--gateway {g} is outside --subnet {subnet}");
    }
    Ok(NetworkInfo {
        id: format!("bridge-{name}"),
        name: name.to_string(),
        bridge: name.to_string(),
        v4: vec![SubnetConfig {
            subnet,
            gateway: gateway.map(IpAddr::V4),
            ip_range: None,
            aux: vec![],
        }],
        v6: vec![],
        mtu: None,
        endpoints: vec![],
        icc: true,
        masquerade: false,
    })
}

pub(super) fn needs_bridge_addrs(n: &NetworkInfo) -> bool {
    n.v4.iter().chain(&n.v6).any(|c| c.gateway.is_none())
}

/// `eth<N>`: the first index after the container's Docker networks not used by its leases.
pub fn next_ifname(docker_networks: usize, others: &[Lease]) -> String {
    (docker_networks..)
        .map(|n| format!("eth{n}"))
        .find(|name| others.iter().all(|l| &l.ifname != name))
        .unwrap_or_else(|| DEFAULT_IFNAME.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_count_up() {
        let mut l = Lease::sample("a", "a", "10.0.0.2");
        assert_eq!(next_ifname(0, &[]), "eth0");
        assert_eq!(next_ifname(0, &[l.clone()]), "eth1");
        assert_eq!(next_ifname(1, &[]), "eth1");
        l.ifname = "eth1".into();
        assert_eq!(next_ifname(0, &[l]), "eth0");
    }

    #[test]
    fn a_plain_bridge_is_described_like_a_network() {
        let n = plain_bridge("nabr0", "10.77.0.0/24".parse().unwrap(), None).unwrap();
        assert_eq!(n.id, "bridge-nabr0");
        assert!(
            plain_bridge(
                "nabr0",
                "10.77.0.0/24".parse().unwrap(),
                Some("10.78.0.1".parse().unwrap())
            )
            .is_err()
        );
        assert!(plain_bridge("a/b", "10.77.0.0/24".parse().unwrap(), None).is_err());
    }
}
