//! Which host interface a lease may act on. Pure rules, no side effects: the name stored in a
//! lease file is a hint (anyone with root can edit it), the live interface is the truth.

use crate::attachment::Attachment as Lease;
use crate::model::Iface;
use crate::plan;

/// The host end of a lease's veth: always the name derived from (container ID, network ID,
/// interface name inside), as `attach` made it. A different name stored in the lease (an edited
/// file) is never used.
pub fn host_ifname(l: &Lease) -> String {
    let derived = plan::host_ifname(&l.container_id, &l.network_id, &l.ifname);
    if derived != l.host_ifname {
        tracing::warn!(
            stored = %l.host_ifname,
            derived = %derived,
            container = %l.container_id,
            "the lease names a host interface other than its own; using {derived}"
        );
    }
    derived
}

/// Whether `iface` is the lease's own host veth: its derived name, link kind veth, and the
/// container's ID as alias — or no alias yet for an attach killed before it named the veth
/// (the lease is then still incomplete).
pub fn owns(iface: &Iface, l: &Lease) -> bool {
    iface.name == plan::host_ifname(&l.container_id, &l.network_id, &l.ifname)
        && iface.belongs_to(&l.container_id, !l.complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn iface(name: &str, alias: Option<&str>, veth: bool) -> Iface {
        Iface {
            index: 7,
            name: name.into(),
            mtu: 1500,
            alias: alias.map(Into::into),
            controller: None,
            veth,
            peer: None,
        }
    }

    #[test]
    fn only_the_derived_veth_with_our_alias_is_ours() {
        let mut l = Lease::sample(ID, "web", "10.0.0.2");
        l.host_ifname = "eth0".into(); // edited by hand
        let own = plan::host_ifname(ID, &l.network_id, &l.ifname);
        assert_eq!(host_ifname(&l), own);
        assert!(owns(&iface(&own, Some(ID), true), &l));
        // a foreign interface the lease names, even with our alias
        assert!(!owns(&iface("eth0", Some(ID), true), &l));
        // not a veth (a bridge under our name), another alias, no alias on a complete lease
        assert!(!owns(&iface(&own, Some(ID), false), &l));
        assert!(!owns(&iface(&own, Some("uplink"), true), &l));
        assert!(!owns(&iface(&own, None, true), &l));
        // an attach killed before it named the veth
        l.complete = false;
        assert!(owns(&iface(&own, None, true), &l));
        assert!(!owns(&iface(&own, None, false), &l));
    }
}
