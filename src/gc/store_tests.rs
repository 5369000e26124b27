//! `gc`'s decisions over the leases of a store (the in-memory one): what `gc` assembles from
//! the store, Docker and the interfaces, and what is left in the store after its removals.

use super::*;
use crate::lease::Store;
use crate::lease::memory::MemStore;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn lease(cid: &str, network_id: &str, ip: &str) -> Lease {
    Lease {
        network_id: network_id.into(),
        pid: 42,
        ..Lease::sample(cid, &format!("name-{}", &cid[..1]), ip)
    }
}

/// The host veth of a lease, as netlink lists it.
fn veth_of(l: &Lease) -> Iface {
    Iface {
        index: 7,
        name: plan::host_ifname(&l.container_id, &l.network_id, &l.ifname),
        mtu: 1500,
        alias: Some(l.container_id.clone()),
        controller: None,
        veth: true,
        peer: None,
    }
}

/// Decides over what the store holds (as `gc` does under the lock), then applies the lease
/// removals to the store; returns the removals' kinds and what the store still holds.
fn run(
    store: &MemStore,
    ifaces: &[Iface],
    presence: &[(&str, Presence)],
    probe: &Probe,
) -> (Vec<&'static str>, Vec<Lease>) {
    let leases = store.all().unwrap();
    let presence: BTreeMap<String, Presence> = presence
        .iter()
        .map(|(id, p)| (id.to_string(), *p))
        .collect();
    let asked: BTreeSet<(String, String)> = leases.iter().map(key).collect();
    let plan = plan_removals(&leases, ifaces, &presence, &asked, &[], probe);
    let lock = store.lock().unwrap();
    for r in &plan {
        if let Action::Lease(l) = &r.action {
            store.remove(&lock, l).unwrap();
        }
    }
    let mut kinds: Vec<&'static str> = plan.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    (kinds, store.all().unwrap())
}

#[test]
fn a_gone_container_drops_its_veth_link_and_lease() {
    let a = lease(A, "n", "172.17.0.9");
    let b = lease(B, "n", "172.17.0.10");
    let store = MemStore::with(&[a.clone(), b.clone()]);
    let probe = Probe {
        ns_alive: &|_| true,
        link: &|_| LinkState::Ours,
    };
    let ifaces = [veth_of(&a), veth_of(&b)];
    let presence = [(A, Presence::Gone), (B, Presence::Running)];
    let (kinds, left) = run(&store, &ifaces, &presence, &probe);
    assert_eq!(kinds, ["lease", "netns-link", "veth"]);
    assert_eq!(left, vec![b]);
    assert_eq!(store.taken("n").unwrap().v4.len(), 1);
}

#[test]
fn a_dead_namespace_drops_its_link_and_keeps_the_lease() {
    let a = lease(A, "n", "172.17.0.9");
    let store = MemStore::with(std::slice::from_ref(&a));
    let probe = Probe {
        ns_alive: &|_| false,
        link: &|_| LinkState::Ours,
    };
    let (kinds, left) = run(&store, &[], &[(A, Presence::Stopped)], &probe);
    assert_eq!(kinds, ["netns-link"]);
    assert_eq!(left, vec![a.clone()]);
    // A link that leads elsewhere now is not ours to remove.
    let foreign = Probe {
        ns_alive: &|_| false,
        link: &|_| LinkState::Foreign,
    };
    let (kinds, left) = run(&store, &[], &[(A, Presence::Stopped)], &foreign);
    assert!(kinds.is_empty());
    assert_eq!(left, vec![a]);
}

#[test]
fn a_link_shared_with_a_live_attachment_stays() {
    // One container on two networks shares one netns link; its attach on the second network
    // was killed half-way (no veth): that lease goes, the link stays for the first.
    let a = lease(A, "n", "172.17.0.9");
    let mut half = lease(A, "m", "10.9.0.2");
    half.complete = false;
    let store = MemStore::with(&[a.clone(), half]);
    let probe = Probe {
        ns_alive: &|_| true,
        link: &|_| LinkState::Ours,
    };
    let (kinds, left) = run(&store, &[veth_of(&a)], &[(A, Presence::Running)], &probe);
    assert_eq!(kinds, ["lease"]);
    assert_eq!(left, vec![a]);
}

#[test]
fn a_lease_docker_was_not_asked_about_is_left_alone() {
    let a = lease(A, "n", "172.17.0.9");
    let store = MemStore::with(std::slice::from_ref(&a));
    let probe = Probe {
        ns_alive: &|_| false,
        link: &|_| LinkState::Ours,
    };
    // No answer for A (its lease appeared after Docker was asked): nothing goes.
    let (kinds, left) = run(&store, &[veth_of(&a)], &[], &probe);
    assert!(kinds.is_empty());
    assert_eq!(left, vec![a]);
}

#[test]
fn an_orphan_veth_goes_with_its_container() {
    // A veth of ours that no lease in the store claims.
    let ghost = lease(B, "n", "172.17.0.10");
    let store = MemStore::new();
    let probe = Probe {
        ns_alive: &|_| true,
        link: &|_| LinkState::Ours,
    };
    let ifaces = [veth_of(&ghost)];
    let (kinds, _) = run(&store, &ifaces, &[(B, Presence::Running)], &probe);
    assert!(kinds.is_empty());
    let (kinds, left) = run(&store, &ifaces, &[(B, Presence::Gone)], &probe);
    assert_eq!(kinds, ["veth"]);
    assert!(left.is_empty());
}
