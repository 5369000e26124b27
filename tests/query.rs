//! End to end, root and Docker: `list` filters (containers, --network), `-q`, `--format`
//! templates, the table's columns and width, `inspect`, and `attach --dry-run --json`. Every
//! attachment is on private Docker networks of this test (no docker0 address is taken).

mod common;

use common::{
    Container, Network, Tool, image, json_of, need_docker, ok, run, stderr, stdout, unique,
};

/// A private network: dual-stack when `v6`. Subnets from 10.200-249.x (other suites use
/// 10.100-199.x); a subnet another test holds is skipped.
fn network(v6: bool) -> (Network, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    for _ in 0..20 {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let seed = std::process::id().wrapping_mul(2654435761) ^ n.wrapping_mul(40503);
        let (a, b) = (200 + (seed >> 8) % 50, seed % 250);
        let v4 = format!("10.{a}.{b}.0/24");
        let v6net = format!("fd00:{a:x}:{b:x}::/64");
        let name = unique("na-q");
        let mut args = vec!["network", "create", "--subnet", v4.as_str()];
        if v6 {
            args.extend(["--ipv6", "--subnet", v6net.as_str()]);
        }
        args.push(&name);
        if run("docker", &args).status.success() {
            return (Network(name), format!("10.{a}.{b}"));
        }
    }
    panic!("no free private subnet for a test network");
}

/// A `--network=none` container with a name of exactly 20 characters.
fn container20() -> Container {
    let mut name = unique("na-q-twenty");
    name.truncate(20);
    while name.len() < 20 {
        name.push('x');
    }
    let id = ok(
        "docker",
        &["run", "-d", "--name", &name, "--network=none", &image()],
    );
    Container { name, id }
}

fn records(tool: &Tool, args: &[&str]) -> Vec<serde_json::Value> {
    json_of(tool, args).as_array().unwrap().clone()
}

#[test]
fn list_filters_quiet_format_and_table() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (dual, p1) = network(true);
    let (v4, p2) = network(false);
    let a = container20();
    let b = Container::none("na-q-b");
    let ip_a1 = format!("{p1}.10");
    let ip_a2 = format!("{p2}.10");
    let ip_b = format!("{p1}.11");
    tool.ok(&["attach", &a.name, "--network", &dual.0, "--ip", &ip_a1]);
    tool.ok(&["attach", &a.name, "--network", &v4.0, "--ip", &ip_a2]);
    tool.ok(&["attach", &b.name, "--network", &dual.0, "--ip", &ip_b]);
    let short_a = &a.id[..12];
    let short_b = &b.id[..12];

    // By container: name, full ID, unique ID prefix (as detach matches them).
    for arg in [a.name.as_str(), a.id.as_str(), &a.id[..8]] {
        let r = records(&tool, &["list", arg, "--json"]);
        assert_eq!(r.len(), 2, "list {arg}: {r:?}");
        assert!(
            r.iter().all(|x| x["container_id"] == a.id.as_str()),
            "{r:?}"
        );
    }
    let r = records(&tool, &["list", &a.name, &b.name, "--json"]);
    assert_eq!(r.len(), 3, "{r:?}");
    // By network: name or ID; together with a container.
    let v4_id = ok("docker", &["network", "inspect", "-f", "{{.Id}}", &v4.0]);
    for net in [v4.0.as_str(), v4_id.as_str()] {
        let r = records(&tool, &["list", "--network", net, "--json"]);
        assert_eq!(r.len(), 1, "--network {net}: {r:?}");
        assert_eq!(r[0]["ip"], ip_a2.as_str());
    }
    let r = records(&tool, &["list", &b.name, "--network", &dual.0, "--json"]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["ip"], ip_b.as_str());
    assert!(
        tool.ok(&["list", &b.name, "--network", &v4.0, "-q"])
            .is_empty()
    );

    // -q: one short ID per container, even with two attachments.
    assert_eq!(
        tool.ok(&["list", "-q"]),
        format!("{short_a}\n{short_b}"),
        "-q"
    );
    assert_eq!(tool.ok(&["list", "-q", &b.name]), short_b);

    // --format: fields, aliases, escapes, json, table.
    assert_eq!(
        tool.ok(&["list", "--network", &v4.0, "--format", "{{.IP}}"]),
        ip_a2
    );
    let mac = format!("{}\t02:42:", a.name);
    let line = tool.ok(&[
        "list",
        &a.name,
        "--network",
        &v4.0,
        "--format",
        r"{{.Name}}\t{{.MAC}}",
    ]);
    assert!(line.starts_with(&mac), "{line}");
    let line = tool.ok(&[
        "list",
        &b.name,
        "--format",
        "{{.ID}} {{.Interface}} {{.Status}} {{.Netns}} {{.Network}}",
    ]);
    assert_eq!(
        line,
        format!("{short_b} eth0 attached {} {}", b.name, dual.0)
    );
    let ip6 = tool.ok(&["list", &b.name, "--format", "{{.IPv6}}"]);
    assert!(ip6.starts_with("fd00:"), "{ip6}");
    let json = records(&tool, &["list", "--json"]);
    let lines = tool.ok(&["list", "--format", "{{json .}}"]);
    let from_template: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(from_template, json);
    let table = tool.ok(&["list", &a.name, "--format", r"table {{.Name}}\t{{.IP}}"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(
        rows[0].starts_with("NAME") && rows[0].contains("IP"),
        "{table}"
    );
    assert!(rows[1].starts_with(&a.name), "{table}");

    // A bad template: a usage error naming it and the fields, and nothing on stdout.
    for bad in ["{{.Nope}}", "{{.IP"] {
        let o = tool.run(&["list", "--format", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(bad) && err.contains(".Name") && err.contains(".ip"),
            "{err}"
        );
        assert!(stdout(&o).is_empty());
    }
    // An unknown container: exit 1, named; the others still listed.
    let ghost = unique("na-q-ghost");
    let o = tool.run(&["list", &b.name, &ghost, "-q"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("no such container '{ghost}'")),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), short_b);
    tool.fails(
        &["list", "--network", &ghost],
        1,
        &format!("no such network '{ghost}'"),
    );

    // The table: the interface inside, the IPv6 address, 120 columns with a 20-char name.
    let table = tool.ok(&["list"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("IFACE") && header.contains("IPV6"),
        "{table}"
    );
    let row = table.lines().find(|l| l.contains(&ip_b)).unwrap();
    assert!(
        row.contains(" eth0 ") && row.contains(&format!(" {ip6} ")),
        "{table}"
    );
    let row = table.lines().find(|l| l.contains(&ip_a2)).unwrap();
    assert!(row.contains(" eth1 "), "{table}");
    for line in table.lines() {
        assert!(
            line.chars().count() <= 120,
            "{} columns:\n{table}",
            line.chars().count()
        );
    }
}

#[test]
fn inspect_prints_every_attachment_and_names_the_unknown() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (dual, p1) = network(true);
    let (v4, p2) = network(false);
    let a = Container::none("na-q-ia");
    let b = Container::none("na-q-ib");
    let bare = Container::none("na-q-ic");
    tool.ok(&[
        "attach",
        &a.name,
        "--network",
        &dual.0,
        "--ip",
        &format!("{p1}.20"),
    ]);
    tool.ok(&[
        "attach",
        &a.name,
        "--network",
        &v4.0,
        "--ip",
        &format!("{p2}.20"),
    ]);
    tool.ok(&[
        "attach",
        &b.name,
        "--network",
        &v4.0,
        "--ip",
        &format!("{p2}.21"),
    ]);

    let ghost = unique("na-q-ghost");
    let o = tool.run(&["inspect", &a.name, &ghost, &b.id[..10], &bare.name]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("no such container '{ghost}'")),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 3, "{v}");
    assert_eq!(items[0]["id"], a.id.as_str());
    assert_eq!(items[0]["name"], a.name.as_str());
    let atts = items[0]["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 2, "{v}");
    let on_dual = atts
        .iter()
        .find(|x| x["network"] == dual.0.as_str())
        .unwrap();
    assert!(on_dual["ip6"].as_str().unwrap().starts_with("fd00:"), "{v}");
    for att in atts {
        assert_eq!(att["status"], "attached", "{att}");
        assert_eq!(
            att["netns_link"],
            format!("/var/run/netns/{}", a.name),
            "{att}"
        );
        assert!(
            att["netns_source"].as_str().unwrap().starts_with("/proc/"),
            "{att}"
        );
        for key in [
            "mac",
            "ifname",
            "host_ifname",
            "network_id",
            "bridge",
            "gateway",
        ] {
            assert!(att[key].is_string(), "{key} missing: {att}");
        }
    }
    let ifnames: Vec<&str> = atts.iter().map(|x| x["ifname"].as_str().unwrap()).collect();
    assert!(
        ifnames.contains(&"eth0") && ifnames.contains(&"eth1"),
        "{v}"
    );
    assert_eq!(items[1]["id"], b.id.as_str());
    assert_eq!(items[1]["attachments"].as_array().unwrap().len(), 1);
    // A container Docker knows, not attached: there, with no attachments.
    assert_eq!(items[2]["name"], bare.name.as_str());
    assert_eq!(items[2]["attachments"], serde_json::json!([]));

    // After a restart the attachment is stale.
    ok("docker", &["restart", "-t", "0", &b.name]);
    let v = json_of(&tool, &["inspect", &b.name]);
    assert_eq!(v[0]["attachments"][0]["status"], "stale", "{v}");
}

#[test]
fn dry_run_json_is_the_attach_record_plus_the_plan() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (net, p) = network(true);
    let c = Container::none("na-q-dry");
    let ip = format!("{p}.30");
    let args = [
        "attach",
        &c.name,
        "--network",
        &net.0,
        "--ip",
        &ip,
        "--json",
    ];
    let dry = json_of(&tool, &[&args[..], &["--dry-run", "--explain"]].concat());
    assert_eq!(tool.lease_count(), 0, "--dry-run changed something");
    let plan = dry["plan"].as_object().expect("plan");
    assert!(plan["mtu"].as_u64().unwrap() >= 68, "{dry}");
    assert!(
        plan["netns_source"].as_str().unwrap().starts_with("/proc/"),
        "{dry}"
    );
    assert_eq!(plan["create_bridge"], false);
    let explain: Vec<&str> = dry["explain"]
        .as_array()
        .expect("explain")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        explain.iter().any(|c| c.starts_with("ip link add vna")),
        "{dry}"
    );
    assert!(
        explain
            .iter()
            .any(|c| c.contains(&format!("addr add {ip}/24"))),
        "{dry}"
    );
    let without = json_of(&tool, &[&args[..], &["--dry-run"]].concat());
    assert!(without.get("explain").is_none(), "{without}");

    let attached = json_of(&tool, &args);
    let mut expected = dry.clone();
    expected.as_object_mut().unwrap().remove("plan");
    expected.as_object_mut().unwrap().remove("explain");
    assert_eq!(
        attached, expected,
        "dry-run record differs from the attach record"
    );
}
