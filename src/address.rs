//! Pure: which addresses an attachment gets on a network — across its IPv4 subnets (the first
//! with room), and on its IPv6 subnet when it has one.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, anyhow, bail};

use crate::docker::{NetworkInfo, SubnetConfig};
use crate::ipam::{IpamError, Pool, key};
use crate::lease::Taken;

/// A chosen address with its subnet's prefix length and gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice<A> {
    pub ip: A,
    pub prefix_len: u8,
    pub gateway: Option<A>,
    /// The subnet has no Docker `IPRange`, so Docker might one day hand out this address.
    pub unfenced: bool,
}

/// Gateways of the network's subnets: Docker's, else `bridge_addrs` (the bridge's own
/// addresses, in the subnet; IPv6 link-local ones never count).
pub fn gateways(configs: &[SubnetConfig], bridge_addrs: &[(IpAddr, u8)]) -> Vec<Option<IpAddr>> {
    configs
        .iter()
        .map(|c| {
            c.gateway.or_else(|| {
                bridge_addrs
                    .iter()
                    .map(|(a, _)| *a)
                    .find(|a| c.subnet.contains(*a) && !is_link_local(*a))
            })
        })
        .collect()
}

fn is_link_local(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Chooses (or checks `want`) an IPv4 address: the first subnet with room.
pub fn pick_v4(
    net: &NetworkInfo,
    gateways: &[Option<IpAddr>],
    taken: &Taken,
    want: Option<Ipv4Addr>,
) -> Result<Choice<Ipv4Addr>> {
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(a) => Err(anyhow!("{a} is not an IPv4 address")),
    };
    let (config, gateway, ip) = pick(&net.v4, gateways, net, &taken.v4, want.map(IpAddr::V4))?;
    Ok(Choice {
        ip: v4(ip)?,
        prefix_len: config.subnet.prefix_len(),
        gateway: gateway.map(v4).transpose()?,
        unfenced: config.ip_range.is_none(),
    })
}

/// Chooses (or checks `want`) an IPv6 address when the network has IPv6.
pub fn pick_v6(
    net: &NetworkInfo,
    gateways: &[Option<IpAddr>],
    taken: &Taken,
    want: Option<Ipv6Addr>,
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
    let (config, gateway, ip) = pick(&net.v6, gateways, net, &taken.v6, want.map(IpAddr::V6))?;
    let v6 = |a: IpAddr| match a {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    };
    Ok(Some(Choice {
        ip: v6(ip).ok_or_else(|| anyhow!("{ip} is not an IPv6 address"))?,
        prefix_len: config.subnet.prefix_len(),
        gateway: gateway.and_then(v6),
        unfenced: config.ip_range.is_none(),
    }))
}

fn pick<'a>(
    configs: &'a [SubnetConfig],
    gateways: &[Option<IpAddr>],
    net: &NetworkInfo,
    leased: &BTreeSet<u128>,
    want: Option<IpAddr>,
) -> Result<(&'a SubnetConfig, Option<IpAddr>, IpAddr)> {
    let mut taken = leased.clone();
    taken.extend(net.endpoints.iter().map(|a| key(*a)));
    taken.extend(gateways.iter().flatten().map(|a| key(*a)));
    taken.extend(configs.iter().flat_map(|c| c.aux.iter()).map(|a| key(*a)));
    let mut last_err = None;
    for (config, gateway) in configs.iter().zip(gateways.iter().copied()) {
        let pool = Pool {
            subnet: config.subnet,
            docker_range: config.ip_range,
        };
        match want {
            Some(w) if config.subnet.contains(w) => {
                return pool
                    .check(w, &taken)
                    .map(|()| (config, gateway, w))
                    .map_err(|e| refused(e, net));
            }
            Some(_) => continue,
            None => match pool.choose(&taken) {
                Ok(ip) => return Ok((config, gateway, ip)),
                Err(e) => last_err = Some(e),
            },
        }
    }
    match (want, last_err) {
        (Some(w), _) => {
            let subnets: Vec<String> = configs.iter().map(|c| c.subnet.to_string()).collect();
            Err(refused(
                IpamError::OutsideSubnet {
                    ip: w,
                    subnet: configs[0].subnet,
                },
                net,
            )
            .context(format!("subnets: {}", subnets.join(", "))))
        }
        (None, Some(e)) => Err(anyhow!(
            "network '{}': {e}; detach containers or use a larger subnet",
            net.name
        )),
        (None, None) => bail!("network '{}' has no subnet of that family", net.name),
    }
}

fn refused(e: IpamError, net: &NetworkInfo) -> anyhow::Error {
    anyhow!(
        "address refused on network '{}': {e}; choose another address or let docker-netattach choose",
        net.name
    )
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
        let c = pick_v4(&n, &gws, &taken, None).unwrap();
        assert_eq!((c.ip, c.prefix_len), ("10.0.0.2".parse().unwrap(), 30));
        taken.v4.insert(key(ip("10.0.0.2")));
        let c = pick_v4(&n, &gws, &taken, None).unwrap();
        assert_eq!(c.ip, "10.1.0.254".parse::<Ipv4Addr>().unwrap());
        assert_eq!(c.gateway, Some("10.1.0.1".parse().unwrap()));
        // An explicit address is checked in its own subnet.
        assert!(pick_v4(&n, &gws, &taken, Some("10.1.0.1".parse().unwrap())).is_err());
        assert!(pick_v4(&n, &gws, &taken, Some("10.1.0.7".parse().unwrap())).is_ok());
        let err = pick_v4(&n, &gws, &taken, Some("10.9.0.7".parse().unwrap())).unwrap_err();
        assert!(format!("{err:#}").contains("outside"), "{err:#}");
    }

    #[test]
    fn ipv6_only_when_the_network_has_it() {
        let n = net(vec![config("10.0.0.0/24", Some("10.0.0.1"))], vec![]);
        assert_eq!(pick_v6(&n, &[], &Taken::default(), None).unwrap(), None);
        assert!(pick_v6(&n, &[], &Taken::default(), Some("fd00::5".parse().unwrap())).is_err());
        let n = net(
            vec![config("10.0.0.0/24", Some("10.0.0.1"))],
            vec![config("fd00:7::/64", None)],
        );
        let gws = gateways(&n.v6, &[(ip("fe80::1"), 64), (ip("fd00:7::1"), 64)]);
        let c = pick_v6(&n, &gws, &Taken::default(), None).unwrap().unwrap();
        assert_eq!(c.gateway, Some("fd00:7::1".parse().unwrap()));
        assert_eq!(
            c.ip,
            "fd00:7::ffff:ffff:ffff:ffff".parse::<Ipv6Addr>().unwrap()
        );
    }
}
