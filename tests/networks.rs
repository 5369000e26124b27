//! Beyond docker0: user-defined Docker networks (isolation, several subnets, aux addresses,
//! IPv6), plain Linux bridges and named namespaces, several attachments per container, DNS.
//! Needs root and Docker (the bridge + namespace tests need root only).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A private /24 (or /64) unlikely to clash with anything on the machine, never the same twice
/// in this binary ([`subnet_slot`]): every second /24, as a test may also use `b + 1`.
fn octets() -> (u32, u32) {
    let (seed, n) = subnet_slot(125);
    (100 + (seed >> 8) % 100, (seed % 250 + 2 * n) % 250)
}

#[test]
fn user_defined_network_reachable_inside_isolated_outside() {
    if !need_docker() {
        return;
    }
    let (a, b) = octets();
    let subnet = format!("10.{a}.{b}.0/24");
    let net = Network::create(
        "na-nw",
        &[
            "--subnet",
            &subnet,
            "--aux-address",
            &format!("x=10.{a}.{b}.254"),
        ],
    );
    let web = Container::none("na-nw-web");
    let json: serde_json::Value = serde_json::from_str(&Tool::shared().ok(&[
        "attach",
        &web.name,
        "--network",
        &net.0,
        "--json",
    ]))
    .unwrap();
    // The aux address is never handed out: the top of the subnet is .253.
    assert_eq!(json["ip"], format!("10.{a}.{b}.253"));
    assert_eq!(json["bridge"], net.bridge());
    assert_eq!(json["gateway"], format!("10.{a}.{b}.1"));
    let ip = json["ip"].as_str().unwrap().to_string();

    let same = Container::run("na-nw-same", &["--network", &net.0], &[]);
    assert!(
        same.fetches(&ip),
        "a container on {} cannot reach {ip}",
        net.0
    );
    let other = Container::bridged("na-nw-other");
    assert!(
        !other.fetches(&ip),
        "a container on docker0 reached {ip} across networks"
    );

    Tool::shared().ok(&["detach", &web.name]);
    assert!(!same.fetches(&ip));
}

#[test]
fn several_subnets_fill_in_order() {
    if !need_docker() {
        return;
    }
    let (a, b) = octets();
    let (s1, s2) = (
        format!("10.{a}.{b}.0/29"),
        format!("10.{a}.{}.0/24", (b + 1) % 250),
    );
    let create = run(
        "docker",
        &[
            "network",
            "create",
            "--subnet",
            &s1,
            "--subnet",
            &s2,
            &unique("na-nw-probe"),
        ],
    );
    if !create.status.success() {
        // Docker's bridge driver (20.10 here) refuses a second IPv4 subnet, so such a network
        // cannot exist; the allocator's order over several subnets is covered by the unit tests
        // in src/address.rs. Should an engine accept it, the rest of this test checks it.
        assert!(
            stderr(&create).contains("doesn't support multiple subnets"),
            "{}",
            stderr(&create)
        );
        return;
    }
    let _ = run("docker", &["network", "rm", &stdout(&create)]);
    let net = Network::create("na-nw", &["--subnet", &s1, "--subnet", &s2]);
    // /29: 6 usable, one is the gateway.
    let cs: Vec<Container> = (0..6).map(|_| Container::none("na-nw-ms")).collect();
    let ips: Vec<String> = cs
        .iter()
        .map(|c| Tool::shared().ok(&[&c.name, "--network", &net.0]))
        .collect();
    let first: Vec<_> = ips
        .iter()
        .filter(|ip| ip.starts_with(&format!("10.{a}.{b}.")))
        .collect();
    assert_eq!(first.len(), 5, "{ips:?}");
    assert!(
        ips[5].starts_with(&format!("10.{a}.{}.", (b + 1) % 250)),
        "{ips:?}"
    );
    for c in &cs {
        Tool::shared().ok(&["detach", &c.name]);
    }
}

#[test]
fn other_drivers_are_refused() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-nw-drv");
    Tool::shared().fails(
        &[&web.name, "--network", "none"],
        1,
        "supports bridge networks only",
    );
    Tool::shared().fails(
        &[&web.name, "--network", "host"],
        1,
        "supports bridge networks only",
    );
}

#[test]
fn several_attachments_default_route_on_the_first_only() {
    if !need_docker() {
        return;
    }
    let (a, b) = octets();
    let net = Network::create("na-nw", &["--subnet", &format!("10.{a}.{b}.0/24")]);
    let web = Container::none("na-nw-multi");
    let ip0 = Tool::shared().ok(&[&web.name]);
    let ip1 = Tool::shared().ok(&[&web.name, "--network", &net.0]);
    let addrs = ok(
        "ip",
        &["netns", "exec", &web.name, "ip", "-o", "-4", "addr"],
    );
    assert!(
        addrs.contains(&format!("eth0    inet {ip0}/16"))
            || addrs.contains(&format!("eth0 inet {ip0}/16"))
            || addrs.contains(&ip0),
        "{addrs}"
    );
    assert!(
        addrs
            .lines()
            .any(|l| l.contains("eth1") && l.contains(&ip1)),
        "{addrs}"
    );
    let routes = ok("ip", &["netns", "exec", &web.name, "ip", "route"]);
    assert!(
        routes.contains("default via 172.17.0.1 dev eth0"),
        "{routes}"
    );
    assert_eq!(routes.matches("default").count(), 1, "{routes}");
    assert!(curl(&ip0, Duration::from_secs(3)).is_some());
    assert!(curl(&ip1, Duration::from_secs(3)).is_some());

    // Attaching to the second network again is "already attached", not a third interface.
    assert_eq!(Tool::shared().ok(&[&web.name, "--network", &net.0]), ip1);

    Tool::shared().ok(&["detach", &web.name, "--network", &net.0]);
    let links = ok("ip", &["netns", "exec", &web.name, "ip", "-o", "link"]);
    assert!(links.contains("eth0") && !links.contains("eth1"), "{links}");
    assert!(curl(&ip0, Duration::from_secs(3)).is_some());
    Tool::shared().ok(&["detach", &web.name]);
    assert!(!netns_link_exists(&web.name));
}

#[test]
fn a_docker_networked_container_gets_an_extra_interface_without_losing_its_route() {
    if !need_docker() {
        return;
    }
    let (a, b) = octets();
    let net = Network::create("na-nw", &["--subnet", &format!("10.{a}.{b}.0/24")]);
    let web = Container::bridged("na-nw-extra");
    let ip = Tool::shared().ok(&[&web.name, "--network", &net.0, "--ifname", "eth1"]);
    let routes = stdout(&web.exec(&["ip", "route"]));
    assert!(
        routes.contains("default via 172.17.0.1 dev eth0"),
        "{routes}"
    );
    assert!(!routes.contains("default via 10."), "{routes}");
    let peer = Container::run("na-nw-xp", &["--network", &net.0], &[]);
    assert!(peer.fetches(&ip));
    Tool::shared().ok(&["detach", &web.name]);
}

#[test]
fn dual_stack_network_gives_ipv6_without_dad_stall() {
    if !need_docker() {
        return;
    }
    let (a, b) = octets();
    let v6 = format!("fd00:{a:x}:{b:x}::/64");
    let net = Network::create(
        "na-nw",
        &[
            "--ipv6",
            "--subnet",
            &v6,
            "--subnet",
            &format!("10.{a}.{b}.0/24"),
        ],
    );
    // An ordinary container keeps the bridge's carrier, so its own IPv6 addresses finish DAD.
    let _peer = Container::run("na-nw-v6p", &["--network", &net.0], &[]);
    let web = Container::none("na-nw-v6");
    let json: serde_json::Value = serde_json::from_str(&Tool::shared().ok(&[
        "attach",
        &web.name,
        "--network",
        &net.0,
        "--json",
    ]))
    .unwrap();
    let ip6 = json["ip6"].as_str().expect("ip6 in the record").to_string();
    // In the subnet (compared as numbers: b = 0 prints as `fd00:6e::...`).
    let segments = ip6.parse::<std::net::Ipv6Addr>().unwrap().segments();
    assert_eq!(segments[..3], [0xfd00, a as u16, b as u16], "{json}");
    assert_eq!(json["prefix_len6"], 64);
    let addrs = ok(
        "ip",
        &[
            "netns", "exec", &web.name, "ip", "-6", "addr", "show", "eth0",
        ],
    );
    assert!(addrs.contains(&ip6), "{addrs}");
    assert!(!addrs.contains("tentative"), "DAD would stall: {addrs}");
    let routes = ok("ip", &["netns", "exec", &web.name, "ip", "-6", "route"]);
    assert!(routes.contains("default via fd00:"), "{routes}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !run("ping", &["-6", "-c1", "-W1", &ip6]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "{ip6} does not answer ping"
        );
    }
    let body = ok(
        "curl",
        &["-s", "-m", "3", "-g", &format!("http://[{ip6}]/")],
    );
    assert_eq!(body, "netattach-test ok");

    // An explicit --ip6 on a second container; and on an IPv4-only network --ip6 is refused.
    let other = Container::none("na-nw-v6b");
    let want = format!("fd00:{a:x}:{b:x}::77");
    let json: serde_json::Value = serde_json::from_str(&Tool::shared().ok(&[
        "attach",
        &other.name,
        "--network",
        &net.0,
        "--ip6",
        &want,
        "--json",
    ]))
    .unwrap();
    let got: std::net::Ipv6Addr = json["ip6"].as_str().unwrap().parse().unwrap();
    assert_eq!(got, want.parse::<std::net::Ipv6Addr>().unwrap(), "{json}");
    Tool::shared().fails(&[&other.name, "--ip6", "fd00::9"], 1, "has no IPv6 subnet");
    // Docker's default bridge has no IPv6: IPv6 is off on the interface, as Docker does.
    let plain = Container::none("na-nw-v4");
    Tool::shared().ok(&[&plain.name]);
    let off = ok(
        "ip",
        &[
            "netns",
            "exec",
            &plain.name,
            "cat",
            "/proc/sys/net/ipv6/conf/eth0/disable_ipv6",
        ],
    );
    assert_eq!(off, "1");
    for c in [&web, &other, &plain] {
        Tool::shared().ok(&["detach", &c.name]);
    }
}

#[test]
fn dns_is_written_for_ip_netns_exec_and_removed_on_detach() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-nw-dns");
    Tool::shared().ok(&[&web.name, "--dns", "192.0.2.53", "--dns", "2001:db8::53"]);
    let conf = Path::new("/etc/netns").join(&web.name).join("resolv.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("nameserver 192.0.2.53\nnameserver 2001:db8::53"),
        "{text}"
    );
    let seen = ok(
        "ip",
        &["netns", "exec", &web.name, "cat", "/etc/resolv.conf"],
    );
    assert!(seen.contains("nameserver 192.0.2.53"), "{seen}");
    Tool::shared().ok(&["detach", &web.name]);
    assert!(!conf.exists());
    assert!(!conf.parent().unwrap().exists());
}

#[test]
fn a_named_namespace_on_a_bridge_docker_does_not_manage() {
    if !need_root() {
        return;
    }
    let ns = NamedNs::new("na-ns");
    let (a, b) = octets();
    let br = DelLink(format!("nab{}", std::process::id() % 100000));
    let subnet = format!("10.{a}.{b}.0/24");
    let ip = Tool::shared().ok(&[
        "attach", "--netns", &ns.0, "--bridge", &br.0, "--subnet", &subnet,
    ]);
    assert_eq!(ip, format!("10.{a}.{b}.254"));
    // The bridge was created, addressed and brought up.
    let br_addr = ok("ip", &["-o", "addr", "show", &br.0]);
    assert!(br_addr.contains(&format!("10.{a}.{b}.1/24")), "{br_addr}");
    // Host pings the namespace; the namespace pings the host, through the bridge.
    ok("ping", &["-c1", "-W2", &ip]);
    ok(
        "ip",
        &[
            "netns",
            "exec",
            &ns.0,
            "ping",
            "-c1",
            "-W2",
            &format!("10.{a}.{b}.1"),
        ],
    );
    assert!(
        ns.ip(&["route"])
            .contains(&format!("default via 10.{a}.{b}.1"))
    );
    let list = Tool::shared().ok(&["ls"]);
    assert!(
        list.lines()
            .any(|l| l.contains(&ns.0) && l.contains("attached")),
        "{list}"
    );

    Tool::shared().ok(&["detach", &ns.0]);
    // Created by us and empty now: gone. The namespace itself is the user's: still there.
    assert!(!iface_exists(&br.0), "bridge left behind");
    assert!(Path::new("/var/run/netns").join(&ns.0).exists());
    assert!(!ns.ip(&["link"]).contains("eth0"));
    assert!(!Tool::shared().ok(&["ls"]).contains(&ns.0));
}

#[test]
fn an_existing_bridge_is_used_and_left_alone() {
    if !need_root() {
        return;
    }
    let ns = NamedNs::new("na-ns");
    let (a, b) = octets();
    let br = DelLink(format!("nac{}", std::process::id() % 100000));
    ok("ip", &["link", "add", &br.0, "type", "bridge"]);
    ok(
        "ip",
        &["addr", "add", &format!("10.{a}.{b}.9/24"), "dev", &br.0],
    );
    ok("ip", &["link", "set", &br.0, "up"]);
    let pid_path = format!("/var/run/netns/{}", ns.0);
    let ip = Tool::shared().ok(&[
        "attach",
        "--netns",
        &pid_path,
        "--netns-name",
        &format!("{}-l", ns.0),
        "--bridge",
        &br.0,
        "--subnet",
        &format!("10.{a}.{b}.0/24"),
        "--ip",
        &format!("10.{a}.{b}.50"),
    ]);
    assert_eq!(ip, format!("10.{a}.{b}.50"));
    // The gateway is the bridge's own address.
    assert!(
        ns.ip(&["route"])
            .contains(&format!("default via 10.{a}.{b}.9"))
    );
    ok("ping", &["-c1", "-W2", &ip]);
    let name = format!(
        "ns-{}",
        std::fs::metadata(&pid_path)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap()
    );
    Tool::shared().ok(&["detach", &name]);
    assert!(
        iface_exists(&br.0),
        "a bridge we did not create was removed"
    );
    assert!(!netns_link_exists(&format!("{}-l", ns.0)));
}

#[test]
fn dry_run_explain_prints_the_ip_commands() {
    if !need_root() {
        return;
    }
    let ns = NamedNs::new("na-ns");
    let out = Tool::shared().ok(&[
        "attach",
        "--netns",
        &ns.0,
        "--bridge",
        "nadryrun0",
        "--subnet",
        "10.254.254.0/24",
        "--dry-run",
        "--explain",
    ]);
    for want in [
        "ip link add nadryrun0 address",
        "ip addr add 10.254.254.1/24 dev nadryrun0",
        "type veth peer name eth0 mtu 1500 address 02:42:0a:fe:fe:fe",
        &format!("ip -n {} route add default via 10.254.254.1 dev eth0", ns.0),
    ] {
        assert!(out.contains(want), "{want} missing from\n{out}");
    }
    assert!(!iface_exists("nadryrun0"), "--dry-run created the bridge");
}

/// A user-defined network whose subnet is `10.23x.y.0/29` with Docker's range on its lower
/// `/30` (retried on another subnet when Docker says the pool overlaps another network's).
fn fenced_29() -> (Network, String) {
    for _ in 0..8 {
        let (a, b) = octets();
        let base = format!("10.{}.{b}", 230 + a % 10);
        let name = unique("na-nw-fence");
        let o = run(
            "docker",
            &[
                "network",
                "create",
                "--subnet",
                &format!("{base}.0/29"),
                "--ip-range",
                &format!("{base}.0/30"),
                &name,
            ],
        );
        if o.status.success() {
            return (Network(name), base);
        }
        assert!(stderr(&o).contains("overlap"), "{}", stderr(&o));
    }
    panic!("no free 10.23x.y.0/29 for the test network");
}

/// Issue 9: once every address outside Docker's `IPRange` is leased, an attach is refused with
/// an exhaustion error naming the range and the ways out; it never takes an address inside the
/// range, where Docker would hand it out again. An explicit `--ip` inside it works, with a warning.
#[test]
fn a_full_outside_of_the_ip_range_is_exhaustion_not_a_silent_collision() {
    if !need_docker() {
        return;
    }
    // A state directory of its own: the shared one of this binary changes under other tests.
    let tool = Tool::new();
    let (net, base) = fenced_29();
    let range = format!("{base}.0/30");
    // Outside the range: .4 .5 .6 (the gateway is .1, Docker hands out .2 and .3).
    let cs: Vec<Container> = (0..3).map(|_| Container::none("na-nw-fence")).collect();
    let ips: Vec<String> = cs
        .iter()
        .map(|c| tool.ok(&[&c.name, "--network", &net.0]))
        .collect();
    assert_eq!(
        ips,
        [".6", ".5", ".4"].map(|h| format!("{base}{h}")),
        "outside the range first"
    );
    let leases_before = tool.lease_count();
    let ports_before = bridge_ports(&net.bridge());
    let fourth = Container::none("na-nw-fence");
    let err = tool.fails(&[&fourth.name, "--network", &net.0], 1, &range);
    for way in ["--subnet", "--ip-range", "--ip"] {
        assert!(
            err.contains(way),
            "the error names no way out ({way}): {err}"
        );
    }
    assert_eq!(tool.lease_count(), leases_before, "a lease was left behind");
    let inside = docker_ifaces(&fourth);
    assert_eq!(inside, ["lo"], "interfaces left in the container");
    assert_eq!(
        bridge_ports(&net.bridge()),
        ports_before,
        "a veth was left on the bridge"
    );
    // Docker's own container gets the lowest address of its range, as always.
    let docker_own = Container::run("na-nw-fence-d", &["--network", &net.0], &[]);
    let docker_ip = ok(
        "docker",
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &docker_own.name,
        ],
    );
    assert_eq!(docker_ip, format!("{base}.2"));
    // The way out the error names: an explicit address inside the range, with a warning.
    let o = tool.run(&[
        &fourth.name,
        "--network",
        &net.0,
        "--ip",
        &format!("{base}.3"),
    ]);
    let warn = stderr(&o);
    assert!(o.status.success(), "{warn}");
    assert_eq!(stdout(&o), format!("{base}.3"));
    assert!(
        warn.contains("warning")
            && warn.contains(&range)
            && warn.contains("Docker may hand it out"),
        "{warn}"
    );
    for c in cs.iter().chain([&fourth]) {
        tool.ok(&["detach", &c.name]);
    }
}

/// Interface names inside a container (`/proc/<pid>/net/dev`).
fn docker_ifaces(c: &Container) -> Vec<String> {
    let dev = std::fs::read_to_string(format!("/proc/{}/net/dev", c.pid())).unwrap();
    let mut names: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}
