//! Pure: the endpoint options `--mac`, `--mtu` and `--route` — parsing, checks against the
//! network, and the routes resolved to a gateway. No side effects.
//!
//! They are recorded in the lease ([`crate::lease::Lease::endpoint_opts`] gives them back as
//! options), so that re-attaching a restarted container applies them again.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::ipam::Subnet;

/// The smallest MTU the kernel accepts for IPv4 (RFC 791).
pub const MIN_MTU: u32 = 68;
/// The smallest MTU with which the kernel keeps IPv6 on an interface (RFC 8200).
pub const MIN_MTU_V6: u32 = 1280;

/// The endpoint options of one attach. `Default` is "none given": the derived MAC, the
/// network's MTU and no extra routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOpts {
    /// `--mac`: the container interface's MAC instead of the derived `02:42:` + IPv4 one.
    pub mac: Option<Mac>,
    /// `--mtu`: instead of the network's MTU.
    pub mtu: Option<u32>,
    /// `--route` (repeatable).
    pub routes: Vec<RouteArg>,
}

impl EndpointOpts {
    /// The options of a re-attach (restart, or a killed attach) of an attachment made with
    /// `recorded`: what was recorded, and what is given must agree with it. `Err` names the
    /// option that differs, its recorded and its given value.
    pub fn carry_over(&self, recorded: &EndpointOpts) -> Result<EndpointOpts, Conflict> {
        let conflict =
            |option: &'static str, had: String, asked: String| Conflict { option, had, asked };
        let show_mac = |m: Option<Mac>| m.map_or("the derived MAC".into(), |m| m.to_string());
        if let Some(mac) = self.mac.filter(|m| recorded.mac != Some(*m)) {
            return Err(conflict("--mac", show_mac(recorded.mac), mac.to_string()));
        }
        if let Some(mtu) = self.mtu.filter(|m| recorded.mtu != Some(*m)) {
            let had = recorded
                .mtu
                .map_or("the network's MTU".into(), |m| m.to_string());
            return Err(conflict("--mtu", had, mtu.to_string()));
        }
        let same_route =
            |a: &RouteArg, r: &RouteArg| a.to == r.to && (a.via.is_none() || a.via == r.via);
        let routes_agree = self.routes.len() == recorded.routes.len()
            && self
                .routes
                .iter()
                .all(|a| recorded.routes.iter().any(|r| same_route(a, r)));
        if !self.routes.is_empty() && !routes_agree {
            let show = |v: &[RouteArg]| {
                if v.is_empty() {
                    return "no routes".to_string();
                }
                v.iter()
                    .map(|r| match r.via {
                        Some(via) => format!("{}@{via}", r.to),
                        None => r.to.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(conflict(
                "--route",
                show(&recorded.routes),
                show(&self.routes),
            ));
        }
        Ok(recorded.clone())
    }
}

/// A re-attach asked for another endpoint option than its lease records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub option: &'static str,
    pub had: String,
    pub asked: String,
}

/// A unicast Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Checks that `bytes` can be an interface's own address.
    pub fn unicast(bytes: [u8; 6]) -> Result<Mac, String> {
        let shown = crate::plan::format_mac(bytes);
        if bytes == [0xff; 6] {
            return Err(format!(
                "{shown} is the broadcast address; give a unicast MAC, e.g. 02:00:00:00:00:01"
            ));
        }
        if bytes[0] & 1 == 1 {
            return Err(format!(
                "{shown} is a multicast address (the lowest bit of its first byte is set); give a unicast MAC, e.g. 02:00:00:00:00:01"
            ));
        }
        if bytes == [0; 6] {
            return Err(format!(
                "{shown} is the all-zero address; give a unicast MAC, e.g. 02:00:00:00:00:01"
            ));
        }
        Ok(Mac(bytes))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::plan::format_mac(self.0))
    }
}

impl FromStr for Mac {
    type Err = String;
    /// Six hexadecimal bytes separated by `:` (or `-`), e.g. `02:00:5e:10:00:01`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let bad = || format!("'{s}' is not a MAC address (six hex bytes: 02:00:5e:10:00:01)");
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut bytes = [0u8; 6];
        for (b, p) in bytes.iter_mut().zip(&parts) {
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Mac::unicast(bytes)
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `--route CIDR[@GATEWAY]` as given: the gateway may be left to the network's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteArg {
    pub to: Subnet,
    pub via: Option<IpAddr>,
}

impl FromStr for RouteArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (to, via) = match s.split_once('@') {
            Some((to, via)) => (to, Some(via)),
            None => (s, None),
        };
        let to: Subnet = to.parse()?;
        if to.prefix_len() == 0 {
            return Err(format!(
                "'{s}' is a default route; use --default-route for that"
            ));
        }
        let via = match via {
            None => None,
            Some(v) => Some(
                v.parse::<IpAddr>()
                    .map_err(|_| format!("'{s}': gateway '{v}' is not an IP address"))?,
            ),
        };
        if let Some(v) = via.filter(|v| v.is_ipv6() != to.is_ipv6()) {
            return Err(format!(
                "'{s}': gateway {v} is not of the same family as {to}"
            ));
        }
        Ok(RouteArg { to, via })
    }
}

/// A route inside the container: `to` via `via` on the attachment's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub to: Subnet,
    pub via: IpAddr,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.to, self.via)
    }
}

impl From<Route> for RouteArg {
    fn from(r: Route) -> RouteArg {
        RouteArg {
            to: r.to,
            via: Some(r.via),
        }
    }
}

/// One family of the attachment, as the routes see it: its subnet and gateway.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub subnet: Subnet,
    pub gateway: Option<IpAddr>,
}

/// Resolves each `--route` to a gateway: the one given, which must be in the attachment's
/// subnet of that family (and not the attachment's own address), or the network's gateway.
pub fn resolve_routes(
    args: &[RouteArg],
    own: &[IpAddr],
    v4: Family,
    v6: Option<Family>,
) -> Result<Vec<Route>> {
    let mut out: Vec<Route> = Vec::new();
    for arg in args {
        let shown = match arg.via {
            Some(v) => format!("--route {}@{v}", arg.to),
            None => format!("--route {}", arg.to),
        };
        let fam = if arg.to.is_ipv6() {
            match v6 {
                Some(f) => f,
                None => bail!(
                    "{shown}: the attachment has no IPv6 address; IPv6 routes need a network with IPv6 (docker network create --ipv6)"
                ),
            }
        } else {
            v4
        };
        let via = match (arg.via, fam.gateway) {
            (Some(v), _) => v,
            (None, Some(g)) => g,
            (None, None) => bail!(
                "{shown}: the network has no {} gateway; name one with {}@GATEWAY",
                if arg.to.is_ipv6() { "IPv6" } else { "IPv4" },
                arg.to
            ),
        };
        if !fam.subnet.contains(via) {
            bail!(
                "{shown}: gateway {via} is outside the attachment's subnet {}; give a gateway in it",
                fam.subnet
            );
        }
        if own.contains(&via) {
            bail!("{shown}: gateway {via} is the attachment's own address");
        }
        if fam.subnet.contains(arg.to.network()) && arg.to.prefix_len() >= fam.subnet.prefix_len() {
            bail!(
                "{shown}: {} is inside the attachment's own subnet {}, which is reached directly",
                arg.to,
                fam.subnet
            );
        }
        if out.iter().any(|r| r.to == arg.to) {
            bail!("{shown}: {} is given twice", arg.to);
        }
        out.push(Route { to: arg.to, via });
    }
    Ok(out)
}

/// Checks `--mtu` against the bridge: 68 (1280 with IPv6) up to the bridge's MTU.
pub fn check_mtu(mtu: u32, bridge: &str, bridge_mtu: u32, ipv6: bool) -> Result<u32> {
    let min = if ipv6 { MIN_MTU_V6 } else { MIN_MTU };
    if mtu < min || mtu > bridge_mtu {
        let why = if ipv6 {
            format!("{MIN_MTU_V6} because the attachment has IPv6")
        } else {
            MIN_MTU.to_string()
        };
        bail!(
            "--mtu {mtu} is outside {min}..{bridge_mtu} (from {why} up to the MTU of bridge {bridge}); give an MTU in that range"
        );
    }
    Ok(mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_only_unicast_ones_pass() {
        assert_eq!(
            "02:00:5E:10:00:01".parse::<Mac>().unwrap().to_string(),
            "02:00:5e:10:00:01"
        );
        assert_eq!(
            "2-0-5e-10-0-1".parse::<Mac>().unwrap().0,
            [2, 0, 0x5e, 0x10, 0, 1]
        );
        for (bad, why) in [
            ("01:00:5e:00:00:01", "multicast"),
            ("33:33:00:00:00:01", "multicast"),
            ("ff:ff:ff:ff:ff:ff", "broadcast"),
            ("00:00:00:00:00:00", "all-zero"),
            ("02:00:5e:10:00", "not a MAC"),
            ("02:00:5e:10:00:01:02", "not a MAC"),
            ("02:00:5e:10:00:zz", "not a MAC"),
            ("02:00:5e:10:00:123", "not a MAC"),
            ("02::5e:10:00:01", "not a MAC"),
            ("", "not a MAC"),
        ] {
            let err = bad.parse::<Mac>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn routes_parse_with_and_without_a_gateway() {
        let r: RouteArg = "10.9.0.0/16".parse().unwrap();
        assert_eq!((r.to.to_string(), r.via), ("10.9.0.0/16".into(), None));
        let r: RouteArg = "10.9.1.7/24@172.17.0.3".parse().unwrap();
        assert_eq!(r.to.to_string(), "10.9.1.0/24", "normalised to the network");
        assert_eq!(r.via, Some("172.17.0.3".parse().unwrap()));
        let r: RouteArg = "fd99::/48@fd00::1".parse().unwrap();
        assert!(r.to.is_ipv6());
        for (bad, why) in [
            ("10.9.0.0", "CIDR"),
            ("10.9.0.0/33", "larger than 32"),
            ("0.0.0.0/0", "--default-route"),
            ("::/0@fd00::1", "--default-route"),
            ("10.9.0.0/16@gw", "not an IP address"),
            ("10.9.0.0/16@fd00::1", "same family"),
            ("fd99::/48@172.17.0.1", "same family"),
            ("10.9.0.0/16@", "not an IP address"),
        ] {
            let err = bad.parse::<RouteArg>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn v4() -> Family {
        Family {
            subnet: "172.17.0.0/16".parse().unwrap(),
            gateway: Some("172.17.0.1".parse().unwrap()),
        }
    }

    fn args(list: &[&str]) -> Vec<RouteArg> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn routes_go_via_the_network_s_gateway_or_one_in_the_subnet() {
        let own = ["172.17.255.254".parse().unwrap()];
        let v6 = Family {
            subnet: "fd00::/64".parse().unwrap(),
            gateway: Some("fd00::1".parse().unwrap()),
        };
        let r = resolve_routes(
            &args(&[
                "10.9.0.0/16",
                "10.10.0.0/16@172.17.0.3",
                "fd99::/48",
                "172.0.0.0/8",
            ]),
            &own,
            v4(),
            Some(v6),
        )
        .unwrap();
        let shown: Vec<String> = r.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "10.9.0.0/16 via 172.17.0.1",
                "10.10.0.0/16 via 172.17.0.3",
                "fd99::/48 via fd00::1",
                "172.0.0.0/8 via 172.17.0.1"
            ]
        );
        for (bad, why) in [
            (
                "10.9.0.0/16@10.0.0.1",
                "outside the attachment's subnet 172.17.0.0/16",
            ),
            ("10.9.0.0/16@172.17.255.254", "own address"),
            ("172.17.5.0/24", "own subnet"),
            ("fd99::/48", "no IPv6 address"),
        ] {
            let err = resolve_routes(&args(&[bad]), &own, v4(), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = resolve_routes(&args(&["10.9.0.0/16", "10.9.0.0/16"]), &own, v4(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("given twice"), "{err}");
        let no_gw = Family {
            gateway: None,
            ..v4()
        };
        let err = resolve_routes(&args(&["10.9.0.0/16"]), &own, no_gw, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.9.0.0/16@GATEWAY"), "{err}");
    }

    #[test]
    fn a_re_attach_keeps_the_recorded_options_and_refuses_others() {
        let recorded = EndpointOpts {
            mac: Some("02:00:00:00:00:07".parse().unwrap()),
            mtu: Some(1400),
            routes: args(&["10.9.0.0/16@172.17.0.1"]),
        };
        let none = EndpointOpts::default();
        assert_eq!(none.carry_over(&recorded).unwrap(), recorded);
        let same = EndpointOpts {
            routes: args(&["10.9.0.0/16"]),
            ..recorded.clone()
        };
        assert_eq!(same.carry_over(&recorded).unwrap(), recorded);
        let other_mac = EndpointOpts {
            mac: Some("02:00:00:00:00:08".parse().unwrap()),
            ..none.clone()
        };
        let c = other_mac.carry_over(&recorded).unwrap_err();
        assert_eq!((c.option, c.had.as_str()), ("--mac", "02:00:00:00:00:07"));
        let other_mtu = EndpointOpts {
            mtu: Some(1300),
            ..none.clone()
        };
        assert_eq!(
            other_mtu.carry_over(&none).unwrap_err().had,
            "the network's MTU"
        );
        let more_routes = EndpointOpts {
            routes: args(&["10.9.0.0/16", "10.10.0.0/16"]),
            ..none.clone()
        };
        let c = more_routes.carry_over(&recorded).unwrap_err();
        assert_eq!(
            (c.option, c.had.as_str(), c.asked.as_str()),
            (
                "--route",
                "10.9.0.0/16@172.17.0.1",
                "10.9.0.0/16, 10.10.0.0/16"
            )
        );
    }

    #[test]
    fn mtu_range_is_68_or_1280_to_the_bridge_s() {
        assert_eq!(check_mtu(68, "docker0", 1500, false).unwrap(), 68);
        assert_eq!(check_mtu(1500, "docker0", 1500, false).unwrap(), 1500);
        let err = check_mtu(1501, "docker0", 1500, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--mtu 1501 is outside 68..1500") && err.contains("bridge docker0"),
            "{err}"
        );
        assert!(check_mtu(67, "docker0", 1500, false).is_err());
        let err = check_mtu(1000, "br-x", 9000, true).unwrap_err().to_string();
        assert!(
            err.contains("outside 1280..9000") && err.contains("IPv6"),
            "{err}"
        );
        assert!(check_mtu(9000, "br-x", 9000, true).is_ok());
    }
}
