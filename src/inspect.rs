//! `inspect CONTAINER...`: every attachment of each container, as `docker inspect` prints
//! objects: a JSON array, one element per argument that names a container; each argument that
//! names none is reported on stderr (exit 1) without hiding the others. Side effects: reads the
//! state directory, /proc and /sys (as `list`) and asks Docker about the arguments.

use std::path::Path;

use anyhow::Result;

use crate::lease::Lease;
use crate::list::{self, Row, Status};
use crate::select::{self, Docker};

/// One container (or `--netns` target) and its attachments, with their status.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub id: String,
    pub name: String,
    pub attachments: Vec<(Lease, Status)>,
}

/// The containers `args` name, in order, and an error message for each argument that names
/// none.
pub async fn inspect(args: &[String], state_dir: &Path) -> Result<(Vec<Inspected>, Vec<String>)> {
    let rows = list::list(state_dir)?;
    let all = select::leases(&rows);
    let docker = Docker::connect();
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (_, ids) in select::containers(&all, args, &docker).await {
        let ids = match ids {
            Ok(ids) => ids,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        for id in ids {
            let attachments: Vec<(Lease, Status)> = rows
                .iter()
                .filter_map(|r| match r {
                    Row::Lease(l, s) if l.container_id == id => Some((l.clone(), *s)),
                    _ => None,
                })
                .collect();
            let name = match attachments.first() {
                Some((l, _)) => l.container_name.clone(),
                None => docker_name(&docker, &id).await,
            };
            found.push(Inspected {
                id,
                name,
                attachments,
            });
        }
    }
    Ok((found, errors))
}

/// The name Docker gives a container that has no attachment (its short ID when Docker cannot
/// tell).
async fn docker_name(docker: &Docker, id: &str) -> String {
    let short = crate::plan::short_id(id).to_string();
    let Ok(d) = docker.client() else {
        return short;
    };
    match d.container_opt(id).await {
        Ok(Some(c)) => c.name,
        _ => short,
    }
}
