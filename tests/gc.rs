//! End to end, root and Docker: `gc` removes exactly the stale objects this test made, and
//! nothing else (not a healthy attachment, not a parked lease, not an interface or netns link
//! that is not ours).

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{
    Container, NamedNs, RemoveOnDrop, Tool, iface_exists, json_of, leases, need_docker,
    netns_link_exists, ok, run, test_ip, unique,
};

/// Held by every test here for its whole run: `gc` acts on the whole host (an orphan veth of
/// ours is anyone's to collect), so one test's `gc` would remove the fake orphan another test
/// is about to look for.
static GC_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    GC_SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A veth pair made by the test: host end `name` (with an optional ifalias), peer inside a
/// throwaway namespace `ns`. Removed on drop (deleting the namespace takes the pair with it).
struct FakeVeth {
    ns: String,
    name: String,
}

impl FakeVeth {
    fn new(name: &str, alias: Option<&str>) -> Self {
        let ns = unique("na-t-gcns");
        ok("ip", &["netns", "add", &ns]);
        let v = FakeVeth {
            ns: ns.clone(),
            name: name.to_string(),
        };
        ok(
            "ip",
            &[
                "link", "add", name, "type", "veth", "peer", "name", "p0", "netns", &ns,
            ],
        );
        if let Some(a) = alias {
            ok("ip", &["link", "set", "dev", name, "alias", a]);
        }
        v
    }
}

impl Drop for FakeVeth {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.name]);
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}

fn removal_set(v: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["object"].as_str().unwrap().to_string(),
                r["container_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Drops from `got` what other suites running at the same time may have left: veths of
/// containers that are not running (gc is right to take those, and they are not this test's).
/// Anything else extra (a lease or a link, or a veth of a running container) stays and fails
/// the comparison.
fn only_ours(
    got: BTreeSet<(String, String, String)>,
    want: &BTreeSet<(String, String, String)>,
) -> BTreeSet<(String, String, String)> {
    got.into_iter()
        .filter(|r| {
            if want.contains(r) || r.0 != "veth" {
                return true;
            }
            let running = Command::new("docker")
                .args(["inspect", "-f", "{{.State.Running}}", &r.2])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true");
            if !running {
                eprintln!("note: gc also took {r:?}, left by someone else");
            }
            running
        })
        .collect()
}

fn hex_id(seed: &str) -> String {
    // 64 lowercase hex digits that no Docker container has.
    let mut id = String::new();
    for (i, b) in seed.bytes().cycle().take(32).enumerate() {
        id.push_str(&format!("{:02x}", b.wrapping_add(i as u8)));
    }
    id
}

#[test]
fn gc_removes_exactly_the_stale_objects() {
    let _serial = serial();
    if !need_docker() {
        return;
    }
    let _neighbour = Container::bridged("na-t-nb");
    let tool = Tool::new();
    let attach = |c: &Container| {
        let ip = test_ip();
        assert_eq!(tool.ok(&["attach", &c.name, "--ip", &ip]), ip);
        ip
    };
    let healthy = Container::none("na-t-ok");
    let removed = Container::none("na-t-rm");
    let stopped = Container::none("na-t-stop");
    let halfway = Container::none("na-t-half");
    let ip_healthy = attach(&healthy);
    let ip_removed = attach(&removed);
    let ip_stopped = attach(&stopped);
    let ip_halfway = attach(&halfway);
    let lease_file = |ip: &str| {
        json_of(&tool, &["list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ip"] == ip)
            .map(|r| r["host_ifname"].as_str().unwrap().to_string())
    };
    let halfway_veth = lease_file(&ip_halfway).unwrap();

    // Make them stale in four different ways.
    ok("docker", &["rm", "-f", &removed.name]); // container gone
    ok("docker", &["stop", "-t", "0", &stopped.name]); // namespace gone, container kept
    ok("ip", &["link", "del", &halfway_veth]); // interface gone, container still running
    let fake_id = hex_id(&unique("gc"));
    let orphan = FakeVeth::new(&format!("vna{}", &fake_id[20..32]), Some(&fake_id)); // ours, container unknown

    // Things gc must not touch.
    let not_ours_noalias = FakeVeth::new(&format!("vnx{}", &fake_id[..10]), None);
    let ours_prefix_no_alias = FakeVeth::new(&format!("vna{}", &fake_id[10..20]), None);
    let foreign = unique("na-t-dangle");
    let _foreign = RemoveOnDrop::netns_link(&foreign);
    std::os::unix::fs::symlink(
        "/proc/999999999/ns/net",
        format!("/var/run/netns/{}", foreign),
    )
    .unwrap();

    let id_of = |c: &Container| c.id.clone();
    let want: BTreeSet<(String, String, String)> = [
        (
            "netns-link",
            format!("/var/run/netns/{}", removed.name),
            id_of(&removed),
        ),
        ("lease", format!("{ip_removed} on bridge"), id_of(&removed)),
        (
            "netns-link",
            format!("/var/run/netns/{}", stopped.name),
            id_of(&stopped),
        ),
        // (halfway: a running container whose veth was deleted keeps its lease and link: a
        // lease is the intent, `watch` or `attach` again puts the interface back)
        ("veth", orphan.name.clone(), fake_id.clone()),
    ]
    .into_iter()
    .map(|(k, o, id)| (k.to_string(), o, id))
    .collect();

    // --dry-run lists exactly those and changes nothing.
    let before = leases(&tool);
    let planned = json_of(&tool, &["gc", "--dry-run", "--json"]);
    assert_eq!(only_ours(removal_set(&planned), &want), want, "{planned:#}");
    assert_eq!(leases(&tool), before);
    assert!(iface_exists(&orphan.name));
    assert!(netns_link_exists(&removed.name));

    // gc removes exactly those.
    let done = json_of(&tool, &["gc", "--json"]);
    assert_eq!(only_ours(removal_set(&done), &want), want, "{done:#}");
    assert!(!iface_exists(&orphan.name));
    assert!(!netns_link_exists(&removed.name));
    assert!(!netns_link_exists(&stopped.name));
    assert!(netns_link_exists(&halfway.name));
    let left: BTreeSet<String> = leases(&tool).into_iter().map(|(_, ip, _)| ip).collect();
    assert_eq!(
        left,
        [ip_healthy.clone(), ip_stopped.clone(), ip_halfway.clone()]
            .into_iter()
            .collect()
    );

    // Untouched: the healthy attachment, interfaces and links that are not ours.
    assert!(netns_link_exists(&healthy.name));
    assert!(common::curl(&ip_healthy, std::time::Duration::from_secs(3)).is_some());
    assert!(iface_exists(&not_ours_noalias.name));
    assert!(iface_exists(&ours_prefix_no_alias.name));
    assert!(netns_link_exists(&foreign));

    // Second run: nothing left to do.
    let again = json_of(&tool, &["gc", "--json"]);
    assert!(
        only_ours(removal_set(&again), &want).is_empty(),
        "{again:#}"
    );

    // The parked lease of the stopped container gives it its address back.
    ok("docker", &["start", &stopped.name]);
    assert_eq!(tool.ok(&["attach", &stopped.name]), ip_stopped);
    assert!(common::first_answer(&ip_stopped, std::time::Duration::from_secs(5)).is_some());
    // ... and the kept lease of the one that lost its interface gets it back.
    assert_eq!(tool.ok(&["attach", &halfway.name]), ip_halfway);
    assert!(common::first_answer(&ip_halfway, std::time::Duration::from_secs(5)).is_some());
}

#[test]
fn gc_without_docker_removes_nothing() {
    let _serial = serial();
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let c = Container::none("na-t-gcd");
    let ip = test_ip();
    assert_eq!(tool.ok(&["attach", &c.name, "--ip", &ip]), ip);
    ok("docker", &["rm", "-f", &c.name]);
    let o = tool.run_env(
        &["gc"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert!(
        err.starts_with("error: gc needs Docker") && err.contains("nothing was removed"),
        "{err}"
    );
    assert_eq!(leases(&tool).len(), 1);
    assert!(netns_link_exists(&c.name));
    // With Docker back, it goes.
    let out = tool.ok(&["gc"]);
    assert!(
        out.contains(&format!("removed lease {ip} on bridge")),
        "{out}"
    );
    assert!(leases(&tool).is_empty());
}

#[test]
fn gc_leaves_live_namespaces_alone_and_collects_dead_ones() {
    let _serial = serial();
    if !need_docker() {
        return;
    }
    let _neighbour = Container::bridged("na-t-nb");
    let mine = Tool::new();
    let other = Tool::new(); // another state directory on the same host
    let (ns_mine, ns_other) = (NamedNs::new("na-t-gcn"), NamedNs::new("na-t-gcn"));
    let (ip_mine, ip_other) = (test_ip(), test_ip());
    assert_eq!(
        mine.ok(&["attach", "--netns", &ns_mine.0, "--ip", &ip_mine]),
        ip_mine
    );
    assert_eq!(
        other.ok(&["attach", "--netns", &ns_other.0, "--ip", &ip_other]),
        ip_other
    );
    let veth_of = |t: &Tool| {
        json_of(t, &["list", "--json"])[0]["host_ifname"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (veth_mine, veth_other) = (veth_of(&mine), veth_of(&other));

    // Both namespaces alive: nothing of theirs is garbage, whatever the state directory.
    let planned = json_of(&mine, &["gc", "--dry-run", "--json"]);
    let touches = |v: &serde_json::Value, what: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .any(|r| r["object"].as_str().unwrap().contains(what))
    };
    for what in [
        &veth_mine,
        &veth_other,
        &ip_mine,
        &ip_other,
        &ns_mine.0,
        &ns_other.0,
    ] {
        assert!(
            !touches(&planned, what),
            "{what} planned for removal: {planned:#}"
        );
    }

    // My namespace goes away: its lease is collected; the other one is still left alone.
    ok("ip", &["netns", "del", &ns_mine.0]);
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || !iface_exists(&veth_mine)
    ));
    let done = json_of(&mine, &["gc", "--json"]);
    assert!(touches(&done, &format!("{ip_mine} on bridge")), "{done:#}");
    assert!(
        !touches(&done, &veth_other) && !touches(&done, &ip_other),
        "{done:#}"
    );
    assert!(leases(&mine).is_empty());
    assert!(iface_exists(&veth_other));
    assert_eq!(leases(&other).len(), 1);
    assert_eq!(other.ok(&["detach", &ns_other.0]), "");
}
