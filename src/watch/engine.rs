//! The daemon's own Docker connection (bollard): the event stream, ping, version and the list
//! of labelled containers. Side effects: read-only requests to the engine.
//!
//! Unlike the one-shot commands (which pin API 1.41 to save a round trip), a long-running daemon
//! can afford to negotiate the API version once per connection, so it also works on engines
//! that dropped 1.41 (Docker 29).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bollard::models::EventMessage;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use bollard::{ClientVersion, Docker};
use futures::Stream;

/// Bound on every request but the event stream (whose headers come at once).
const REQUEST_TIMEOUT_SECS: u64 = 10;

/// The engine, as `--host` or `DOCKER_HOST` names it (unix socket by default).
pub fn docker_host() -> String {
    crate::docker::docker_host()
}

/// A connected engine and what it said about itself.
pub struct Engine {
    docker: Docker,
    pub host: String,
    pub engine_version: String,
    pub api_version: String,
}

/// A running container that carries the `<prefix>.network` label.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
}

impl Engine {
    /// Connects, asking for API 1.41 first (Docker 20.10 .. 28.x accept it); an engine that
    /// refuses it names the version it supports in its error, and that one is used instead.
    pub async fn connect(host: &str) -> Result<Engine> {
        let mut api = ClientVersion {
            major_version: 1,
            minor_version: 41,
        };
        for _ in 0..3 {
            let docker = client(host, &api)?;
            match docker.version().await {
                Ok(v) => {
                    return Ok(Engine {
                        docker,
                        host: host.to_string(),
                        engine_version: v.version.unwrap_or_default(),
                        api_version: format!("{}.{}", api.major_version, api.minor_version),
                    });
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 400,
                    message,
                }) if suggested_version(&message).is_some_and(|v| v != api) => {
                    tracing::debug!(%message, "engine refused API {}.{}", api.major_version, api.minor_version);
                    api = suggested_version(&message).unwrap_or(api);
                }
                Err(e) => bail!("cannot reach Docker at {host}: {}", chain(&e)),
            }
        }
        bail!(
            "Docker at {host} accepts none of the API versions tried (last {}.{})",
            api.major_version,
            api.minor_version
        )
    }

    /// `GET /_ping`, bounded by `limit`.
    pub async fn ping(&self, limit: Duration) -> Result<()> {
        match tokio::time::timeout(limit, self.docker.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(anyhow!(
                "Docker at {} does not answer: {}",
                self.host,
                chain(&e)
            )),
            Err(_) => Err(anyhow!(
                "Docker at {} did not answer a ping within {} ms",
                self.host,
                limit.as_millis()
            )),
        }
    }

    /// Container `start`, `die` and `destroy` events from `since` (Unix seconds) on.
    pub fn events(
        &self,
        since: i64,
    ) -> impl Stream<Item = Result<EventMessage, bollard::errors::Error>> + use<> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                vec!["start".into(), "die".into(), "destroy".into()],
            ),
        ]);
        self.docker.events(Some(EventsOptions {
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
            .docker
            .list_containers(Some(ListContainersOptions {
                all: false,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| anyhow!("cannot list containers at {}: {}", self.host, chain(&e)))?;
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

    /// Whether a container is running now (`None`: Docker does not know it).
    pub async fn running(&self, id: &str) -> Result<Option<bool>> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(c.state.and_then(|s| s.running).unwrap_or(false))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(anyhow!("cannot inspect container {id}: {}", chain(&e))),
        }
    }

    /// Bridge interface of Docker's default network (`docker0` unless configured otherwise).
    pub async fn default_bridge(&self) -> Result<Option<String>> {
        match self.docker.inspect_network("bridge", None).await {
            Ok(n) => Ok(n
                .options
                .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
                .filter(|b| !b.is_empty())),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(anyhow!("cannot inspect network bridge: {}", chain(&e))),
        }
    }
}

fn client(host: &str, api: &ClientVersion) -> Result<Docker> {
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, api)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, api)
    } else {
        bail!(
            "DOCKER_HOST '{host}' is not supported; use unix:///path/to/docker.sock or tcp://host:port"
        );
    };
    docker.map_err(|e| anyhow!("cannot reach Docker at {host}: {}", chain(&e)))
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

/// An error and its sources on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    crate::docker::error_chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;

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
