//! Pure: the one record of an attachment. `attach` decides it (inside its plan), the lease store
//! keeps it (one JSON file per address), and `list`/`attach --json` print it. The addresses are a
//! typed IPv4 part and an optional IPv6 part; on the wire they stay the flat keys of the first
//! versions (`ip`, `prefix_len`, `gateway`, `ip6`, `prefix_len6`, `gateway6`), so lease files
//! written by any version read back and are written again byte for byte (tests/compat.rs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::endpoint::{EndpointOpts, Mac, Route, RouteArg};

/// The IPv4 address of an attachment: always there. On the wire: `ip`, `prefix_len`, `gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct V4Part {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// The IPv6 address of a dual-stack attachment. On the wire: `ip6`, `prefix_len6`, `gateway6`
/// (see [`v6_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Part {
    pub ip: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv6Addr>,
}

/// Serde adapter for an `Option<V6Part>` flattened into its record: the three keys `ip6`,
/// `prefix_len6` and `gateway6`, each left out when absent. Reading is lenient as every version
/// was: an `ip6` without `prefix_len6` is a /64, and a `gateway6` without `ip6` means nothing.
pub mod v6_keys {
    use super::*;

    #[derive(Serialize, Deserialize, Default)]
    struct Wire {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip6: Option<Ipv6Addr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_len6: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway6: Option<Ipv6Addr>,
    }

    pub fn serialize<S: serde::Serializer>(v: &Option<V6Part>, s: S) -> Result<S::Ok, S::Error> {
        let wire = match v {
            Some(p) => Wire {
                ip6: Some(p.ip),
                prefix_len6: Some(p.prefix_len),
                gateway6: p.gateway,
            },
            None => Wire::default(),
        };
        wire.serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<V6Part>, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(w.ip6.map(|ip| V6Part {
            ip,
            prefix_len: w.prefix_len6.unwrap_or(64),
            gateway: w.gateway6,
        }))
    }
}

/// One attachment: the address it holds and everything needed to undo it later. This is the
/// lease file's record, field for field and in this order (`lease::Lease` is this type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub container_name: String,
    pub network: String,
    pub network_id: String,
    pub bridge: String,
    #[serde(flatten)]
    pub v4: V4Part,
    /// The container interface's MAC: derived from the address (`02:42:` + its bytes) or
    /// `--mac`. Given again on re-attach (see [`Attachment::endpoint_opts`]).
    pub mac: String,
    pub host_ifname: String,
    pub ifname: String,
    pub netns_name: String,
    /// Pid whose namespace was attached, and that namespace's identity (st_dev, st_ino of
    /// /proc/<pid>/ns/net): a later command compares them so that it never acts on another
    /// process's namespace after the Pid is reused.
    pub pid: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    /// The path the netns link points at, for a namespace that is not a container's
    /// (`--netns`); empty for containers, whose path is /proc/<pid>/ns/net.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns_path: String,
    #[serde(flatten, with = "v6_keys")]
    pub v6: Option<V6Part>,
    /// Whether this attachment set the container's default route(s).
    #[serde(default)]
    pub default_route: bool,
    /// Name servers written to /etc/netns/<netns_name>/resolv.conf (`--dns`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    /// `--mtu`, when it was given (otherwise the network's MTU applies). Absent in older leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// `--route`s, each with the gateway it was resolved to. Absent in older leases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// False from the moment the address is reserved until every step of the attach is done:
    /// a lease left incomplete belongs to an attach that was killed, and is cleaned up by the
    /// next attach of that container or by `gc`.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
    /// Reserved for a container that was not running when it was attached (no namespace yet:
    /// `pid` and the namespace identity are 0). Its next start applies it (`watch`, or a plain
    /// `attach` once it runs); the address stays taken meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

fn complete_by_default() -> bool {
    true
}

impl Attachment {
    /// The namespace path this lease attached: /proc/<pid>/ns/net or the `--netns` path.
    pub fn netns_source(&self) -> PathBuf {
        if self.netns_path.is_empty() {
            crate::netns::proc_path(self.pid)
        } else {
            PathBuf::from(&self.netns_path)
        }
    }

    /// The endpoint options this lease was made with (`--mac`, `--mtu`, `--route`), as
    /// [`crate::attach::AttachOpts::endpoint`] takes them: whoever re-attaches from a lease sets
    /// `endpoint: lease.endpoint_opts()` and gets the same MAC, MTU and routes back. (A lease
    /// of an older version gives its derived MAC, no MTU and no routes: what it had.)
    pub fn endpoint_opts(&self) -> EndpointOpts {
        EndpointOpts {
            mac: self.mac.parse::<Mac>().ok(),
            mtu: self.mtu,
            routes: self.routes.iter().copied().map(RouteArg::from).collect(),
        }
    }

    pub fn netns_id(&self) -> crate::model::NsId {
        crate::model::NsId {
            dev: self.netns_dev,
            ino: self.netns_ino,
        }
    }

    /// The IPv6 address, if dual-stack.
    pub fn ip6(&self) -> Option<Ipv6Addr> {
        self.v6.map(|p| p.ip)
    }

    /// Whether `ip` is one of this attachment's addresses.
    pub fn holds(&self, ip: IpAddr) -> bool {
        IpAddr::V4(self.v4.ip) == ip || self.ip6().map(IpAddr::V6) == Some(ip)
    }
}

#[cfg(test)]
impl V6Part {
    /// `ip`/64 without a gateway, for unit tests.
    pub(crate) fn sample(ip: &str) -> V6Part {
        V6Part {
            ip: ip.parse().expect("test address"),
            prefix_len: 64,
            gateway: None,
        }
    }
}

#[cfg(test)]
impl Attachment {
    /// A plausible lease for unit tests; tests override the fields they care about.
    pub(crate) fn sample(container_id: &str, name: &str, ip: &str) -> Attachment {
        let ip: Ipv4Addr = ip.parse().expect("test address");
        Attachment {
            container_id: container_id.into(),
            container_name: name.into(),
            network: "bridge".into(),
            network_id: "n".into(),
            bridge: "docker0".into(),
            v4: V4Part {
                ip,
                prefix_len: 16,
                gateway: Ipv4Addr::new(172, 17, 0, 1),
            },
            mac: crate::plan::format_mac(crate::plan::mac_for(ip)),
            host_ifname: "vna01234567abcd".into(),
            ifname: "eth0".into(),
            netns_name: name.into(),
            pid: 1,
            netns_dev: 4,
            netns_ino: 5,
            netns_path: String::new(),
            v6: None,
            default_route: true,
            dns: vec![],
            mtu: None,
            routes: vec![],
            complete: true,
            pending: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(a: &Attachment) -> String {
        serde_json::to_string(a).unwrap()
    }

    #[test]
    fn the_parts_are_flat_keys_in_the_old_order() {
        let mut a = Attachment::sample("c", "web", "172.17.0.9");
        assert!(json(&a).contains(r#""bridge":"docker0","ip":"172.17.0.9","prefix_len":16,"gateway":"172.17.0.1","mac""#), "{}", json(&a));
        assert!(!json(&a).contains("ip6"));
        a.netns_path = "/run/netns/x".into();
        a.v6 = Some(V6Part {
            ip: "fd00::9".parse().unwrap(),
            prefix_len: 64,
            gateway: None,
        });
        assert!(
            json(&a).contains(
                r#""netns_path":"/run/netns/x","ip6":"fd00::9","prefix_len6":64,"default_route""#
            ),
            "{}",
            json(&a)
        );
        let back: Attachment = serde_json::from_str(&json(&a)).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn an_ip6_without_its_prefix_is_a_64_and_a_lone_gateway6_is_ignored() {
        let a = Attachment::sample("c", "web", "172.17.0.9");
        let text = json(&a).replace(r#""netns_ino":5"#, r#""netns_ino":5,"ip6":"fd00::9""#);
        let back: Attachment = serde_json::from_str(&text).unwrap();
        assert_eq!(back.v6.map(|p| p.prefix_len), Some(64));
        let text = json(&a).replace(r#""netns_ino":5"#, r#""netns_ino":5,"gateway6":"fd00::1""#);
        let back: Attachment = serde_json::from_str(&text).unwrap();
        assert_eq!(back.v6, None);
    }
}
