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
        Job::AttachAhead { id, name, wanted } => attach_ahead(shared, id, name, wanted).await,
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

/// Logs (`what`) and counts an attachment made (now), with its latency from the start event.
pub(super) fn attached(
    shared: &Shared,
    name: &str,
    lease: &Lease,
    event_ns: Option<i64>,
    what: &str,
) {
    attached_at(shared, name, lease, event_ns, SystemTime::now(), what);
}

/// [`attached`], for an attachment done at `at`.
fn attached_at(
    shared: &Shared,
    name: &str,
    lease: &Lease,
    event_ns: Option<i64>,
    at: SystemTime,
    what: &str,
) {
    let latency = event_ns.and_then(|ns| between(ns, at));
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
    // Made ahead of this start (begun at its `connect`, see super::ahead): counted here, not
    // attached again (no second inspect of a container Docker has just started).
    let ahead = shared.ahead().take_attached(&id, event_ns);
    if let Some((at, lease)) = ahead {
        attached_at(shared, &name, &lease, event_ns, at, "attached");
        return;
    }
    match attach_on_thread(shared, wanted.opts(&id)).await {
        Ok((Outcome::Attached(lease), hints)) => {
            attached(shared, &name, &lease, event_ns, "attached");
            show_hints(shared, hints);
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

/// The first hints of the daemon's life are logged (they are the same for every container).
fn show_hints(shared: &Shared, hints: Vec<String>) {
    if !hints.is_empty() && !shared.hint_shown.swap(true, Ordering::Relaxed) {
        for h in hints {
            tracing::warn!("{h}");
        }
    }
}

/// The attach of a labelled container that Docker is starting (super::ahead): made only if
/// Docker's answer (which waits for the start) says it runs. Anything else is left to the
/// `start` event's attach, queued behind this job, which logs and counts as always; so a
/// failure here is logged at debug level only (that attach meets it again and reports it).
async fn attach_ahead(shared: &Arc<Shared>, id: String, name: String, wanted: labels::Wanted) {
    let mut opts = wanted.opts(&id);
    opts.running_only = true;
    match attach_on_thread(shared, opts).await {
        Ok((Outcome::Attached(lease), hints)) => {
            tracing::debug!(container = %name, ip = %lease.v4.ip, "attached ahead of the start event");
            shared.ahead().attached(&id, SystemTime::now(), lease);
            show_hints(shared, hints);
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(
            container = %name,
            "not attached ahead of the start event (its start event's attach tries): {e:#}"
        ),
    }
}

/// Time elapsed since a Docker event (nanoseconds since the Unix epoch).
pub(super) fn since_event(event_ns: i64) -> Option<Duration> {
    between(event_ns, SystemTime::now())
}

/// Time from a Docker event (nanoseconds since the Unix epoch) to `at`.
fn between(event_ns: i64, at: SystemTime) -> Option<Duration> {
    let at = at.duration_since(UNIX_EPOCH).ok()?;
    // Never negative: an attach made ahead is counted only when done after the event.
    Some(at.saturating_sub(Duration::from_nanos(u64::try_from(event_ns).ok()?)))
}
