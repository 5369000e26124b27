//! `inspect CONTAINER...`: every attachment of each container as one JSON array (all networks,
//! addresses, the netns link, the status), like `docker inspect`. Reads the state directory,
//! /proc and /sys; asks Docker only for a name the leases do not know (renamed after attach).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::detach::select;
use crate::docker::DockerClient;
use crate::lease::{Lease, LeaseStore};
use crate::list;
use crate::output::Record;

/// One attachment as `inspect` prints it: the `list --json` record plus the netns link.
#[derive(Debug, Serialize)]
pub struct Inspected<'a> {
    #[serde(flatten)]
    pub record: Record<'a>,
    /// The link `ip netns exec` uses: /var/run/netns/<netns_name>.
    pub netns_link: PathBuf,
}

/// The attachments of each of `containers`, in the order asked (a container named twice is
/// shown once), and one message per container that has none.
pub async fn inspect(
    containers: &[String],
    state_dir: &Path,
) -> Result<(Vec<(Lease, &'static str)>, Vec<String>)> {
    crate::privilege::may_read_state("inspect", state_dir)?;
    let all = match LeaseStore::open_existing(state_dir)? {
        Some(store) => store.all()?,
        None => vec![],
    };
    let mut docker = None;
    let mut found: Vec<(Lease, &'static str)> = Vec::new();
    let mut missing = Vec::new();
    for arg in containers {
        let mut chosen: Vec<&Lease> = select(&all, arg)?;
        let mut known_to_docker = false;
        if chosen.is_empty() {
            if docker.is_none() {
                docker = Some(DockerClient::connect());
            }
            if let Some(Ok(d)) = &docker {
                if let Ok(Some(c)) = d.container_opt(arg).await {
                    known_to_docker = true;
                    chosen = all.iter().filter(|l| l.container_id == c.id).collect();
                }
            }
        }
        if chosen.is_empty() {
            missing.push(match known_to_docker {
                true => format!("container '{arg}' is not attached (no lease in {})", state_dir.display()),
                false => format!("no attachment of '{arg}' (and Docker knows no such container); check the name with `docker-netattach list`"),
            });
        }
        for l in chosen {
            let dup = found.iter().any(|(f, _)| {
                f.container_id == l.container_id && f.network_id == l.network_id && f.ip == l.ip
            });
            if !dup {
                found.push((l.clone(), list::status(l)));
            }
        }
    }
    Ok((found, missing))
}

/// The JSON records of `rows`.
pub fn records<'a>(rows: &'a [(Lease, &'static str)]) -> Vec<Inspected<'a>> {
    rows.iter()
        .map(|(l, s)| Inspected {
            record: Record::new(l, Some(s)),
            netns_link: Path::new("/var/run/netns").join(&l.netns_name),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_the_list_record_plus_the_link() {
        let l = Lease::sample("abc", "web", "172.17.0.9");
        let rows = vec![(l, list::STALE)];
        let json = serde_json::to_value(records(&rows)).unwrap();
        assert_eq!(json[0]["container_name"], "web");
        assert_eq!(json[0]["status"], "stale");
        assert_eq!(
            json[0]["netns_link"],
            format!("/var/run/netns/{}", rows[0].0.netns_name)
        );
    }
}
