//! Pure: `gc`'s decisions. The facts about one lease (or one unclaimed veth, or one bridge we
//! created) in, the removals out, each with its reason. No I/O; `gc.rs` gathers and applies.

use std::fmt;

use serde::Serialize;

use crate::attachment::Attachment as Lease;
use crate::model::{Iface, NsId};
use crate::netns;
use crate::plan::{self, HOST_IFNAME_PREFIX};

/// What Docker says about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Gone,
    Stopped,
    Running,
}

/// State of the netns link a lease names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Absent,
    /// A symlink that is dangling or leads to the lease's namespace.
    Ours,
    /// Anything else (another live namespace, not a symlink): never touched.
    Foreign,
}

/// Everything `gc` needs to know about one lease.
#[derive(Debug, Clone)]
pub struct LeaseFacts {
    pub lease: Lease,
    pub container: Presence,
    /// The recorded Pid still has the recorded namespace.
    pub ns_alive: bool,
    /// The host veth exists and carries the container ID as alias (or none yet).
    pub veth: bool,
    pub link: LinkState,
}

/// One thing to remove, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `unnamed_ok`: a veth without alias is also ours (the lease's attach never completed).
    Veth {
        name: String,
        container_id: String,
        unnamed_ok: bool,
    },
    /// `resolv`: also /etc/netns/<name>/resolv.conf (the lease wrote one and goes).
    NetnsLink {
        name: String,
        ns: NsId,
        resolv: bool,
    },
    Lease(Box<Lease>),
    /// A bridge `attach --bridge` created, left without ports and leases.
    Bridge(String),
}

/// What kind of object a removal removes; printed (and in `--json`) as `lease`, `netns-link`,
/// `veth` or `bridge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalKind {
    Lease,
    NetnsLink,
    Veth,
    Bridge,
}

impl RemovalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalKind::Lease => "lease",
            RemovalKind::NetnsLink => "netns-link",
            RemovalKind::Veth => "veth",
            RemovalKind::Bridge => "bridge",
        }
    }
}

impl fmt::Display for RemovalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A planned or done removal, as printed (`--json` field names are fixed for scripts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    pub kind: RemovalKind,
    /// The address (lease), the path (netns link) or the interface name (veth).
    pub object: String,
    pub container_id: String,
    pub container_name: String,
    pub reason: &'static str,
    #[serde(skip)]
    pub action: Action,
}

pub(super) const GONE: &str = "container is gone";
pub(super) const NS_GONE: &str = "namespace is gone (container stopped or restarted)";
pub(super) const NO_IFACE: &str =
    "container has no interface for it (attach never completed or the veth was deleted)";
pub(super) const NOT_RUNNING: &str = "container is not running";
pub(super) const INCOMPLETE: &str = "its attach was killed before it completed";
pub(super) const EMPTY_BRIDGE: &str =
    "bridge created by `attach --bridge` has no port and no lease left";

/// Pure: whether a bridge we created (marked) goes: no port left but those being removed, and
/// no lease that stays names it (a stopped container's lease brings it back at its start).
pub fn decide_bridge(
    name: &str,
    ports: &[String],
    plan: &[Removal],
    leases: &[Lease],
) -> Option<Removal> {
    let removed_veth = |p: &String| {
        plan.iter()
            .any(|r| matches!(&r.action, Action::Veth { name, .. } if name == p))
    };
    let dropped = |l: &Lease| {
        plan.iter()
            .any(|r| matches!(&r.action, Action::Lease(d) if d.network_id == l.network_id && d.v4.ip == l.v4.ip))
    };
    if ports.iter().any(|p| !removed_veth(p))
        || leases.iter().any(|l| l.bridge == name && !dropped(l))
    {
        return None;
    }
    Some(Removal {
        kind: RemovalKind::Bridge,
        object: name.to_string(),
        container_id: String::new(),
        container_name: String::new(),
        reason: EMPTY_BRIDGE,
        action: Action::Bridge(name.to_string()),
    })
}

/// Pure: what to remove for one lease.
pub fn decide_lease(f: &LeaseFacts) -> Vec<Removal> {
    let l = &f.lease;
    // A pending lease has no namespace yet: nothing of it exists but the lease itself.
    if l.pending && f.container != Presence::Gone {
        return vec![];
    }
    let (reason, drop_lease) = match (f.container, f.ns_alive, f.veth) {
        (Presence::Gone, _, _) => (GONE, true),
        // A complete lease is the intent: a running container that lost its interface keeps
        // it, and `watch` (or `attach` again) puts the interface back.
        (Presence::Running, true, false) if l.complete => return vec![],
        (_, false, _) => (NS_GONE, false),
        (Presence::Running, true, false) => (NO_IFACE, true),
        (Presence::Running, true, true) if !l.complete => (INCOMPLETE, true),
        _ => return vec![],
    };
    let mut out = Vec::new();
    let item = |kind, object: String, action| Removal {
        kind,
        object,
        container_id: l.container_id.clone(),
        container_name: l.container_name.clone(),
        reason,
        action,
    };
    if f.veth {
        let name = plan::host_ifname(&l.container_id, &l.network_id, &l.ifname);
        out.push(item(
            RemovalKind::Veth,
            name.clone(),
            Action::Veth {
                name,
                container_id: l.container_id.clone(),
                unnamed_ok: !l.complete,
            },
        ));
    }
    if f.link == LinkState::Ours && !l.pending {
        out.push(item(
            RemovalKind::NetnsLink,
            netns::link_path(&l.netns_name).display().to_string(),
            Action::NetnsLink {
                name: l.netns_name.clone(),
                ns: l.netns_id(),
                resolv: drop_lease && !l.dns.is_empty(),
            },
        ));
    }
    if drop_lease {
        out.push(item(
            RemovalKind::Lease,
            format!("{} on {}", l.v4.ip, l.network),
            Action::Lease(Box::new(l.clone())),
        ));
    }
    out
}

/// Pure: the container ID a host interface belongs to, when it is one of ours
/// (a veth, `vna` prefix and a full container ID as ifalias).
pub fn owner_of(iface: &Iface) -> Option<&str> {
    let alias = iface.alias.as_deref()?;
    let is_id = alias.len() == 64
        && alias
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (iface.veth && iface.name.starts_with(HOST_IFNAME_PREFIX) && is_id).then_some(alias)
}

/// Pure: whether a veth of ours that no lease here claims is garbage.
pub fn decide_veth(iface: &Iface, owner: &str, presence: Presence) -> Option<Removal> {
    let reason = match presence {
        Presence::Running => return None,
        Presence::Gone => GONE,
        Presence::Stopped => NOT_RUNNING,
    };
    Some(Removal {
        kind: RemovalKind::Veth,
        object: iface.name.clone(),
        container_id: owner.to_string(),
        container_name: String::new(),
        reason,
        action: Action::Veth {
            name: iface.name.clone(),
            container_id: owner.to_string(),
            unnamed_ok: false,
        },
    })
}
