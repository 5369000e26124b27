//! `gc`: removes what belongs to containers or namespaces that no longer exist. Side effects:
//! deletes host veths (netlink), netns links under /var/run/netns and lease files, and reads
//! Docker (one inspect per container concerned). The decisions are pure functions of the facts
//! gathered first ([`decide_lease`], [`decide_veth`]); only then is anything removed. Docker is
//! asked before the store lock is taken, and nothing changes unless this process can be seen to
//! work in the host's network namespace ([`hostns::confirm`]).
//!
//! Rules, for each lease of the state directory (under the store lock):
//! - container gone from Docker: its veth (if any), its netns link and its lease go;
//! - namespace gone (container stopped or restarted): the dead netns link (and a veth, should
//!   one survive) goes, the lease stays so the container gets its address back when it is
//!   attached again (`watch` does that on the next start);
//! - container running in the recorded namespace but without its host veth: a complete lease is
//!   the intent and stays (`watch` or `attach` puts the interface back); an incomplete one (an
//!   attach, or a detach, killed half-way) goes with its link;
//! - a pending lease (reserved while the container did not run) goes only with its container;
//! - a bridge `attach --bridge` created goes once it has no port and no remaining lease.
//!
//! A lease's veth is the one under the name derived from (container ID, network, interface
//! name), never the name stored in the file, and only a veth whose alias is the container's ID
//! ([`owner::owns`]). Host interfaces not covered by a lease are ours only when they are veths,
//! their name starts with [`HOST_IFNAME_PREFIX`](plan::HOST_IFNAME_PREFIX) and their ifalias is a full container ID; such a veth goes when its
//! container is gone or not running. A veth of a running container is left alone even without a
//! lease here: it may belong to another state directory. Nothing else is ever touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, anyhow};

use crate::docker::DockerClient;
use crate::error::Errors;
use crate::lease::{Lease, LeaseStore, StoreLock};
use crate::link::{Iface, Rtnl};
use crate::netns;
use crate::plan::{self, is_netns_target_id};
use crate::{hostns, owner};

mod decide;

pub use decide::{
    Action, LeaseFacts, LinkState, Presence, Removal, decide_bridge, decide_lease, decide_veth,
    owner_of,
};

/// Finds (and unless `dry_run`, removes) stale objects; returns them. Needs Docker to tell which
/// containers are gone: when Docker does not answer, nothing is removed and the error says so.
///
/// Docker is asked first, without the store lock (each request may take its whole timeout),
/// and the host namespace is confirmed ([`hostns::confirm`]). Then, under the lock, the leases
/// and interfaces are read again and decided with those answers; a lease or interface that
/// appeared meanwhile (its container not asked about) is left for the next run.
pub async fn gc(state_dir: &Path, dry_run: bool) -> Result<Vec<Removal>> {
    gc_using(state_dir, dry_run, None).await
}

/// [`gc`], asking Docker through `docker` when given (the daemon's client).
pub async fn gc_using(
    state_dir: &Path,
    dry_run: bool,
    docker: Option<&DockerClient>,
) -> Result<Vec<Removal>> {
    let store = LeaseStore::open_existing(state_dir)?;
    let leases = match &store {
        Some(s) => s.all()?,
        None => vec![],
    };
    let own;
    let docker = match docker {
        Some(d) => d,
        None => {
            own = DockerClient::connect().map_err(needs_docker)?;
            &own
        }
    };
    let rtnl = Rtnl::connect()?;
    let ifaces = rtnl.links().await?;
    let ids: BTreeSet<String> = leases
        .iter()
        .filter(|l| !is_netns_lease(l))
        .map(|l| l.container_id.clone())
        .chain(orphans(&leases, &ifaces).map(|(_, o)| o.to_string()))
        .collect();
    let presence = presences(docker, ids).await?;
    let refs: Vec<&Lease> = leases.iter().collect();
    hostns::confirm(&rtnl, Some(docker), &refs, "gc").await?;
    let asked: BTreeSet<(String, String)> = leases.iter().map(key).collect();
    if dry_run {
        let marked = match &store {
            Some(s) => s.marked_bridges()?,
            None => vec![],
        };
        return Ok(decide(&leases, &ifaces, &presence, &asked, &marked));
    }
    let (leases, ifaces, marked, lock) = match &store {
        Some(s) => {
            let lock = s.lock()?;
            let swept = s.sweep(&lock)?;
            if swept > 0 {
                tracing::info!(
                    swept,
                    "removed temporary files and index entries of killed commands"
                );
            }
            (
                s.all()?,
                rtnl.links().await?,
                s.marked_bridges()?,
                Some(lock),
            )
        }
        None => (leases, ifaces, vec![], None),
    };
    let plan = decide(&leases, &ifaces, &presence, &asked, &marked);
    if plan.is_empty() {
        return Ok(plan);
    }
    apply(&rtnl, store.as_ref().zip(lock.as_ref()), &plan).await?;
    Ok(plan)
}

fn key(l: &Lease) -> (String, String) {
    (l.container_id.clone(), l.network_id.clone())
}

/// Host interfaces of ours that no lease claims, with their owner. A veth of a `--netns` target
/// lives exactly as long as its namespace: never garbage.
fn orphans<'a>(
    leases: &[Lease],
    ifaces: &'a [Iface],
) -> impl Iterator<Item = (&'a Iface, &'a str)> {
    let claimed: BTreeSet<String> = leases
        .iter()
        .map(|l| plan::host_ifname(&l.container_id, &l.network_id, &l.ifname))
        .collect();
    ifaces
        .iter()
        .filter(move |i| !claimed.contains(&i.name))
        .filter_map(|i| owner_of(i).map(|o| (i, o)))
        .filter(|(_, o)| !is_netns_target_id(o))
}

/// The removals for these leases and interfaces, given Docker's answers (`presence`) and the
/// leases those answers were gathered for (`asked`); everything else is left alone.
fn decide(
    leases: &[Lease],
    ifaces: &[Iface],
    presence: &BTreeMap<String, Presence>,
    asked: &BTreeSet<(String, String)>,
    marked: &[String],
) -> Vec<Removal> {
    let probe = Probe {
        ns_alive: &ns_alive,
        link: &link_state,
    };
    plan_removals(leases, ifaces, presence, asked, marked, &probe)
}

/// What [`plan_removals`] asks the system about a lease (the namespace and its link).
pub(crate) struct Probe<'a> {
    /// The recorded Pid (or `--netns` path) still has the recorded namespace.
    pub ns_alive: &'a dyn Fn(&Lease) -> bool,
    /// The netns link the lease names.
    pub link: &'a dyn Fn(&Lease) -> LinkState,
}

/// Pure: [`decide`] with the namespace facts given by `probe`.
pub(crate) fn plan_removals(
    leases: &[Lease],
    ifaces: &[Iface],
    presence: &BTreeMap<String, Presence>,
    asked: &BTreeSet<(String, String)>,
    marked: &[String],
    probe: &Probe,
) -> Vec<Removal> {
    let by_name: BTreeMap<&str, &Iface> = ifaces.iter().map(|i| (i.name.as_str(), i)).collect();
    let mut plan = Vec::new();
    for lease in leases.iter().filter(|l| asked.contains(&key(l))) {
        let alive = (probe.ns_alive)(lease);
        let container = if is_netns_lease(lease) {
            // A namespace that is gone never comes back: its lease is of no further use.
            if alive {
                Presence::Running
            } else {
                Presence::Gone
            }
        } else {
            match presence.get(&lease.container_id) {
                Some(p) => *p,
                None => continue,
            }
        };
        let name = plan::host_ifname(&lease.container_id, &lease.network_id, &lease.ifname);
        let facts = LeaseFacts {
            container,
            ns_alive: alive,
            veth: by_name
                .get(name.as_str())
                .is_some_and(|i| owner::owns(i, lease)),
            link: (probe.link)(lease),
            lease: lease.clone(),
        };
        plan.extend(decide_lease(&facts));
    }
    for (iface, owner) in orphans(leases, ifaces) {
        if let Some(p) = presence.get(owner) {
            plan.extend(decide_veth(iface, owner, *p));
        }
    }
    keep_shared_links(&mut plan, leases, probe.ns_alive);
    // Bridges `attach --bridge` created: their ports counted through netlink; one not visible
    // here is left alone (fail closed).
    for b in marked {
        let Some(br) = by_name.get(b.as_str()) else {
            continue;
        };
        let ports: Vec<String> = ifaces
            .iter()
            .filter(|i| i.controller == Some(br.index))
            .map(|i| i.name.clone())
            .collect();
        let bridge = decide_bridge(b, &ports, &plan, leases);
        plan.extend(bridge);
    }
    plan
}

fn needs_docker(e: anyhow::Error) -> anyhow::Error {
    anyhow!("gc needs Docker to tell which containers are gone, and nothing was removed: {e:#}")
}

async fn presences(
    docker: &DockerClient,
    ids: BTreeSet<String>,
) -> Result<BTreeMap<String, Presence>> {
    let lookups = ids.into_iter().map(|id| async move {
        let c = docker.container_opt(&id).await?;
        let p = match c {
            None => Presence::Gone,
            Some(c) if c.running => Presence::Running,
            Some(_) => Presence::Stopped,
        };
        Ok::<_, anyhow::Error>((id, p))
    });
    futures::future::join_all(lookups)
        .await
        .into_iter()
        .collect::<Result<_>>()
        .map_err(needs_docker)
}

fn ns_alive(l: &Lease) -> bool {
    netns::id_of(&l.netns_source()) == Some(l.netns_id())
}

/// A lease of a `--netns` target rather than a container.
fn is_netns_lease(l: &Lease) -> bool {
    !l.netns_path.is_empty()
}

/// Pure: a netns link (and its resolv.conf) stays while another lease that is not being
/// dropped still uses the same name in a live namespace (a container attached to several
/// networks shares one link).
pub fn keep_shared_links(
    plan: &mut Vec<Removal>,
    leases: &[Lease],
    alive: impl Fn(&Lease) -> bool,
) {
    let dropped: BTreeSet<(String, std::net::Ipv4Addr)> = plan
        .iter()
        .filter_map(|r| match &r.action {
            Action::Lease(l) => Some((l.network_id.clone(), l.v4.ip)),
            _ => None,
        })
        .collect();
    let in_use: BTreeSet<&str> = leases
        .iter()
        .filter(|l| !dropped.contains(&(l.network_id.clone(), l.v4.ip)) && alive(l))
        .map(|l| l.netns_name.as_str())
        .collect();
    plan.retain(|r| match &r.action {
        Action::NetnsLink { name, .. } => !in_use.contains(name.as_str()),
        _ => true,
    });
}

fn link_state(l: &Lease) -> LinkState {
    let path = netns::link_path(&l.netns_name);
    match std::fs::symlink_metadata(&path) {
        Err(_) => LinkState::Absent,
        Ok(m) if !m.file_type().is_symlink() => LinkState::Foreign,
        Ok(_) => match netns::id_of(&path) {
            None => LinkState::Ours,
            Some(id) if id.dev == l.netns_dev && id.ino == l.netns_ino => LinkState::Ours,
            Some(_) => LinkState::Foreign,
        },
    }
}

/// Removes, in order: veths, links, leases. Keeps going on errors and reports them all.
async fn apply(
    rtnl: &Rtnl,
    store: Option<(&LeaseStore, &StoreLock)>,
    plan: &[Removal],
) -> Result<()> {
    let mut errors = Errors::new();
    let mut ordered: Vec<&Removal> = plan.iter().collect();
    ordered.sort_by_key(|r| match r.action {
        Action::Veth { .. } => 0,
        Action::NetnsLink { .. } => 1,
        Action::Lease(_) => 2,
        Action::Bridge(_) => 3,
    });
    for r in ordered {
        let res = match &r.action {
            Action::Veth {
                name,
                container_id,
                unnamed_ok,
            } => match rtnl.link_by_name(name).await {
                // Checked again right before deleting: the name may have been reused meanwhile.
                Ok(Some(i)) if i.belongs_to(container_id, *unnamed_ok) => {
                    rtnl.delete(i.index).await.map(|_| ())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            Action::NetnsLink { name, ns, resolv } => {
                let link = netns::remove_link(name, *ns).map(|_| ());
                match (link, resolv) {
                    (Ok(()), true) => netns::remove_resolv_conf(name),
                    (other, _) => other,
                }
            }
            Action::Lease(l) => match store {
                Some((s, lock)) => s.remove(lock, l),
                None => Ok(()),
            },
            // Checked again (ours, no port) right before deleting.
            Action::Bridge(name) => match store {
                Some((s, lock)) => {
                    crate::detach::remove_bridge_if_ours_and_empty(rtnl, s, lock, name).await
                }
                None => Ok(()),
            },
        };
        errors.note(&format!("{} {}", r.kind, r.object), res);
    }
    errors.into_result("gc could not remove everything: ")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod store_tests;
