//! One corrupt file in the state directory blocks no one: `list`, `detach` of another target,
//! `gc`, the daemon's cleanup and `/attachments` keep working; the corrupt record is shown
//! (`list`, `doctor`, a metric), set aside under `<state>/quarantine/` by `gc`, and its address
//! is never handed out again. A corrupt index entry loses no lease. Each test uses named
//! namespaces on a private bridge with a tiny subnet, so that exhaustion is observable.
//! Needs root (the daemon test needs Docker as well).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A unique bridge name, the bridge removed on drop (if it was made).
fn new_bridge() -> DelLink {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    DelLink(format!(
        "nacr{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A private /29: 10.2xx.yy.zz/29 (five usable addresses besides the gateway), never the same
/// twice in this binary ([`subnet_slot`]).
fn tiny_subnet() -> String {
    let (seed, n) = subnet_slot(8000);
    let i = ((seed >> 8) % 8000 + n) % 8000;
    format!("10.{}.{}.{}/29", 200 + seed % 50, i / 32, (i % 32) * 8)
}

struct Lab {
    tool: Tool,
    br: DelLink,
    subnet: String,
    spaces: Vec<NamedNs>,
}

impl Lab {
    fn new() -> Self {
        Lab {
            tool: Tool::new(),
            br: new_bridge(),
            subnet: tiny_subnet(),
            spaces: Vec::new(),
        }
    }

    fn args<'a>(&'a self, ns: &'a str) -> Vec<&'a str> {
        vec![
            "attach",
            "--netns",
            ns,
            "--bridge",
            &self.br.0,
            "--subnet",
            &self.subnet,
        ]
    }

    /// Attaches a new namespace; returns (its name, the address or the error).
    fn attach(&mut self) -> (String, Result<String, String>) {
        let ns = NamedNs::new("na-cr");
        let name = ns.0.clone();
        let o = self.tool.run(&self.args(&name));
        self.spaces.push(ns);
        if o.status.success() {
            (name, Ok(stdout(&o)))
        } else {
            (name, Err(stderr(&o)))
        }
    }

    fn attach_ok(&mut self) -> (String, String) {
        let (name, r) = self.attach();
        (name, r.unwrap_or_else(|e| panic!("attach failed: {e}")))
    }
}

fn row_of<'a>(list: &'a str, ip: &str) -> Option<&'a str> {
    list.lines().find(|l| {
        l.split_whitespace()
            .any(|c| c.starts_with(&format!("{ip}/")) || c == ip)
    })
}

#[test]
fn one_corrupt_lease_blocks_no_one_and_keeps_its_address() {
    if !need_root() {
        return;
    }
    let mut lab = Lab::new();
    let (_a, ip_a) = lab.attach_ok();
    let (b, ip_b) = lab.attach_ok();
    let file = lab.tool.lease_file(&ip_a);
    std::fs::write(&file, "{ truncated").unwrap();
    let tool = &lab.tool;

    // list: every other lease as before, the corrupt one as `corrupt` with its path.
    let list = tool.ok(&["list"]);
    let row = row_of(&list, &ip_b).unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("attached"), "{list}");
    let row = row_of(&list, &ip_a).unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("corrupt") && row.contains(&file.display().to_string()),
        "{list}"
    );
    let json = json_of(tool, &["list", "--json"]);
    let corrupt: Vec<&serde_json::Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "corrupt")
        .collect();
    assert_eq!(corrupt.len(), 1, "{json}");
    assert_eq!(corrupt[0]["ip"], ip_a.as_str(), "{json}");
    assert_eq!(corrupt[0]["path"], file.display().to_string(), "{json}");

    // doctor names the file and the fix.
    let o = tool.run(&["doctor", "--json"]);
    let checks: serde_json::Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", stderr(&o)));
    let finding = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == file.display().to_string())
        .unwrap_or_else(|| panic!("no doctor finding for {}: {checks}", file.display()));
    assert!(
        finding["message"].as_str().unwrap().contains(&ip_a)
            && !finding["fix"].as_str().unwrap_or_default().is_empty(),
        "{finding}"
    );

    // detach of another target.
    tool.ok(&["detach", &b]);
    assert!(row_of(&tool.ok(&["list"]), &ip_b).is_none());

    // gc sets it aside; it is still shown, and still reserved.
    tool.ok(&["gc"]);
    let net = file.parent().unwrap().file_name().unwrap();
    let quarantined = tool.state.path().join("quarantine").join(net).join(&ip_a);
    assert!(!file.exists(), "gc left {} in place", file.display());
    assert!(quarantined.exists(), "{} missing", quarantined.display());
    let list = tool.ok(&["list"]);
    let row = row_of(&list, &ip_a).unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("corrupt") && row.contains(&quarantined.display().to_string()),
        "{list}"
    );

    // The /29 has five addresses besides the gateway: four more attaches succeed, none of
    // them with the corrupt record's address, and the fifth finds the subnet exhausted.
    let mut got = Vec::new();
    let err = loop {
        match lab.attach() {
            (_, Ok(ip)) => got.push(ip),
            (_, Err(e)) => break e,
        }
        assert!(got.len() <= 5, "{got:?}");
    };
    assert!(!got.contains(&ip_a), "{ip_a} was handed out again: {got:?}");
    assert_eq!(got.len(), 4, "{got:?}; then: {err}");
    assert!(err.contains("no free address"), "{err}");
}

#[test]
fn a_corrupt_index_entry_loses_no_lease() {
    if !need_root() {
        return;
    }
    let mut lab = Lab::new();
    let (a, ip_a) = lab.attach_ok();
    let by = lab.tool.state.path().join("by-container");
    let index = std::fs::read_dir(&by)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::read_link(p).is_ok_and(|t| t == Path::new(&ip_a)))
        .expect("index entry");
    std::fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink("not-an-address", &index).unwrap();
    let tool = &lab.tool;

    let o = tool.run(&["doctor", "--json"]);
    assert!(
        stdout(&o).contains(&index.display().to_string()),
        "doctor does not name {}: {}",
        index.display(),
        stdout(&o)
    );
    // The attachment is still found through its lease: attaching again changes nothing.
    assert_eq!(tool.ok(&lab.args(&a)), ip_a);
    tool.ok(&["gc"]);
    let list = tool.ok(&["list"]);
    let row = row_of(&list, &ip_a).unwrap_or_else(|| panic!("gc dropped the lease: {list}"));
    assert!(row.contains("attached"), "{list}");
    assert_eq!(
        std::fs::read_link(&index).unwrap(),
        Path::new(&ip_a),
        "gc did not rebuild the index entry"
    );
    let (_, ip_c) = lab.attach_ok();
    assert_ne!(
        ip_c, ip_a,
        "the address of a live attachment was handed out again"
    );
    lab.tool.ok(&["detach", &a]);
}

#[test]
fn the_daemon_serves_counts_and_cleans_up_around_a_corrupt_lease() {
    if !need_docker() {
        return;
    }
    let mut lab = Lab::new();
    let (_a, ip_a) = lab.attach_ok();
    let (_b, ip_b) = lab.attach_ok();
    let file = lab.tool.lease_file(&ip_a);
    std::fs::write(&file, "garbage").unwrap();
    let d = Daemon::start(&lab.tool, &[]);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .metric("netattach_reconciles_total{result=\"ok\"}")
            >= 1.0),
        "the start-up cleanup did not succeed:\n{}",
        d.log()
    );
    let (status, body) = d.get("/attachments");
    assert_eq!(status, 200, "{body}");
    let records: serde_json::Value = serde_json::from_str(&body).unwrap();
    let records = records.as_array().unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["ip"] == ip_b.as_str() && r["status"] == "attached"),
        "{body}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["ip"] == ip_a.as_str() && r["status"] == "corrupt"),
        "{body}"
    );
    assert_eq!(d.metric("netattach_corrupt_leases"), 1.0, "{}", d.log());
    // The cleanup set it aside.
    assert!(!file.exists());
}
