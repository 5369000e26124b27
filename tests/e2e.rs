//! End to end: the real binary against the real Docker Engine and kernel, on containers of the
//! locally built test image. Needs root and Docker.
//!
//! All tests of this binary share one state directory, like every command on one host shares
//! /var/lib/docker-netattach: separate directories would be separate allocators handing out the
//! same addresses on docker0. Each test checks that *its* containers leave nothing behind.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use common::*;

fn assert_clean(c: &Container) {
    let left = leftovers(c, Tool::shared());
    assert!(left.is_empty(), "{} left behind: {left:?}", c.name);
}

#[test]
fn nginx_curl_script() {
    if !need_docker() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/nginx-curl.sh");
    let o = std::process::Command::new("bash")
        .arg(script)
        .env("BIN", BIN)
        .env("DOCKER_NETATTACH_STATE_DIR", Tool::shared().state.path())
        // Not the allocator's top address: a parallel test would take it once the script
        // detaches, and answer its "nothing answers after detach" curl.
        .env("NA_DEMO_IP", test_ip())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "nginx-curl.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    assert!(stdout(&o).contains("PASS: nginx-curl"));
}

#[test]
fn attach_is_idempotent_json_is_complete_and_detach_cleans_up() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-e2e-idem");
    let dry = Tool::shared().ok(&["attach", &web.name, "--dry-run"]);
    assert!(dry.contains("veth"), "{dry}");
    assert_clean(&web);

    let json: serde_json::Value =
        serde_json::from_str(&Tool::shared().ok(&["attach", &web.name, "--json"])).unwrap();
    for field in [
        "container_id",
        "container_name",
        "network",
        "bridge",
        "ip",
        "prefix_len",
        "gateway",
        "mac",
        "host_ifname",
        "ifname",
        "netns_name",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    let ip = json["ip"].as_str().unwrap().to_string();
    assert_eq!(json["container_id"], web.id.as_str());
    assert_eq!(json["bridge"], "docker0");
    assert_eq!(json["prefix_len"], 16);
    assert!(json["host_ifname"].as_str().unwrap().len() <= 15);
    assert_eq!(
        curl(&ip, Duration::from_secs(5)).as_deref(),
        Some("netattach-test ok")
    );
    let mtu = ok(
        "ip",
        &["netns", "exec", &web.name, "cat", "/sys/class/net/eth0/mtu"],
    );
    let bridge_mtu = std::fs::read_to_string("/sys/class/net/docker0/mtu").unwrap();
    assert_eq!(mtu, bridge_mtu.trim());

    // Again: same address, reported, nothing changed. By ID prefix too.
    let again = Tool::shared().run(&[&web.name]);
    assert!(again.status.success());
    assert_eq!(stdout(&again), ip);
    assert!(
        stderr(&again).contains("already attached"),
        "{}",
        stderr(&again)
    );
    assert_eq!(Tool::shared().ok(&[&web.id[..12]]), ip);
    assert_eq!(
        bridge_ports("docker0")
            .iter()
            .filter(|p| p.starts_with(&format!("vna{}", &web.id[..8])))
            .count(),
        1
    );

    let list: serde_json::Value =
        serde_json::from_str(&Tool::shared().ok(&["list", "--json"])).unwrap();
    let mine: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["container_id"] == web.id.as_str())
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["status"], "attached");

    Tool::shared().ok(&["detach", &web.name]);
    // The tests of this binary share one state directory and run in parallel: the freed
    // address (the top of the subnet) may be leased at once by another test's container, which
    // then answers at it with the same derived MAC. Only that one may answer.
    let taken_by_another = || {
        let list: serde_json::Value =
            serde_json::from_str(&Tool::shared().ok(&["list", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["ip"] == ip.as_str() && r["container_id"] != web.id.as_str())
    };
    let taken_before = taken_by_another();
    let answered = curl(&ip, Duration::from_millis(700)).is_some();
    assert!(!answered || taken_before || taken_by_another());
    assert_clean(&web);
    // Detaching again succeeds.
    Tool::shared().ok(&["detach", &web.name]);
}

#[test]
fn restart_keeps_the_address_and_detach_after_rm_releases_everything() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-e2e-rst");
    let ip = Tool::shared().ok(&[&web.name]);
    ok("docker", &["restart", "-t", "0", &web.name]);
    // The old namespace died with the old process: the lease is stale now.
    let list = Tool::shared().ok(&["ls"]);
    let line = list
        .lines()
        .find(|l| l.contains(&web.name))
        .unwrap()
        .to_string();
    assert!(line.contains("stale"), "{line}");
    assert_eq!(
        Tool::shared().ok(&[&web.name]),
        ip,
        "sticky address after restart"
    );
    assert!(first_answer(&ip, Duration::from_secs(5)).is_some());

    ok("docker", &["rm", "-f", &web.name]);
    Tool::shared().ok(&["detach", &web.name]);
    assert_clean(&web);
}

#[test]
fn a_reused_address_answers_on_the_first_try_with_a_neighbour_on_the_bridge() {
    if !need_docker() {
        return;
    }
    let _neighbour = Container::bridged("na-e2e-nb");
    let a = Container::none("na-e2e-ra");
    let b = Container::none("na-e2e-rb");
    // An address of this test's own: the allocator's top one, once freed, could be leased by
    // a parallel test before `b` asks for it.
    let ip = test_ip();
    assert_eq!(Tool::shared().ok(&[&a.name, "--ip", &ip]), ip);
    assert!(first_answer(&ip, Duration::from_secs(5)).is_some());
    Tool::shared().ok(&["detach", &a.name]);
    assert_eq!(Tool::shared().ok(&[&b.name, "--ip", &ip]), ip);
    // A stale neighbour entry would stall this for ~25 s; allow 3 s.
    let t = first_answer(&ip, Duration::from_secs(3));
    assert!(
        t.is_some(),
        "{ip} did not answer within 3 s after re-attach"
    );
    eprintln!("reused address answered after {t:?}");
    Tool::shared().ok(&["detach", &b.name]);
    assert_clean(&a);
    assert_clean(&b);
}

#[test]
fn twenty_parallel_attaches_get_distinct_answering_addresses() {
    if !need_docker() {
        return;
    }
    let peer = Container::bridged("na-e2e-pp");
    let containers: Vec<Container> = (0..20).map(|_| Container::none("na-e2e-par")).collect();
    let children: Vec<_> = containers
        .iter()
        .map(|c| {
            Tool::shared()
                .cmd()
                .arg(&c.name)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ips: Vec<String> = children
        .into_iter()
        .map(|ch| {
            let o = ch.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            stdout(&o)
        })
        .collect();
    let distinct: HashSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 20, "{ips:?}");
    for ip in &ips {
        assert!(
            curl(ip, Duration::from_secs(5)).is_some(),
            "{ip} does not answer"
        );
    }
    assert!(
        peer.fetches(&ips[0]),
        "the bridged peer cannot reach {}",
        ips[0]
    );
    for c in &containers {
        Tool::shared().ok(&["detach", &c.name]);
        assert_clean(c);
    }
}

#[test]
fn a_failure_after_any_step_leaves_nothing_behind() {
    need_test_hooks("injects faults with DOCKER_NETATTACH_FAIL_AFTER");
    if !need_docker() {
        return;
    }
    let web = Container::none("na-e2e-fail");
    for step in ["lease", "netns-link", "veth", "configure"] {
        let o = Tool::shared().run_env(
            &["attach", &web.name],
            &[("DOCKER_NETATTACH_FAIL_AFTER", step)],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{step}: {err}");
        assert!(
            err.contains(&format!("attach failed at step '{step}'")),
            "{err}"
        );
        assert!(err.contains("rolled back"), "{err}");
        assert!(!err.contains("CLEANUP FAILED"), "{err}");
        assert_clean(&web);
        let inside = ok("docker", &["exec", &web.name, "ip", "-o", "link"]);
        assert!(
            !inside.contains("eth0"),
            "{step}: eth0 left in the container: {inside}"
        );
    }
    // And then it works.
    Tool::shared().ok(&[&web.name]);
    Tool::shared().ok(&["detach", &web.name]);
    assert_clean(&web);
}

#[test]
fn container_errors_name_the_container_and_the_fix() {
    if !need_docker() {
        return;
    }
    let missing = unique("na-e2e-missing");
    Tool::shared().fails(&[&missing], 1, &format!("no such container '{missing}'"));

    let created = unique("na-e2e-created");
    let _c = CreatedOnly(ok(
        "docker",
        &["create", "--name", &created, "--network=none", &image()],
    ));
    // A created container is not an error (issue 10): its address is reserved, pending.
    let o = Tool::shared().run(&[&created]);
    let err = common::stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("pending") && err.contains("only while"),
        "{err}"
    );
    Tool::shared().ok(&["detach", &created]);

    let bridged = Container::bridged("na-e2e-br");
    let err = Tool::shared().fails(
        &[&bridged.name],
        1,
        "uses network mode 'bridge', not 'none'",
    );
    assert!(err.contains("--ifname"), "{err}");
    assert_clean(&bridged);
    // With --ifname it gets a second interface.
    let ip = Tool::shared().ok(&[&bridged.name, "--ifname", "eth1"]);
    assert!(ok("docker", &["exec", &bridged.name, "ip", "-o", "addr"]).contains(&ip));
    Tool::shared().ok(&["detach", &bridged.name]);
    assert_clean(&bridged);

    // An ambiguous ID prefix: two containers sharing their first hex digit.
    let mut made: Vec<CreatedOnly> = Vec::new();
    let prefix = loop {
        let id = ok("docker", &["create", "--network=none", &image()]);
        let first = id[..1].to_string();
        if made.iter().any(|m| m.0.starts_with(&first)) {
            made.push(CreatedOnly(id));
            break first;
        }
        made.push(CreatedOnly(id));
    };
    // The long form: a one-letter word such as `c` is a near miss of `gc` for the short form.
    Tool::shared().fails(&["attach", &prefix], 1, "is ambiguous");
}

struct CreatedOnly(String);
impl Drop for CreatedOnly {
    fn drop(&mut self) {
        let _ = run("docker", &["rm", "-f", &self.0]);
    }
}

#[test]
fn network_errors() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-e2e-net");
    Tool::shared().fails(
        &[&web.name, "--network", "na-no-such-net"],
        1,
        "no such Docker network 'na-no-such-net'",
    );
    Tool::shared().fails(
        &[&web.name, "--network", "host"],
        1,
        "supports bridge networks only",
    );

    // A /29 user-defined network: 6 usable addresses, gateway .1 -> 5 for us.
    let third = std::process::id() % 200 + 20;
    let subnet = format!("10.213.{third}.0/29");
    let br = format!("nae{}", std::process::id() % 100000);
    let network = Network::create(
        "na-e2e-n",
        &[
            "--subnet",
            &subnet,
            "-o",
            &format!("com.docker.network.bridge.name={br}"),
        ],
    );
    let net = network.0.clone();
    let containers: Vec<Container> = (0..6).map(|_| Container::none("na-e2e-x")).collect();
    for c in &containers[..5] {
        Tool::shared().ok(&[&c.name, "--network", &net]);
    }
    Tool::shared().fails(
        &[&containers[5].name, "--network", &net],
        1,
        "no free address left",
    );
    assert_clean(&containers[5]);
    for c in &containers[..5] {
        Tool::shared().ok(&["detach", &c.name]);
    }

    // The bridge interface vanished under Docker.
    ok("ip", &["link", "del", &br]);
    let err = Tool::shared().fails(&[&web.name, "--network", &net], 1, "does not exist");
    assert!(err.contains(&br), "{err}");
    assert_clean(&web);
}

#[test]
fn address_errors() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-e2e-ip");
    let neighbour = Container::bridged("na-e2e-ipn");
    let docker_ip = neighbour.docker_ip();
    let cases = [
        ("300.1.1.1", 2, "invalid value"),
        ("10.1.2.3", 1, "outside the subnet 172.17.0.0/16"),
        ("172.17.0.0", 1, "network address"),
        ("172.17.255.255", 1, "broadcast address"),
        ("172.17.0.1", 1, "already in use"),
        (docker_ip.as_str(), 1, "already in use"),
    ];
    for (ip, code, want) in cases {
        Tool::shared().fails(&[&web.name, "--ip", ip], code, want);
        assert_clean(&web);
    }
    // Taken by another attachment of ours.
    let other = Container::none("na-e2e-ipo");
    let ip = Tool::shared().ok(&[&other.name]);
    Tool::shared().fails(&[&web.name, "--ip", &ip], 1, "already in use");
    Tool::shared().ok(&["detach", &other.name]);
    assert_clean(&web);
}

#[test]
fn name_errors() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-e2e-nm");
    Tool::shared().fails(
        &[&web.name, "--ifname", "sixteen-bytes-xx"],
        1,
        "1 to 15 bytes",
    );
    Tool::shared().fails(
        &[&web.name, "--netns-name", "../etc"],
        1,
        "netns name '../etc' is not usable",
    );
    // A netns name held by a live namespace that is not the container's.
    let taken = unique("na-e2e-taken");
    let path = Path::new("/var/run/netns").join(&taken);
    std::fs::create_dir_all("/var/run/netns").unwrap();
    // Our own namespace: live, and not the container's.
    std::os::unix::fs::symlink(format!("/proc/{}/ns/net", std::process::id()), &path).unwrap();
    let _rm = RemoveOnDrop(path.clone());
    Tool::shared().fails(
        &[&web.name, "--netns-name", &taken],
        1,
        &format!("netns name '{taken}' is taken"),
    );
    assert!(
        std::fs::symlink_metadata(&path).is_ok(),
        "someone else's link was removed"
    );
    assert_clean(&web);
}

#[test]
fn docker_and_privilege_errors() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-e2e-prv");
    let o = Tool::shared().run_env(
        &[&web.name],
        &[("DOCKER_HOST", "unix:///tmp/na-no-such-docker.sock")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach Docker at unix:///tmp/na-no-such-docker.sock"),
        "{}",
        stderr(&o)
    );

    // As an ordinary user: refused before anything is touched.
    let as_nobody = |args: &[&str]| {
        let mut a = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            BIN,
        ];
        a.extend_from_slice(args);
        std::process::Command::new("setpriv")
            .args(&a)
            .env("DOCKER_NETATTACH_STATE_DIR", Tool::shared().state.path())
            .output()
            .unwrap()
    };
    let o = as_nobody(&[&web.name]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // --dry-run needs no root, but the Docker socket is root's.
    let o = as_nobody(&[&web.name, "--dry-run"]);
    assert!(
        stderr(&o).contains("permission denied on the Docker socket"),
        "{}",
        stderr(&o)
    );
    assert_clean(&web);
}

#[test]
fn state_errors() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-e2e-st");
    // A state directory that is a file.
    let file = std::env::temp_dir().join(unique("na-e2e-file"));
    std::fs::write(&file, "x").unwrap();
    let o = std::process::Command::new(BIN)
        .args([&web.name])
        .env("DOCKER_NETATTACH_STATE_DIR", &file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    assert_clean(&web);

    // A corrupt lease: named, with the fix; never a panic.
    // A state directory of its own is a second allocator on docker0: give it an address the
    // shared one (top-down from .255.254) will not reach while the other tests run.
    let own = Tool::new();
    let ip = own.ok(&[&web.name, "--ip", "172.17.253.201"]);
    let lease = own.lease_file(&ip);
    std::fs::write(&lease, "{ truncated").unwrap();
    let o = own.run(&[&web.name]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{ip} is corrupt")) && err.contains("gc"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    // `list` shows it (status `corrupt`, with its path) instead of failing.
    let list = own.ok(&["list"]);
    assert!(
        list.contains("corrupt") && list.contains(&lease.display().to_string()),
        "{list}"
    );
    std::fs::remove_file(&lease).unwrap();
    // Tidy what the corrupt lease described.
    ok("docker", &["rm", "-f", &web.name]);
    let _ = std::fs::remove_file(Path::new("/var/run/netns").join(&web.name));
}

#[test]
fn a_foreign_mac_cached_for_the_address_is_corrected_at_once() {
    if !need_docker() {
        return;
    }
    // A previous holder with a random MAC (Docker 28+, pipework, CNI) left its entry in the
    // host's and a neighbour's ARP caches.
    let peer = Container::bridged("na-e2e-arpn");
    let in_peer = |args: &[&str]| {
        let pid = peer.pid().to_string();
        let mut a = vec!["-t", pid.as_str(), "-n", "ip"];
        a.extend_from_slice(args);
        run("nsenter", &a)
    };
    let web = Container::none("na-e2e-arp");
    let ip = "172.17.254.99";
    let foreign = "02:00:00:00:fe:99";
    ok(
        "ip",
        &[
            "neigh", "replace", ip, "lladdr", foreign, "dev", "docker0", "nud", "stale",
        ],
    );
    let o = in_peer(&[
        "neigh", "replace", ip, "lladdr", foreign, "dev", "eth0", "nud", "stale",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Neighbours take over an address's new MAC only from entries older than locktime (1 s).
    std::thread::sleep(Duration::from_millis(1100));
    Tool::shared().ok(&[&web.name, "--ip", ip]);
    let host = ok("ip", &["neigh", "show", ip, "dev", "docker0"]);
    assert!(
        host.contains("02:42:ac:11:fe:63"),
        "host still caches {host}"
    );
    assert!(first_answer(ip, Duration::from_millis(500)).is_some());
    let seen = stdout(&in_peer(&["neigh", "show", ip]));
    assert!(
        seen.contains("02:42:ac:11:fe:63"),
        "the neighbour still caches {seen}"
    );
    Tool::shared().ok(&["detach", &web.name]);
    let _ = run("ip", &["neigh", "del", ip, "dev", "docker0"]);
}

/// The announcement is flooded to every port of the bridge, and the attach pays for each copy
/// (0.8–1.0 ms with 200 containers on docker0): it is sent only when the host's cache holds
/// something to correct. The test above is the other half.
#[test]
fn an_address_nobody_caches_is_not_flooded_to_the_bridge() {
    if !need_docker() {
        return;
    }
    // docker0 keeps a port of Docker's own (an empty bridge would flush the host's cache).
    let _keeper = Container::bridged("na-e2e-arpk");
    let web = Container::none("na-e2e-arpq");
    let ip = "172.17.254.98";
    let _ = run("ip", &["neigh", "del", ip, "dev", "docker0"]);
    Tool::shared().ok(&[&web.name, "--ip", ip]);
    // An announcement would have left the host an entry (the gateway takes in every request
    // addressed to it).
    let host = ok("ip", &["neigh", "show", ip, "dev", "docker0"]);
    assert!(host.trim().is_empty(), "the attach announced {ip}: {host}");
    // The first to ask is answered at once.
    assert!(first_answer(ip, Duration::from_millis(500)).is_some());
    let host = ok("ip", &["neigh", "show", ip, "dev", "docker0"]);
    assert!(host.contains("02:42:ac:11:fe:62"), "host caches {host}");
    Tool::shared().ok(&["detach", &web.name]);
    let _ = run("ip", &["neigh", "del", ip, "dev", "docker0"]);
}
