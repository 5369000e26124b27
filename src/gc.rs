//! `gc`: removes what belongs to containers or namespaces that no longer exist. Side effects:
//! deletes host veths (netlink), netns links under /var/run/netns and lease files, and reads
//! Docker (one inspect per container concerned). The decisions are pure functions of the facts
//! gathered first ([`decide_lease`], [`decide_veth`]); only then is anything removed.
//!
//! Rules, for each lease of the state directory (under the store lock):
//! - container gone from Docker: its veth (if any), its netns link and its lease go;
//! - namespace gone (container stopped or restarted): the dead netns link (and a veth, should
//!   one survive) goes, the lease stays so the container gets its address back when it is
//!   attached again (`watch` does that on the next start);
//! - container running in the recorded namespace but without its host veth (an attach that
//!   never completed, or an interface deleted by hand): link and lease go.
//!
//! Host interfaces not covered by a lease are ours only when their name starts with
//! [`HOST_IFNAME_PREFIX`] and their ifalias is a full container ID; such a veth goes when its
//! container is gone or not running. A veth of a running container is left alone even without a
//! lease here: it may belong to another state directory. Nothing else is ever touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use serde::Serialize;

use crate::cli::GcArgs;
use crate::docker::DockerClient;
use crate::lease::{Lease, LeaseStore, StoreLock};
use crate::link::{Iface, Rtnl};
use crate::netns::{self, NsId};
use crate::plan::{HOST_IFNAME_PREFIX, short_id};
use crate::{hostns, output, privilege};

/// What Docker says about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Gone,
    Stopped,
    Running,
}

/// State of the netns link a lease names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Absent,
    /// A symlink that is dangling or leads to the lease's namespace.
    Ours,
    /// Anything else (another live namespace, not a symlink): never touched.
    Foreign,
}

/// Everything `gc` needs to know about one lease.
#[derive(Debug, Clone)]
pub struct LeaseFacts {
    pub lease: Lease,
    pub container: Presence,
    /// The recorded Pid still has the recorded namespace.
    pub ns_alive: bool,
    /// The host veth exists and carries the container ID as alias.
    pub veth: bool,
    pub link: LinkState,
}

/// One thing to remove, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Veth { name: String, container_id: String },
    NetnsLink { name: String, ns: NsId },
    Lease(Box<Lease>),
}

/// A planned or done removal, as printed (`--json` field names are fixed for scripts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// `lease`, `netns-link` or `veth`.
    pub kind: &'static str,
    /// The address (lease), the path (netns link) or the interface name (veth).
    pub object: String,
    pub container_id: String,
    pub container_name: String,
    pub reason: &'static str,
    #[serde(skip)]
    pub action: Action,
}

const GONE: &str = "container is gone";
const NS_GONE: &str = "namespace is gone (container stopped or restarted)";
const NO_IFACE: &str =
    "container has no interface for it (attach never completed or the veth was deleted)";
const NOT_RUNNING: &str = "container is not running";

/// Pure: what to remove for one lease.
pub fn decide_lease(f: &LeaseFacts) -> Vec<Removal> {
    let l = &f.lease;
    let (reason, drop_lease) = match (f.container, f.ns_alive, f.veth) {
        (Presence::Gone, _, _) => (GONE, true),
        (_, false, _) => (NS_GONE, false),
        (Presence::Running, true, false) => (NO_IFACE, true),
        _ => return vec![],
    };
    let mut out = Vec::new();
    let item = |kind, object: String, action| Removal {
        kind,
        object,
        container_id: l.container_id.clone(),
        container_name: l.container_name.clone(),
        reason,
        action,
    };
    if f.veth {
        out.push(item(
            "veth",
            l.host_ifname.clone(),
            Action::Veth {
                name: l.host_ifname.clone(),
                container_id: l.container_id.clone(),
            },
        ));
    }
    if f.link == LinkState::Ours {
        out.push(item(
            "netns-link",
            netns::link_path(&l.netns_name).display().to_string(),
            Action::NetnsLink {
                name: l.netns_name.clone(),
                ns: NsId {
                    dev: l.netns_dev,
                    ino: l.netns_ino,
                },
            },
        ));
    }
    if drop_lease {
        out.push(item(
            "lease",
            format!("{} on {}", l.ip, l.network),
            Action::Lease(Box::new(l.clone())),
        ));
    }
    out
}

/// Pure: the container ID a host interface belongs to, when it is one of ours
/// (`vna` prefix and a full container ID as ifalias).
pub fn owner_of(iface: &Iface) -> Option<&str> {
    let alias = iface.alias.as_deref()?;
    let is_id = alias.len() == 64
        && alias
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (iface.name.starts_with(HOST_IFNAME_PREFIX) && is_id).then_some(alias)
}

/// Pure: whether a veth of ours that no lease here claims is garbage.
pub fn decide_veth(iface: &Iface, owner: &str, presence: Presence) -> Option<Removal> {
    let reason = match presence {
        Presence::Running => return None,
        Presence::Gone => GONE,
        Presence::Stopped => NOT_RUNNING,
    };
    Some(Removal {
        kind: "veth",
        object: iface.name.clone(),
        container_id: owner.to_string(),
        container_name: String::new(),
        reason,
        action: Action::Veth {
            name: iface.name.clone(),
            container_id: owner.to_string(),
        },
    })
}

/// `docker-netattach gc [--dry-run] [--json]`.
pub async fn run_cli(args: GcArgs, state_dir: &Path) -> Result<i32> {
    privilege::require("gc")?;
    hostns::enter()?;
    let removed = gc(state_dir, args.dry_run).await?;
    if args.json {
        println!("{}", output::to_json(&removed));
    } else if removed.is_empty() {
        eprintln!("nothing to collect");
    } else {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for r in &removed {
            let who = if r.container_name.is_empty() {
                short_id(&r.container_id).to_string()
            } else {
                format!("{} ({})", r.container_name, short_id(&r.container_id))
            };
            println!("{verb} {} {} of {who}: {}", r.kind, r.object, r.reason);
        }
    }
    Ok(0)
}

/// Finds (and unless `dry_run`, removes) stale objects; returns them. Needs Docker to tell which
/// containers are gone: when Docker does not answer, nothing is removed and the error says so.
pub async fn gc(state_dir: &Path, dry_run: bool) -> Result<Vec<Removal>> {
    let store = LeaseStore::open_existing(state_dir)?;
    let lock = match (&store, dry_run) {
        (Some(s), false) => Some(s.lock()?),
        _ => None,
    };
    let leases = match &store {
        Some(s) => s.all()?,
        None => vec![],
    };
    let docker = DockerClient::connect().map_err(needs_docker)?;
    let rtnl = Rtnl::connect()?;
    let ifaces = rtnl.links().await?;
    let by_name: BTreeMap<&str, &Iface> = ifaces.iter().map(|i| (i.name.as_str(), i)).collect();
    let claimed: BTreeSet<&str> = leases.iter().map(|l| l.host_ifname.as_str()).collect();
    let orphans: Vec<(&Iface, &str)> = ifaces
        .iter()
        .filter(|i| !claimed.contains(i.name.as_str()))
        .filter_map(|i| owner_of(i).map(|o| (i, o)))
        .collect();

    let ids: BTreeSet<&str> = leases
        .iter()
        .map(|l| l.container_id.as_str())
        .chain(orphans.iter().map(|(_, o)| *o))
        .collect();
    let presence = presences(&docker, ids).await?;

    let mut plan = Vec::new();
    for lease in &leases {
        let facts = LeaseFacts {
            container: presence
                .get(lease.container_id.as_str())
                .copied()
                .unwrap_or(Presence::Gone),
            ns_alive: ns_alive(lease),
            veth: by_name
                .get(lease.host_ifname.as_str())
                .is_some_and(|i| i.alias.as_deref() == Some(lease.container_id.as_str())),
            link: link_state(lease),
            lease: lease.clone(),
        };
        plan.extend(decide_lease(&facts));
    }
    for (iface, owner) in orphans {
        let p = presence.get(owner).copied().unwrap_or(Presence::Gone);
        plan.extend(decide_veth(iface, owner, p));
    }
    if dry_run || plan.is_empty() {
        return Ok(plan);
    }
    apply(&rtnl, store.as_ref().zip(lock.as_ref()), &plan).await?;
    Ok(plan)
}

fn needs_docker(e: anyhow::Error) -> anyhow::Error {
    anyhow!("gc needs Docker to tell which containers are gone, and nothing was removed: {e:#}")
}

async fn presences<'a>(
    docker: &DockerClient,
    ids: BTreeSet<&'a str>,
) -> Result<BTreeMap<&'a str, Presence>> {
    let lookups = ids.into_iter().map(|id| async move {
        let c = docker.container_opt(id).await?;
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
    netns::id_of(&netns::proc_path(l.pid))
        == Some(NsId {
            dev: l.netns_dev,
            ino: l.netns_ino,
        })
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
    let mut errors = Vec::new();
    let mut ordered: Vec<&Removal> = plan.iter().collect();
    ordered.sort_by_key(|r| match r.action {
        Action::Veth { .. } => 0,
        Action::NetnsLink { .. } => 1,
        Action::Lease(_) => 2,
    });
    for r in ordered {
        let res = match &r.action {
            Action::Veth { name, container_id } => match rtnl.link_by_name(name).await {
                // Checked again right before deleting: the name may have been reused meanwhile.
                Ok(Some(i)) if i.alias.as_deref() == Some(container_id.as_str()) => {
                    rtnl.delete(i.index).await.map(|_| ())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            Action::NetnsLink { name, ns } => netns::remove_link(name, *ns).map(|_| ()),
            Action::Lease(l) => match store {
                Some((s, lock)) => s.remove(lock, l),
                None => Ok(()),
            },
        };
        if let Err(e) = res {
            errors.push(format!("{} {}: {e:#}", r.kind, r.object));
        }
    }
    if !errors.is_empty() {
        bail!("gc could not remove everything: {}", errors.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn lease() -> Lease {
        Lease {
            container_id: ID.into(),
            container_name: "web".into(),
            network: "bridge".into(),
            network_id: "n".into(),
            bridge: "docker0".into(),
            ip: "172.17.255.254".parse().unwrap(),
            prefix_len: 16,
            gateway: "172.17.0.1".parse().unwrap(),
            mac: "02:42:ac:11:ff:fe".into(),
            host_ifname: "vna01234567abcd".into(),
            ifname: "eth0".into(),
            netns_name: "web".into(),
            pid: 42,
            netns_dev: 4,
            netns_ino: 5,
        }
    }

    fn facts(container: Presence, ns_alive: bool, veth: bool, link: LinkState) -> LeaseFacts {
        LeaseFacts {
            lease: lease(),
            container,
            ns_alive,
            veth,
            link,
        }
    }

    fn kinds(r: Vec<Removal>) -> Vec<&'static str> {
        r.into_iter().map(|r| r.kind).collect()
    }

    #[test]
    fn lease_rules() {
        use LinkState::*;
        use Presence::*;
        let table: &[(LeaseFacts, &[&str])] = &[
            // healthy
            (facts(Running, true, true, Ours), &[]),
            // removed from Docker: everything goes
            (facts(Gone, false, false, Ours), &["netns-link", "lease"]),
            (
                facts(Gone, true, true, Ours),
                &["veth", "netns-link", "lease"],
            ),
            (facts(Gone, false, false, Absent), &["lease"]),
            // stopped or restarted: the dead link goes, the lease stays (sticky address)
            (facts(Stopped, false, false, Ours), &["netns-link"]),
            (facts(Running, false, false, Ours), &["netns-link"]),
            (facts(Stopped, false, false, Absent), &[]),
            // a link now leading to another live namespace is never touched
            (facts(Stopped, false, false, Foreign), &[]),
            // running in the recorded namespace without its interface: half-built attach
            (facts(Running, true, false, Ours), &["netns-link", "lease"]),
            // transient disagreement between Docker and /proc: leave it
            (facts(Stopped, true, true, Ours), &[]),
        ];
        for (f, want) in table {
            assert_eq!(kinds(decide_lease(f)), want.to_vec(), "{f:?}");
        }
    }

    fn iface(name: &str, alias: Option<&str>) -> Iface {
        Iface {
            index: 7,
            name: name.into(),
            mtu: 1500,
            alias: alias.map(Into::into),
            up: true,
            controller: None,
        }
    }

    #[test]
    fn only_our_interfaces_are_considered() {
        assert_eq!(owner_of(&iface("vna01234567abcd", Some(ID))), Some(ID));
        assert_eq!(owner_of(&iface("veth1234567", Some(ID))), None);
        assert_eq!(owner_of(&iface("vna01234567abcd", None)), None);
        assert_eq!(owner_of(&iface("vna01234567abcd", Some("my uplink"))), None);
        assert_eq!(
            owner_of(&iface("vna01234567abcd", Some(&ID.to_uppercase()))),
            None
        );
        assert_eq!(owner_of(&iface("vna01234567abcd", Some(&ID[1..]))), None);
    }

    #[test]
    fn orphan_veth_goes_only_when_its_container_is_not_running() {
        let i = iface("vna01234567abcd", Some(ID));
        assert!(decide_veth(&i, ID, Presence::Running).is_none());
        assert_eq!(decide_veth(&i, ID, Presence::Gone).unwrap().reason, GONE);
        assert_eq!(
            decide_veth(&i, ID, Presence::Stopped).unwrap().reason,
            NOT_RUNNING
        );
    }
}
