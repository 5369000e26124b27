//! Pure: which addresses an attachment gets on a network — across its IPv4 subnets (the first
//! with room), and on its IPv6 subnet when it has one.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, anyhow, bail};

use crate::ipam::{IpamError, Pool, Subnet, key};
use crate::model::{NetworkInfo, SubnetConfig, Taken};

/// A chosen address with its subnet's prefix length and gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice<A> {
    pub ip: A,
    pub prefix_len: u8,
    pub gateway: Option<A>,
    /// The subnet has no Docker `IPRange`, so Docker might one day hand out this address.
    pub unfenced: bool,
    /// Docker's range, when this (explicitly requested) address lies inside it: Docker may hand
    /// it out to a container it starts later.
    pub inside_range: Option<Subnet>,
}

/// Gateways of the network's subnets: Docker's, else `bridge_addrs` (the bridge's own
/// addresses, in the subnet; IPv6 link-local ones never count).
pub fn gateways(configs: &[SubnetConfig], bridge_addrs: &[(IpAddr, u8)]) -> Vec<Option<IpAddr>> {
    configs
        .iter()
        .map(|c| {
            c.gateway.or_else(|| {
                bridge_addrs.iter().map(|(a, _)| *a).find(|a| {
                    c.subnet.contains(*a)
                        && !matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local())
                })
            })
        })
        .collect()
}

/// Names the container whose lease holds an address (asked only to explain a refused `--ip`).
pub type LeasedTo<'a> = &'a dyn Fn(IpAddr) -> Option<String>;

/// Chooses (or checks `want`) an IPv4 address: the first subnet with room.
pub fn pick_v4(
    net: &NetworkInfo,
    gateways: &[Option<IpAddr>],
    taken: &Taken,
    want: Option<Ipv4Addr>,
    leased_to: LeasedTo,
) -> Result<Choice<Ipv4Addr>> {
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(a) => Err(anyhow!("{a} is not an IPv4 address")),
    };
    let p = pick(
        &net.v4,
        gateways,
        net,
        &taken.v4,
        want.map(IpAddr::V4),
        leased_to,
    )?;
    Ok(Choice {
        ip: v4(p.ip)?,
        prefix_len: p.pool.subnet.prefix_len(),
        gateway: p.gateway.map(v4).transpose()?,
        unfenced: p.pool.fence().is_none(),
        inside_range: p.pool.fence().filter(|r| r.contains(p.ip)),
    })
}

/// Chooses (or checks `want`) an IPv6 address when the network has IPv6.
pub fn pick_v6(
    net: &NetworkInfo,
    gateways: &[Option<IpAddr>],
    taken: &Taken,
    want: Option<Ipv6Addr>,
    leased_to: LeasedTo,
) -> Result<Option<Choice<Ipv6Addr>>> {
    if net.v6.is_empty() {
        if let Some(w) = want {
            bail!(
                "--ip6 {w}: network '{}' has no IPv6 subnet; create it with --ipv6 --subnet or drop --ip6",
                net.name
            );
        }
        return Ok(None);
    }
    let p = pick(
        &net.v6,
        gateways,
        net,
        &taken.v6,
        want.map(IpAddr::V6),
        leased_to,
    )?;
    let v6 = |a: IpAddr| match a {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    };
    Ok(Some(Choice {
        ip: v6(p.ip).ok_or_else(|| anyhow!("{} is not an IPv6 address", p.ip))?,
        prefix_len: p.pool.subnet.prefix_len(),
        gateway: p.gateway.and_then(v6),
        unfenced: p.pool.fence().is_none(),
        inside_range: p.pool.fence().filter(|r| r.contains(p.ip)),
    }))
}

/// The address picked, with its subnet's pool and gateway.
struct Picked {
    pool: Pool,
    gateway: Option<IpAddr>,
    ip: IpAddr,
}

fn pick(
    configs: &[SubnetConfig],
    gateways: &[Option<IpAddr>],
    net: &NetworkInfo,
    leased: &BTreeSet<u128>,
    want: Option<IpAddr>,
    leased_to: LeasedTo,
) -> Result<Picked> {
    let mut taken = leased.clone();
    taken.extend(net.endpoints.iter().map(|e| key(e.ip)));
    taken.extend(gateways.iter().flatten().map(|a| key(*a)));
    taken.extend(configs.iter().flat_map(|c| c.aux.iter()).map(|a| key(*a)));
    let mut last_err = None;
    for (config, gateway) in configs.iter().zip(gateways.iter().copied()) {
        let pool = Pool {
            subnet: config.subnet,
            docker_range: config.ip_range,
        };
        let picked = |ip| Picked { pool, gateway, ip };
        match want {
            Some(w) if config.subnet.contains(w) => {
                return match pool.check(w, &taken) {
                    Ok(()) => Ok(picked(w)),
                    Err(IpamError::Taken { ip }) => {
                        Err(held(ip, configs, gateways, net, leased, leased_to))
                    }
                    Err(e) => Err(refused(&e.to_string(), w, net)),
                };
            }
            Some(_) => continue,
            None => match pool.choose(&taken) {
                Ok(ip) => return Ok(picked(ip)),
                Err(e) => last_err = Some(e),
            },
        }
    }
    match (want, last_err) {
        (Some(w), _) => {
            let subnets: Vec<String> = configs.iter().map(|c| c.subnet.to_string()).collect();
            let what = match subnets.len() {
                1 => format!("{w} is outside the subnet {}", subnets[0]),
                _ => format!("{w} is outside the subnets {}", subnets.join(", ")),
            };
            Err(refused(&what, w, net))
        }
        (None, Some(e @ IpamError::RangeFull { range, .. })) => Err(anyhow!(
            "network '{}': {e}; Docker hands out every address inside {range}, so none is taken from it: detach containers, recreate the network with a wider --subnet or a smaller --ip-range (\"fixed-cidr\" for docker0), or pass an explicit --ip inside {range} (Docker may hand it out too)",
            net.name
        )),
        (None, Some(e)) => Err(anyhow!(
            "network '{}': {e}; detach containers or use a larger subnet",
            net.name
        )),
        (None, None) => bail!("network '{}' has no subnet of that family", net.name),
    }
}

/// The option that asked for `ip`.
fn flag(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() { "--ip6" } else { "--ip" }
}

/// `what` starts with the address (`172.17.0.0 is the network address of ...`).
fn refused(what: &str, ip: IpAddr, net: &NetworkInfo) -> anyhow::Error {
    anyhow!(
        "{} {what} (network '{}'); choose another address or let docker-netattach choose",
        flag(ip),
        net.name
    )
}

/// A refused address that something holds: says which of the gateway, an aux address, a
/// Docker endpoint (and its container) or one of our leases (and its container) it is.
fn held(
    ip: IpAddr,
    configs: &[SubnetConfig],
    gateways: &[Option<IpAddr>],
    net: &NetworkInfo,
    leased: &BTreeSet<u128>,
    leased_to: LeasedTo,
) -> anyhow::Error {
    let name = &net.name;
    let mut fix = "choose another address or let docker-netattach choose".to_string();
    let who = if gateways.contains(&Some(ip)) {
        format!("it is the gateway of network '{name}'")
    } else if configs.iter().any(|c| c.aux.contains(&ip)) {
        format!("it is an auxiliary address reserved in network '{name}'")
    } else if let Some(e) = net.endpoints.iter().find(|e| e.ip == ip) {
        format!(
            "Docker gave it to container '{}' on network '{name}'",
            e.container
        )
    } else if leased.contains(&key(ip)) {
        match leased_to(ip) {
            Some(c) => {
                fix = format!("detach it (`docker-netattach detach {c} --network {name}`), {fix}");
                format!("it is leased to container '{c}' on network '{name}' by docker-netattach")
            }
            None => format!("another docker-netattach lease on network '{name}' holds it"),
        }
    } else {
        format!("on network '{name}'")
    };
    anyhow!("{} {ip} is already in use: {who}; {fix}", flag(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn config(subnet: &str, gw: Option<&str>) -> SubnetConfig {
        SubnetConfig {
            subnet: subnet.parse().unwrap(),
            gateway: gw.map(ip),
            ip_range: None,
            aux: vec![],
        }
    }

    fn net(v4: Vec<SubnetConfig>, v6: Vec<SubnetConfig>) -> NetworkInfo {
        NetworkInfo {
            id: "n".into(),
            name: "n".into(),
            bridge: "br".into(),
            v4,
            v6,
            mtu: None,
            endpoints: vec![],
            icc: true,
            masquerade: true,
        }
    }

    #[test]
    fn the_first_subnet_with_room_wins() {
        let n = net(
            vec![
                config("10.0.0.0/30", Some("10.0.0.1")),
                config("10.1.0.0/24", None),
            ],
            vec![],
        );
        let gws = gateways(&n.v4, &[(ip("10.1.0.1"), 24)]);
        assert_eq!(gws, vec![Some(ip("10.0.0.1")), Some(ip("10.1.0.1"))]);
        let mut taken = Taken::default();
        let c = pick_v4(&n, &gws, &taken, None, &|_| None).unwrap();
        assert_eq!((c.ip, c.prefix_len), ("10.0.0.2".parse().unwrap(), 30));
        taken.v4.insert(key(ip("10.0.0.2")));
        let c = pick_v4(&n, &gws, &taken, None, &|_| None).unwrap();
        assert_eq!(c.ip, "10.1.0.254".parse::<Ipv4Addr>().unwrap());
        assert_eq!(c.gateway, Some("10.1.0.1".parse().unwrap()));
        // An explicit address is checked in its own subnet.
        assert!(
            pick_v4(&n, &gws, &taken, Some("10.1.0.1".parse().unwrap()), &|_| {
                None
            })
            .is_err()
        );
        assert!(
            pick_v4(&n, &gws, &taken, Some("10.1.0.7".parse().unwrap()), &|_| {
                None
            })
            .is_ok()
        );
        let err = pick_v4(&n, &gws, &taken, Some("10.9.0.7".parse().unwrap()), &|_| {
            None
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("outside"), "{err:#}");
    }

    #[test]
    fn a_full_outside_of_the_range_is_refused_with_the_ways_out() {
        let mut c = config("10.231.7.0/29", Some("10.231.7.1"));
        c.ip_range = Some("10.231.7.0/30".parse().unwrap());
        let n = net(vec![c], vec![]);
        let gws = gateways(&n.v4, &[]);
        let mut taken = Taken::default();
        for want in ["10.231.7.6", "10.231.7.5", "10.231.7.4"] {
            let c = pick_v4(&n, &gws, &taken, None, &|_| None).unwrap();
            assert_eq!(
                (c.ip.to_string(), c.unfenced, c.inside_range),
                (want.into(), false, None)
            );
            taken.v4.insert(key(IpAddr::V4(c.ip)));
        }
        let err = format!(
            "{:#}",
            pick_v4(&n, &gws, &taken, None, &|_| None).unwrap_err()
        );
        for part in [
            "network 'n'",
            "10.231.7.0/30",
            "--subnet",
            "--ip-range",
            "--ip inside",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        // The explicit way out: an address inside the range, flagged for a warning.
        let c = pick_v4(
            &n,
            &gws,
            &taken,
            Some("10.231.7.3".parse().unwrap()),
            &|_| None,
        )
        .unwrap();
        assert_eq!(c.inside_range, Some("10.231.7.0/30".parse().unwrap()));
        // A range covering the whole subnet fences nothing.
        let mut all = config("10.0.0.0/29", Some("10.0.0.1"));
        all.ip_range = Some("10.0.0.0/29".parse().unwrap());
        let n = net(vec![all], vec![]);
        let c = pick_v4(&n, &gateways(&n.v4, &[]), &Taken::default(), None, &|_| {
            None
        })
        .unwrap();
        assert_eq!(
            (c.ip.to_string(), c.unfenced, c.inside_range),
            ("10.0.0.6".into(), true, None)
        );
    }

    #[test]
    fn a_refused_address_names_its_holder() {
        let mut n = net(vec![config("10.0.0.0/24", Some("10.0.0.1"))], vec![]);
        n.v4[0].aux = vec![ip("10.0.0.9")];
        n.endpoints = vec![crate::docker::Endpoint {
            ip: ip("10.0.0.2"),
            container: "db".into(),
        }];
        let gws = gateways(&n.v4, &[]);
        let mut taken = Taken::default();
        taken.v4.insert(key(ip("10.0.0.3")));
        let leased_to = |a: IpAddr| (a == ip("10.0.0.3")).then(|| "web".to_string());
        let err = |want: &str| {
            let e = pick_v4(&n, &gws, &taken, Some(want.parse().unwrap()), &leased_to);
            format!("{:#}", e.unwrap_err())
        };
        assert_eq!(
            err("10.0.0.1"),
            "--ip 10.0.0.1 is already in use: it is the gateway of network 'n'; choose another address or let docker-netattach choose"
        );
        assert!(err("10.0.0.9").contains("auxiliary address reserved in network 'n'"));
        assert_eq!(
            err("10.0.0.2"),
            "--ip 10.0.0.2 is already in use: Docker gave it to container 'db' on network 'n'; choose another address or let docker-netattach choose"
        );
        assert_eq!(
            err("10.0.0.3"),
            "--ip 10.0.0.3 is already in use: it is leased to container 'web' on network 'n' by docker-netattach; detach it (`docker-netattach detach web --network n`), choose another address or let docker-netattach choose"
        );
        assert_eq!(
            err("10.9.0.1"),
            "--ip 10.9.0.1 is outside the subnet 10.0.0.0/24 (network 'n'); choose another address or let docker-netattach choose"
        );
        assert_eq!(
            err("10.0.0.0"),
            "--ip 10.0.0.0 is the network address of 10.0.0.0/24 (network 'n'); choose another address or let docker-netattach choose"
        );
    }

    #[test]
    fn ipv6_only_when_the_network_has_it() {
        let n = net(vec![config("10.0.0.0/24", Some("10.0.0.1"))], vec![]);
        assert_eq!(
            pick_v6(&n, &[], &Taken::default(), None, &|_| None).unwrap(),
            None
        );
        assert!(
            pick_v6(
                &n,
                &[],
                &Taken::default(),
                Some("fd00::5".parse().unwrap()),
                &|_| None
            )
            .is_err()
        );
        let n = net(
            vec![config("10.0.0.0/24", Some("10.0.0.1"))],
            vec![config("fd00:7::/64", None)],
        );
        let gws = gateways(&n.v6, &[(ip("fe80::1"), 64), (ip("fd00:7::1"), 64)]);
        let c = pick_v6(&n, &gws, &Taken::default(), None, &|_| None)
            .unwrap()
            .unwrap();
        assert_eq!(c.gateway, Some("fd00:7::1".parse().unwrap()));
        assert_eq!(
            c.ip,
            "fd00:7::ffff:ffff:ffff:ffff".parse::<Ipv6Addr>().unwrap()
        );
    }
}
