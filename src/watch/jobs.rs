//! What the daemon does for each job: attach a labelled container, restore its leases, clean up
//! after a stop, release the lease on removal; each logs its outcome and counts it in the metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::attach::{self, AttachOpts, Hints, Outcome};
use crate::error::AttachError;
use crate::lease::Lease;

use super::labels::{self, Job};
use super::metrics::AttachResult;
use super::{Shared, on_thread, reconcile, restore};

pub(super) async fn run_job(shared: &Arc<Shared>, job: Job) {
    if let Some(problem) = shared.host_problem() {
        tracing::debug!(container = job.container_id(), "ignored: {problem}");
        return;
    }
    match job {
        Job::Attach {
            id,
            name,
            wanted,
            event_ns,
        } => {
            let network = wanted.network.clone();
            attach_job(shared, id.clone(), name.clone(), wanted, event_ns).await;
            // Leases on other networks (attached by hand) come back with it.
            restore::restore(shared, id, name, None, Some(network)).await;
        }
        Job::Restore { id, name, event_ns } => {
            restore::restore(shared, id, name, event_ns, None).await
        }
        Job::BadLabels { name, error, .. } => {
            tracing::error!(container = %name, "not attached: {error}");
            shared.metrics.attach(AttachResult::Error);
        }
        Job::Died { id, name } => {
            let dir = shared.state_dir.clone();
            let forgot = on_thread("netattach-die", move || async move {
                reconcile::forget_netns(&dir, &id)
            });
            match forgot.await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(container = %name, "stopped; removed {n} dead netns link(s)");
                    shared.metrics.link_cleanups(n as u64);
                }
                Err(e) => tracing::error!(container = %name, "cleanup after stop failed: {e:#}"),
            }
        }
        Job::Destroyed { id, name } => {
            let dir = shared.state_dir.clone();
            let docker = shared.docker_client();
            let released = on_thread("netattach-rm", move || async move {
                reconcile::release(&dir, &id, docker.as_deref()).await
            })
            .await;
            match released {
                Ok(leases) if leases.is_empty() => {}
                Ok(leases) => {
                    for l in &leases {
                        tracing::info!(container = %name, ip = %l.v4.ip, network = %l.network, "removed; lease released");
                    }
                    shared.metrics.detach(true);
                }
                Err(e) => {
                    tracing::error!(container = %name, "releasing the lease failed: {e:#}");
                    shared.metrics.detach(false);
                }
            }
        }
    }
}

/// Runs an attach on a job thread, through the daemon's Docker client.
pub(super) async fn attach_on_thread(
    shared: &Arc<Shared>,
    opts: AttachOpts,
) -> anyhow::Result<(Outcome, Hints)> {
    let dir = shared.state_dir.clone();
    let docker = shared.docker_client();
    on_thread("netattach-attach", move || async move {
        tracing::debug!(container = %opts.container, "attach job running");
        attach::attach_using(&opts, &dir, docker.as_deref()).await
    })
    .await
}

/// Logs (`what`) and counts an attachment made, with its latency from the start event.
pub(super) fn attached(
    shared: &Shared,
    name: &str,
    lease: &Lease,
    event_ns: Option<i64>,
    what: &str,
) {
    let latency = event_ns.and_then(since_event);
    if let Some(d) = latency {
        shared.metrics.observe_latency(d);
    }
    tracing::info!(
        container = %name,
        ip = %lease.v4.ip,
        network = %lease.network,
        latency_ms = latency.map(|d| d.as_secs_f64() * 1e3),
        "{what}"
    );
    shared.metrics.attach(AttachResult::Attached);
}

async fn attach_job(
    shared: &Arc<Shared>,
    id: String,
    name: String,
    wanted: labels::Wanted,
    event_ns: Option<i64>,
) {
    tracing::debug!(
        container = %name,
        event_age_us = event_ns.and_then(since_event).map(|d| d.as_micros() as u64),
        "attach job dispatched"
    );
    match attach_on_thread(shared, wanted.opts(&id)).await {
        Ok((Outcome::Attached(lease), hints)) => {
            attached(shared, &name, &lease, event_ns, "attached");
            if !hints.is_empty() && !shared.hint_shown.swap(true, Ordering::Relaxed) {
                for h in hints {
                    tracing::warn!("{h}");
                }
            }
        }
        Ok((Outcome::Existing(lease), _)) => {
            tracing::debug!(container = %name, ip = %lease.v4.ip, "already attached");
            shared.metrics.attach(AttachResult::Existing);
        }
        Ok((Outcome::Planned(_), _)) => {}
        Ok((Outcome::Pending(lease), _)) => {
            tracing::info!(container = %name, ip = %lease.v4.ip, "stopped before it could be attached; the address stays reserved");
            shared.metrics.attach(AttachResult::Skipped);
        }
        Err(e) => {
            // A container that stopped (or was removed) before we got to it is not an error.
            if AttachError::container_went_away(&e) {
                tracing::info!(container = %name, "stopped before it could be attached");
                shared.metrics.attach(AttachResult::Skipped);
            } else {
                tracing::error!(container = %name, "attach failed: {e:#}");
                shared.metrics.attach(AttachResult::Error);
            }
        }
    }
}

/// Time elapsed since a Docker event (nanoseconds since the Unix epoch).
pub(super) fn since_event(event_ns: i64) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    now.checked_sub(Duration::from_nanos(u64::try_from(event_ns).ok()?))
}
