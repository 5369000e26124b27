//! `watch`: the daemon. Follows Docker's container events and attaches every container labelled
//! `netattach.network=<network>` when it starts (with the same address after each restart;
//! the attach begins while Docker is still starting it, see [`ahead`]),
//! re-applies on every start every lease a container holds (attached by hand, pending, or
//! rebooted: a lease is the intent), holds `<state>/watch.lock` while it runs,
//! removes its dead netns link when it stops and releases its lease when it is removed; at
//! start-up, after every reconnect and every `--resync` seconds it reconciles (gc, then attach
//! labelled running containers that lack their interface). Serves read-only HTTP endpoints.
//!
//! Side effects: those of `attach`, `detach` and `gc`, plus one TCP listener. Threads: the
//! daemon's own runtime runs on the main thread (events, HTTP, timers; the lease reads of
//! `/attachments` and `/metrics` go to tokio's blocking pool: plain file reads, never `setns`,
//! so a pooled thread is safe for them); every attach, cleanup
//! and gc runs on a fresh thread with its own current-thread runtime, so the blocking store lock
//! (`flock`) and the netns threads of the core never stall the event loop. At most
//! [`MAX_JOB_THREADS`] such threads run at once; further jobs wait as tasks. Jobs of one container
//! run in order (a `die` is handled before the following `start`) from a queue that exists only
//! while the container has work; different containers proceed in parallel, and one failing
//! container never stops the others.

pub mod ahead;
mod dispatch;
pub mod http;
mod jobs;
pub mod labels;
pub mod listen;
pub mod metrics;
pub mod reconcile;
mod request;
pub mod restore;
mod signals;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;

use crate::cli::WatchArgs;
use crate::docker::{self, DockerClient};
use crate::hostns::{self, Placement};
use crate::link::Rtnl;
use crate::privilege;
pub use dispatch::{Dispatcher, MAX_JOB_THREADS, job_threads_busy, on_thread};
use listen::{HostPolicy, Listen};
use metrics::Metrics;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);
/// How often the daemon pings Docker while the event stream is quiet (a stream can hang
/// without ever reporting an error).
const HEALTH_PERIOD: Duration = Duration::from_secs(5);
const PING_LIMIT: Duration = Duration::from_secs(3);

/// The version and git commit the binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("NETATTACH_GIT_COMMIT");

/// State shared by the event loop, the job workers and the HTTP endpoints.
pub struct Shared {
    pub state_dir: PathBuf,
    pub label_prefix: String,
    pub docker_host: String,
    pub metrics: Metrics,
    /// Netlink socket in the namespace the daemon works in (for readiness).
    pub rtnl: Rtnl,
    docker: Mutex<DockerState>,
    host_problem: Mutex<Option<String>>,
    hint_shown: AtomicBool,
    /// Labelled containers seen created, and attaches made ahead of their `start` event.
    ahead: Mutex<ahead::Ahead>,
}

/// A connection to Docker and what the engine said about itself. Derefs to its client, which
/// the jobs share (its requests run on the daemon's runtime).
pub struct Engine {
    pub client: Arc<DockerClient>,
    pub host: String,
    pub engine_version: String,
    pub api_version: String,
}

impl std::ops::Deref for Engine {
    type Target = DockerClient;
    fn deref(&self) -> &DockerClient {
        &self.client
    }
}

impl Engine {
    /// Connects to the engine `--host`/`DOCKER_HOST` names and asks its version (negotiating
    /// the API version when the engine refuses 1.41).
    async fn connect() -> Result<Engine> {
        let client = DockerClient::connect()?
            .on_runtime(tokio::runtime::Handle::current())
            .with_network_cache();
        let engine_version = client.engine_version().await?;
        Ok(Engine {
            host: client.host().to_string(),
            api_version: client.api_version(),
            engine_version,
            client: Arc::new(client),
        })
    }
}

/// What the daemon knows about its Docker connection.
#[derive(Clone, Default)]
pub struct DockerState {
    /// The engine while its event stream is connected.
    pub engine: Option<Arc<Engine>>,
    /// Why it is not connected.
    pub last_error: Option<String>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave them inconsistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn docker(&self) -> DockerState {
        locked(&self.docker).clone()
    }

    /// The daemon's Docker client while it is connected, for a job to share.
    pub(crate) fn docker_client(&self) -> Option<Arc<DockerClient>> {
        locked(&self.docker)
            .engine
            .as_ref()
            .map(|e| e.client.clone())
    }

    fn docker_up(&self, engine: Arc<Engine>) {
        *locked(&self.docker) = DockerState {
            engine: Some(engine),
            last_error: None,
        };
    }

    fn docker_down(&self, why: String) {
        *locked(&self.docker) = DockerState {
            engine: None,
            last_error: Some(why),
        };
    }

    pub(crate) fn ahead(&self) -> MutexGuard<'_, ahead::Ahead> {
        locked(&self.ahead)
    }

    /// Why the daemon cannot work on the host's interfaces, if it cannot.
    pub fn host_problem(&self) -> Option<String> {
        locked(&self.host_problem).clone()
    }

    fn set_host_problem(&self, p: Option<String>) {
        *locked(&self.host_problem) = p;
    }
}

/// `docker-netattach watch`.
pub fn run(args: WatchArgs, state_dir: &Path) -> Result<i32> {
    default_logging();
    privilege::require("watch")?;
    // Bound before entering the host namespace: the endpoints stay where the process was
    // started (inside its container for `docker run -p 4000:80`).
    let spec = match &args.listen {
        Listen::At(a) => a.to_string(),
        Listen::Name(n) => n.clone(),
        Listen::Auto => {
            // On a thread of its own (gone before `enter`), in the namespace we started in.
            let facts = crate::worker::run("netattach-listen", None, || async {
                Ok(listen::facts().await)
            })?
            .context(
                "--listen auto: cannot inspect this network namespace; pass --listen ADDR:PORT",
            )?;
            let (addr, why) = listen::resolve_auto(&facts);
            tracing::info!(listen = %addr, "--listen auto: {why}");
            addr.to_string()
        }
    };
    let (listener, bound) = listen::bind(&spec)?;
    if !bound.ip().is_loopback() {
        tracing::warn!(listen = %bound, "the read-only HTTP endpoints are reachable from the network");
    }
    let placement = hostns::enter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
    rt.block_on(daemon(args, state_dir.to_path_buf(), listener, placement))
}

/// The daemon logs at info level unless `-v` or RUST_LOG chose otherwise (main set those up).
fn default_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("docker_netattach=info"))
        .try_init();
}

async fn daemon(
    args: WatchArgs,
    state_dir: PathBuf,
    listener: std::net::TcpListener,
    placement: Result<Placement>,
) -> Result<i32> {
    let shared = Arc::new(Shared {
        state_dir,
        label_prefix: args.label_prefix.clone(),
        docker_host: docker::docker_host(),
        metrics: Metrics::default(),
        rtnl: Rtnl::connect()?,
        docker: Mutex::new(DockerState {
            engine: None,
            last_error: Some("not connected to Docker yet".into()),
        }),
        host_problem: Mutex::new(None),
        hint_shown: AtomicBool::new(false),
        ahead: Mutex::new(ahead::Ahead::default()),
    });
    // Held while the daemon runs: `attach` and `doctor` see that starts of this state
    // directory's containers are served (the kernel drops it when the process ends).
    let _serving = match crate::lease::LeaseStore::open(&shared.state_dir)
        .and_then(|_| crate::watch_lock::hold(&shared.state_dir))
    {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("{e:#}; `attach` and `doctor` will not see this daemon");
            None
        }
    };
    match &placement {
        Ok(Placement::Entered) => {
            tracing::info!("working in the host network namespace through /proc/1/ns/net")
        }
        Ok(Placement::Same | Placement::Unknown) => {}
        Err(e) => {
            tracing::error!("{e:#}; serving the HTTP endpoints only");
            shared.set_host_problem(Some(format!("{e:#}")));
        }
    }
    let addr = listener.local_addr().ok();
    let listener =
        tokio::net::TcpListener::from_std(listener).context("cannot use the HTTP listener")?;
    tracing::info!(
        listen = ?addr,
        labels = %format!("{}.network", args.label_prefix),
        state_dir = %shared.state_dir.display(),
        "watching; endpoints /healthz /readyz /version /metrics /attachments"
    );
    let policy = HostPolicy::new(addr, &args.allow_host);
    tokio::spawn(http::serve(listener, shared.clone(), policy));

    let dispatcher = Arc::new(Dispatcher::default());
    let reconciling = Arc::new(tokio::sync::Mutex::new(()));
    let mut shutdown = std::pin::pin!(signals::shutdown());
    let mut backoff = FIRST_BACKOFF;
    let mut was_connected = false;
    let mut logged_down = false;
    loop {
        let connected = tokio::select! {
            r = Engine::connect() => r,
            _ = &mut shutdown => return Ok(0),
        };
        let engine = match connected {
            Ok(e) => Arc::new(e),
            Err(e) => {
                let why = format!("{e:#}");
                if !logged_down {
                    tracing::warn!(
                        "{why}; retrying with backoff up to {} s",
                        MAX_BACKOFF.as_secs()
                    );
                    logged_down = true;
                } else {
                    tracing::debug!("{why}; retrying in {} ms", backoff.as_millis());
                }
                shared.docker_down(why);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => return Ok(0),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let connected_at = tokio::time::Instant::now();
        logged_down = false;
        if was_connected {
            shared.metrics.reconnect();
        }
        was_connected = true;
        tracing::info!(
            host = %engine.host,
            engine = %engine.engine_version,
            api = %engine.api_version,
            "connected to Docker"
        );
        if let Ok(p) = &placement {
            check_host(&shared, &engine, *p).await;
        }
        // Events from one second back: what happens while the reconcile runs is not missed
        // (a replayed event is harmless: every job is idempotent).
        let since = unix_secs() - 1;
        let mut events = std::pin::pin!(engine.events(since));
        shared.docker_up(engine.clone());
        spawn_reconcile(&shared, &dispatcher, &engine, &reconciling);

        let resync = Duration::from_secs(args.resync.max(1));
        let mut resync_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
        let mut health_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + HEALTH_PERIOD, HEALTH_PERIOD);
        let why = loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => handle_event(&shared, &dispatcher, &engine, ev),
                    Some(Err(e)) => break format!("Docker's event stream failed: {:#}", anyhow::Error::new(e)),
                    None => break "Docker closed the event stream".to_string(),
                },
                _ = resync_tick.tick(), if args.resync > 0 => {
                    spawn_reconcile(&shared, &dispatcher, &engine, &reconciling);
                }
                _ = health_tick.tick() => {
                    if let Err(e) = engine.ping(PING_LIMIT).await {
                        break format!("{e:#}");
                    }
                }
                _ = &mut shutdown => {
                    tracing::info!("stopping; attachments stay as they are");
                    return Ok(0);
                }
            }
        };
        tracing::warn!("{why}; reconnecting");
        shared.docker_down(why);
        // A connection that broke at once (an engine that accepts and then fails the stream)
        // backs off like a refused one; one that lived a while reconnects at once.
        if connected_at.elapsed() < STABLE {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = &mut shutdown => return Ok(0),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = FIRST_BACKOFF;
        }
    }
}

/// Refuses to work (readiness says why) when the default bridge is not visible here.
async fn check_host(shared: &Shared, engine: &Engine, placement: Placement) {
    match engine.default_bridge().await {
        Ok(Some(bridge)) => match hostns::check_bridge(&shared.rtnl, &bridge, placement).await {
            Ok(()) => shared.set_host_problem(None),
            Err(e) => {
                tracing::error!("{e:#}; not attaching anything");
                shared.set_host_problem(Some(format!("{e:#}")));
            }
        },
        Ok(None) => shared.set_host_problem(None),
        Err(e) => tracing::warn!("{e:#}; cannot check the host namespace"),
    }
}

fn handle_event(
    shared: &Arc<Shared>,
    dispatcher: &Dispatcher,
    engine: &Engine,
    ev: bollard::models::EventMessage,
) {
    let network_event = ev.typ == Some(bollard::models::EventMessageTypeEnum::NETWORK);
    if !network_event {
        // `netattach_events_total` counts container events.
        shared.metrics.event();
    }
    let Some(actor) = ev.actor else {
        if network_event {
            engine.forget_network("", None);
        }
        return;
    };
    let attributes = actor.attributes.unwrap_or_default();
    let action = ev.action.as_deref().unwrap_or_default();
    if network_event {
        let id = actor.id.as_deref().unwrap_or_default();
        engine.forget_network(id, attributes.get("name").map(String::as_str));
        if action == "connect" {
            let job = shared.ahead().connected(&attributes);
            if let Some(job) = job {
                dispatcher.dispatch(shared, job);
            }
        }
        return;
    }
    let id = actor.id.as_deref().unwrap_or_default();
    match action {
        "create" => shared
            .ahead()
            .created(id, &attributes, &shared.label_prefix),
        "destroy" => shared.ahead().destroyed(id),
        _ => {}
    }
    let job = labels::job_of_event(action, id, &attributes, ev.time_nano, &shared.label_prefix);
    if let Some(job) = job {
        dispatcher.dispatch(shared, job);
    }
}

fn spawn_reconcile(
    shared: &Arc<Shared>,
    dispatcher: &Arc<Dispatcher>,
    engine: &Arc<Engine>,
    reconciling: &Arc<tokio::sync::Mutex<()>>,
) {
    let (shared, dispatcher, engine, reconciling) = (
        shared.clone(),
        dispatcher.clone(),
        engine.clone(),
        reconciling.clone(),
    );
    tokio::spawn(async move {
        // One reconcile at a time; a request that arrives meanwhile runs after it.
        let _one = reconciling.lock().await;
        match reconcile::reconcile(&shared, &dispatcher, &engine).await {
            Ok(()) => shared.metrics.reconcile(true),
            Err(e) => {
                tracing::error!("reconcile failed: {e:#}");
                shared.metrics.reconcile(false);
            }
        }
    });
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
