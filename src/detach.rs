//! `detach`: best-effort, idempotent teardown of one container's (or `--netns` target's)
//! attachments. Facts first, without the store lock: who the argument names — Docker's answer
//! is the truth (a renamed container keeps its ID, and a new container may take the old name);
//! the names stored in leases count only when Docker does not know the name (a removed
//! container) or cannot be asked — and that this process works in the host's network
//! namespace. Then, under the lock, the leases are read again and what is still there is torn
//! down. Already gone (no interface, dangling link) is success; other errors are collected and
//! all reported. Only the lease's own veth is ever deleted: the one its attach recorded in the
//! veth's hint ([`hint::proves`]) or, read in full, [`owner::owns`].

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use crate::docker::{DockerClient, Lookup};
use crate::error::Errors;
use crate::lease::{Lease, LeaseStore, Prepared, hint};
use crate::link::{Rtnl, unregister};
use crate::{hostns, netns, owner, plan, privilege};

/// How long a deletion may take before it counts as failed (and is tried the plain way).
const UNREGISTER_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct DetachOpts {
    pub container: String,
    /// Only the attachment on this network (name or ID); all when `None`.
    pub network: Option<String>,
    /// Return once the kernel has unregistered the veth pair, leaving the rest of the
    /// deletion (its RCU barrier, ~75 % of the time) to a child process
    /// ([`unregister`]). For the one-shot command; the daemon waits for the whole deletion.
    pub return_when_unregistered: bool,
}

/// What Docker said about the argument, as far as choosing leases goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The container's full ID.
    Found(String),
    NotFound,
    /// Why Docker could not be asked.
    Unreachable(String),
}

/// Detaches and returns the leases that were released (empty: a known container or namespace
/// that is not attached, or not on `opts.network`).
pub async fn detach(opts: &DetachOpts, state_dir: &Path) -> Result<Vec<Lease>> {
    detach_using(opts, state_dir, None).await
}

/// [`detach`], asking Docker through `docker` when given (the daemon's client).
pub async fn detach_using(
    opts: &DetachOpts,
    state_dir: &Path,
    docker: Option<&DockerClient>,
) -> Result<Vec<Lease>> {
    privilege::require("detach")?;
    let store = LeaseStore::open_existing(state_dir)?;
    let own = docker.is_none().then(DockerClient::connect);
    let docker = match (docker, &own) {
        (Some(d), _) => Ok(d),
        (None, Some(Ok(d))) => Ok(d),
        (None, Some(Err(e))) => Err(format!("{e:#}")),
        (None, None) => Err("no Docker client".to_string()),
    };
    let (all, ids) = match &store {
        Some(s) => leases_for(s, opts, docker.clone()).await?,
        None => (vec![], resolve(&[], &opts.container, docker.clone()).await?),
    };
    let docker = docker.ok();
    let mut chosen: Vec<&Lease> = all
        .iter()
        .filter(|l| ids.contains(&l.container_id))
        .collect();
    if let Some(net) = &opts.network {
        chosen = on_network(chosen, &all, net, docker, &opts.container).await?;
    }
    let (Some(store), false) = (&store, chosen.is_empty()) else {
        return Ok(vec![]);
    };
    let rtnl = Rtnl::connect()?;
    hostns::confirm(&rtnl, docker, &chosen, "detach").await?;
    let keys: BTreeSet<(String, String)> = chosen
        .iter()
        .map(|l| (l.container_id.clone(), l.network_id.clone()))
        .collect();

    // 1. The veth each lease owns, found before the lock (a netlink request can wait behind
    //    other deletions for the kernel's RTNL lock: 50 concurrent detaches queued on the store
    //    lock behind it). Safe without the lock: it is deleted by index below, so only the
    //    interface checked here can go, and one an attach makes meanwhile is the teardown's.
    //    First through the veth's hint (src/lease/hint.rs: its attach recorded the index; one
    //    SIOCGIFINDEX, which needs no RTNL, proves the interface under the name is that one),
    //    else read in full.
    let mut found = Vec::new();
    let place = hint::Place::here();
    for lease in &chosen {
        let name = owner::host_ifname(lease);
        if let Some(h) = hint::read(store.root(), &name) {
            let live = rtnl.index_of(&name).ok().flatten();
            if hint::proves(&h, &lease.container_id, place.as_ref(), live) {
                tracing::debug!(ifname = %name, index = h.index, "veth found through its hint");
                found.push((key_of(lease), h.index, Some(h.peer)));
                continue;
            }
        }
        if let Ok(Some(iface)) = rtnl.link_by_name(&name).await {
            if owner::owns(&iface, lease) {
                found.push((key_of(lease), iface.index, iface.peer));
            }
        }
    }
    //    Under the lock, what is still there now (another command may have acted meanwhile):
    //    each complete lease is marked incomplete first — a detach killed from here on leaves a
    //    lease `gc` drops, never one that `watch` would take for the intent and attach again.
    //    The incomplete records are written ahead; under the lock each is only renamed into
    //    place, when the lease is still what it was read as.
    let mut ahead: Vec<(&Lease, Prepared)> = chosen
        .iter()
        .filter(|l| l.complete && !l.pending)
        .filter_map(|l| {
            let undone = incomplete(l);
            store.prepare_reservation(&undone).ok().map(|p| (*l, p))
        })
        .collect();
    let doomed: Vec<_> = {
        let lock = store.lock()?;
        let still = reread(store, &keys)?;
        for lease in &still {
            match ahead.iter().position(|(before, _)| *before == lease) {
                Some(i) => {
                    let (_, prepared) = ahead.swap_remove(i);
                    if let Err(e) = store.install(&lock, prepared) {
                        // Its file is gone (a `gc` swept it): written again, here.
                        tracing::debug!("{e:#}; marking the lease incomplete in place");
                        mark_incomplete(store, &lock, lease);
                    }
                }
                None => mark_incomplete(store, &lock, lease),
            }
        }
        let still: BTreeSet<_> = still.iter().map(key_of).collect();
        found
            .into_iter()
            .filter(|(key, _, _)| still.contains(key))
            .map(|(_, index, peer)| (index, peer))
            .collect()
    };
    drop(ahead);
    // 2. Without the lock: the kernel deletes them. A deletion waits out an RCU grace period
    //    (~20 ms here); concurrent detaches now wait them out side by side instead of one after
    //    another behind the lock. By index, which the kernel never hands out again soon, so
    //    only the veth found above can go. A failure is retried by the teardown below. The
    //    one-shot command goes on once the pair is unregistered (gone from every list, its
    //    addresses and routes with it) and leaves the kernel's last wait to a child process.
    for (index, peer) in doomed {
        let deleted = if opts.return_when_unregistered {
            unregister::delete(index, peer, UNREGISTER_LIMIT).map(|_| ())
        } else {
            rtnl.delete(index).await.map(|_| ())
        };
        if let Err(e) = deleted {
            tracing::debug!("{e:#}; the teardown tries again");
        }
    }
    // 3. Under the lock again: the rest of the teardown (a veth that an attach made meanwhile
    //    goes here), then the leases.
    let lock = store.lock()?;
    let chosen = reread(store, &keys)?;
    let mut errors = Errors::new();
    let mut released = Vec::new();
    let mut unsynced = Vec::new();
    for lease in &chosen {
        // An attachment not being detached (this container on another network, read before
        // the lock: new ones cannot appear, `attach` refuses a link that leads elsewhere)
        // keeps the netns link and resolv.conf.
        let shared = all.iter().any(|o| {
            o.netns_name == lease.netns_name
                && !keys.contains(&(o.container_id.clone(), o.network_id.clone()))
        });
        mark_incomplete(store, &lock, lease);
        match teardown(&rtnl, lease, shared).await {
            Ok(()) => match store.remove_unsynced(&lock, lease) {
                Ok(dir) => {
                    released.push((*lease).clone());
                    unsynced.extend(dir);
                }
                Err(e) => errors.push(format!("{e:#}")),
            },
            Err(e) => errors.push(format!("{}: {e:#}", lease.container_name)),
        }
    }
    for lease in &released {
        if let Err(e) = remove_bridge_if_ours_and_empty(&rtnl, store, &lock, &lease.bridge).await {
            errors.push(format!("bridge {}: {e:#}", lease.bridge));
        }
    }
    // The removals are made durable after the lock is released (0.25-0.4 ms a directory
    // here, which concurrent detaches would otherwise wait out one after another), before
    // the command says done.
    drop(lock);
    unsynced.sort();
    unsynced.dedup();
    for dir in &unsynced {
        if let Err(e) = store.sync_removals(dir) {
            errors.push(format!("{e:#}"));
        }
    }
    errors.into_result(&format!(
        "detach of '{}' left something behind: ",
        opts.container
    ))?;
    Ok(released)
}

/// The leases `detach` decides over, and the container IDs the argument stands for
/// ([`resolve`]). Usually without reading every lease: the index lists the containers that
/// hold leases (one directory listing), and when the argument is one of their IDs, or Docker
/// names one of them, that container's leases and those of the `--netns` targets (whose IDs
/// tell them apart) are all that [`choose`] and the teardown look at. Every lease is read when
/// Docker does not know the name or cannot be asked (the names in the leases decide then),
/// for `--network` (a network's name is in the leases only), and when the index does not know
/// the container (a lease without an index entry, e.g. written by hand). At 200 leases a
/// detach read 214 files and took 1.6× as long as with none. (Every writer creates the index
/// entry before the lease and removes it after, so only a lease made by hand or by a version
/// before the index lacks one; of a container that also has indexed leases, such a lease is
/// left to `gc`.)
async fn leases_for(
    store: &LeaseStore,
    opts: &DetachOpts,
    docker: std::result::Result<&DockerClient, String>,
) -> Result<(Vec<Lease>, Vec<String>)> {
    let arg = &opts.container;
    if opts.network.is_none() {
        // One listing of the index; the leases are then read through it (no second listing).
        let indexed = store.indexed()?;
        let theirs = |id: &str| -> Result<Vec<Lease>> {
            let mut leases = Vec::new();
            for (who, nets) in indexed
                .iter()
                .filter(|(t, _)| *t == id || plan::is_netns_target_id(t))
            {
                for net in nets {
                    leases.extend(store.find(who, net)?);
                }
            }
            Ok(leases)
        };
        if indexed.contains_key(arg) {
            let leases = theirs(arg)?;
            // (An index entry without its lease, left by a killed attach, is no attachment:
            // the argument is then resolved as any other.)
            if leases.iter().any(|l| &l.container_id == arg) {
                return Ok((leases, vec![arg.clone()]));
            }
        }
        let answer = ask(arg, docker).await?;
        if let Answer::Found(id) = &answer {
            if indexed.contains_key(id) {
                let some = theirs(id)?;
                let ids = choose(&some, arg, &answer)?;
                return Ok((some, ids));
            }
        }
        let all = store.all()?;
        let ids = match all.iter().any(|l| &l.container_id == arg) {
            true => vec![arg.clone()],
            false => choose(&all, arg, &answer)?,
        };
        return Ok((all, ids));
    }
    let all = store.all()?;
    let ids = resolve(&all, arg, docker).await?;
    Ok((all, ids))
}

/// The leases of the (container, network) pairs `keys` as the store holds them now: each
/// through its own index entry (no listing of the index: at 200 leases each listing was ~0.2 ms
/// of a detach's ~5, and a detach rereads twice), and by reading every lease file only when
/// the index misses one of them (a lease without an index entry: written by hand, or left by
/// an older version; or one another command removed meanwhile).
fn reread(store: &LeaseStore, keys: &BTreeSet<(String, String)>) -> Result<Vec<Lease>> {
    let mut out = Vec::new();
    for (id, net) in keys {
        out.extend(store.find(id, net)?);
    }
    if out.len() < keys.len() {
        out = store
            .all()?
            .into_iter()
            .filter(|l| keys.contains(&key_of(l)))
            .collect();
    }
    Ok(out)
}

/// (container, network): what identifies an attachment.
fn key_of(l: &Lease) -> (String, String) {
    (l.container_id.clone(), l.network_id.clone())
}

/// Marks a complete lease incomplete, in place (no sync: a crash of the machine ends the
/// attachment anyway); a warning when it cannot be written.
fn mark_incomplete(store: &LeaseStore, lock: &crate::lease::StoreLock, lease: &Lease) {
    if lease.complete && !lease.pending {
        if let Err(e) = store.rewrite_reservation(lock, &incomplete(lease)) {
            tracing::warn!("{e:#}");
        }
    }
}

/// `lease`, marked incomplete.
fn incomplete(lease: &Lease) -> Lease {
    Lease {
        complete: false,
        ..lease.clone()
    }
}

/// The container IDs `arg` stands for. A full ID a lease holds needs no question (a removed
/// container still detaches); otherwise Docker is asked and [`choose`] decides. `list` and
/// `inspect` match their CONTAINER arguments with it too.
pub async fn resolve(
    all: &[Lease],
    arg: &str,
    docker: std::result::Result<&DockerClient, String>,
) -> Result<Vec<String>> {
    if all.iter().any(|l| l.container_id == arg) {
        return Ok(vec![arg.to_string()]);
    }
    choose(all, arg, &ask(arg, docker).await?)
}

/// What Docker says about `arg`.
async fn ask(arg: &str, docker: std::result::Result<&DockerClient, String>) -> Result<Answer> {
    Ok(match docker {
        Ok(d) => match d.container_lookup(arg).await? {
            Lookup::Found(c) => Answer::Found(c.id),
            Lookup::NotFound => Answer::NotFound,
            Lookup::Unreachable(why) => Answer::Unreachable(why),
        },
        Err(why) => Answer::Unreachable(why),
    })
}

/// The leases of `chosen` on network `net` (its name or ID as the leases record them, or
/// another spelling Docker resolves). An error when neither Docker nor any lease knows `net`.
async fn on_network<'a>(
    mut chosen: Vec<&'a Lease>,
    all: &[Lease],
    net: &str,
    docker: Option<&DockerClient>,
    container: &str,
) -> Result<Vec<&'a Lease>> {
    let on = |l: &Lease, net: &str| l.network == net || l.network_id == net;
    if chosen.iter().any(|l| on(l, net)) || all.iter().any(|l| on(l, net)) {
        chosen.retain(|l| on(l, net));
        return Ok(chosen);
    }
    let id = match docker {
        Some(d) => d.network_id(net).await.unwrap_or_else(|e| {
            // Cannot tell: nothing of this container is on it as far as the leases know.
            tracing::debug!("cannot ask Docker about network '{net}': {e:#}");
            Some(net.to_string())
        }),
        None => Some(net.to_string()),
    };
    let Some(id) = id else {
        bail!("{}", unknown_network(net, container, &chosen));
    };
    chosen.retain(|l| on(l, &id));
    Ok(chosen)
}

fn unknown_network(net: &str, container: &str, chosen: &[&Lease]) -> String {
    let mut nets: Vec<&str> = chosen.iter().map(|l| l.network.as_str()).collect();
    nets.dedup();
    let has = if nets.is_empty() {
        format!("'{container}' is not attached anywhere")
    } else {
        format!("'{container}' is attached to {}", nets.join(", "))
    };
    format!(
        "no such network '{net}': Docker does not know it and no attachment is on it ({has}); see `docker network ls` and `docker-netattach list`"
    )
}

/// Deletes a bridge that `attach --bridge` created once no port is left on it (also `gc`'s). The ports are
/// counted through netlink, in the namespace the bridge is in (/sys/class/net shows the
/// namespace sysfs was mounted for); an error, or a bridge not visible here, deletes nothing.
pub(crate) async fn remove_bridge_if_ours_and_empty(
    rtnl: &Rtnl,
    store: &LeaseStore,
    lock: &crate::lease::StoreLock,
    bridge: &str,
) -> Result<()> {
    if !store.bridge_marked(bridge) {
        return Ok(());
    }
    let Some(br) = rtnl.link_by_name(bridge).await? else {
        tracing::warn!(bridge, "bridge not visible; left marked as ours");
        return Ok(());
    };
    let ports = rtnl
        .links()
        .await?
        .iter()
        .filter(|i| i.controller == Some(br.index))
        .count();
    if ports > 0 {
        return Ok(());
    }
    rtnl.delete(br.index).await?;
    store.unmark_bridge(lock, bridge)
}

/// Pure: the container IDs `arg` stands for, given Docker's `answer`. Docker's ID is the
/// truth; a `--netns` target (Docker knows nothing of it) goes by its name. When Docker does not
/// know the name (removed container) or cannot be asked, the leases decide: exact name, full ID
/// or unique ID prefix — refused when one name stands for several containers. An empty result:
/// a container Docker knows, not attached. A name nobody knows is an error.
pub fn choose(all: &[Lease], arg: &str, answer: &Answer) -> Result<Vec<String>> {
    let targets = distinct(
        all.iter()
            .filter(|l| !l.netns_path.is_empty() && l.container_name == arg),
    );
    if let Answer::Found(id) = answer {
        let attached = all.iter().any(|l| &l.container_id == id);
        return match (targets.is_empty(), attached) {
            (true, _) => Ok(vec![id.clone()]),
            (false, false) => Ok(targets),
            (false, true) => bail!(
                "'{arg}' names both container {id} and the attached namespace {}; detach by ID",
                targets.join(", ")
            ),
        };
    }
    let mut ids = distinct(
        all.iter()
            .filter(|l| l.container_name == arg || l.container_id == arg),
    );
    if ids.is_empty() && !arg.is_empty() {
        ids = distinct(all.iter().filter(|l| l.container_id.starts_with(arg)));
        if ids.len() > 1 {
            bail!(
                "container ID prefix '{arg}' is ambiguous among attached containers ({}); give more characters or the name",
                ids.join(", ")
            );
        }
    }
    if ids.len() > 1 {
        bail!(
            "'{arg}' names several attached containers that Docker does not know by that name (IDs {}); detach each by its ID",
            ids.join(", ")
        );
    }
    if ids.is_empty() {
        let hint =
            "find names with `docker ps -a` (containers) and `docker-netattach list` (attachments)";
        return Err(match answer {
            Answer::Unreachable(why) => anyhow!(
                "no such container '{arg}' among the attachments, and Docker could not be asked ({why}); {hint}"
            ),
            _ => anyhow!(
                "no such container '{arg}': neither Docker nor an attachment knows it; {hint}"
            ),
        });
    }
    Ok(ids)
}

fn distinct<'a>(leases: impl Iterator<Item = &'a Lease>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for l in leases {
        if !ids.contains(&l.container_id) {
            ids.push(l.container_id.clone());
        }
    }
    ids
}

/// Removes the host veth (its peer goes with it) and, unless `shared` with another attachment,
/// the netns link and resolv.conf of one lease.
pub async fn teardown(rtnl: &Rtnl, lease: &Lease, shared: bool) -> Result<()> {
    let mut errors = Errors::new();
    let name = owner::host_ifname(lease);
    // Usually the veth is gone already (the detach deleted it by index a moment ago): that is
    // asked first without the RTNL lock ([`Rtnl::index_of`]; 50 concurrent detaches each did
    // this read under the store lock while the others' deletions held RTNL), and an interface
    // only read in full when one has the name.
    let found = match rtnl.index_of(&name) {
        Ok(None) => Ok(None),
        Ok(Some(_)) | Err(_) => rtnl.link_by_name(&name).await,
    };
    match found {
        Ok(Some(iface)) if owner::owns(&iface, lease) => {
            errors.note("", rtnl.delete(iface.index).await);
        }
        Ok(Some(_)) => tracing::warn!(
            ifname = %name,
            "interface is not a veth carrying the container's ID as alias; left alone"
        ),
        Ok(None) => {}
        Err(e) => errors.push(format!("{e:#}")),
    }
    if !shared {
        errors.note("", netns::remove_link(&lease.netns_name, lease.netns_id()));
    }
    if !shared && !lease.dns.is_empty() {
        errors.note("", netns::remove_resolv_conf(&lease.netns_name));
    }
    errors.into_result("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(id: &str, name: &str) -> Lease {
        Lease::sample(id, name, "10.0.0.2")
    }

    #[test]
    fn without_docker_the_leases_decide_by_name_id_and_unique_prefix() {
        let all = vec![l("abc111", "web"), l("abd222", "db")];
        let nf = Answer::NotFound;
        assert_eq!(choose(&all, "web", &nf).unwrap(), ["abc111"]);
        assert_eq!(choose(&all, "abd222", &nf).unwrap(), ["abd222"]);
        assert_eq!(choose(&all, "abc", &nf).unwrap(), ["abc111"]);
        assert!(choose(&all, "ab", &nf).is_err());
        let e = choose(&all, "zzz", &nf).unwrap_err().to_string();
        assert!(
            e.contains("no such container 'zzz'") && e.contains("docker ps -a"),
            "{e}"
        );
        let down = Answer::Unreachable("cannot reach Docker".into());
        assert_eq!(choose(&all, "db", &down).unwrap(), ["abd222"]);
        assert!(
            choose(&all, "zzz", &down)
                .unwrap_err()
                .to_string()
                .contains("could not be asked")
        );
        assert!(choose(&all, "", &nf).is_err());
    }

    /// The chosen leases are read again through their own index entries; a lease without one
    /// (written by hand) is still found, by reading every lease; a removed one is not.
    #[test]
    fn reread_finds_the_chosen_leases_with_or_without_an_index_entry() {
        let lease = |cid: &str, ip: &str| Lease {
            network_id: "netid".into(),
            ..Lease::sample(cid, &format!("name-{cid}"), ip)
        };
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::open(&dir.path().join("state")).unwrap();
        let lock = store.lock().unwrap();
        let a = lease("aaa", "172.17.0.5");
        let a2 = Lease {
            network_id: "othernet".into(),
            ..lease("aaa", "10.9.0.5")
        };
        let b = lease("bbb", "172.17.0.6");
        for l in [&a, &a2, &b] {
            store.insert(&lock, l).unwrap();
        }
        drop(lock);
        let keys: BTreeSet<_> = [key_of(&a), key_of(&b)].into_iter().collect();
        let mut got = reread(&store, &keys).unwrap();
        got.sort_by(|x, y| x.container_id.cmp(&y.container_id));
        assert_eq!(got, vec![a.clone(), b.clone()]);

        std::fs::remove_file(store.root().join("by-container/bbb@netid")).unwrap();
        let mut got = reread(&store, &keys).unwrap();
        got.sort_by(|x, y| x.container_id.cmp(&y.container_id));
        assert_eq!(got, vec![a.clone(), b.clone()]);

        let lock = store.lock().unwrap();
        store.remove(&lock, &a).unwrap();
        drop(lock);
        assert_eq!(reread(&store, &keys).unwrap(), vec![b]);
    }

    #[test]
    fn docker_is_the_truth_for_a_name_it_knows() {
        // 'web' was renamed; a new, unattached 'web' exists.
        let all = vec![l("old111", "web")];
        assert_eq!(
            choose(&all, "web", &Answer::Found("new222".into())).unwrap(),
            ["new222"]
        );
    }

    #[test]
    fn one_name_for_several_removed_containers_is_refused() {
        let all = vec![l("aaa111", "web"), l("bbb222", "web")];
        let e = choose(&all, "web", &Answer::NotFound)
            .unwrap_err()
            .to_string();
        assert!(e.contains("aaa111") && e.contains("bbb222"), "{e}");
    }

    #[test]
    fn a_netns_target_goes_by_its_name() {
        let mut t = l("ns1111", "lab");
        t.netns_path = "/var/run/netns/lab".into();
        let all = vec![t, l("ccc333", "web")];
        assert_eq!(choose(&all, "lab", &Answer::NotFound).unwrap(), ["ns1111"]);
        // A container of that name Docker knows, not attached: the namespace is meant.
        assert_eq!(
            choose(&all, "lab", &Answer::Found("ddd444".into())).unwrap(),
            ["ns1111"]
        );
        // Both attached: refused.
        assert!(choose(&all, "lab", &Answer::Found("ccc333".into())).is_err());
    }
}
