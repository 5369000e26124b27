//! Which rows of `list` (and containers of `inspect`) the CONTAINER arguments and `--network`
//! name. Containers are matched as `detach` matches them ([`detach::resolve`]: Docker's answer
//! first, then the leases' names, full IDs and unique ID prefixes); a network by the name or ID
//! a lease records, or another spelling Docker resolves. Side effects: Docker API reads.

use anyhow::{Result, anyhow};

use crate::detach;
use crate::docker::DockerClient;
use crate::lease::Lease;
use crate::list::Row;

/// A connection to Docker, or why there is none (asked lazily: `list` without filters never
/// connects).
pub struct Docker(std::result::Result<DockerClient, String>);

impl Docker {
    pub fn connect() -> Self {
        Docker(DockerClient::connect().map_err(|e| format!("{e:#}")))
    }

    pub fn client(&self) -> std::result::Result<&DockerClient, String> {
        self.0.as_ref().map_err(Clone::clone)
    }
}

/// The leases of `rows` (corrupt files name no container).
pub fn leases(rows: &[Row]) -> Vec<Lease> {
    rows.iter()
        .filter_map(|r| match r {
            Row::Lease(l, _) => Some(l.clone()),
            Row::Corrupt(_) => None,
        })
        .collect()
}

/// For each argument, in order, the container IDs it stands for, or why it names none.
pub async fn containers(
    all: &[Lease],
    args: &[String],
    docker: &Docker,
) -> Vec<(String, Result<Vec<String>>)> {
    let mut out = Vec::new();
    for arg in args {
        let ids = detach::resolve(all, arg, docker.client()).await;
        out.push((arg.clone(), ids));
    }
    out
}

/// The network IDs `net` stands for among `rows`: the leases' own names and IDs first (no
/// question to Docker), then Docker's answer. An error when neither knows it.
pub async fn network_ids(rows: &[Row], net: &str, docker: &Docker) -> Result<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    for r in rows {
        let id = match r {
            Row::Lease(l, _) if l.network == net || l.network_id == net => &l.network_id,
            Row::Corrupt(c) if c.network_id == net => &c.network_id,
            _ => continue,
        };
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    if !ids.is_empty() {
        return Ok(ids);
    }
    let hint = "see `docker network ls` and `docker-netattach list`";
    match docker.client() {
        Ok(d) => match d.network_id(net).await? {
            Some(id) => Ok(vec![id]),
            None => Err(anyhow!(
                "no such network '{net}': Docker does not know it and no attachment is on it; {hint}"
            )),
        },
        Err(why) => Err(anyhow!(
            "no such network '{net}' among the attachments, and Docker could not be asked ({why}); {hint}"
        )),
    }
}

/// Whether `row` is on one of the networks `ids`.
pub fn on_network(row: &Row, ids: &[String]) -> bool {
    let id = match row {
        Row::Lease(l, _) => &l.network_id,
        Row::Corrupt(c) => &c.network_id,
    };
    ids.contains(id)
}

/// Whether `row` is an attachment of one of the containers `ids`.
pub fn of_containers(row: &Row, ids: &[String]) -> bool {
    matches!(row, Row::Lease(l, _) if ids.contains(&l.container_id))
}

/// The short (12-character) container IDs of `rows`, each once, in order (`list -q`).
pub fn short_ids(rows: &[Row]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for r in rows {
        if let Row::Lease(l, _) = r {
            let id = crate::plan::short_id(&l.container_id).to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::Status;

    #[test]
    fn quiet_ids_are_short_and_distinct() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let mut on_other = Lease::sample(&a, "web", "10.0.0.3");
        on_other.network_id = "m".into();
        let rows = vec![
            Row::Lease(Lease::sample(&a, "web", "10.0.0.2"), Status::Attached),
            Row::Lease(Lease::sample(&b, "db", "10.0.0.4"), Status::Stale),
            Row::Lease(on_other, Status::Attached),
        ];
        assert_eq!(short_ids(&rows), ["a".repeat(12), "b".repeat(12)]);
        assert!(on_network(&rows[2], &["m".into()]));
        assert!(!on_network(&rows[0], &["m".into()]));
        assert!(of_containers(&rows[1], std::slice::from_ref(&b)));
        assert!(!of_containers(&rows[0], &[b]));
    }
}
