//! Human text and `--json` records. stdout is data; everything for people goes to stderr.

use serde::Serialize;

use crate::endpoint::Route;
use crate::lease::{CorruptLease, Lease};
use crate::list::{Row, Status};
use crate::plan::short_id;

/// The JSON record of `attach` and `list`; field names are fixed for scripts.
#[derive(Debug, Clone, Serialize)]
pub struct Record<'a> {
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub network: &'a str,
    pub bridge: &'a str,
    pub ip: String,
    pub prefix_len: u8,
    pub gateway: String,
    pub mac: &'a str,
    pub host_ifname: &'a str,
    pub ifname: &'a str,
    pub netns_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_len6: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    /// `--mtu`, when it was given (otherwise the interface has the network's MTU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// `--route`s, each with its gateway.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub routes: &'a [Route],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// The `list --json` record of a lease file that cannot be read: what its name tells.
#[derive(Debug, Clone, Serialize)]
pub struct CorruptRecord<'a> {
    pub network_id: &'a str,
    pub ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    pub status: Status,
    pub path: String,
    pub quarantined: bool,
    pub error: &'a str,
}

/// One element of `list --json` and `/attachments`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ListRecord<'a> {
    Lease(Record<'a>),
    Corrupt(CorruptRecord<'a>),
}

pub fn list_record(row: &Row) -> ListRecord<'_> {
    match row {
        Row::Lease(l, s) => ListRecord::Lease(Record::new(l, Some(*s))),
        Row::Corrupt(c) => ListRecord::Corrupt(CorruptRecord::new(c)),
    }
}

impl<'a> CorruptRecord<'a> {
    pub fn new(c: &'a CorruptLease) -> Self {
        CorruptRecord {
            network_id: &c.network_id,
            ip: c.ip.to_string(),
            ip6: c.ip6.map(|a| a.to_string()),
            status: Status::Corrupt,
            path: c.path.display().to_string(),
            quarantined: c.quarantined,
            error: &c.error,
        }
    }
}

impl<'a> Record<'a> {
    pub fn new(l: &'a Lease, status: Option<Status>) -> Self {
        Record {
            container_id: &l.container_id,
            container_name: &l.container_name,
            network: &l.network,
            bridge: &l.bridge,
            ip: l.ip.to_string(),
            prefix_len: l.prefix_len,
            gateway: l.gateway.to_string(),
            mac: &l.mac,
            host_ifname: &l.host_ifname,
            ifname: &l.ifname,
            netns_name: &l.netns_name,
            ip6: l.ip6.map(|a| a.to_string()),
            prefix_len6: l.prefix_len6,
            gateway6: l.gateway6.map(|a| a.to_string()),
            mtu: l.mtu,
            routes: &l.routes,
            status,
        }
    }
}

pub fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The `list` table. A corrupt lease file shows what its name tells (network, address) and,
/// after its status, its path.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "CONTAINER",
        "ID",
        "NETWORK",
        "IP",
        "MAC",
        "HOST IFACE",
        "NETNS",
        "STATUS",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|row| match row {
            Row::Lease(l, status) => [
                l.container_name.clone(),
                short_id(&l.container_id).to_string(),
                l.network.clone(),
                format!("{}/{}", l.ip, l.prefix_len),
                l.mac.clone(),
                l.host_ifname.clone(),
                l.netns_name.clone(),
                status.to_string(),
            ],
            Row::Corrupt(c) => [
                "-".into(),
                "-".into(),
                short_id(&c.network_id).to_string(),
                c.ip.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{} {}", Status::Corrupt, c.path.display()),
            ],
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cols: Vec<&str>| {
        let text: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
