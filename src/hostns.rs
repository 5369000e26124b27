//! Running in the host's network namespace. Side effect: `setns(2)` of the calling thread into
//! /proc/1/ns/net when the process was started in another one (a container run with
//! `--pid=host` but without `--network=host`).
//!
//! Call [`enter`] on the main thread before any other thread, runtime or netlink socket exists:
//! a thread inherits the namespace of the thread that creates it, and a socket keeps the one it
//! was created in. Sockets opened *before* (the daemon's HTTP listener) stay where they were
//! opened, which is what `docker run -p 4000:80` needs.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};

use crate::docker::DockerClient;
use crate::lease::Lease;
use crate::link::Rtnl;
use crate::netns;

const INIT_NETNS: &str = "/proc/1/ns/net";

/// What [`enter`] found, for the checks made later in the same process.
static PLACEMENT: OnceLock<Placement> = OnceLock::new();

/// Where [`enter`] left this process (`Unknown` when it was not called).
pub fn placement() -> Placement {
    PLACEMENT.get().copied().unwrap_or(Placement::Unknown)
}

/// Where the process does its network work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It already shares the namespace of PID 1 (the host's, unless PID 1 is the container's
    /// own init: [`check_bridge`] catches that case).
    Same,
    /// It entered PID 1's namespace through /proc/1/ns/net.
    Entered,
    /// PID 1's namespace cannot be inspected (ptrace access denied), so it stays where it is.
    Unknown,
}

/// Makes the calling thread (and every thread it creates later) work in PID 1's namespace.
pub fn enter() -> Result<Placement> {
    let placement = enter_init()?;
    let _ = PLACEMENT.set(placement);
    Ok(placement)
}

fn enter_init() -> Result<Placement> {
    let own = netns::id_of(Path::new("/proc/thread-self/ns/net"))
        .ok_or_else(|| anyhow!("cannot read /proc/thread-self/ns/net; is /proc mounted?"))?;
    // PID 1 may be out of reach (a process without CAP_SYS_PTRACE next to an init holding more
    // capabilities): then nothing can be compared, and the bridge check decides.
    let Some(init) = netns::id_of(Path::new(INIT_NETNS)) else {
        tracing::debug!("cannot read {INIT_NETNS}; assuming this is the host network namespace");
        return Ok(Placement::Unknown);
    };
    if own == init {
        return Ok(Placement::Same);
    }
    let file = File::open(crate::procroot::host_view(Path::new(INIT_NETNS)))
        .map_err(|e| anyhow!("cannot open {INIT_NETNS}: {e}"))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
        anyhow!(
            "this process is not in the host network namespace and cannot enter {INIT_NETNS}: {e}; run it with --network=host, or with --pid=host and CAP_SYS_ADMIN"
        )
    })?;
    Ok(Placement::Entered)
}

/// The sentence to show when the bridge of Docker's default network is not visible: the
/// process is in some container's namespace, not the host's.
pub fn not_host_reason(bridge: &str, placement: Placement) -> String {
    let how = match placement {
        Placement::Unknown => format!(
            "and it may not inspect {INIT_NETNS} to enter the host's (in a container that takes --pid=host plus --cap-add SYS_PTRACE and --security-opt apparmor=unconfined)"
        ),
        _ => format!("and {INIT_NETNS} is not the host's either (no --pid=host?)"),
    };
    format!(
        "bridge {bridge} is not visible: this process is not in the host network namespace, {how}; run it with --network=host"
    )
}

/// Fails with [`not_host_reason`] unless `bridge` exists in this namespace.
pub async fn check_bridge(rtnl: &Rtnl, bridge: &str, placement: Placement) -> Result<()> {
    if rtnl.link_by_name(bridge).await?.is_none() {
        bail!("{}", not_host_reason(bridge, placement));
    }
    Ok(())
}

/// Refuses a state change (`what`: "gc", "detach") unless this process can be seen to work in
/// the host's network namespace: every bridge the `leases` name must be visible here. In another
/// namespace no veth is visible either, and acting would drop live leases (their addresses then
/// handed out twice). Fails closed: a bridge that is not visible means "refuse", never "gone" —
/// except for a Docker network that Docker says was removed (its bridge went with it).
pub async fn confirm(
    rtnl: &Rtnl,
    docker: Option<&DockerClient>,
    leases: &[&Lease],
    what: &str,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for l in leases {
        if !seen.insert((l.bridge.as_str(), l.network_id.as_str())) {
            continue;
        }
        if rtnl.index_of(&l.bridge)?.is_some() {
            continue;
        }
        let docker_network = !l.network_id.starts_with("bridge-");
        if docker_network {
            if let Some(d) = docker {
                match d.network_id(&l.network_id).await {
                    Ok(None) => continue, // removed from Docker, and its bridge with it
                    Ok(Some(_)) => {}
                    Err(e) => tracing::debug!("cannot ask Docker about {}: {e:#}", l.network),
                }
            }
        }
        let deleted = if docker_network {
            String::new()
        } else {
            format!(
                "; if {0} was deleted on purpose, create it again (`ip link add {0} type bridge`) and run this again",
                l.bridge
            )
        };
        bail!(
            "{what} changed nothing: {}{deleted}",
            not_host_reason(&l.bridge, placement())
        );
    }
    Ok(())
}
