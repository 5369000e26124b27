//! `detach`: best-effort, idempotent teardown. Already gone (no interface, dangling link, no
//! lease, container removed from Docker) is success; other errors are collected and all reported.
//! Works from the leases alone, so it needs Docker only to resolve a name the leases do not know.

use std::path::Path;

use anyhow::{Result, bail};

use crate::docker::DockerClient;
use crate::lease::{Lease, LeaseStore};
use crate::link::Rtnl;
use crate::netns;
use crate::privilege;

#[derive(Debug, Clone, Default)]
pub struct DetachOpts {
    pub container: String,
    /// Only the attachment on this network (name or ID); all when `None`.
    pub network: Option<String>,
}

/// Detaches and returns the leases that were released (empty: nothing was attached).
pub async fn detach(opts: &DetachOpts, state_dir: &Path) -> Result<Vec<Lease>> {
    privilege::require("detach")?;
    let Some(store) = LeaseStore::open_existing(state_dir)? else {
        return Ok(vec![]);
    };
    let lock = store.lock()?;
    let all = store.all()?;
    let mut chosen = select(&all, &opts.container)?;
    if chosen.is_empty() {
        // Perhaps a name the container got after it was attached: ask Docker, if it answers.
        if let Ok(docker) = DockerClient::connect() {
            if let Ok(Some(c)) = docker.container_opt(&opts.container).await {
                chosen = all.iter().filter(|l| l.container_id == c.id).collect();
            }
        }
    }
    if let Some(net) = &opts.network {
        chosen.retain(|l| &l.network == net || &l.network_id == net);
    }
    if chosen.is_empty() {
        return Ok(vec![]);
    }
    let rtnl = Rtnl::connect()?;
    let mut errors = Vec::new();
    let mut released = Vec::new();
    for lease in &chosen {
        // Another attachment of the same namespace keeps the netns link (and resolv.conf).
        let shared = all.iter().any(|o| {
            o.netns_name == lease.netns_name && !chosen.iter().any(|c| std::ptr::eq(*c, o))
        });
        // Marked incomplete first: a detach killed half-way leaves a lease `gc` drops, never
        // one that `watch` would take for the intent and attach again.
        if lease.complete && !lease.pending {
            let undone = Lease {
                complete: false,
                ..(*lease).clone()
            };
            if let Err(e) = store.rewrite(&lock, &undone) {
                tracing::warn!("{e:#}");
            }
        }
        match teardown(&rtnl, lease, shared).await {
            Ok(()) => match store.remove(&lock, lease) {
                Ok(()) => released.push((*lease).clone()),
                Err(e) => errors.push(format!("{e:#}")),
            },
            Err(e) => errors.push(format!("{}: {e:#}", lease.container_name)),
        }
    }
    for lease in &released {
        if let Err(e) = remove_bridge_if_ours_and_empty(&rtnl, &store, &lock, &lease.bridge).await {
            errors.push(format!("bridge {}: {e:#}", lease.bridge));
        }
    }
    if !errors.is_empty() {
        bail!(
            "detach of '{}' left something behind: {}",
            opts.container,
            errors.join("; ")
        );
    }
    Ok(released)
}

/// Deletes a bridge that `attach --bridge` created once no port is left on it (also `gc`'s).
pub(crate) async fn remove_bridge_if_ours_and_empty(
    rtnl: &Rtnl,
    store: &LeaseStore,
    lock: &crate::lease::StoreLock,
    bridge: &str,
) -> Result<()> {
    if !store.bridge_marked(bridge) {
        return Ok(());
    }
    let ports = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .map(|d| d.count())
        .unwrap_or(0);
    if ports > 0 {
        return Ok(());
    }
    if let Some(br) = rtnl.link_by_name(bridge).await? {
        rtnl.delete(br.index).await?;
    }
    store.unmark_bridge(lock, bridge)
}

/// Leases of the container named by `arg`: exact name, full ID, or a unique ID prefix.
pub fn select<'a>(all: &'a [Lease], arg: &str) -> Result<Vec<&'a Lease>> {
    let exact: Vec<&Lease> = all
        .iter()
        .filter(|l| l.container_name == arg || l.container_id == arg)
        .collect();
    if !exact.is_empty() {
        return Ok(exact);
    }
    let by_prefix: Vec<&Lease> = all
        .iter()
        .filter(|l| !arg.is_empty() && l.container_id.starts_with(arg))
        .collect();
    let mut ids: Vec<&str> = by_prefix.iter().map(|l| l.container_id.as_str()).collect();
    ids.dedup();
    if ids.len() > 1 {
        bail!(
            "container ID prefix '{arg}' is ambiguous among attached containers; give more characters or the name"
        );
    }
    Ok(by_prefix)
}

/// Removes the host veth (its peer goes with it) and, unless `shared` with another attachment,
/// the netns link and resolv.conf of one lease.
pub async fn teardown(rtnl: &Rtnl, lease: &Lease, shared: bool) -> Result<()> {
    let mut errors = Vec::new();
    match rtnl.link_by_name(&lease.host_ifname).await {
        Ok(Some(iface)) if iface.belongs_to(&lease.container_id) => {
            if let Err(e) = rtnl.delete(iface.index).await {
                errors.push(format!("{e:#}"));
            }
        }
        Ok(Some(_)) => tracing::warn!(
            ifname = %lease.host_ifname,
            "interface does not carry the container's ID as alias; left alone"
        ),
        Ok(None) => {}
        Err(e) => errors.push(format!("{e:#}")),
    }
    if !shared {
        if let Err(e) = netns::remove_link(&lease.netns_name, lease.netns_id()) {
            errors.push(format!("{e:#}"));
        }
    }
    if !shared && !lease.dns.is_empty() {
        if let Err(e) = netns::remove_resolv_conf(&lease.netns_name) {
            errors.push(format!("{e:#}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(id: &str, name: &str) -> Lease {
        Lease::sample(id, name, "10.0.0.2")
    }

    #[test]
    fn select_by_name_id_and_unique_prefix() {
        let all = vec![l("abc111", "web"), l("abd222", "db")];
        assert_eq!(select(&all, "web").unwrap().len(), 1);
        assert_eq!(select(&all, "abd222").unwrap()[0].container_name, "db");
        assert_eq!(select(&all, "abc").unwrap()[0].container_name, "web");
        assert!(select(&all, "ab").is_err());
        assert!(select(&all, "zzz").unwrap().is_empty());
        assert!(select(&all, "").unwrap().is_empty());
    }
}
