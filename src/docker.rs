//! Docker Engine API adapter (bollard), the only module (with its `docker/parse.rs`) that names bollard: the one-shot
//! commands' inspects and the daemon's event stream, ping, version and container lists. Side
//! effects: HTTP requests to the engine, read-only.
//!
//! No version round trip on the normal path: the client is pinned to API 1.41 (Docker 20.10),
//! and bollard 0.21 in fact sends unversioned paths, which every engine serves at its own
//! current version (Docker 20.10 through 29). Should an engine refuse the version (Docker 29
//! refuses versions below 1.44 with a 400 "too old"), the version its refusal names (else the
//! one `GET /version` reports) is used from then on: negotiated once per client, and the
//! refused request is sent once more. The fields we read exist in every API version since 1.41.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerInspectResponse, EventMessage, NetworkInspect};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use bollard::{ClientVersion, Docker};
use futures::Stream;
use tokio::sync::OnceCell;

use crate::error::AttachError;

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Docker's default network (`docker run` without `--network`; `attach` without `--network`).
pub const DEFAULT_NETWORK: &str = "bridge";
const PINNED_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// Bound on every Docker request; override with DOCKER_NETATTACH_DOCKER_TIMEOUT (seconds).
const DEFAULT_TIMEOUT_SECS: u64 = 10;

mod network_cache;
mod parse;

use network_cache::NetworkCache;

pub use parse::{ContainerInfo, Endpoint, NetworkInfo, SubnetConfig, container_info, network_info};

/// The engine chosen on the command line (`docker -H URL netattach ...`), set once by `run`.
static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every later connection use `host` (the `--host` that `docker -H` passes on).
pub fn use_host(host: &str) {
    if !host.is_empty() {
        let _ = HOST.set(host.to_string());
    }
}

/// The engine: `--host`, else `DOCKER_HOST`, else the unix socket, like the docker CLI.
pub fn docker_host() -> String {
    HOST.get()
        .cloned()
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// The one Docker client of the process: the one-shot commands make one, the daemon makes one
/// per connection and its jobs share it. The API version is negotiated at most once per client.
pub struct DockerClient {
    /// Pinned to API 1.41: no version round trip on the normal path.
    pinned: Docker,
    /// The client at the version the engine named, once it refused the pinned one.
    negotiated: OnceCell<Docker>,
    host: String,
    timeout: u64,
    /// The daemon's runtime: requests run there, so the pooled connections live on a runtime
    /// that outlasts the job threads' own (a connection made on a job's runtime would die with
    /// it while another job holds it).
    runtime: Option<tokio::runtime::Handle>,
    /// The daemon's network facts, kept until its event stream reports a change.
    networks: Option<NetworkCache>,
}

/// A running container, from the container list.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// The one place a bollard client is built.
fn client(host: &str, timeout: u64, api: &ClientVersion) -> Result<Docker> {
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, timeout, api)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, timeout, api)
    } else {
        bail!(
            "DOCKER_HOST '{host}' is not supported; use unix:///path/to/docker.sock or tcp://host:port"
        );
    };
    docker.map_err(|e| unreachable_err(host, e))
}

impl DockerClient {
    /// Connects to `--host`, `DOCKER_HOST` or the unix socket, like the docker CLI.
    pub fn connect() -> Result<Self> {
        let timeout = std::env::var("DOCKER_NETATTACH_DOCKER_TIMEOUT")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(DEFAULT_TIMEOUT_SECS);
        Self::connect_to(&docker_host(), timeout)
    }

    fn connect_to(host: &str, timeout: u64) -> Result<Self> {
        Ok(DockerClient {
            pinned: client(host, timeout, &PINNED_VERSION)?,
            negotiated: OnceCell::new(),
            host: host.to_string(),
            timeout,
            runtime: None,
            networks: None,
        })
    }

    /// Runs every request on `runtime` (the daemon's), from whichever runtime asks.
    pub fn on_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Keeps what network inspects said until [`forget_network`](Self::forget_network): for
    /// the daemon, whose event stream reports every change of a network.
    pub fn with_network_cache(mut self) -> Self {
        self.networks = Some(NetworkCache::default());
        self
    }

    /// Docker reported a change of network `id` (`name`): created, destroyed, a container
    /// connected or disconnected. Its kept facts are dropped (all of them for an empty `id`).
    pub fn forget_network(&self, id: &str, name: Option<&str>) {
        if let Some(cache) = &self.networks {
            cache.forget(id, name);
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The client in use: the negotiated one once there is one, else the pinned one.
    fn api(&self) -> &Docker {
        self.negotiated.get().unwrap_or(&self.pinned)
    }

    /// The API version in use ("1.41" unless the engine refused it).
    pub fn api_version(&self) -> String {
        let v = self.api().client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    /// After the engine refused the pinned version: the version its refusal names, else the
    /// one `GET /version` reports. Once per client; concurrent refusals share the one answer.
    async fn negotiate(&self, refusal: &str) -> Result<&Docker> {
        self.negotiated
            .get_or_try_init(|| async {
                let server = match suggested_version(refusal) {
                    Some(v) => v,
                    None => self.version_of_engine().await?,
                };
                tracing::debug!(
                    api = %format!("{}.{}", server.major_version, server.minor_version),
                    "engine refused API {}.{}; retrying",
                    PINNED_VERSION.major_version,
                    PINNED_VERSION.minor_version
                );
                client(&self.host, self.timeout, &server)
            })
            .await
    }

    async fn version_of_engine(&self) -> Result<ClientVersion> {
        let version = self
            .call(&self.pinned, |d| async move { d.version().await })
            .await
            .map_err(|e| self.request_err(e, "engine version"))?;
        let api = version
            .api_version
            .ok_or_else(|| anyhow!("Docker at {} did not say its API version", self.host))?;
        let (major, minor) = api
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| anyhow!("Docker at {} reports API version '{api}'", self.host))?;
        Ok(ClientVersion {
            major_version: major,
            minor_version: minor,
        })
    }

    /// One request on `docker`, on the daemon's runtime when there is one.
    async fn call<T, F, Fut>(&self, docker: &Docker, f: F) -> Result<T, BollardError>
    where
        F: FnOnce(Docker) -> Fut,
        Fut: Future<Output = Result<T, BollardError>> + Send + 'static,
        T: Send + 'static,
    {
        let fut = f(docker.clone());
        match &self.runtime {
            None => fut.await,
            Some(rt) => rt.spawn(fut).await.unwrap_or_else(|e| {
                Err(BollardError::IOError {
                    err: std::io::Error::other(format!("the Docker request was dropped: {e}")),
                })
            }),
        }
    }

    /// One request; when the engine refuses our API version, the version is negotiated (once
    /// per client) and the request is sent once more. The outer error: the negotiation failed.
    async fn request<T, F, Fut>(&self, f: F) -> Result<Result<T, BollardError>>
    where
        F: Fn(Docker) -> Fut,
        Fut: Future<Output = Result<T, BollardError>> + Send + 'static,
        T: Send + 'static,
    {
        let docker = self.api();
        let pinned = std::ptr::eq(docker, &self.pinned);
        let resp = self.call(docker, &f).await;
        match resp {
            // Refused at the pinned version (also when another request negotiated meanwhile).
            Err(BollardError::DockerResponseServerError {
                status_code: 400,
                ref message,
            }) if pinned && is_refused_version(message) => {
                let docker = self.negotiate(message).await?;
                Ok(self.call(docker, &f).await)
            }
            resp => Ok(resp),
        }
    }

    /// Inspects a container by name, full ID or unique ID prefix.
    pub async fn container(&self, name: &str) -> Result<ContainerInfo> {
        match self.inspect_container(name).await? {
            Ok(c) => container_info(c, name),
            Err(e) => Err(self.container_err(name, e)),
        }
    }

    async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Result<ContainerInspectResponse, BollardError>> {
        let name = name.to_string();
        self.request(move |d| {
            let name = name.clone();
            async move { d.inspect_container(&name, None).await }
        })
        .await
    }

    async fn inspect_network(&self, name: &str) -> Result<Result<NetworkInspect, BollardError>> {
        let name = name.to_string();
        self.request(move |d| {
            let name = name.clone();
            async move { d.inspect_network(&name, None).await }
        })
        .await
    }

    /// Inspects a container, `Ok(None)` when Docker does not know it.
    pub async fn container_opt(&self, name: &str) -> Result<Option<ContainerInfo>> {
        match self.container(name).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if matches!(AttachError::of(&e), Some(AttachError::NoSuchContainer(_))) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Looks a container up by name, ID or unique ID prefix, telling "Docker does not know it"
    /// (404) and "Docker cannot be asked" (no connection, timeout) apart from other errors
    /// (which are returned, e.g. an ambiguous ID prefix).
    pub async fn container_lookup(&self, name: &str) -> Result<Lookup> {
        let resp = match self.inspect_container(name).await {
            Ok(resp) => resp,
            Err(e) => return Ok(Lookup::Unreachable(format!("{e:#}"))),
        };
        match resp {
            Ok(c) => container_info(c, name).map(Lookup::Found),
            Err(e @ BollardError::DockerResponseServerError { .. }) => {
                let err = self.container_err(name, e);
                if matches!(AttachError::of(&err), Some(AttachError::NoSuchContainer(_))) {
                    Ok(Lookup::NotFound)
                } else {
                    Err(err)
                }
            }
            Err(e) => Ok(Lookup::Unreachable(format!(
                "{:#}",
                self.request_err(e, &format!("container '{name}'"))
            ))),
        }
    }

    /// The full ID of a network Docker knows by this name or ID (any driver); `None` on 404.
    pub async fn network_id(&self, name: &str) -> Result<Option<String>> {
        match self.inspect_network(name).await? {
            Ok(n) => Ok(Some(n.id.unwrap_or_else(|| name.to_string()))),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.request_err(e, &format!("network '{name}'"))),
        }
    }

    /// Inspects a network by name or ID (the daemon: once, until a change is reported).
    pub async fn network(&self, name: &str) -> Result<NetworkInfo> {
        let Some(cache) = &self.networks else {
            return self.inspect_network_info(name).await;
        };
        if let Some(n) = cache.get(name) {
            return Ok(n);
        }
        let generation = cache.generation();
        let n = self.inspect_network_info(name).await?;
        cache.put(name, &n, generation);
        Ok(n)
    }

    async fn inspect_network_info(&self, name: &str) -> Result<NetworkInfo> {
        match self.inspect_network(name).await? {
            Ok(n) => network_info(n, name),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(anyhow!(
                "no such Docker network '{name}'; list them with `docker network ls`"
            )),
            Err(e) => Err(self.request_err(e, &format!("network '{name}'"))),
        }
    }

    /// The daemon's hello: `GET /version` (negotiating the API version if the engine refuses
    /// ours); returns the engine's version.
    pub async fn engine_version(&self) -> Result<String> {
        match self.request(|d| async move { d.version().await }).await {
            Ok(Ok(v)) => Ok(v.version.unwrap_or_default()),
            Ok(Err(BollardError::DockerResponseServerError {
                status_code: 400,
                message,
            })) if is_refused_version(&message) => bail!(
                "Docker at {} accepts none of the API versions tried (last {}): {message}",
                self.host,
                self.api_version()
            ),
            Ok(Err(e)) => bail!("cannot reach Docker at {}: {}", self.host, text(e)),
            Err(e) => bail!("cannot reach Docker at {}: {e:#}", self.host),
        }
    }

    /// `GET /_ping`, bounded by `limit`.
    pub async fn ping(&self, limit: Duration) -> Result<()> {
        let ping = self.call(self.api(), |d| async move { d.ping().await });
        match tokio::time::timeout(limit, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(anyhow!(
                "Docker at {} does not answer: {}",
                self.host,
                text(e)
            )),
            Err(_) => Err(anyhow!(
                "Docker at {} did not answer a ping within {} ms",
                self.host,
                limit.as_millis()
            )),
        }
    }

    /// Container `start`, `die` and `destroy` events, and the network events that change what
    /// a network inspect says (`create`, `destroy`, `connect`, `disconnect`), from `since` (Unix
    /// seconds) on. Read on the caller's runtime (the daemon's). (The two filters are ANDed by
    /// Docker: a container's `create` comes too, and is ignored.)
    pub fn events(
        &self,
        since: i64,
    ) -> impl Stream<Item = Result<EventMessage, BollardError>> + use<> {
        let filters = HashMap::from([
            (
                "type".to_string(),
                vec!["container".to_string(), "network".to_string()],
            ),
            (
                "event".to_string(),
                vec![
                    "start".into(),
                    "die".into(),
                    "destroy".into(),
                    "create".into(),
                    "connect".into(),
                    "disconnect".into(),
                ],
            ),
        ]);
        self.api().events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }))
    }

    /// Running containers carrying `<prefix>.network`.
    pub async fn labelled(&self, prefix: &str) -> Result<Vec<Labelled>> {
        let filters = HashMap::from([
            ("label".to_string(), vec![format!("{prefix}.network")]),
            ("status".to_string(), vec!["running".to_string()]),
        ]);
        self.list(filters).await
    }

    /// Every running container (labelled or not; for the leases attached by hand).
    pub async fn all_running(&self) -> Result<Vec<Labelled>> {
        let filters = HashMap::from([("status".to_string(), vec!["running".to_string()])]);
        self.list(filters).await
    }

    async fn list(&self, filters: HashMap<String, Vec<String>>) -> Result<Vec<Labelled>> {
        let list = self
            .call(self.api(), |d| async move {
                d.list_containers(Some(ListContainersOptions {
                    all: false,
                    filters: Some(filters),
                    ..Default::default()
                }))
                .await
            })
            .await
            .map_err(|e| anyhow!("cannot list containers at {}: {}", self.host, text(e)))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_else(|| crate::plan::short_id(&id).to_string());
                Some(Labelled {
                    id,
                    name,
                    labels: c.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Bridge interface of Docker's default network (`docker0` unless configured otherwise).
    pub async fn default_bridge(&self) -> Result<Option<String>> {
        match self
            .call(self.api(), |d| async move {
                d.inspect_network(DEFAULT_NETWORK, None).await
            })
            .await
        {
            Ok(n) => Ok(n
                .options
                .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
                .filter(|b| !b.is_empty())),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(anyhow!("cannot inspect network bridge: {}", text(e))),
        }
    }

    fn container_err(&self, name: &str, e: BollardError) -> anyhow::Error {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404, ..
            } => anyhow!(AttachError::NoSuchContainer(name.to_string())),
            // 400 on current engines, 500 on Docker 20.10.
            BollardError::DockerResponseServerError { ref message, .. }
                if message.to_ascii_lowercase().contains("multiple ids") =>
            {
                anyhow!(
                    "container ID prefix '{name}' is ambiguous (Docker: {message}); give more characters or the container's name"
                )
            }
            _ => self.request_err(e, &format!("container '{name}'")),
        }
    }

    fn request_err(&self, e: BollardError, what: &str) -> anyhow::Error {
        match e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => anyhow!("Docker answered {status_code} for {what}: {message}"),
            BollardError::RequestTimeoutError => anyhow!(
                "Docker at {} did not answer within the timeout while asking for {what}; check `docker info` (DOCKER_NETATTACH_DOCKER_TIMEOUT sets the limit in seconds)",
                self.host
            ),
            _ => unreachable_err(&self.host, e),
        }
    }
}

/// What Docker says about a container name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(ContainerInfo),
    /// HTTP 404.
    NotFound,
    /// No answer (no connection, timeout, a refused API version); the sentence says why.
    Unreachable(String),
}

/// Pure: whether a 400's message is the engine refusing our API version ("client version 1.41
/// is too old. Minimum supported API version is 1.44 ...").
fn is_refused_version(message: &str) -> bool {
    message.contains("too old")
        || message.contains("minimum supported API version")
        || suggested_version(message).is_some()
}

/// Pure: the API version an engine's "too old"/"too new" error names
/// ("... Minimum supported API version is 1.44 ...", "... Maximum supported API version is 1.41").
pub fn suggested_version(message: &str) -> Option<ClientVersion> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("api version is ")? + "api version is ".len();
    let word: String = lower[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let (major, minor) = word.trim_end_matches('.').split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// An error and its sources on one line (anyhow's `{:#}`).
fn text(e: BollardError) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

fn unreachable_err(host: &str, e: BollardError) -> anyhow::Error {
    let text = text(e);
    if text.contains("ermission denied") {
        anyhow!(
            "permission denied on the Docker socket {host}; run as root or as a member of the docker group"
        )
    } else {
        anyhow!(
            "cannot reach Docker at {host}: {text}; is the daemon running (`docker info`)? DOCKER_HOST selects another engine"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_old_is_recognised() {
        assert!(is_refused_version(
            "client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version"
        ));
        assert!(is_refused_version(
            "client version 1.53 is too new. Maximum supported API version is 1.41"
        ));
        assert!(!is_refused_version("bad parameter"));
    }

    #[test]
    fn versions_named_by_engine_errors() {
        let v = suggested_version("client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version").unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 44));
        let v = suggested_version(
            "client version 1.53 is too new. Maximum supported API version is 1.41",
        )
        .unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        assert!(suggested_version("page not found").is_none());
        assert!(suggested_version("Minimum supported API version is x").is_none());
    }
}
