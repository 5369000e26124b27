//! Human text and `--json` records, and the one way to write stdout. stdout is data; everything
//! for people goes to stderr.

use std::io::Write;
use std::net::Ipv6Addr;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::attachment::{V4Part, V6Part, v6_keys};
use crate::endpoint::Route;
use crate::gc::Removal;
use crate::lease::{CorruptLease, Lease};
use crate::list::{Row, Status};
use crate::plan::{AttachPlan, short_id};

/// The JSON record of `attach` and `list`; field names are fixed for scripts.
#[derive(Debug, Clone, Serialize)]
pub struct Record<'a> {
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub network: &'a str,
    pub bridge: &'a str,
    #[serde(flatten)]
    pub v4: V4Part,
    pub mac: &'a str,
    pub host_ifname: &'a str,
    pub ifname: &'a str,
    pub netns_name: &'a str,
    #[serde(flatten, with = "v6_keys")]
    pub v6: Option<V6Part>,
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
            v4: l.v4,
            mac: &l.mac,
            host_ifname: &l.host_ifname,
            ifname: &l.ifname,
            netns_name: &l.netns_name,
            v6: l.v6,
            mtu: l.mtu,
            routes: &l.routes,
            status,
        }
    }

    /// The record `attach --json` will print once the plan is carried out: its lease's.
    pub fn from_plan(p: &'a AttachPlan) -> Self {
        Record::new(&p.lease, None)
    }
}

/// `attach --dry-run --json`: the record `attach --json` would print, every other decision of
/// the plan under `plan` (mtu, netns_source, create_bridge, ...), and with `--explain` the
/// equivalent commands under `explain`, one string each.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunRecord<'a> {
    #[serde(flatten)]
    pub record: Record<'a>,
    pub plan: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<Vec<String>>,
}

pub fn dry_run_record(plan: &AttachPlan, explain: bool) -> DryRunRecord<'_> {
    let record = Record::from_plan(plan);
    DryRunRecord {
        plan: extra_fields(plan, &record),
        explain: explain.then(|| plan.explain().lines().map(String::from).collect()),
        record,
    }
}

/// The fields of `full` that `record` does not have (so a field added to the plan or the lease
/// shows up without a change here).
fn extra_fields<T: Serialize>(
    full: &T,
    record: &Record,
) -> serde_json::Map<String, serde_json::Value> {
    let (Ok(serde_json::Value::Object(mut full)), Ok(serde_json::Value::Object(rec))) = (
        serde_json::to_value(full),
        serde_json::to_value(Record {
            v6: Some(V6Part {
                ip: Ipv6Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: Some(Ipv6Addr::UNSPECIFIED),
            }),
            ..record.clone()
        }),
    ) else {
        return serde_json::Map::new();
    };
    full.retain(|k, _| !rec.contains_key(k));
    full
}

/// One element of `inspect`: a container (or `--netns` target) and all its attachments.
#[derive(Debug, Clone, Serialize)]
pub struct InspectRecord<'a> {
    pub id: String,
    pub name: String,
    pub attachments: Vec<AttachmentRecord<'a>>,
}

/// One attachment in `inspect`: the `list --json` record, the netns link and what it points
/// at, and the rest of the lease (network_id, pid, default_route, dns, ...).
#[derive(Debug, Clone, Serialize)]
pub struct AttachmentRecord<'a> {
    #[serde(flatten)]
    pub record: Record<'a>,
    pub netns_link: String,
    pub netns_source: String,
    #[serde(flatten)]
    pub lease: serde_json::Map<String, serde_json::Value>,
}

impl<'a> AttachmentRecord<'a> {
    pub fn new(l: &'a Lease, status: Status) -> Self {
        let record = Record::new(l, Some(status));
        AttachmentRecord {
            netns_link: format!("{}/{}", crate::netns::NETNS_DIR, l.netns_name),
            netns_source: l.netns_source().display().to_string(),
            lease: extra_fields(l, &record),
            record,
        }
    }
}

/// `gc`'s report, one line per removal: "removed KIND OBJECT of WHO: REASON" ("would remove"
/// with `--dry-run`).
pub fn removals(removed: &[Removal], dry_run: bool) -> String {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for r in removed {
        let who = if r.container_name.is_empty() {
            short_id(&r.container_id).to_string()
        } else {
            format!("{} ({})", r.container_name, short_id(&r.container_id))
        };
        out.push_str(&format!(
            "{verb} {} {} of {who}: {}\n",
            r.kind, r.object, r.reason
        ));
    }
    out
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

/// The `list` table: what a person looks at first (everything else is in `--json`, `inspect`
/// and `--format`, with the prefix lengths). The IPV6 column appears when an attachment has an
/// IPv6 address. A corrupt
/// lease file shows what its name tells (network, address) and, after its status, its path.
/// With names of up to 20 characters a row fits in 120 columns.
pub fn table(rows: &[Row]) -> String {
    let v6 = rows.iter().any(|r| match r {
        Row::Lease(l, _) => l.ip6().is_some(),
        Row::Corrupt(c) => c.ip6.is_some(),
    });
    let mut header = vec!["CONTAINER", "ID", "NETWORK", "IFACE", "IP"];
    if v6 {
        header.push("IPV6");
    }
    header.push("STATUS");
    let six = |ip6: Option<String>| ip6.unwrap_or_else(|| "-".into());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = match row {
                Row::Lease(l, _) => vec![
                    l.container_name.clone(),
                    short_id(&l.container_id).to_string(),
                    l.network.clone(),
                    l.ifname.clone(),
                    l.v4.ip.to_string(),
                ],
                Row::Corrupt(c) => vec![
                    "-".into(),
                    "-".into(),
                    short_id(&c.network_id).to_string(),
                    "-".into(),
                    c.ip.to_string(),
                ],
            };
            if v6 {
                cells.push(match row {
                    Row::Lease(l, _) => six(l.ip6().map(|a| a.to_string())),
                    Row::Corrupt(c) => six(c.ip6.map(|a| a.to_string())),
                });
            }
            cells.push(match row {
                Row::Lease(_, status) => status.to_string(),
                Row::Corrupt(c) => format!("{} {}", Status::Corrupt, c.path.display()),
            });
            cells
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: Vec<&str>| {
        let text: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header);
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, network: &str, ip: &str, ip6: Option<&str>) -> Lease {
        let mut l = Lease::sample(&"4f1c2d3e5a6b".repeat(6)[..64], name, ip);
        l.network = network.into();
        l.v6 = ip6.map(crate::attachment::V6Part::sample);
        l
    }

    #[test]
    fn table_shows_the_interface_and_ipv6_and_fits_120_columns() {
        let name = "a-twenty-char-name-1";
        assert_eq!(name.len(), 20);
        let rows = vec![
            Row::Lease(
                lease(
                    name,
                    "na-net-abc12345",
                    "172.30.255.254",
                    Some("fd00:e8:8a:0:ffff:ffff:ffff:ffff"),
                ),
                Status::Attached,
            ),
            Row::Lease(lease("db", "bridge", "172.17.0.2", None), Status::Stale),
        ];
        let out = table(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("CONTAINER"), "{out}");
        assert!(
            lines[0].contains("IFACE") && lines[0].contains("IPV6"),
            "{out}"
        );
        assert!(
            lines[1].contains(" eth0 ") && lines[1].contains(" fd00:e8:8a:0:ffff:ffff:ffff:ffff "),
            "{out}"
        );
        for l in &lines {
            assert!(
                l.chars().count() <= 120,
                "{} columns: {l}",
                l.chars().count()
            );
        }
        // Without an IPv6 address anywhere, no IPV6 column.
        let out = table(&rows[1..]);
        assert!(!out.contains("IPV6"), "{out}");
    }

    #[test]
    fn dry_run_record_is_the_attach_record_plus_the_plan() {
        let l = lease("web", "bridge", "172.17.0.9", None);
        let attach = serde_json::to_value(Record::new(&l, None)).unwrap();
        let plan = AttachPlan {
            lease: l.clone(),
            mtu: 1500,
            netns_source: "/proc/42/ns/net".into(),
            create_bridge: false,
        };
        let dry = serde_json::to_value(dry_run_record(&plan, true)).unwrap();
        for (k, v) in attach.as_object().unwrap() {
            assert_eq!(&dry[k], v, "{k}");
        }
        assert_eq!(dry["plan"]["mtu"], 1500);
        assert_eq!(dry["plan"]["netns_source"], "/proc/42/ns/net");
        assert_eq!(dry["plan"]["create_bridge"], false);
        assert!(dry["plan"].get("ip").is_none(), "{dry}");
        let explain = dry["explain"].as_array().unwrap();
        assert!(
            explain
                .iter()
                .any(|c| c.as_str().unwrap().starts_with("ip link add vna")),
            "{dry}"
        );
        let without = serde_json::to_value(dry_run_record(&plan, false)).unwrap();
        assert!(without.get("explain").is_none());
    }

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
    fn gc_report_and_json_keep_their_shape() {
        let l = lease("web", "bridge", "172.17.0.9", None);
        let removed = crate::gc::decide_lease(&crate::gc::LeaseFacts {
            lease: l,
            container: crate::gc::Presence::Gone,
            ns_alive: false,
            veth: false,
            link: crate::gc::LinkState::Absent,
        });
        assert_eq!(
            removals(&removed, true),
            "would remove lease 172.17.0.9 on bridge of web (4f1c2d3e5a6b): container is gone\n"
        );
        assert_eq!(
            serde_json::to_string(&removed).unwrap(),
            r#"[{"kind":"lease","object":"172.17.0.9 on bridge","container_id":"4f1c2d3e5a6b4f1c2d3e5a6b4f1c2d3e5a6b4f1c2d3e5a6b4f1c2d3e5a6b4f1c","container_name":"web","reason":"container is gone"}]"#
        );
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
