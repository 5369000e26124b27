//! The model: plain data about containers, networks, namespaces, interfaces and taken addresses,
//! shared by the pure decisions (address, plan, owner, the attach and gc decisions) and the
//! adapters that fill it in (docker.rs, netns.rs, link.rs, the lease store). No I/O, no
//! adapter imports: pure modules take these types from here, never from an adapter.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::ipam::Subnet;

/// What we need to know about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    /// Without Docker's leading '/'.
    pub name: String,
    pub running: bool,
    pub pid: u32,
    pub network_mode: String,
    /// How many Docker networks the container is connected to (its eth0..ethN-1).
    pub docker_networks: usize,
}

/// One subnet of a network, as Docker's IPAM describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetConfig {
    pub subnet: Subnet,
    pub gateway: Option<IpAddr>,
    /// Docker's `IPRange` (`fixed-cidr`): where Docker's own allocator works.
    pub ip_range: Option<Subnet>,
    /// Aux addresses: reserved, never handed out.
    pub aux: Vec<IpAddr>,
}

/// An address Docker gave a container on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// The container's name, as `docker network inspect` shows it.
    pub container: String,
}

/// What we need to know about a network: a Docker bridge network, or (with `--bridge`) a
/// Linux bridge outside Docker, described the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// A name for the lease directory: Docker's network ID, or `bridge-<name>`.
    pub id: String,
    pub name: String,
    pub bridge: String,
    /// IPv4 subnets in Docker's order; at least one.
    pub v4: Vec<SubnetConfig>,
    /// IPv6 subnets, only when the network has IPv6 enabled.
    pub v6: Vec<SubnetConfig>,
    pub mtu: Option<u32>,
    /// Docker's own endpoints on this network (both families).
    pub endpoints: Vec<Endpoint>,
    /// Inter-container communication allowed (`enable_icc`, default true).
    pub icc: bool,
    /// Outbound NAT set up by Docker (`enable_ip_masquerade`, default true).
    pub masquerade: bool,
}

/// Addresses taken on one network, per family (keys of `ipam::key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    pub v4: BTreeSet<u128>,
    pub v6: BTreeSet<u128>,
}

/// Identity of a network namespace: (st_dev, st_ino) of its nsfs inode. Unlike a Pid it is
/// never reused while anything refers to the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

/// The facts about an interface that we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub alias: Option<String>,
    pub controller: Option<u32>,
    /// Link kind `veth` (IFLA_INFO_KIND): the only kind this tool ever creates on the host.
    pub veth: bool,
    /// A veth's other end (IFLA_LINK, IFLA_LINK_NETNSID).
    pub peer: Option<Peer>,
}

/// The other end of a veth: its index in its namespace, and that namespace's ID as this one
/// knows it (`None`: the same namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub index: u32,
    pub nsid: Option<i32>,
}

impl Iface {
    /// Whether this host end (found under the exact, deterministic name) belongs to
    /// `container_id`: a veth that carries the ID as alias, or no alias at all when `unnamed_ok`
    /// — an attach killed between creating the pair and naming it (the kernel ignores the alias
    /// in the creating request).
    pub fn belongs_to(&self, container_id: &str, unnamed_ok: bool) -> bool {
        self.veth
            && match self.alias.as_deref() {
                None | Some("") => unnamed_ok,
                Some(a) => a == container_id,
            }
    }
}
