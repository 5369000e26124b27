//! The host's neighbour cache for an address an attach is about to bring up: whether announcing
//! it would correct anything. Side effects: none (one RTM_GETNEIGH).
//!
//! The announcement is an ARP request from the container, and the bridge floods it to every
//! port: the sending system call pays for one copy per port and for each namespace's handling of
//! it (0.8–1.0 ms with 200 containers on docker0, measured with `strace -T` on the request, ~0.1
//! ms on an empty bridge). It is worth that only when a neighbour holds a wrong entry: a
//! previous holder of the address with another MAC (`--mac`, pipework, CNI, Docker 28+), or a
//! host waiting for an answer. The host's cache is the evidence we can read: no entry, or one
//! with our MAC, and nothing needs correcting — the MAC derived from the address (Docker's
//! classic scheme) is what any earlier holder that used it left behind, and whoever asks gets
//! the answer (Docker up to 27 never announces).

use std::net::Ipv4Addr;

use anyhow::Result;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};

use super::{Rtnl, errno, nl_err};

/// What a neighbour cache holds for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub state: NeighbourState,
    /// The link-layer address (none while the entry is unresolved).
    pub mac: Option<Vec<u8>>,
}

impl Rtnl {
    /// The entry for `ip` on interface `index` of this namespace, if any: one RTM_GETNEIGH
    /// (not a dump; the kernel looks the entry up).
    pub async fn cached_neighbour(&self, index: u32, ip: Ipv4Addr) -> Result<Option<Cached>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        let doing = format!("look up {ip} in the neighbour cache");
        match self.ask(RouteNetlinkMessage::GetNeighbour(msg)).await {
            Ok(Some(RouteNetlinkMessage::NewNeighbour(n))) => {
                let mac = n.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLayerAddress(m) => Some(m.clone()),
                    _ => None,
                });
                Ok(Some(Cached {
                    state: n.header.state,
                    mac,
                }))
            }
            Ok(_) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(nl_err(&e, &doing)),
        }
    }
}

/// Whether announcing `mac` for an address corrects the host's `cached` entry: it holds another
/// MAC, or it is unresolved (the host is asking right now, or gave up and would ask again only
/// on its next packet). No entry, or one with `mac`: nothing to correct.
pub fn announcement_corrects(cached: Option<&Cached>, mac: &[u8]) -> bool {
    match cached {
        None => false,
        Some(c) => {
            let unresolved = matches!(
                c.state,
                NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
            );
            unresolved || c.mac.as_deref() != Some(mac)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0xff, 0xfe];

    fn entry(state: NeighbourState, mac: Option<[u8; 6]>) -> Cached {
        Cached {
            state,
            mac: mac.map(|m| m.to_vec()),
        }
    }

    #[test]
    fn nothing_cached_or_our_mac_cached_needs_no_announcement() {
        assert!(!announcement_corrects(None, &OURS));
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
        ] {
            let e = entry(state, Some(OURS));
            assert!(!announcement_corrects(Some(&e), &OURS), "{e:?}");
        }
    }

    #[test]
    fn another_mac_or_an_unresolved_entry_is_corrected() {
        let foreign = [0x02, 0, 0, 0, 0xfe, 0x99];
        for state in [NeighbourState::Reachable, NeighbourState::Stale] {
            let e = entry(state, Some(foreign));
            assert!(announcement_corrects(Some(&e), &OURS), "{e:?}");
        }
        for state in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::None,
        ] {
            for mac in [None, Some(OURS)] {
                let e = entry(state, mac);
                assert!(announcement_corrects(Some(&e), &OURS), "{e:?}");
            }
        }
        // A resolved entry without an address (NOARP interfaces) is not ours either.
        let e = entry(NeighbourState::Stale, None);
        assert!(announcement_corrects(Some(&e), &OURS), "{e:?}");
    }
}
