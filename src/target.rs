//! What gets attached: a running Docker container, or (`--netns`) a network namespace by name
//! or path. Side effects: opens the namespace (read only).

use anyhow::{Result, bail};

use crate::docker::ContainerInfo;
use crate::netns::Netns;
use crate::plan;

pub struct Target {
    /// Docker's container ID, or a 64-hex ID derived from the namespace identity.
    pub id: String,
    pub name: String,
    /// The container's Pid (0 for a `--netns` target).
    pub pid: u32,
    pub ns: Netns,
    /// Whether we own its networking: a container with network mode `none`, or a namespace.
    pub bare: bool,
    /// Docker networks the container is on (they use eth0..ethN-1).
    pub docker_networks: usize,
    pub is_container: bool,
}

impl Target {
    /// A running container whose networking we may extend. `ifname_given`: a container with
    /// Docker networking needs an explicit `--ifname`.
    pub fn container(c: ContainerInfo, ifname_given: bool) -> Result<Self> {
        if !c.running {
            bail!(
                "container '{}' is not running; start it with `docker start {}`",
                c.name,
                c.name
            );
        }
        let bare = check_mode(&c, ifname_given)?;
        let ns = Netns::of_pid(c.pid, &c.name)?;
        Ok(Target {
            id: c.id,
            name: c.name,
            pid: c.pid,
            ns,
            bare,
            docker_networks: if bare { 0 } else { c.docker_networks.max(1) },
            is_container: true,
        })
    }

    /// A namespace by name (/var/run/netns/NAME) or path.
    pub fn netns(name_or_path: &str) -> Result<Self> {
        let ns = Netns::open(name_or_path)?;
        let name = if name_or_path.contains('/') {
            format!("ns-{}", ns.id.ino)
        } else {
            name_or_path.to_string()
        };
        Ok(Target {
            id: plan::netns_target_id(ns.id.dev, ns.id.ino),
            name,
            pid: 0,
            ns,
            bare: true,
            docker_networks: 0,
            is_container: false,
        })
    }
}

/// Whether a container's network mode lets us add an interface (running or not): `Ok(true)`
/// for a bare (`none`) container, `Ok(false)` for one on Docker networks given `--ifname`.
pub fn check_mode(c: &ContainerInfo, ifname_given: bool) -> Result<bool> {
    if c.network_mode.starts_with("container:") || c.network_mode == "host" {
        bail!(
            "container '{}' uses network mode '{}' and has no network namespace of its own; attach the container that owns the namespace",
            c.name,
            c.network_mode
        );
    }
    let bare = c.network_mode == "none";
    if !bare && !ifname_given {
        bail!(
            "container '{}' uses network mode '{}', not 'none'; use `docker network connect` for Docker networks, or pass --ifname eth1 to add another interface",
            c.name,
            c.network_mode
        );
    }
    Ok(bare)
}
