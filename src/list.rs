//! `list`: every lease with its status. Reads the state directory and /proc and /sys only:
//! no Docker call, no netlink.

use std::path::Path;

use anyhow::Result;

use crate::lease::{Lease, LeaseStore};
use crate::netns;

pub const ATTACHED: &str = "attached";
pub const STALE: &str = "stale";
/// Reserved for a container that was not running when it was attached; applied at its start.
pub const PENDING: &str = "pending";

pub fn list(state_dir: &Path) -> Result<Vec<(Lease, &'static str)>> {
    let Some(store) = LeaseStore::open_existing(state_dir)? else {
        return Ok(vec![]);
    };
    Ok(store
        .all()?
        .into_iter()
        .map(|l| {
            let s = status(&l);
            (l, s)
        })
        .collect())
}

/// `attached` while the host veth exists and the recorded Pid still has the recorded namespace.
pub fn status(l: &Lease) -> &'static str {
    if l.pending {
        return PENDING;
    }
    let ns_alive = netns::id_of(&l.netns_source()) == Some(l.netns_id());
    let veth = Path::new("/sys/class/net").join(&l.host_ifname).exists();
    if ns_alive && veth && l.complete {
        ATTACHED
    } else {
        STALE
    }
}
