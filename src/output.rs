//! Human text and `--json` records, and the one way to write stdout. stdout is data; everything
//! for people goes to stderr.

use std::io::Write;

use anyhow::{Context, Result};
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

/// Writes `text` to stdout and flushes. A reader that went away (`list | head -0`: EPIPE) is
/// not an error: the rest of the output is dropped silently and the command exits with its own
/// code, as ripgrep does. (`println!` would panic there; clippy.toml forbids it.) Any other
/// failure (`list > /dev/full`) is an error that names stdout.
pub fn print(text: &str) -> Result<()> {
    write_to(&mut std::io::stdout().lock(), text.as_bytes())
}

/// [`print`] with a newline.
pub fn println(text: &str) -> Result<()> {
    print(&format!("{text}\n"))
}

fn write_to(out: &mut impl Write, bytes: &[u8]) -> Result<()> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        res => res.context("cannot write to stdout"),
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Fails(std::io::ErrorKind);

    impl Write for Fails {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_is_not_an_error_but_a_full_disk_is() {
        assert!(write_to(&mut Fails(std::io::ErrorKind::BrokenPipe), b"x").is_ok());
        let err = write_to(&mut Fails(std::io::ErrorKind::StorageFull), b"x").unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot write to stdout: "),
            "{err:#}"
        );
        let mut buf = Vec::new();
        write_to(&mut buf, b"data").unwrap();
        assert_eq!(buf, b"data");
    }
}
