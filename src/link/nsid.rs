//! The ID by which this namespace knows another one (RTM_GETNSID): a veth's peer is reported
//! with it, and a detach that waits for the peer's RTM_DELLINK tells the peer's namespace by it.
//! The kernel answers the request without the RTNL lock.

use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::Result;
use futures::StreamExt;
use rtnetlink::packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};

use super::{Rtnl, nl_err};

impl Rtnl {
    /// The ID this connection's namespace has given the namespace `ns` (None: it has none).
    pub async fn nsid_of(&self, ns: BorrowedFd<'_>) -> Result<Option<i32>> {
        let mut msg = NsidMessage::default();
        let fd = u32::try_from(ns.as_raw_fd()).unwrap_or_default();
        msg.attributes.push(NsidAttribute::Fd(fd));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
        req.header.flags = NLM_F_REQUEST;
        let doing = "ask for the ID of the container's network namespace";
        let answers = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| nl_err(&e, doing))?;
        let mut answers = std::pin::pin!(answers);
        while let Some(answer) = answers.next().await {
            match answer.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                    return Ok(m.attributes.iter().find_map(|a| match a {
                        NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                        _ => None,
                    }));
                }
                NetlinkPayload::Error(e) => {
                    return Err(nl_err(&rtnetlink::Error::NetlinkError(e), doing));
                }
                _ => {}
            }
        }
        Ok(None)
    }
}
