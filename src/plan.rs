//! Pure: the names, address and settings of one attachment, decided before any side effect.
//! `--dry-run` prints this plan; `attach` executes it.

use std::fmt;
use std::net::Ipv4Addr;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::ipam::Subnet;

/// Every host-side interface we create starts with this, so `gc` and people can tell ours apart.
pub const HOST_IFNAME_PREFIX: &str = "vna";
/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const IFNAMSIZ_MAX: usize = 15;

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
    pub mac: String,
    pub mtu: u32,
    pub host_ifname: String,
    pub ifname: String,
    pub netns_name: String,
    pub pid: u32,
    /// Whether the container gets a default route via the gateway.
    pub default_route: bool,
}

impl AttachPlan {
    pub fn subnet(&self) -> Subnet {
        // prefix_len comes from a parsed Subnet, so it is at most 32.
        Subnet::new(self.ip, self.prefix_len).expect("prefix length validated when parsed")
    }

    pub fn mac_bytes(&self) -> [u8; 6] {
        mac_for(self.ip)
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
        writeln!(
            f,
            "network     {} (bridge {}, subnet {}, mtu {})",
            self.network,
            self.bridge,
            self.subnet(),
            self.mtu
        )?;
        writeln!(f, "address     {}/{}", self.ip, self.prefix_len)?;
        let route = if self.default_route {
            "default route"
        } else {
            "no default route"
        };
        writeln!(f, "gateway     {} ({route})", self.gateway)?;
        writeln!(f, "mac         {}", self.mac)?;
        writeln!(
            f,
            "veth        {} (host, on {}) <-> {} (in the container)",
            self.host_ifname, self.bridge, self.ifname
        )?;
        write!(
            f,
            "netns link  /var/run/netns/{} -> /proc/{}/ns/net",
            self.netns_name, self.pid
        )
    }
}

/// Docker's classic MAC scheme: `02:42:` followed by the four IPv4 bytes. Stable across
/// re-attach, so neighbours never hold a stale entry for the address.
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

/// A kernel interface name: 1..=15 bytes, not `.`/`..`, no `/`, `:` or white space.
pub fn validate_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX {
        bail!(
            "interface name '{name}' must be 1 to {IFNAMSIZ_MAX} bytes long; choose a shorter --ifname"
        );
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        bail!("interface name '{name}' may not be '.', '..' or contain '/', ':' or spaces");
    }
    Ok(())
}

/// A name under /var/run/netns: a single path component of at most 64 bytes.
pub fn validate_netns_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() || name.len() > 64 || name == "." || name == ".." || !ok_chars {
        bail!(
            "netns name '{name}' is not usable: use 1 to 64 characters from [A-Za-z0-9_.-], not '.' or '..' (set --netns-name)"
        );
    }
    Ok(())
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
        validate_ifname(&a).unwrap();
    }

    #[test]
    fn interface_and_netns_names_are_validated() {
        for good in ["eth0", "eth1", "a", "fifteen-bytes-x"] {
            validate_ifname(good).unwrap();
        }
        for bad in ["", "sixteen-bytes-xx", ".", "..", "a/b", "a:b", "a b"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
        for good in ["web", "my-net_ns.1"] {
            validate_netns_name(good).unwrap();
        }
        let long = "x".repeat(65);
        for bad in ["", ".", "..", "../etc", "a/b", "a b", long.as_str()] {
            assert!(validate_netns_name(bad).is_err(), "{bad:?}");
        }
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
            mac: "02:42:ac:11:ff:fe".into(),
            mtu: 1500,
            host_ifname: "vna01234567abcd".into(),
            ifname: "eth0".into(),
            netns_name: "web".into(),
            pid: 42,
            default_route: true,
        };
        let text = p.to_string();
        for want in [
            "web (0123456789ab)",
            "172.17.255.254/16",
            "subnet 172.17.0.0/16",
            "vna01234567abcd",
            "/var/run/netns/web -> /proc/42/ns/net",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
