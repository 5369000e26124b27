//! `gc`'s pure decisions, one rule at a time.

use super::decide::{GONE, NOT_RUNNING};
use super::*;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn lease() -> Lease {
    Lease {
        pid: 42,
        ..Lease::sample(ID, "web", "172.17.255.254")
    }
}

fn facts(container: Presence, ns_alive: bool, veth: bool, link: LinkState) -> LeaseFacts {
    LeaseFacts {
        lease: lease(),
        container,
        ns_alive,
        veth,
        link,
    }
}

#[test]
fn removal_kinds_print_and_serialise_as_their_old_strings() {
    use crate::gc::decide::RemovalKind::*;
    for (k, s) in [
        (Lease, "lease"),
        (NetnsLink, "netns-link"),
        (Veth, "veth"),
        (Bridge, "bridge"),
    ] {
        assert_eq!(k.to_string(), s);
        assert_eq!(serde_json::to_value(k).unwrap(), s);
    }
}

fn kinds(r: Vec<Removal>) -> Vec<&'static str> {
    r.into_iter().map(|r| r.kind.as_str()).collect()
}

#[test]
fn lease_rules() {
    use LinkState::*;
    use Presence::*;
    let table: &[(LeaseFacts, &[&str])] = &[
        // healthy
        (facts(Running, true, true, Ours), &[]),
        // removed from Docker: everything goes
        (facts(Gone, false, false, Ours), &["netns-link", "lease"]),
        (
            facts(Gone, true, true, Ours),
            &["veth", "netns-link", "lease"],
        ),
        (facts(Gone, false, false, Absent), &["lease"]),
        // stopped or restarted: the dead link goes, the lease stays (sticky address)
        (facts(Stopped, false, false, Ours), &["netns-link"]),
        (facts(Running, false, false, Ours), &["netns-link"]),
        (facts(Stopped, false, false, Absent), &[]),
        // a link now leading to another live namespace is never touched
        (facts(Stopped, false, false, Foreign), &[]),
        // running in the recorded namespace without its interface: the lease is the
        // intent and stays (watch puts the interface back) ...
        (facts(Running, true, false, Ours), &[]),
        // transient disagreement between Docker and /proc: leave it
        (facts(Stopped, true, true, Ours), &[]),
    ];
    for (f, want) in table {
        assert_eq!(kinds(decide_lease(f)), want.to_vec(), "{f:?}");
    }
    // ... unless its attach (or detach) never completed
    let mut f = facts(Running, true, false, Ours);
    f.lease.complete = false;
    assert_eq!(kinds(decide_lease(&f)), ["netns-link", "lease"]);
    // a pending lease has nothing but itself, and goes only with its container
    let mut f = facts(Stopped, false, false, Ours);
    f.lease.pending = true;
    assert!(decide_lease(&f).is_empty());
    f.container = Running;
    assert!(decide_lease(&f).is_empty());
    f.container = Gone;
    assert_eq!(kinds(decide_lease(&f)), ["lease"]);
}

#[test]
fn an_empty_bridge_of_ours_goes_once_no_lease_names_it() {
    let mut l = lease();
    l.bridge = "nabr0".into();
    let gone = facts(Presence::Gone, true, true, LinkState::Absent);
    let mut gone = gone;
    gone.lease = l.clone();
    let plan = decide_lease(&gone);
    let ports = vec![plan::host_ifname(&l.container_id, &l.network_id, &l.ifname)];
    // its only port and lease are being removed: the bridge goes too
    let b = decide_bridge("nabr0", &ports, &plan, &[l.clone()]).unwrap();
    assert_eq!((b.kind.as_str(), b.object.as_str()), ("bridge", "nabr0"));
    // another port, or a lease that stays (a stopped container), keeps it
    assert!(decide_bridge("nabr0", &["veth0".into()], &plan, &[l.clone()]).is_none());
    assert!(decide_bridge("nabr0", &[], &[], &[l.clone()]).is_none());
    assert!(decide_bridge("nabr0", &[], &[], &[]).is_some());
}

fn iface(name: &str, alias: Option<&str>) -> Iface {
    Iface {
        index: 7,
        name: name.into(),
        mtu: 1500,
        alias: alias.map(Into::into),
        controller: None,
        veth: true,
        peer: None,
    }
}

#[test]
fn only_our_interfaces_are_considered() {
    assert_eq!(owner_of(&iface("vna01234567abcd", Some(ID))), Some(ID));
    assert_eq!(owner_of(&iface("veth1234567", Some(ID))), None);
    assert_eq!(owner_of(&iface("vna01234567abcd", None)), None);
    assert_eq!(owner_of(&iface("vna01234567abcd", Some("my uplink"))), None);
    assert_eq!(
        owner_of(&iface("vna01234567abcd", Some(&ID.to_uppercase()))),
        None
    );
    assert_eq!(owner_of(&iface("vna01234567abcd", Some(&ID[1..]))), None);
}

#[test]
fn orphan_veth_goes_only_when_its_container_is_not_running() {
    let i = iface("vna01234567abcd", Some(ID));
    assert!(decide_veth(&i, ID, Presence::Running).is_none());
    assert_eq!(decide_veth(&i, ID, Presence::Gone).unwrap().reason, GONE);
    assert_eq!(
        decide_veth(&i, ID, Presence::Stopped).unwrap().reason,
        NOT_RUNNING
    );
}

#[test]
fn netns_target_ids_are_told_from_container_ids() {
    assert!(is_netns_target_id(&plan::netns_target_id(4, 4026532000)));
    assert!(is_netns_target_id(&plan::netns_target_id(u64::MAX, 1)));
    assert!(!is_netns_target_id(ID));
    assert!(!is_netns_target_id("abc"));
    let mut forged = plan::netns_target_id(4, 4026532000);
    forged.replace_range(0..1, if forged.starts_with('0') { "1" } else { "0" });
    assert!(!is_netns_target_id(&forged));
}

#[test]
fn a_link_shared_with_a_live_attachment_stays() {
    let a = lease();
    let mut b = lease();
    b.network_id = "other".into();
    b.v4.ip = "10.9.0.2".parse().unwrap();
    // a lost its interface half-way through its attach (dropped with its link); b, same
    // namespace, is healthy.
    let mut f = facts(Presence::Running, true, false, LinkState::Ours);
    f.lease.complete = false;
    let mut plan = decide_lease(&f);
    assert_eq!(kinds(plan.clone()), ["netns-link", "lease"]);
    keep_shared_links(&mut plan, &[a.clone(), b.clone()], |_| true);
    assert_eq!(kinds(plan), ["lease"]);
    // alone, the link goes with the lease
    let mut plan = decide_lease(&f);
    keep_shared_links(&mut plan, &[a], |_| true);
    assert_eq!(kinds(plan), ["netns-link", "lease"]);
}

#[test]
fn resolv_conf_goes_only_with_a_dropped_lease() {
    let mut f = facts(Presence::Gone, false, false, LinkState::Ours);
    f.lease.dns = vec!["10.0.0.53".parse().unwrap()];
    let resolv = |r: &[Removal]| {
        r.iter()
            .any(|r| matches!(r.action, Action::NetnsLink { resolv: true, .. }))
    };
    assert!(resolv(&decide_lease(&f)));
    f.container = Presence::Stopped; // parked: the lease stays
    assert!(!resolv(&decide_lease(&f)));
}
