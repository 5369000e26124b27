//! The ID by which this namespace knows another one (RTM_GETNSID): a veth's peer is reported
//! with it, and a detach that waits for the peer's RTM_DELLINK tells the peer's namespace by it.
//! The kernel answers the request without the RTNL lock.

use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::Result;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};

use super::{Rtnl, nl_err};

impl Rtnl {
    /// The ID this connection's namespace has given the namespace `ns` (None: it has none).
    pub async fn nsid_of(&self, ns: BorrowedFd<'_>) -> Result<Option<i32>> {
        let mut msg = NsidMessage::default();
        let fd = u32::try_from(ns.as_raw_fd()).unwrap_or_default();
        msg.attributes.push(NsidAttribute::Fd(fd));
        match self.ask(RouteNetlinkMessage::GetNsId(msg)).await {
            Ok(Some(RouteNetlinkMessage::NewNsId(m))) => {
                Ok(m.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                    _ => None,
                }))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(nl_err(
                &e,
                "ask for the ID of the container's network namespace",
            )),
        }
    }
}
