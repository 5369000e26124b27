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
//! their name starts with [`HOST_IFNAME_PREFIX`] and their ifalias is a full container ID; such a veth goes when its
//! container is gone or not running. A veth of a running container is left alone even without a
//! lease here: it may belong to another state directory. Nothing else is ever touched.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::{Result, anyhow};
use serde::Serialize;

use crate::docker::DockerClient;
use crate::error::Errors;
use crate::lease::{Lease, LeaseStore, StoreLock};
use crate::link::{Iface, Rtnl};
use crate::netns::{self, NsId};
use crate::plan::{self, HOST_IFNAME_PREFIX};
use crate::{hostns, owner};

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
    /// `unnamed_ok`: a veth without alias is also ours (the lease's attach never completed).
    Veth {
        name: String,
        container_id: String,
        unnamed_ok: bool,
    },
    /// `resolv`: also /etc/netns/<name>/resolv.conf (the lease wrote one and goes).
    NetnsLink {
        name: String,
        ns: NsId,
        resolv: bool,
    },
    Lease(Box<Lease>),
    /// A bridge `attach --bridge` created, left without ports and leases.
    Bridge(String),
}

/// What kind of object a removal removes; printed (and in `--json`) as `lease`, `netns-link`,
/// `veth` or `bridge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalKind {
    Lease,
    NetnsLink,
    Veth,
    Bridge,
}

impl RemovalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalKind::Lease => "lease",
            RemovalKind::NetnsLink => "netns-link",
            RemovalKind::Veth => "veth",
            RemovalKind::Bridge => "bridge",
        }
    }
}

impl fmt::Display for RemovalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A planned or done removal, as printed (`--json` field names are fixed for scripts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    pub kind: RemovalKind,
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
const EMPTY_BRIDGE: &str = "bridge created by `attach --bridge` has no port and no lease left";

/// Pure: whether a bridge we created (marked) goes: no port left but those being removed, and
/// no lease that stays names it (a stopped container's lease brings it back at its start).
pub fn decide_bridge(
    name: &str,
    ports: &[String],
    plan: &[Removal],
    leases: &[Lease],
) -> Option<Removal> {
    let removed_veth = |p: &String| {
        plan.iter()
            .any(|r| matches!(&r.action, Action::Veth { name, .. } if name == p))
    };
    let dropped = |l: &Lease| {
        plan.iter()
            .any(|r| matches!(&r.action, Action::Lease(d) if d.network_id == l.network_id && d.v4.ip == l.v4.ip))
    };
    if ports.iter().any(|p| !removed_veth(p))
        || leases.iter().any(|l| l.bridge == name && !dropped(l))
    {
        return None;
    }
    Some(Removal {
        kind: RemovalKind::Bridge,
        object: name.to_string(),
        container_id: String::new(),
        container_name: String::new(),
        reason: EMPTY_BRIDGE,
        action: Action::Bridge(name.to_string()),
    })
}

/// Pure: what to remove for one lease.
pub fn decide_lease(f: &LeaseFacts) -> Vec<Removal> {
    let l = &f.lease;
    // A pending lease has no namespace yet: nothing of it exists but the lease itself.
    if l.pending && f.container != Presence::Gone {
        return vec![];
    }
    let (reason, drop_lease) = match (f.container, f.ns_alive, f.veth) {
        (Presence::Gone, _, _) => (GONE, true),
        // A complete lease is the intent: a running container that lost its interface keeps
        // it, and `watch` (or `attach` again) puts the interface back.
        (Presence::Running, true, false) if l.complete => return vec![],
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
        let name = plan::host_ifname(&l.container_id, &l.network_id, &l.ifname);
        out.push(item(
            RemovalKind::Veth,
            name.clone(),
            Action::Veth {
                name,
                container_id: l.container_id.clone(),
                unnamed_ok: !l.complete,
            },
        ));
    }
    if f.link == LinkState::Ours && !l.pending {
        out.push(item(
            RemovalKind::NetnsLink,
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
            RemovalKind::Lease,
            format!("{} on {}", l.v4.ip, l.network),
            Action::Lease(Box::new(l.clone())),
        ));
    }
    out
}

/// Pure: the container ID a host interface belongs to, when it is one of ours
/// (a veth, `vna` prefix and a full container ID as ifalias).
pub fn owner_of(iface: &Iface) -> Option<&str> {
    let alias = iface.alias.as_deref()?;
    let is_id = alias.len() == 64
        && alias
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (iface.veth && iface.name.starts_with(HOST_IFNAME_PREFIX) && is_id).then_some(alias)
}

/// Pure: whether a veth of ours that no lease here claims is garbage.
pub fn decide_veth(iface: &Iface, owner: &str, presence: Presence) -> Option<Removal> {
    let reason = match presence {
        Presence::Running => return None,
        Presence::Gone => GONE,
        Presence::Stopped => NOT_RUNNING,
    };
    Some(Removal {
        kind: RemovalKind::Veth,
        object: iface.name.clone(),
        container_id: owner.to_string(),
        container_name: String::new(),
        reason,
        action: Action::Veth {
            name: iface.name.clone(),
            container_id: owner.to_string(),
            unnamed_ok: false,
        },
    })
}

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

    #[test]
    fn removal_kinds_print_and_serialise_as_their_old_strings() {
        use RemovalKind::*;
        for (k, s) in [
            (Lease, "lease"),
            (NetnsLink, "netns-link"),
            (Veth, "veth"),
            (Bridge, "bridge"),
        ] {
            assert_eq!(k.to_string(), s);
            assert_eq!(serde_json::to_value(k).unwrap(), s);
        }
    }

    fn kinds(r: Vec<Removal>) -> Vec<&'static str> {
        r.into_iter().map(|r| r.kind.as_str()).collect()
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
            // running in the recorded namespace without its interface: the lease is the
            // intent and stays (watch puts the interface back) ...
            (facts(Running, true, false, Ours), &[]),
            // transient disagreement between Docker and /proc: leave it
            (facts(Stopped, true, true, Ours), &[]),
        ];
        for (f, want) in table {
            assert_eq!(kinds(decide_lease(f)), want.to_vec(), "{f:?}");
        }
        // ... unless its attach (or detach) never completed
        let mut f = facts(Running, true, false, Ours);
        f.lease.complete = false;
        assert_eq!(kinds(decide_lease(&f)), ["netns-link", "lease"]);
        // a pending lease has nothing but itself, and goes only with its container
        let mut f = facts(Stopped, false, false, Ours);
        f.lease.pending = true;
        assert!(decide_lease(&f).is_empty());
        f.container = Running;
        assert!(decide_lease(&f).is_empty());
        f.container = Gone;
        assert_eq!(kinds(decide_lease(&f)), ["lease"]);
    }

    #[test]
    fn an_empty_bridge_of_ours_goes_once_no_lease_names_it() {
        let mut l = lease();
        l.bridge = "nabr0".into();
        let gone = facts(Presence::Gone, true, true, LinkState::Absent);
        let mut gone = gone;
        gone.lease = l.clone();
        let plan = decide_lease(&gone);
        let ports = vec![plan::host_ifname(&l.container_id, &l.network_id, &l.ifname)];
        // its only port and lease are being removed: the bridge goes too
        let b = decide_bridge("nabr0", &ports, &plan, &[l.clone()]).unwrap();
        assert_eq!((b.kind.as_str(), b.object.as_str()), ("bridge", "nabr0"));
        // another port, or a lease that stays (a stopped container), keeps it
        assert!(decide_bridge("nabr0", &["veth0".into()], &plan, &[l.clone()]).is_none());
        assert!(decide_bridge("nabr0", &[], &[], &[l.clone()]).is_none());
        assert!(decide_bridge("nabr0", &[], &[], &[]).is_some());
    }

    fn iface(name: &str, alias: Option<&str>) -> Iface {
        Iface {
            index: 7,
            name: name.into(),
            mtu: 1500,
            alias: alias.map(Into::into),
            up: true,
            controller: None,
            veth: true,
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
        b.v4.ip = "10.9.0.2".parse().unwrap();
        // a lost its interface half-way through its attach (dropped with its link); b, same
        // namespace, is healthy.
        let mut f = facts(Presence::Running, true, false, LinkState::Ours);
        f.lease.complete = false;
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

#[cfg(test)]
mod store_tests;
