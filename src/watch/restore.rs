//! A lease is the intent: re-applying the leases of a container that started (or runs without
//! its interface: restarted, rebooted, pending, or its veth deleted). Side effects: those of
//! `attach`, on a fresh thread per container (through [`on_thread`]).

use std::net::IpAddr;
use std::sync::Arc;

use super::metrics::AttachResult;
use super::{Shared, on_thread};
use crate::attach::{AttachOpts, Outcome};
use crate::error::AttachError;
use crate::ipam::Subnet;
use crate::lease::{Lease, LeaseStore};
use crate::list;

/// Pure: the attach that re-creates a lease exactly: same network (or plain `--bridge` with
/// its subnet and gateway), address, interface name, netns link name and options.
pub fn opts_of(l: &Lease) -> AttachOpts {
    let plain = l
        .network_id
        .strip_prefix("bridge-")
        .is_some_and(|b| b == l.bridge);
    AttachOpts {
        container: l.container_id.clone(),
        netns: None,
        network: l.network_id.clone(),
        bridge: plain.then(|| l.bridge.clone()),
        subnet: if plain {
            Subnet::new(IpAddr::V4(l.v4.ip), l.v4.prefix_len).ok()
        } else {
            None
        },
        gateway: plain.then_some(l.v4.gateway),
        ip: Some(l.v4.ip),
        ip6: l.ip6(),
        ifname: Some(l.ifname.clone()),
        netns_name: Some(l.netns_name.clone()),
        default_route: Some(l.default_route),
        dns: l.dns.clone(),
        endpoint: l.endpoint_opts(),
        dry_run: false,
        running_only: false,
    }
}

/// Pure: the leases of a container that need applying: not `--netns` ones, not attached now,
/// and not on `skip` (the network its labels asked for, attached by the label's job).
pub fn to_restore(
    leases: Vec<Lease>,
    skip: Option<&str>,
    attached: impl Fn(&Lease) -> bool,
) -> Vec<Lease> {
    leases
        .into_iter()
        .filter(|l| l.netns_path.is_empty())
        .filter(|l| skip.is_none_or(|s| l.network != s && l.network_id != s))
        .filter(|l| !attached(l))
        .collect()
}

/// Re-applies the leases `id` holds (all but those on `skip`); logs and counts each outcome.
pub async fn restore(
    shared: &Arc<Shared>,
    id: String,
    name: String,
    event_ns: Option<i64>,
    skip: Option<String>,
) {
    let dir = shared.state_dir.clone();
    let cid = id.clone();
    let found = on_thread("netattach-lease", move || async move {
        let Some(store) = LeaseStore::open_existing(&dir)? else {
            return Ok(vec![]);
        };
        let mine = store.of_container(&cid)?;
        Ok(to_restore(mine, skip.as_deref(), |l| {
            list::status(l) == list::Status::Attached
        }))
    })
    .await;
    let leases = match found {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(container = %name, "cannot read its leases: {e:#}");
            shared.metrics.attach(AttachResult::Error);
            return;
        }
    };
    for lease in leases {
        match super::jobs::attach_on_thread(shared, opts_of(&lease)).await {
            Ok((Outcome::Attached(l), _)) => {
                super::jobs::attached(shared, &name, &l, event_ns, "lease re-applied");
            }
            Ok((Outcome::Existing(_), _)) => shared.metrics.attach(AttachResult::Existing),
            Ok((Outcome::Pending(_) | Outcome::Planned(_), _)) => {
                tracing::info!(container = %name, ip = %lease.v4.ip, "stopped before its lease could be applied");
                shared.metrics.attach(AttachResult::Skipped);
            }
            Err(e) => {
                if AttachError::container_went_away(&e) {
                    tracing::info!(container = %name, "stopped before its lease could be applied");
                    shared.metrics.attach(AttachResult::Skipped);
                } else {
                    tracing::error!(container = %name, ip = %lease.v4.ip, network = %lease.network, "re-applying the lease failed: {e:#}");
                    shared.metrics.attach(AttachResult::Error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_gives_back_the_same_attach() {
        let mut l = Lease::sample("abc", "web", "172.17.240.9");
        l.ifname = "eth3".into();
        l.netns_name = "web-ns".into();
        l.default_route = false;
        l.dns = vec!["10.0.0.53".parse().unwrap()];
        l.v6 = Some(crate::attachment::V6Part::sample("fd00::9"));
        let o = opts_of(&l);
        assert_eq!(o.container, "abc");
        assert_eq!(o.network, "n");
        assert_eq!((o.ip, o.ip6), (Some(l.v4.ip), l.ip6()));
        assert_eq!(o.ifname.as_deref(), Some("eth3"));
        assert_eq!(o.netns_name.as_deref(), Some("web-ns"));
        assert_eq!(o.default_route, Some(false));
        assert_eq!(o.dns, l.dns);
        assert!(o.bridge.is_none() && o.subnet.is_none());
        // a plain bridge of `attach --bridge` comes back with its subnet and gateway
        l.network_id = "bridge-nabr0".into();
        l.bridge = "nabr0".into();
        l.v4.prefix_len = 24;
        l.v4.gateway = "172.17.240.1".parse().unwrap();
        let o = opts_of(&l);
        assert_eq!(o.bridge.as_deref(), Some("nabr0"));
        assert_eq!(o.subnet.unwrap().to_string(), "172.17.240.0/24");
        assert_eq!(o.gateway, Some(l.v4.gateway));
    }

    #[test]
    fn only_leases_without_their_interface_are_restored() {
        let a = Lease::sample("abc", "web", "10.0.0.2");
        let mut b = Lease::sample("abc", "web", "10.0.0.3");
        b.network = "lab".into();
        b.network_id = "labid".into();
        let mut ns = Lease::sample("abc", "web", "10.0.0.4");
        ns.netns_path = "/run/netns/x".into();
        let all = vec![a.clone(), b.clone(), ns];
        assert_eq!(
            to_restore(all.clone(), None, |_| false),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(
            to_restore(all.clone(), Some("lab"), |_| false),
            vec![a.clone()]
        );
        assert_eq!(to_restore(all.clone(), Some("labid"), |_| false), vec![a]);
        assert!(to_restore(all, None, |_| true).is_empty());
    }
}
