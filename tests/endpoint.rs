//! The endpoint options `--mac`, `--mtu` and `--route` on real containers: what the interface
//! looks like inside, that it answers, that a restart followed by an attach brings the same
//! settings back, that a reused address with a custom MAC answers at once, and the refusals.
//! Needs root and Docker. Each test uses its own Docker network (or refuses before anything
//! is made on docker0), so parallel runs never pick the same address.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;

/// A dual-stack Docker network with a private /24 and /64 (apart from tests/kill.rs's), and an
/// ordinary container on it: a neighbour on the bridge that also keeps its carrier.
fn dual_stack() -> (Network, Container, u32, u32) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let seed = std::process::id()
        .wrapping_mul(2246822519)
        .wrapping_add(n * 7919);
    let (a, b) = (200 + (seed >> 8) % 50, seed % 250);
    let net = Network::create(
        "na-ep",
        &[
            "--ipv6",
            "--subnet",
            &format!("fd00:e9{a:x}:{b:x}::/64"),
            "--subnet",
            &format!("10.{a}.{b}.0/24"),
        ],
    );
    let peer = Container::run("na-ep-nb", &["--network", &net.0], &[]);
    (net, peer, a, b)
}

/// A MAC of this run, unicast and locally administered.
fn custom_mac(n: u8) -> String {
    let p = std::process::id();
    format!("02:00:5e:{:02x}:{:02x}:{n:02x}", (p >> 8) & 0xff, p & 0xff)
}

/// `ip -n <ns> <args>`.
fn ip_in(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["-n", ns];
    a.extend_from_slice(args);
    ok("ip", &a)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The interface's MAC, MTU and routes as the container's namespace shows them.
fn inside(ns: &str) -> (String, String, String) {
    let link = ip_in(ns, &["-o", "link", "show", "eth0"]);
    let routes4 = ip_in(ns, &["route", "show"]);
    let routes6 = ip_in(ns, &["-6", "route", "show"]);
    (link, routes4, routes6)
}

#[test]
fn mac_mtu_and_routes_are_set_inside_and_come_back_after_a_restart() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (net, peer, a, b) = dual_stack();
    let web = Container::none("na-ep-web");
    let mac = custom_mac(1);
    let gw = format!("10.{a}.{b}.1");
    let via = format!("10.{a}.{b}.200");
    let route2 = format!("198.51.100.0/24@{via}");
    let args = [
        "attach",
        &web.name,
        "--network",
        &net.0,
        "--mac",
        &mac,
        "--mtu",
        "1400",
        "--route",
        "192.0.2.0/24",
        "--route",
        &route2,
        "--route",
        "2001:db8:1::/48",
    ];

    // --dry-run --explain shows them as ip commands and changes nothing.
    let mut dry = args.to_vec();
    dry.extend(["--dry-run", "--explain"]);
    let plan = tool.ok(&dry);
    for want in [
        format!("mtu 1400 address {mac} netns {}", web.name),
        format!(
            "ip -n {} route add 192.0.2.0/24 via {gw} dev eth0",
            web.name
        ),
        format!(
            "ip -n {} route add 198.51.100.0/24 via {via} dev eth0",
            web.name
        ),
        format!(
            "ip -n {} -6 route add 2001:db8:1::/48 via fd00:e9",
            web.name
        ),
        "mtu         1400 (--mtu)".to_string(),
        format!("route       192.0.2.0/24 via {gw}"),
    ] {
        assert!(plan.contains(&want), "{want:?} missing from\n{plan}");
    }
    assert_eq!(tool.lease_count(), 0, "--dry-run took a lease");

    let mut real = args.to_vec();
    real.push("--json");
    let rec = json(&tool.ok(&real));
    let ip = rec["ip"].as_str().unwrap().to_string();
    assert_eq!(rec["mac"], mac.as_str(), "{rec}");
    assert_eq!(rec["mtu"], 1400, "{rec}");
    assert_eq!(rec["routes"][0]["to"], "192.0.2.0/24", "{rec}");
    assert_eq!(rec["routes"][1]["via"], via.as_str(), "{rec}");
    let host_ifname = rec["host_ifname"].as_str().unwrap().to_string();

    let check = |when: &str| {
        let (link, r4, r6) = inside(&web.name);
        assert!(link.contains("mtu 1400"), "{when}: {link}");
        assert!(
            link.contains(&format!("link/ether {mac}")),
            "{when}: {link}"
        );
        let host_mtu = std::fs::read_to_string(format!("/sys/class/net/{host_ifname}/mtu"))
            .unwrap_or_default();
        assert_eq!(host_mtu.trim(), "1400", "{when}: host end {host_ifname}");
        assert!(
            r4.contains(&format!("192.0.2.0/24 via {gw} dev eth0")),
            "{when}: {r4}"
        );
        assert!(
            r4.contains(&format!("198.51.100.0/24 via {via} dev eth0")),
            "{when}: {r4}"
        );
        assert!(
            r4.contains(&format!("default via {gw} dev eth0")),
            "{when}: {r4}"
        );
        assert!(
            r6.contains("2001:db8:1::/48 via fd00:e9") && r6.contains("dev eth0"),
            "{when}: {r6}"
        );
        assert!(
            first_answer(&ip, Duration::from_secs(3)).is_some(),
            "{when}: {ip} does not answer the host"
        );
        assert!(peer.fetches(&ip), "{when}: the neighbour cannot reach {ip}");
    };
    check("after attach");

    // Restart: a new namespace without the interface; attaching again (no options) brings
    // the same address, MAC, MTU and routes back.
    ok("docker", &["restart", "-t", "0", &web.name]);
    assert_eq!(tool.ok(&["attach", &web.name, "--network", &net.0]), ip);
    check("after restart and attach");

    // Other options than recorded are refused, and change nothing.
    let other = custom_mac(2);
    tool.fails(
        &["attach", &web.name, "--network", &net.0, "--mac", &other],
        1,
        &format!(
            "with --mac {mac}; run `docker-netattach detach {}` before asking for --mac {other}",
            web.name
        ),
    );
    tool.fails(
        &["attach", &web.name, "--network", &net.0, "--mtu", "1300"],
        1,
        "with --mtu 1400",
    );
    check("after the refusals");

    tool.ok(&["detach", &web.name]);
    assert_eq!(tool.lease_count(), 0);
    assert!(!iface_exists(&host_ifname));
}

#[test]
fn a_reused_address_with_a_custom_mac_answers_at_once() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (net, peer, _, _) = dual_stack();
    let bridge = net.bridge();
    let in_peer = |args: &[&str]| {
        let pid = peer.pid().to_string();
        let mut a = vec!["-t", pid.as_str(), "-n", "ip"];
        a.extend_from_slice(args);
        stdout(&run("nsenter", &a))
    };
    // The first holder (derived MAC) is known to the host and the neighbour.
    let first = Container::none("na-ep-r1");
    let ip = tool.ok(&[&first.name, "--network", &net.0]);
    assert!(first_answer(&ip, Duration::from_secs(3)).is_some());
    assert!(peer.fetches(&ip));
    let old_mac = format!(
        "02:42:{}",
        ip.split('.')
            .map(|o| format!("{:02x}", o.parse::<u8>().unwrap()))
            .collect::<Vec<_>>()
            .join(":")
    );
    assert!(in_peer(&["neigh", "show", &ip]).contains(&old_mac));
    tool.ok(&["detach", &first.name]);

    // The next holder of the address has another MAC. Neighbours take over an address's new
    // MAC only from entries older than locktime (1 s).
    std::thread::sleep(Duration::from_millis(1100));
    let second = Container::none("na-ep-r2");
    let mac = custom_mac(3);
    assert_eq!(
        tool.ok(&[
            &second.name,
            "--network",
            &net.0,
            "--ip",
            &ip,
            "--mac",
            &mac
        ]),
        ip
    );
    let host = ok("ip", &["neigh", "show", &ip, "dev", &bridge]);
    assert!(host.contains(&mac), "the host still caches {host}");
    let seen = in_peer(&["neigh", "show", &ip]);
    assert!(seen.contains(&mac), "the neighbour still caches {seen}");
    // A stale entry would stall these for ~25 s.
    let t = first_answer(&ip, Duration::from_millis(1000));
    assert!(
        t.is_some(),
        "{ip} with MAC {mac} did not answer the host at once"
    );
    assert!(peer.fetches(&ip), "the neighbour cannot reach {ip} at once");
    eprintln!("reused address with a custom MAC answered after {t:?}");
    tool.ok(&["detach", &second.name]);
    assert_eq!(tool.lease_count(), 0);
}

#[test]
fn bad_endpoint_options_are_refused_before_anything_is_made() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = Container::none("na-ep-bad");
    let n = web.name.as_str();
    let bridge_mtu = std::fs::read_to_string("/sys/class/net/docker0/mtu").unwrap();
    let bridge_mtu = bridge_mtu.trim();
    let too_big = (bridge_mtu.parse::<u32>().unwrap() + 1).to_string();
    for (args, code, want) in [
        (
            vec![n, "--mac", "ff:ff:ff:ff:ff:ff"],
            2,
            "is the broadcast address; give a unicast MAC".to_string(),
        ),
        (
            vec![n, "--mac", "01:00:5e:00:00:01"],
            2,
            "is a multicast address".to_string(),
        ),
        (
            vec![n, "--mac", "00:00:00:00:00:00"],
            2,
            "all-zero".to_string(),
        ),
        (
            vec![n, "--mac", "02:00:5e"],
            2,
            "is not a MAC address".to_string(),
        ),
        (
            vec![n, "--mtu", "67"],
            1,
            format!("--mtu 67 is outside 68..{bridge_mtu}"),
        ),
        (
            vec![n, "--mtu", &too_big],
            1,
            format!("outside 68..{bridge_mtu} (from 68 up to the MTU of bridge docker0)"),
        ),
        (
            vec![n, "--route", "192.0.2.0/24@10.0.0.1"],
            1,
            "gateway 10.0.0.1 is outside the attachment's subnet 172.17.0.0/16".to_string(),
        ),
        (
            vec![n, "--route", "2001:db8::/32"],
            1,
            "the attachment has no IPv6 address".to_string(),
        ),
        (
            vec![n, "--route", "0.0.0.0/0"],
            2,
            "use --default-route".to_string(),
        ),
        (
            vec![n, "--route", "192.0.2.0"],
            2,
            "not in CIDR form".to_string(),
        ),
    ] {
        tool.fails(&args, code, &want);
        tool.fails(&[args.as_slice(), &["--dry-run"]].concat(), code, &want);
    }
    assert_eq!(tool.lease_count(), 0);
    assert!(!netns_link_exists(n));
    let veths = veths_of(&web.id);
    assert!(veths.is_empty(), "a refused attach left {veths:?}");
}

#[test]
fn ipv6_sets_the_lower_mtu_bound() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (net, _peer, _, _) = dual_stack();
    let web = Container::none("na-ep-v6");
    tool.fails(
        &[&web.name, "--network", &net.0, "--mtu", "1000"],
        1,
        "--mtu 1000 is outside 1280..",
    );
    assert_eq!(tool.lease_count(), 0);
}
