//! `list`: every lease with its status, and every lease file that cannot be read. Reads the
//! state directory and /proc and /sys only: no Docker call, no netlink.

use std::fmt;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::lease::{CorruptLease, Lease, LeaseStore};
use crate::netns;

/// The status of one row of `list` (and of `/attachments`, and a label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The host veth exists and the recorded Pid still has the recorded namespace.
    Attached,
    /// The namespace or the veth is gone (the container stopped or was restarted), or the
    /// attach never completed.
    Stale,
    /// The lease file cannot be read; its address stays reserved.
    Corrupt,
    /// Reserved for a container that was not running when it was attached; applied at its start.
    Pending,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Attached => "attached",
            Status::Stale => "stale",
            Status::Corrupt => "corrupt",
            Status::Pending => "pending",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `list`. (Rows are few and short-lived: the size difference does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Row {
    Lease(Lease, Status),
    Corrupt(CorruptLease),
}

impl Row {
    pub fn status(&self) -> Status {
        match self {
            Row::Lease(_, s) => *s,
            Row::Corrupt(_) => Status::Corrupt,
        }
    }
}

pub fn list(state_dir: &Path) -> Result<Vec<Row>> {
    let Some(store) = LeaseStore::open_existing(state_dir)? else {
        return Ok(vec![]);
    };
    let scan = store.scan()?;
    let leases = scan.leases.into_iter().map(|l| {
        let s = status(&l);
        Row::Lease(l, s)
    });
    Ok(leases
        .chain(scan.corrupt.into_iter().map(Row::Corrupt))
        .collect())
}

/// `attached` while the host veth exists and the recorded Pid still has the recorded namespace.
pub fn status(l: &Lease) -> Status {
    if l.pending {
        return Status::Pending;
    }
    let ns_alive = netns::id_of(&l.netns_source()) == Some(l.netns_id());
    let veth = Path::new("/sys/class/net").join(&l.host_ifname).exists();
    if ns_alive && veth && l.complete {
        Status::Attached
    } else {
        Status::Stale
    }
}
