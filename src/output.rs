//! Human text and `--json` records. stdout is data; everything for people goes to stderr.

use serde::Serialize;

use crate::lease::Lease;
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

impl<'a> Record<'a> {
    pub fn new(l: &'a Lease, status: Option<&'static str>) -> Self {
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
            status,
        }
    }
}

pub fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The `list` table.
pub fn table(rows: &[(Lease, &'static str)]) -> String {
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
        .map(|(l, status)| {
            [
                l.container_name.clone(),
                short_id(&l.container_id).to_string(),
                l.network.clone(),
                format!("{}/{}", l.ip, l.prefix_len),
                l.mac.clone(),
                l.host_ifname.clone(),
                l.netns_name.clone(),
                status.to_string(),
            ]
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
