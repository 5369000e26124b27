//! The daemon's HTTP endpoints: a deliberately small HTTP/1.1 responder on tokio. Side effects:
//! one TCP listener; every endpoint only reads.
//!
//! Bounds (so a slow or hostile client cannot hold the daemon): the request head must arrive
//! within [`READ_TIMEOUT`] and fit in [`MAX_HEAD`] bytes; a body is never read; the answer is
//! written within [`WRITE_TIMEOUT`]; one request per connection (`Connection: close`); at most
//! [`MAX_CONNECTIONS`] connections are served at once and further ones are closed at once.
//!
//! A request whose `Host` names anything but loopback, the endpoints' own address or an
//! `--allow-host` name is refused with 421 (DNS rebinding; see [`super::listen`]).
//! `/attachments` and `/metrics` read every lease: that runs on the blocking pool (plain file
//! reads, never `setns`), at most [`MAX_LEASE_READS`] at once and for [`LEASE_READ_LIMIT`] at
//! most, so a slow state directory never stalls the event loop or the other endpoints.
//!
//! | path           | answer                                                             |
//! |----------------|--------------------------------------------------------------------|
//! | `/healthz`     | 200 `ok` while the process serves                                  |
//! | `/readyz`      | 200 when Docker answers, netlink works and this is the host netns; |
//! |                | 503 otherwise, with a JSON reason                                  |
//! | `/version`     | JSON: tool version, git commit, Docker engine and API version      |
//! | `/metrics`     | Prometheus text                                                    |
//! | `/attachments` | the records of `list --json`                                       |

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::listen::HostPolicy;
use super::metrics::Gauges;
use super::request::{JSON, PROMETHEUS, TEXT};
pub use super::request::{Request, Response, head_end, parse_head};
use super::{GIT_COMMIT, Shared, VERSION};
use crate::list;
use crate::output;

pub const MAX_HEAD: usize = 8 * 1024;
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_CONNECTIONS: usize = 512;
/// Lease reads (for /attachments and /metrics) in flight at once.
pub const MAX_LEASE_READS: usize = 2;
/// A lease read that takes longer is answered 503.
pub const LEASE_READ_LIMIT: Duration = Duration::from_secs(10);
/// A readiness answer is reused for this long, so a flood of probes costs Docker nothing.
const READY_CACHE: Duration = Duration::from_secs(1);
const CHECK_LIMIT: Duration = Duration::from_secs(2);

/// Accepts connections until the listener fails for good.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, policy: HostPolicy) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let ctx = Arc::new(Context {
        policy,
        cache: tokio::sync::Mutex::new(None),
        lease_reads: Arc::new(Semaphore::new(MAX_LEASE_READS)),
    });
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("too many HTTP connections; closing one");
            drop(stream);
            continue;
        };
        let (shared, ctx) = (shared.clone(), ctx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            handle(stream, &shared, &ctx).await;
        });
    }
}

/// What every connection shares besides [`Shared`].
struct Context {
    policy: HostPolicy,
    /// The last readiness answer.
    cache: tokio::sync::Mutex<Option<(Instant, Response)>>,
    lease_reads: Arc<Semaphore>,
}

async fn handle(mut stream: TcpStream, shared: &Arc<Shared>, ctx: &Context) {
    let (resp, head_only) = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => (
            Response::error(408, "request head not received in time"),
            false,
        ),
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => (
            Response::error(431, "request head larger than 8 KiB"),
            false,
        ),
        Ok(Ok(head)) => match parse_head(&head) {
            Err(why) => (Response::error(400, why), false),
            Ok(req) => {
                let head_only = req.method == "HEAD";
                let local = stream.local_addr().ok();
                match &req.host {
                    Some(h) if !ctx.policy.allows(Some(h), local) => {
                        tracing::debug!(host = %h, path = %req.path, "refused: Host not served");
                        (Response::error(421, &HostPolicy::refusal(h)), head_only)
                    }
                    _ => (route(&req, shared, ctx).await, head_only),
                }
            }
        },
    };
    let bytes = resp.encode(head_only);
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        linger(&mut stream).await;
    }
}

/// Reads and drops what the client still sends (a refused oversized head, a body) for a short,
/// bounded while before closing: closing with unread input makes the kernel send a reset, which
/// can destroy the answer before the client reads it.
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

enum HeadError {
    Closed,
    TooLarge,
}

async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf) {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

async fn route(req: &Request, shared: &Arc<Shared>, ctx: &Context) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "read-only endpoints: use GET or HEAD");
    }
    match req.path.as_str() {
        "/healthz" => Response {
            status: 200,
            content_type: TEXT,
            body: "ok\n".into(),
        },
        "/readyz" => {
            let mut cached = ctx.cache.lock().await;
            if let Some((at, resp)) = cached.as_ref() {
                if at.elapsed() < READY_CACHE {
                    return resp.clone();
                }
            }
            let resp = readiness(shared).await;
            *cached = Some((Instant::now(), resp.clone()));
            resp
        }
        "/version" => version(shared),
        "/metrics" => {
            let rows = match read_leases(shared, ctx).await {
                Ok(rows) => rows.unwrap_or_default(),
                Err(busy) => return busy,
            };
            Response {
                status: 200,
                content_type: PROMETHEUS,
                body: shared.metrics.render(&Gauges {
                    docker_up: shared.docker().engine.is_some(),
                    attachments: &rows,
                    version: VERSION,
                    commit: GIT_COMMIT,
                    job_threads: super::job_threads_busy(),
                    job_threads_limit: super::MAX_JOB_THREADS,
                }),
            }
        }
        "/attachments" => match read_leases(shared, ctx).await {
            Err(busy) => busy,
            Ok(Ok(rows)) => {
                let records: Vec<_> = rows.iter().map(output::list_record).collect();
                Response {
                    status: 200,
                    content_type: JSON,
                    body: format!("{}\n", output::to_json(&records)),
                }
            }
            Ok(Err(e)) => Response::error(500, &format!("{e:#}")),
        },
        _ => Response::error(
            404,
            "no such endpoint; try /healthz, /readyz, /version, /metrics or /attachments",
        ),
    }
}

/// Every lease with its status, read off the event loop (see the module header); `Err` is the
/// 503 to answer when the reads are busy or slow.
async fn read_leases(
    shared: &Arc<Shared>,
    ctx: &Context,
) -> Result<anyhow::Result<Vec<list::Row>>, Response> {
    let slow = || {
        Response::error(
            503,
            &format!(
                "reading the leases of {} took longer than {} s; try again",
                shared.state_dir.display(),
                LEASE_READ_LIMIT.as_secs()
            ),
        )
    };
    let dir = shared.state_dir.clone();
    let work = async move {
        // The permit goes with the read: a read stuck past the limit still holds it, so stuck
        // reads never number more than MAX_LEASE_READS threads.
        let permit = ctx.lease_reads.clone().acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            list::list(&dir)
        })
        .await
    };
    match tokio::time::timeout(LEASE_READ_LIMIT, work).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Ok(Err(anyhow::anyhow!("the lease reader failed: {e}"))),
        Err(_) => Err(slow()),
    }
}

async fn readiness(shared: &Arc<Shared>) -> Response {
    let state = shared.docker();
    let docker = match &state.engine {
        Some(engine) => engine.ping(CHECK_LIMIT).await.map_err(|e| format!("{e:#}")),
        None => Err(state
            .last_error
            .unwrap_or_else(|| "not connected to Docker".into())),
    };
    let netlink = match tokio::time::timeout(CHECK_LIMIT, shared.rtnl.link_by_name("lo")).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err("netlink answers but lists no loopback interface".to_string()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("netlink did not answer in time".to_string()),
    };
    let host = shared.host_problem().map_or(Ok(()), Err);
    let word = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let reason = [&docker, &netlink, &host]
        .into_iter()
        .find_map(|r| r.as_ref().err().cloned());
    let ready = reason.is_none();
    Response::json(
        if ready { 200 } else { 503 },
        &json!({
            "ready": ready,
            "reason": reason,
            "docker": word(&docker),
            "netlink": word(&netlink),
            "host_netns": word(&host),
        }),
    )
}

fn version(shared: &Arc<Shared>) -> Response {
    let state = shared.docker();
    let docker = match &state.engine {
        Some(e) => json!({
            "host": e.host,
            "connected": true,
            "engine_version": e.engine_version,
            "api_version": e.api_version,
        }),
        None => json!({
            "host": shared.docker_host,
            "connected": false,
            "engine_version": null,
            "api_version": null,
        }),
    };
    Response::json(
        200,
        &json!({
            "version": VERSION,
            "git_commit": GIT_COMMIT,
            "docker": docker,
        }),
    )
}
