//! Bringing the host in line with Docker: the full reconcile (start-up, reconnect, resync) and
//! the per-container cleanups behind the `die` and `destroy` events. Side effects: those of
//! `gc` and `attach` (through the dispatcher), netns links and leases of the state directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};

use super::labels::{self, Job};
use super::{Dispatcher, Engine, Shared, on_thread};
use crate::detach::{self, DetachOpts};
use crate::docker::DockerClient;
use crate::gc;
use crate::lease::{Lease, LeaseStore};
use crate::netns;

/// Collects what belongs to containers that went away while nobody was watching, then queues
/// an attach for every labelled running container (a no-op for those already attached; the
/// same address again for those restarted meanwhile) and a restore for every running container
/// that holds a lease (after a reboot, a restart, or a pending attach).
pub async fn reconcile(
    shared: &Arc<Shared>,
    dispatcher: &Dispatcher,
    engine: &Engine,
) -> Result<()> {
    if let Some(problem) = shared.host_problem() {
        bail!("{problem}");
    }
    let dir = shared.state_dir.clone();
    let docker = engine.client.clone();
    let collected = on_thread("netattach-gc", move || async move {
        gc::gc_using(&dir, false, Some(&docker)).await
    })
    .await;
    match &collected {
        Ok(removed) => {
            for r in removed {
                tracing::info!(
                    container = %if r.container_name.is_empty() { &r.container_id } else { &r.container_name },
                    "reconcile removed {} {}: {}",
                    r.kind,
                    r.object,
                    r.reason
                );
            }
        }
        // A cleanup that fails (a corrupt lease file, say) must not keep the labelled
        // containers from being attached: go on, and report the failure at the end.
        Err(e) => tracing::error!("reconcile: cleanup failed: {e:#}"),
    }
    let running = engine.labelled(&shared.label_prefix).await?;
    tracing::debug!(count = running.len(), "labelled running containers");
    for c in running {
        let job = match labels::wanted(&c.labels, &shared.label_prefix) {
            None => continue,
            Some(Ok(wanted)) => Job::Attach {
                id: c.id,
                name: c.name,
                wanted,
                event_ns: None,
            },
            Some(Err(e)) => Job::BadLabels {
                id: c.id,
                name: c.name,
                error: format!("{e:#}"),
            },
        };
        dispatcher.dispatch(shared, job);
    }
    restore_leased(shared, dispatcher, engine).await?;
    collected.map(|_| ())
}

/// Queues a restore for every running container that holds a lease (attached by hand or by
/// label, pending, or restarted/rebooted meanwhile); the job re-applies the leases that lack
/// their interface and leaves the others alone.
async fn restore_leased(
    shared: &Arc<Shared>,
    dispatcher: &Dispatcher,
    engine: &Engine,
) -> Result<()> {
    let dir = shared.state_dir.clone();
    let leased = on_thread("netattach-leases", move || async move {
        let Some(store) = LeaseStore::open_existing(&dir)? else {
            return Ok(BTreeSet::new());
        };
        Ok(store
            .all()?
            .into_iter()
            .filter(|l| l.netns_path.is_empty())
            .map(|l| l.container_id)
            .collect::<BTreeSet<String>>())
    })
    .await?;
    if leased.is_empty() {
        return Ok(());
    }
    for c in engine.all_running().await? {
        if leased.contains(&c.id) {
            dispatcher.dispatch(
                shared,
                Job::Restore {
                    id: c.id,
                    name: c.name,
                    event_ns: None,
                },
            );
        }
    }
    Ok(())
}

/// After `die`: removes the netns links of the container's leases that no longer lead to a live
/// namespace of it. The leases stay (the next start gets the same address). Returns how many
/// links were removed.
pub fn forget_netns(state_dir: &Path, container_id: &str) -> Result<usize> {
    let Some(store) = LeaseStore::open_existing(state_dir)? else {
        return Ok(0);
    };
    let mine = store.of_container(container_id)?;
    if mine.is_empty() {
        return Ok(0);
    }
    // Under the lock, so that a concurrent attach replacing the link is never undone.
    let _lock = store.lock()?;
    let mut removed = 0;
    for l in mine {
        if netns::id_of(&l.netns_source()) == Some(l.netns_id()) {
            continue; // still alive (a `die` replayed after a restart): nothing to do
        }
        if netns::remove_link(&l.netns_name, l.netns_id())? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// After `destroy`: releases every lease of the container (`detach` by its ID: interfaces,
/// netns link, resolv.conf, a bridge `attach --bridge` made and left empty). Does nothing, and
/// asks Docker nothing, for a container without a lease.
pub async fn release(
    state_dir: &Path,
    container_id: &str,
    docker: Option<&DockerClient>,
) -> Result<Vec<Lease>> {
    let Some(store) = LeaseStore::open_existing(state_dir)? else {
        return Ok(vec![]);
    };
    if store.of_container(container_id)?.is_empty() {
        return Ok(vec![]);
    }
    let opts = DetachOpts {
        container: container_id.to_string(),
        network: None,
        // The daemon has threads (and no caller waiting on it): it waits for the whole deletion.
        return_when_unregistered: false,
    };
    detach::detach_using(&opts, state_dir, docker).await
}
