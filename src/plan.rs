//! Pure: the names, address and settings of one attachment, decided before any side effect.
//! `--dry-run` prints this plan; `attach` executes it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::Serialize;

use crate::endpoint::{Mac, Route};
use crate::ipam::Subnet;

/// Every host-side interface we create starts with this, so `gc` and people can tell ours apart.
pub const HOST_IFNAME_PREFIX: &str = "vna";
pub use crate::names::IFNAMSIZ_MAX;

/// Everything `attach` will do, decided up front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachPlan {
    pub container_id: String,
    pub container_name: String,
    pub network: String,
    pub network_id: String,
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_len6: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// The container interface's MAC: `02:42:` + the IPv4 bytes, or `--mac`.
    pub mac: Mac,
    /// The veth's MTU: the network's, or `--mtu`.
    pub mtu: u32,
    /// `--mtu` set it (so the lease records it and a re-attach applies it again).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mtu_fixed: bool,
    /// `--route`s, added inside the container after the address (and default route).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    pub host_ifname: String,
    pub ifname: String,
    pub netns_name: String,
    /// What the netns link points at: /proc/<pid>/ns/net, or the `--netns` path.
    pub netns_source: PathBuf,
    /// Pid of the container (0 for a `--netns` target).
    pub pid: u32,
    /// Whether the container gets default route(s) via the gateway(s).
    pub default_route: bool,
    /// Name servers for /etc/netns/<netns_name>/resolv.conf.
    pub dns: Vec<IpAddr>,
    /// `--bridge` named a bridge that does not exist yet: create it with the gateway address.
    pub create_bridge: bool,
}

impl AttachPlan {
    pub fn mac_bytes(&self) -> [u8; 6] {
        self.mac.0
    }

    /// The same steps as `ip` commands (for `--dry-run --explain` and the docs).
    pub fn explain(&self) -> String {
        let ns = &self.netns_name;
        let mut out = Vec::new();
        if self.create_bridge {
            out.push(format!(
                "ip link add {} address {} type bridge",
                self.bridge,
                format_mac(mac_for(self.gateway))
            ));
            out.push(format!(
                "ip addr add {}/{} dev {}",
                self.gateway, self.prefix_len, self.bridge
            ));
            out.push(format!("ip link set {} up", self.bridge));
        }
        out.push("mkdir -p /var/run/netns".to_string());
        out.push(format!(
            "ln -sfT {} /var/run/netns/{ns}",
            self.netns_source.display()
        ));
        out.push(format!(
            "ip link add {} mtu {} master {} up type veth peer name {} mtu {} address {} netns {ns}",
            self.host_ifname, self.mtu, self.bridge, self.ifname, self.mtu, self.mac
        ));
        out.push(format!(
            "ip link set {} alias {}",
            self.host_ifname, self.container_id
        ));
        let x = format!("ip netns exec {ns}");
        out.push(format!(
            "{x} sysctl -qw net.ipv4.conf.{}.arp_notify=1",
            self.ifname
        ));
        out.push(format!(
            "{x} sysctl -qw net.ipv6.conf.{}.disable_ipv6={}",
            self.ifname,
            u8::from(self.ip6.is_none())
        ));
        if self.ip6.is_some() {
            out.push(format!(
                "{x} sysctl -qw net.ipv6.conf.{}.accept_dad=0",
                self.ifname
            ));
        }
        out.push(format!(
            "ip -n {ns} addr add {}/{} dev {}",
            self.ip, self.prefix_len, self.ifname
        ));
        if let (Some(ip6), Some(len)) = (self.ip6, self.prefix_len6) {
            out.push(format!(
                "ip -n {ns} addr add {ip6}/{len} dev {} nodad",
                self.ifname
            ));
        }
        out.push(format!("ip -n {ns} link set lo up"));
        out.push(format!(
            "ip -n {ns} link set {} up    # arp_notify: the kernel announces {} now",
            self.ifname, self.ip
        ));
        if self.default_route {
            out.push(format!(
                "ip -n {ns} route add default via {} dev {}",
                self.gateway, self.ifname
            ));
            if let Some(gw6) = self.gateway6 {
                out.push(format!(
                    "ip -n {ns} -6 route add default via {gw6} dev {}",
                    self.ifname
                ));
            }
        }
        for r in &self.routes {
            let family = if r.to.is_ipv6() { " -6" } else { "" };
            out.push(format!(
                "ip -n {ns}{family} route add {} via {} dev {}",
                r.to, r.via, self.ifname
            ));
        }
        if !self.dns.is_empty() {
            let lines: Vec<String> = self.dns.iter().map(|d| format!("nameserver {d}")).collect();
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
        writeln!(
            f,
            "container   {} ({})",
            self.container_name,
            short_id(&self.container_id)
        )?;
        let created = if self.create_bridge {
            ", to be created"
        } else {
            ""
        };
        writeln!(
            f,
            "network     {} (bridge {}{created}, subnet {}, mtu {})",
            self.network,
            self.bridge,
            Subnet::new(IpAddr::V4(self.ip), self.prefix_len)
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e),
            self.mtu
        )?;
        writeln!(f, "address     {}/{}", self.ip, self.prefix_len)?;
        let route = if self.default_route {
            "default route"
        } else {
            "no default route"
        };
        writeln!(f, "gateway     {} ({route})", self.gateway)?;
        if let (Some(ip6), Some(len)) = (self.ip6, self.prefix_len6) {
            let gw6 = self
                .gateway6
                .map(|g| g.to_string())
                .unwrap_or("none".into());
            writeln!(f, "address6    {ip6}/{len} (gateway {gw6})")?;
        }
        writeln!(f, "mac         {}", self.mac)?;
        if self.mtu_fixed {
            writeln!(f, "mtu         {} (--mtu)", self.mtu)?;
        }
        for r in &self.routes {
            writeln!(f, "route       {r}")?;
        }
        writeln!(
            f,
            "veth        {} (host, on {}) <-> {} (in the container)",
            self.host_ifname, self.bridge, self.ifname
        )?;
        if !self.dns.is_empty() {
            let dns: Vec<String> = self.dns.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "dns         {} in /etc/netns/{}/resolv.conf",
                dns.join(", "),
                self.netns_name
            )?;
        }
        write!(
            f,
            "netns link  /var/run/netns/{} -> {}",
            self.netns_name,
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
            container_id: "0123456789abcdef".into(),
            container_name: "web".into(),
            network: "bridge".into(),
            network_id: "n".into(),
            bridge: "docker0".into(),
            ip: "172.17.255.254".parse().unwrap(),
            prefix_len: 16,
            gateway: "172.17.0.1".parse().unwrap(),
            mac: Mac([0x02, 0x42, 0xac, 0x11, 0xff, 0xfe]),
            mtu: 1500,
            mtu_fixed: false,
            routes: vec![Route {
                to: "10.9.0.0/16".parse().unwrap(),
                via: "172.17.0.1".parse().unwrap(),
            }],
            host_ifname: "vna01234567abcd".into(),
            ifname: "eth0".into(),
            netns_name: "web".into(),
            netns_source: "/proc/42/ns/net".into(),
            pid: 42,
            default_route: true,
            ip6: None,
            prefix_len6: None,
            gateway6: None,
            dns: vec![],
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

    #[test]
    fn netns_target_ids_are_hex_and_distinct() {
        let a = netns_target_id(4, 4026532001);
        let b = netns_target_id(4, 4026532002);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a[..8], b[..8]);
    }
}
