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
use crate::plan::{self, HOST_IFNAME_PREFIX, short_id};
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
    /// The host veth exists and carries the container ID as alias (or none yet).
    pub veth: bool,
    pub link: LinkState,
}

/// One thing to remove, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Veth {
        name: String,
        container_id: String,
    },
    /// `resolv`: also /etc/netns/<name>/resolv.conf (the lease wrote one and goes).
    NetnsLink {
        name: String,
        ns: NsId,
        resolv: bool,
    },
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
const INCOMPLETE: &str = "its attach was killed before it completed";

/// Pure: what to remove for one lease.
pub fn decide_lease(f: &LeaseFacts) -> Vec<Removal> {
    let l = &f.lease;
    let (reason, drop_lease) = match (f.container, f.ns_alive, f.veth) {
        (Presence::Gone, _, _) => (GONE, true),
        (_, false, _) => (NS_GONE, false),
        (Presence::Running, true, false) => (NO_IFACE, true),
        (Presence::Running, true, true) if !l.complete => (INCOMPLETE, true),
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
                ns: l.netns_id(),
                resolv: drop_lease && !l.dns.is_empty(),
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
        output::println(&output::to_json(&removed))?;
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
            output::println(&format!(
                "{verb} {} {} of {who}: {}",
                r.kind, r.object, r.reason
            ))?;
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
    if let (Some(s), Some(l)) = (&store, &lock) {
        let swept = s.sweep(l)?;
        if swept > 0 {
            tracing::info!(
                swept,
                "removed temporary files and index entries of killed commands"
            );
        }
    }
    let leases = match &store {
        Some(s) => s.all()?,
        None => vec![],
    };
    let docker = DockerClient::connect().map_err(needs_docker)?;
    let rtnl = Rtnl::connect()?;
    let ifaces = rtnl.links().await?;
    let by_name: BTreeMap<&str, &Iface> = ifaces.iter().map(|i| (i.name.as_str(), i)).collect();
    let claimed: BTreeSet<&str> = leases.iter().map(|l| l.host_ifname.as_str()).collect();
    // A veth of a `--netns` target lives exactly as long as its namespace: never garbage.
    let orphans: Vec<(&Iface, &str)> = ifaces
        .iter()
        .filter(|i| !claimed.contains(i.name.as_str()))
        .filter_map(|i| owner_of(i).map(|o| (i, o)))
        .filter(|(_, o)| !is_netns_target_id(o))
        .collect();

    let ids: BTreeSet<&str> = leases
        .iter()
        .filter(|l| !is_netns_lease(l))
        .map(|l| l.container_id.as_str())
        .chain(orphans.iter().map(|(_, o)| *o))
        .collect();
    let presence = presences(&docker, ids).await?;

    let mut plan = Vec::new();
    for lease in &leases {
        let alive = ns_alive(lease);
        let container = if is_netns_lease(lease) {
            // A namespace that is gone never comes back: its lease is of no further use.
            if alive {
                Presence::Running
            } else {
                Presence::Gone
            }
        } else {
            presence
                .get(lease.container_id.as_str())
                .copied()
                .unwrap_or(Presence::Gone)
        };
        let facts = LeaseFacts {
            container,
            ns_alive: alive,
            veth: by_name
                .get(lease.host_ifname.as_str())
                .is_some_and(|i| i.belongs_to(&lease.container_id)),
            link: link_state(lease),
            lease: lease.clone(),
        };
        plan.extend(decide_lease(&facts));
    }
    for (iface, owner) in orphans {
        let p = presence.get(owner).copied().unwrap_or(Presence::Gone);
        plan.extend(decide_veth(iface, owner, p));
    }
    keep_shared_links(&mut plan, &leases, ns_alive);
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
    netns::id_of(&l.netns_source()) == Some(l.netns_id())
}

/// A lease of a `--netns` target rather than a container.
fn is_netns_lease(l: &Lease) -> bool {
    !l.netns_path.is_empty()
}

/// Pure: whether a 64-hex ID is one `attach --netns` derived from a namespace identity
/// ([`plan::netns_target_id`]) rather than a Docker container ID.
pub fn is_netns_target_id(id: &str) -> bool {
    let Some(tail) = id.get(32..) else {
        return false;
    };
    let Ok(v) = u128::from_str_radix(tail, 16) else {
        return false;
    };
    plan::netns_target_id((v >> 64) as u64, v as u64) == id
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
            Action::Lease(l) => Some((l.network_id.clone(), l.ip)),
            _ => None,
        })
        .collect();
    let in_use: BTreeSet<&str> = leases
        .iter()
        .filter(|l| !dropped.contains(&(l.network_id.clone(), l.ip)) && alive(l))
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
                Ok(Some(i)) if i.belongs_to(container_id) => rtnl.delete(i.index).await.map(|_| ()),
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
            pid: 42,
            ..Lease::sample(ID, "web", "172.17.255.254")
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

    #[test]
    fn netns_target_ids_are_told_from_container_ids() {
        assert!(is_netns_target_id(&plan::netns_target_id(4, 4026532000)));
        assert!(is_netns_target_id(&plan::netns_target_id(u64::MAX, 1)));
        assert!(!is_netns_target_id(ID));
        assert!(!is_netns_target_id("abc"));
        let mut forged = plan::netns_target_id(4, 4026532000);
        forged.replace_range(0..1, if forged.starts_with('0') { "1" } else { "0" });
        assert!(!is_netns_target_id(&forged));
    }

    #[test]
    fn a_link_shared_with_a_live_attachment_stays() {
        let a = lease();
        let mut b = lease();
        b.network_id = "other".into();
        b.ip = "10.9.0.2".parse().unwrap();
        // a lost its interface (dropped with its link); b, same namespace, is healthy.
        let f = facts(Presence::Running, true, false, LinkState::Ours);
        let mut plan = decide_lease(&f);
        assert_eq!(kinds(plan.clone()), ["netns-link", "lease"]);
        keep_shared_links(&mut plan, &[a.clone(), b.clone()], |_| true);
        assert_eq!(kinds(plan), ["lease"]);
        // alone, the link goes with the lease
        let mut plan = decide_lease(&f);
        keep_shared_links(&mut plan, &[a], |_| true);
        assert_eq!(kinds(plan), ["netns-link", "lease"]);
    }

    #[test]
    fn resolv_conf_goes_only_with_a_dropped_lease() {
        let mut f = facts(Presence::Gone, false, false, LinkState::Ours);
        f.lease.dns = vec!["10.0.0.53".parse().unwrap()];
        let resolv = |r: &[Removal]| {
            r.iter()
                .any(|r| matches!(r.action, Action::NetnsLink { resolv: true, .. }))
        };
        assert!(resolv(&decide_lease(&f)));
        f.container = Presence::Stopped; // parked: the lease stays
        assert!(!resolv(&decide_lease(&f)));
    }
}
