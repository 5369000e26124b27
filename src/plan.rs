//! Pure: the names, address and settings of one attachment, decided before any side effect.
//! `--dry-run` prints this plan; `attach` executes it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::attachment::Attachment as Lease;
use crate::attachment::{V4Part, V6Part, v6_keys};
use crate::endpoint::{Mac, Route};
use crate::ipam::Subnet;

/// Every host-side interface we create starts with this, so `gc` and people can tell ours apart.
pub const HOST_IFNAME_PREFIX: &str = "vna";
pub use crate::names::IFNAMSIZ_MAX;

/// Everything `attach` will do, decided up front: the record the lease will hold, and the
/// decisions that only the attach itself needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachPlan {
    /// The attachment as its lease records it (`complete: false` until every step is done).
    pub lease: Lease,
    /// The veth's MTU: the network's, or `--mtu` (which the lease records as `mtu`).
    pub mtu: u32,
    /// What the netns link points at: /proc/<pid>/ns/net, or the `--netns` path.
    pub netns_source: PathBuf,
    /// `--bridge` named a bridge that does not exist yet: create it with the gateway address.
    pub create_bridge: bool,
}

/// The JSON of a plan (`attach --dry-run --json` shows the keys the attach record lacks):
/// these keys in this order, as in every version.
#[derive(Serialize)]
struct PlanJson<'a> {
    container_id: &'a str,
    container_name: &'a str,
    network: &'a str,
    network_id: &'a str,
    bridge: &'a str,
    #[serde(flatten)]
    v4: V4Part,
    #[serde(flatten, with = "v6_keys")]
    v6: Option<V6Part>,
    mac: &'a str,
    mtu: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mtu_fixed: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    routes: &'a [Route],
    host_ifname: &'a str,
    ifname: &'a str,
    netns_name: &'a str,
    netns_source: &'a Path,
    pid: u32,
    default_route: bool,
    dns: &'a [IpAddr],
    create_bridge: bool,
}

impl Serialize for AttachPlan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let l = &self.lease;
        PlanJson {
            container_id: &l.container_id,
            container_name: &l.container_name,
            network: &l.network,
            network_id: &l.network_id,
            bridge: &l.bridge,
            v4: l.v4,
            v6: l.v6,
            mac: &l.mac,
            mtu: self.mtu,
            mtu_fixed: l.mtu.is_some(),
            routes: &l.routes,
            host_ifname: &l.host_ifname,
            ifname: &l.ifname,
            netns_name: &l.netns_name,
            netns_source: &self.netns_source,
            pid: l.pid,
            default_route: l.default_route,
            dns: &l.dns,
            create_bridge: self.create_bridge,
        }
        .serialize(s)
    }
}

impl AttachPlan {
    /// The container interface's MAC, as bytes.
    pub fn mac_bytes(&self) -> anyhow::Result<[u8; 6]> {
        let mac: Mac = self
            .lease
            .mac
            .parse()
            .map_err(|e| anyhow::anyhow!("mac: {e}"))?;
        Ok(mac.0)
    }

    /// The same steps as `ip` commands (for `--dry-run --explain` and the docs).
    pub fn explain(&self) -> String {
        let l = &self.lease;
        let ns = &l.netns_name;
        let mut out = Vec::new();
        if self.create_bridge {
            out.push(format!(
                "ip link add {} address {} type bridge",
                l.bridge,
                format_mac(mac_for(l.v4.gateway))
            ));
            out.push(format!(
                "ip addr add {}/{} dev {}",
                l.v4.gateway, l.v4.prefix_len, l.bridge
            ));
            out.push(format!("ip link set {} up", l.bridge));
        }
        out.push("mkdir -p /var/run/netns".to_string());
        out.push(format!(
            "ln -sfT {} /var/run/netns/{ns}",
            self.netns_source.display()
        ));
        out.push(format!(
            "ip link add {} mtu {} master {} up type veth peer name {} mtu {} address {} netns {ns}",
            l.host_ifname, self.mtu, l.bridge, l.ifname, self.mtu, l.mac
        ));
        out.push(format!(
            "ip link set {} alias {}",
            l.host_ifname, l.container_id
        ));
        let x = format!("ip netns exec {ns}");
        out.push(format!(
            "{x} sysctl -qw net.ipv4.conf.{}.arp_notify=1",
            l.ifname
        ));
        out.push(format!(
            "{x} sysctl -qw net.ipv6.conf.{}.disable_ipv6={}",
            l.ifname,
            u8::from(l.v6.is_none())
        ));
        if l.v6.is_some() {
            out.push(format!(
                "{x} sysctl -qw net.ipv6.conf.{}.accept_dad=0",
                l.ifname
            ));
        }
        out.push(format!(
            "ip -n {ns} addr add {}/{} dev {}",
            l.v4.ip, l.v4.prefix_len, l.ifname
        ));
        if let Some(V6Part {
            ip: ip6,
            prefix_len: len,
            ..
        }) = l.v6
        {
            out.push(format!(
                "ip -n {ns} addr add {ip6}/{len} dev {} nodad",
                l.ifname
            ));
        }
        out.push(format!("ip -n {ns} link set lo up"));
        out.push(format!(
            "ip -n {ns} link set {} up    # arp_notify: the kernel announces {} now",
            l.ifname, l.v4.ip
        ));
        if l.default_route {
            out.push(format!(
                "ip -n {ns} route add default via {} dev {}",
                l.v4.gateway, l.ifname
            ));
            if let Some(gw6) = l.v6.and_then(|v| v.gateway) {
                out.push(format!(
                    "ip -n {ns} -6 route add default via {gw6} dev {}",
                    l.ifname
                ));
            }
        }
        for r in &l.routes {
            let family = if r.to.is_ipv6() { " -6" } else { "" };
            out.push(format!(
                "ip -n {ns}{family} route add {} via {} dev {}",
                r.to, r.via, l.ifname
            ));
        }
        if !l.dns.is_empty() {
            let lines: Vec<String> = l.dns.iter().map(|d| format!("nameserver {d}")).collect();
            out.push(format!(
                "mkdir -p /etc/netns/{ns} && printf '{}\\n' > /etc/netns/{ns}/resolv.conf",
                lines.join("\\n")
            ));
        }
        out.join("\n")
    }
}

impl fmt::Display for AttachPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.lease;
        writeln!(
            f,
            "container   {} ({})",
            l.container_name,
            short_id(&l.container_id)
        )?;
        let created = if self.create_bridge {
            ", to be created"
        } else {
            ""
        };
        writeln!(
            f,
            "network     {} (bridge {}{created}, subnet {}, mtu {})",
            l.network,
            l.bridge,
            Subnet::new(IpAddr::V4(l.v4.ip), l.v4.prefix_len)
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e),
            self.mtu
        )?;
        writeln!(f, "address     {}/{}", l.v4.ip, l.v4.prefix_len)?;
        let route = if l.default_route {
            "default route"
        } else {
            "no default route"
        };
        writeln!(f, "gateway     {} ({route})", l.v4.gateway)?;
        if let Some(V6Part {
            ip: ip6,
            prefix_len: len,
            gateway: gateway6,
        }) = l.v6
        {
            let gw6 = gateway6.map(|g| g.to_string()).unwrap_or("none".into());
            writeln!(f, "address6    {ip6}/{len} (gateway {gw6})")?;
        }
        writeln!(f, "mac         {}", l.mac)?;
        if l.mtu.is_some() {
            writeln!(f, "mtu         {} (--mtu)", self.mtu)?;
        }
        for r in &l.routes {
            writeln!(f, "route       {r}")?;
        }
        writeln!(
            f,
            "veth        {} (host, on {}) <-> {} (in the container)",
            l.host_ifname, l.bridge, l.ifname
        )?;
        if !l.dns.is_empty() {
            let dns: Vec<String> = l.dns.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "dns         {} in /etc/netns/{}/resolv.conf",
                dns.join(", "),
                l.netns_name
            )?;
        }
        write!(
            f,
            "netns link  /var/run/netns/{} -> {}",
            l.netns_name,
            self.netns_source.display()
        )
    }
}

/// An ID for a namespace that is not a container's (`--netns`): 64 hex digits from its
/// identity, so that host interface names and leases work as for containers.
pub fn netns_target_id(dev: u64, ino: u64) -> String {
    let h = fnv1a(format!("netns:{dev}:{ino}").as_bytes());
    format!("{h:08x}{:056x}", u128::from(dev) << 64 | u128::from(ino))
}

/// Whether `id` is one [`netns_target_id`] makes (its hash matches the device and inode it
/// carries); a Docker container ID passes by chance once in 2^32.
pub fn is_netns_target_id(id: &str) -> bool {
    id.len() == 64
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && u128::from_str_radix(&id[8..], 16)
            .is_ok_and(|n| netns_target_id((n >> 64) as u64, n as u64) == id)
}

/// Docker's classic MAC scheme: `02:42:` followed by the four IPv4 bytes. Stable across
/// re-attach and across holders of an address, so neighbours never hold a stale entry for it.
/// The default for that reason; `--mac` replaces it and then relies on the announcement (see
/// `link::Rtnl::configure_inside`).
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Host end of the veth: `vna` + 8 hex digits of the container ID + 4 hex digits of a hash of
/// the network and the interface name inside. Exactly 15 bytes, deterministic, ours by prefix.
pub fn host_ifname(container_id: &str, network_id: &str, ifname: &str) -> String {
    let id: String = container_id.chars().take(8).collect();
    let tag = fnv1a(format!("{network_id}/{ifname}").as_bytes()) & 0xffff;
    format!("{HOST_IFNAME_PREFIX}{id}{tag:04x}")
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_follows_docker_classic_scheme() {
        assert_eq!(
            format_mac(mac_for("172.17.0.110".parse().unwrap())),
            "02:42:ac:11:00:6e"
        );
    }

    #[test]
    fn host_ifname_is_15_bytes_deterministic_and_distinct() {
        let id = "4f1c2d3e5a6b7c8d9e0f4f1c2d3e5a6b7c8d9e0f4f1c2d3e5a6b7c8d9e0f1234";
        let a = host_ifname(id, "net1", "eth0");
        assert_eq!(a.len(), IFNAMSIZ_MAX);
        assert!(a.starts_with("vna4f1c2d3e"));
        assert_eq!(a, host_ifname(id, "net1", "eth0"));
        assert_ne!(a, host_ifname(id, "net1", "eth1"));
        assert_ne!(a, host_ifname(id, "net2", "eth0"));
        crate::names::validate_ifname(&a).unwrap();
    }

    #[test]
    fn plan_prints_every_decision() {
        let p = AttachPlan {
            lease: Lease {
                container_id: "0123456789abcdef".into(),
                host_ifname: "vna01234567abcd".into(),
                mac: "02:42:ac:11:ff:fe".into(),
                pid: 42,
                routes: vec![Route {
                    to: "10.9.0.0/16".parse().unwrap(),
                    via: "172.17.0.1".parse().unwrap(),
                }],
                ..Lease::sample("0123456789abcdef", "web", "172.17.255.254")
            },
            mtu: 1500,
            netns_source: "/proc/42/ns/net".into(),
            create_bridge: false,
        };
        let text = p.to_string();
        for want in [
            "web (0123456789ab)",
            "172.17.255.254/16",
            "subnet 172.17.0.0/16",
            "vna01234567abcd",
            "/var/run/netns/web -> /proc/42/ns/net",
            "route       10.9.0.0/16 via 172.17.0.1",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        let ip = p.explain();
        for want in [
            "ln -sfT /proc/42/ns/net /var/run/netns/web",
            "type veth peer name eth0 mtu 1500 address 02:42:ac:11:ff:fe netns web",
            "ip -n web addr add 172.17.255.254/16 dev eth0",
            "ip -n web route add default via 172.17.0.1 dev eth0",
            "ip -n web route add 10.9.0.0/16 via 172.17.0.1 dev eth0",
        ] {
            assert!(ip.contains(want), "{want} missing from\n{ip}");
        }
    }

    /// The keys and their order of `AttachPlan`'s JSON before the record got its typed parts
    /// (the flat struct's field order, with its skip rules).
    #[test]
    fn plan_json_keeps_its_keys_and_order() {
        let mut p = AttachPlan {
            lease: Lease {
                pid: 42,
                ..Lease::sample("0123456789abcdef", "web", "172.17.255.254")
            },
            mtu: 1500,
            netns_source: "/proc/42/ns/net".into(),
            create_bridge: false,
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"container_id":"0123456789abcdef","container_name":"web","network":"bridge","network_id":"n","bridge":"docker0","ip":"172.17.255.254","prefix_len":16,"gateway":"172.17.0.1","mac":"02:42:ac:11:ff:fe","mtu":1500,"host_ifname":"vna01234567abcd","ifname":"eth0","netns_name":"web","netns_source":"/proc/42/ns/net","pid":42,"default_route":true,"dns":[],"create_bridge":false}"#
        );
        p.lease.v6 = Some(V6Part {
            ip: "fd00::9".parse().unwrap(),
            prefix_len: 64,
            gateway: Some("fd00::1".parse().unwrap()),
        });
        p.lease.mtu = Some(1400);
        p.mtu = 1400;
        p.lease.routes = vec![Route {
            to: "10.9.0.0/16".parse().unwrap(),
            via: "172.17.0.1".parse().unwrap(),
        }];
        p.lease.dns = vec!["10.0.0.53".parse().unwrap()];
        p.create_bridge = true;
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"container_id":"0123456789abcdef","container_name":"web","network":"bridge","network_id":"n","bridge":"docker0","ip":"172.17.255.254","prefix_len":16,"gateway":"172.17.0.1","ip6":"fd00::9","prefix_len6":64,"gateway6":"fd00::1","mac":"02:42:ac:11:ff:fe","mtu":1400,"mtu_fixed":true,"routes":[{"to":"10.9.0.0/16","via":"172.17.0.1"}],"host_ifname":"vna01234567abcd","ifname":"eth0","netns_name":"web","netns_source":"/proc/42/ns/net","pid":42,"default_route":true,"dns":["10.0.0.53"],"create_bridge":true}"#
        );
    }

    #[test]
    fn netns_target_ids_are_hex_and_distinct() {
        let a = netns_target_id(4, 4026532001);
        let b = netns_target_id(4, 4026532002);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a[..8], b[..8]);
        assert!(is_netns_target_id(&a) && is_netns_target_id(&b));
        let docker = "97d44cbab2576f0143b1d64376ff3da814a018b6772a72a97a2dabc0e9fc1feb";
        assert!(!is_netns_target_id(docker));
        assert!(!is_netns_target_id(&a[..63]) && !is_netns_target_id("é"));
        assert!(!is_netns_target_id(&format!("{}é", &a[..62])));
    }
}
