//! Pure: `list --format`, Docker-style Go templates (the `gtmpl` crate) over the JSON records
//! of `list --json`. Like `docker ps --format`: `\t` and `\n` typed literally are tab and
//! newline, a `table` prefix prints a header row and aligns the tab-separated columns, `{{json
//! .}}` prints the record. Besides the record's snake_case keys, each record offers
//! Docker-style aliases ([`ALIASES`]); every field exists in every record (an absent one is
//! empty), so a template that renders the sample record renders every row.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use gtmpl::{Context, FuncError, Template, Value};
use serde_json::Value as Json;

use crate::attachment::{V4Part, V6Part};
use crate::list::Status;
use crate::output::{CorruptRecord, ListRecord, Record};
use crate::plan::short_id;

/// Docker-style names, what each stands for, and its header in a `table` format.
pub const ALIASES: &[(&str, &str, &str)] = &[
    (
        "ID",
        "the container's short (12-character) ID",
        "CONTAINER ID",
    ),
    ("Name", "container_name", "NAME"),
    ("Network", "network", "NETWORK"),
    ("IP", "ip (no prefix length)", "IP"),
    ("IPv6", "ip6, empty without IPv6", "IPV6"),
    ("MAC", "mac", "MAC"),
    ("Status", "status", "STATUS"),
    ("Interface", "ifname (inside the container)", "IFACE"),
    ("HostInterface", "host_ifname", "HOST IFACE"),
    ("Netns", "netns_name (under /var/run/netns)", "NETNS"),
    ("Bridge", "bridge", "BRIDGE"),
    ("Gateway", "gateway", "GATEWAY"),
];

/// Where the record's own JSON waits for `{{json .}}`; not an identifier, so no template can
/// name it as a field.
const RECORD_KEY: &str = "\u{1}record";

/// A parsed `--format`.
pub struct Format {
    text: String,
    table: bool,
    template: Template,
}

/// A template that does not parse or names an unknown field: a usage error (exit 2).
#[derive(Debug)]
pub struct BadTemplate {
    pub template: String,
    pub reason: String,
}

impl fmt::Display for BadTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid --format template '{}': {}; fields: {}; e.g. --format '{{{{.Name}}}}\\t{{{{.IP}}}}', '{{{{json .}}}}' or 'table {{{{.Name}}}}\\t{{{{.IP}}}}'",
            self.template,
            self.reason,
            field_names().join(" ")
        )
    }
}

impl std::error::Error for BadTemplate {}

impl Format {
    /// Parses `text` and renders it once against a sample record, so an unknown field is
    /// reported before anything is printed. `table` alone means the default table (`None`).
    pub fn parse(text: &str) -> Result<Option<Format>, BadTemplate> {
        let trimmed = text.trim();
        let (table, body) = match trimmed.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim())
            }
            _ => (false, trimmed),
        };
        if table && body.is_empty() {
            return Ok(None);
        }
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let bad = |reason: String| BadTemplate {
            template: text.to_string(),
            reason,
        };
        let mut template = Template::default();
        template.add_func("json", json);
        template.add_func("upper", upper);
        template.add_func("lower", lower);
        template.parse(body).map_err(|e| bad(e.to_string()))?;
        let format = Format {
            text: text.to_string(),
            table,
            template,
        };
        format.render_one(&sample()).map_err(|e| bad(e.reason))?;
        Ok(Some(format))
    }

    /// The output for `records`: one line per record, a header first for `table`.
    pub fn render(&self, records: &[ListRecord]) -> Result<String, BadTemplate> {
        let mut lines = Vec::new();
        if self.table {
            lines.push(self.render_ctx(header())?);
        }
        for r in records {
            lines.push(self.render_one(r)?);
        }
        if self.table {
            return Ok(align(&lines));
        }
        Ok(lines.iter().map(|l| format!("{l}\n")).collect())
    }

    fn render_one(&self, record: &ListRecord) -> Result<String, BadTemplate> {
        self.render_ctx(context(record))
    }

    fn render_ctx(&self, ctx: Value) -> Result<String, BadTemplate> {
        self.template
            .render(&Context::from(ctx))
            .map_err(|e| BadTemplate {
                template: self.text.clone(),
                reason: match e {
                    // Its text would print the whole record.
                    gtmpl::error::ExecError::NoFiledFor(field, _) => {
                        format!("no field .{field}")
                    }
                    e => e.to_string(),
                },
            })
    }
}

/// Every field a template can name: the aliases, then the record's keys.
pub fn field_names() -> Vec<String> {
    let mut names: Vec<String> = ALIASES.iter().map(|(a, _, _)| format!(".{a}")).collect();
    names.extend(record_keys().into_iter().map(|k| format!(".{k}")));
    names
}

/// The keys of a lease's record and of a corrupt file's record, in their JSON order.
fn record_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for r in [sample(), sample_corrupt()] {
        if let Json::Object(m) = serde_json::to_value(&r).unwrap_or(Json::Null) {
            for k in m.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys
}

fn sample() -> ListRecord<'static> {
    ListRecord::Lease(Record {
        container_id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        container_name: "web",
        network: "bridge",
        bridge: "docker0",
        v4: V4Part {
            ip: Ipv4Addr::new(172, 17, 0, 2),
            prefix_len: 16,
            gateway: Ipv4Addr::new(172, 17, 0, 1),
        },
        mac: "02:42:ac:11:00:02",
        host_ifname: "vna01234567abcd",
        ifname: "eth0",
        netns_name: "web",
        v6: Some(V6Part {
            ip: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            prefix_len: 64,
            gateway: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
        }),
        mtu: Some(1500),
        routes: &[],
        status: Some(Status::Attached),
    })
}

fn sample_corrupt() -> ListRecord<'static> {
    ListRecord::Corrupt(CorruptRecord {
        network_id: "0123456789ab",
        ip: "172.17.0.3".into(),
        ip6: Some("fd00::3".into()),
        status: Status::Corrupt,
        path: "/var/lib/docker-netattach/leases/n/172.17.0.3".into(),
        quarantined: false,
        error: "bad JSON",
    })
}

/// The template's `.` for one record: every known key (empty when this record lacks it), the
/// aliases, and the record's JSON for `{{json .}}`.
fn context(record: &ListRecord) -> Value {
    let json = serde_json::to_value(record).unwrap_or(Json::Null);
    let mut map: HashMap<String, Value> = record_keys()
        .into_iter()
        .map(|k| (k, Value::from("")))
        .collect();
    if let Json::Object(m) = &json {
        for (k, v) in m {
            map.insert(k.clone(), from_json(v));
        }
    }
    let s = |k: &str| json.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let id = s("container_id");
    let network = match record {
        ListRecord::Lease(_) => s("network"),
        ListRecord::Corrupt(_) => short_id(&s("network_id")).to_string(),
    };
    for (alias, value) in [
        ("ID", short_id(&id).to_string()),
        ("Name", s("container_name")),
        ("Network", network),
        ("IP", s("ip")),
        ("IPv6", s("ip6")),
        ("MAC", s("mac")),
        ("Status", s("status")),
        ("Interface", s("ifname")),
        ("HostInterface", s("host_ifname")),
        ("Netns", s("netns_name")),
        ("Bridge", s("bridge")),
        ("Gateway", s("gateway")),
    ] {
        map.insert(alias.to_string(), Value::from(value));
    }
    // Serialised from the struct, so its keys keep the order of `list --json`.
    let text = serde_json::to_string(record).unwrap_or_default();
    map.insert(RECORD_KEY.to_string(), Value::from(text));
    Value::Object(map)
}

/// The `.` of the header row: each field's column title.
fn header() -> Value {
    let mut map: HashMap<String, Value> = record_keys()
        .into_iter()
        .map(|k| {
            let title = k.replace('_', " ").to_uppercase();
            (k, Value::from(title))
        })
        .collect();
    for (alias, _, title) in ALIASES {
        map.insert((*alias).to_string(), Value::from(*title));
    }
    Value::Object(map)
}

fn from_json(v: &Json) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (_, Some(i), _) => Value::from(i),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        Json::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Json::from(u),
            (_, Some(i), _) => Json::from(i),
            (_, _, Some(f)) => Json::from(f),
            _ => Json::Null,
        },
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            let sorted: std::collections::BTreeMap<&String, &Value> = m.iter().collect();
            Json::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
            )
        }
    }
}

/// `{{json .}}`: a record prints as `list --json` prints it (compact, one line); any other
/// value as JSON.
fn json(args: &[Value]) -> Result<Value, FuncError> {
    let [arg] = args else {
        return Err(FuncError::ExactlyXArgs("json".into(), 1));
    };
    if let Value::Object(m) = arg {
        if let Some(Value::String(s)) = m.get(RECORD_KEY) {
            return Ok(Value::from(s.as_str()));
        }
    }
    Ok(Value::from(to_json(arg).to_string()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [Value::String(s)] => Ok(Value::from(s.to_uppercase())),
        [v] => Ok(Value::from(v.to_string().to_uppercase())),
        _ => Err(FuncError::ExactlyXArgs("upper".into(), 1)),
    }
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [Value::String(s)] => Ok(Value::from(s.to_lowercase())),
        [v] => Ok(Value::from(v.to_string().to_lowercase())),
        _ => Err(FuncError::ExactlyXArgs("lower".into(), 1)),
    }
}

/// Aligns tab-separated cells as `docker ps` does (Go's tabwriter: minimum width 10,
/// padding 3); the last cell of a line is not padded.
pub fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .flat_map(|l| l.split('\n'))
        .map(|l| l.split('\t').collect())
        .collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter(|r| i + 1 < r.len())
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count() + 3)
                .max()
                .unwrap_or(0)
                .max(10)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let n = row.len();
        for (i, cell) in row.into_iter().enumerate() {
            if i + 1 < n {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, records: &[ListRecord]) -> String {
        Format::parse(t).unwrap().unwrap().render(records).unwrap()
    }

    #[test]
    fn fields_aliases_and_escapes() {
        let r = [sample()];
        assert_eq!(render("{{.IP}}", &r), "172.17.0.2\n");
        assert_eq!(
            render(r"{{.Name}}\t{{.MAC}}", &r),
            "web\t02:42:ac:11:00:02\n"
        );
        assert_eq!(
            render("{{.ID}} {{.container_id}}", &r).len(),
            12 + 1 + 64 + 1
        );
        assert_eq!(
            render(
                "{{.Interface}} {{.HostInterface}} {{.Netns}} {{.Status}}",
                &r
            ),
            "eth0 vna01234567abcd web attached\n"
        );
        assert_eq!(render("{{.IPv6}}/{{.prefix_len6}}", &r), "fd00::2/64\n");
        assert_eq!(render("{{upper .Status}}", &r), "ATTACHED\n");
        assert_eq!(
            render("{{if eq .prefix_len 16}}sixteen{{end}}", &r),
            "sixteen\n"
        );
    }

    #[test]
    fn json_prints_the_record_as_list_json_does() {
        let r = [sample(), sample_corrupt()];
        let out = render("{{json .}}", &r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        for (line, rec) in lines.iter().zip(&r) {
            assert_eq!(*line, serde_json::to_string(rec).unwrap());
        }
        assert!(lines[0].starts_with("{\"container_id\":"), "{out}");
        assert_eq!(render("{{json .IP}}", &r[..1]), "\"172.17.0.2\"\n");
    }

    #[test]
    fn absent_fields_are_empty_not_errors() {
        let mut lease = crate::lease::Lease::sample("abc", "web", "172.17.0.9");
        lease.v6 = None;
        let rec = [ListRecord::Lease(Record::new(&lease, Some(Status::Stale)))];
        assert_eq!(render("[{{.IPv6}}][{{.ip6}}][{{.path}}]", &rec), "[][][]\n");
        let c = [sample_corrupt()];
        assert_eq!(
            render("{{.Name}}|{{.Network}}|{{.Status}}", &c),
            "|0123456789ab|corrupt\n"
        );
    }

    #[test]
    fn table_prints_a_header_and_aligns() {
        let r = [sample()];
        let out = render(r"table {{.Name}}\t{{.IP}}\t{{.Status}}", &r);
        assert_eq!(
            out,
            "NAME      IP           STATUS\nweb       172.17.0.2   attached\n"
        );
        let out = render(r"table {{.container_name}}\t{{.ID}}", &r);
        assert!(out.starts_with("CONTAINER NAME   CONTAINER ID\n"), "{out}");
        assert!(Format::parse("table").unwrap().is_none());
    }

    #[test]
    fn bad_templates_name_the_template_and_the_fields() {
        for bad in ["{{.Nope}}", "{{.IP", "{{nofunc .IP}}", "{{end}}"] {
            let e = match Format::parse(bad) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{bad} was accepted"),
            };
            assert!(e.contains(&format!("'{bad}'")), "{e}");
            assert!(e.contains(".Name") && e.contains(".container_name"), "{e}");
            assert!(e.len() < 700, "the error prints the whole record: {e}");
        }
    }
}
