//! `attach` of a container that is created or stopped: the address reserved in a `pending`
//! lease that its next start applies (the daemon's restore does).

use std::path::Path;

use anyhow::{Result, anyhow, bail};

use super::decide::{
    Names, Ns, bridge_mtu, decide_endpoint, next_ifname, pick_addresses, refuse_other_ip,
};
use super::{AttachOpts, Hints, Outcome, bridge_facts};
use crate::docker::{ContainerInfo, NetworkInfo};
use crate::lease::{InsertError, Lease, LeaseStore};
use crate::link::Rtnl;
use crate::{names, plan};

/// `attach` of a container that exists but does not run (created or stopped): reserves the
/// address in a `pending` lease (no namespace yet) that its next start applies. A container
/// that holds a lease on the network already keeps it unchanged.
pub(super) async fn reserve(
    opts: &AttachOpts,
    c: &ContainerInfo,
    mut network: NetworkInfo,
    state_dir: &Path,
) -> Result<(Outcome, Hints)> {
    let bare = crate::target::check_mode(c, opts.ifname.is_some())?;
    if opts.dry_run {
        bail!(
            "container '{}' is not running; without --dry-run, attach reserves its address and applies it when it starts",
            c.name
        );
    }
    let mut hints = Vec::new();
    if !crate::watch_lock::served(state_dir) {
        hints.push(format!(
            "note: '{}' is not running; the attachment is pending and applies when it starts only while `docker-netattach watch` runs (no daemon serves {}); without it, run this attach again after `docker start {}`",
            c.name,
            state_dir.display(),
            c.name
        ));
    }
    let rtnl = Rtnl::connect()?;
    let store = LeaseStore::open(state_dir)?;
    let lock = store.lock()?;
    let mine = store.of_container(&c.id)?;
    let (here, others): (Vec<Lease>, Vec<Lease>) =
        mine.into_iter().partition(|l| l.network_id == network.id);
    if let Some(lease) = here.into_iter().next() {
        refuse_other_ip(opts, &lease, &c.name, &network)?;
        return Ok((Outcome::Pending(lease), hints));
    }
    let facts = bridge_facts(&rtnl, &mut network, opts, None).await?;
    let (_, v4, v6) = pick_addresses(
        Some(&store),
        &network,
        &facts.gw4,
        &facts.gw6,
        (opts.ip, opts.ip6),
    )?;
    let docker_networks = if bare { 0 } else { c.docker_networks.max(1) };
    let ifname = match &opts.ifname {
        Some(i) => i.clone(),
        None => next_ifname(docker_networks, &others),
    };
    let netns_name = opts.netns_name.clone().unwrap_or_else(|| c.name.clone());
    names::validate_netns_name(&netns_name)?;
    let no_gateway = || {
        anyhow!(
            "network '{}' names no gateway and bridge {} has no address in it; give the bridge its gateway address{}",
            network.name,
            network.bridge,
            if opts.bridge.is_some() {
                " or pass --gateway"
            } else {
                ""
            }
        )
    };
    let bridge_mtu = bridge_mtu(facts.bridge.as_ref(), &network);
    let decided = decide_endpoint(
        &opts.endpoint,
        &network,
        bridge_mtu,
        &v4,
        v6.as_ref(),
        no_gateway,
    )?;
    let who = Names {
        id: &c.id,
        name: &c.name,
        network: &network,
        host_ifname: plan::host_ifname(&c.id, &network.id, &ifname),
        ifname,
        netns_name,
        default_route: opts
            .default_route
            .unwrap_or(bare && others.iter().all(|l| !l.default_route)),
        dns: opts.dns.clone(),
    };
    let lease = decided.into_lease(who, Ns::Pending);
    match store.insert(&lock, &lease) {
        // A pending lease is an intent of its own: durable before we say so.
        Ok(()) => match store.sync(&lease) {
            Ok(()) => Ok((Outcome::Pending(lease), hints)),
            Err(e) => {
                let _ = store.remove(&lock, &lease);
                Err(e)
            }
        },
        Err(InsertError::Taken(ip)) => {
            bail!("{ip} was leased by another attach meanwhile; try again")
        }
        Err(InsertError::Other(e)) => Err(e),
    }
}
