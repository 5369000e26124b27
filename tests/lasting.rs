//! End to end, root and Docker: attachments that last (issue 10). A lease is the intent: a
//! container attached by hand comes back on its address after `docker restart`, stop/start and
//! a host reboot; a created container attached before its first start gets its attachment at
//! that start; `gc` removes an empty bridge `attach --bridge` made. Addresses come from
//! `common::test_ip()` or a private bridge, so parallel runs do not clash.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    Container, Daemon, DelLink, Tool, attached, first_answer, iface_exists, ifaces_inside,
    need_docker, netns_link_exists, ok, status_of, stderr, stdout, test_ip, veths_of, wait_until,
};

const SHORT: Duration = Duration::from_secs(10);

/// nginx's page came back from `addr` (5 ms connect attempts, as in watch_latency.rs).
fn answered(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(5)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("netattach-test ok")
}

/// Runs `docker <args>` (restart or start) while polling `ip`; returns the time from the
/// container's `start` event (Docker's own timestamp) to nginx's first answer.
fn start_to_answer(c: &Container, args: &[&str], ip: &str) -> Duration {
    let addr: SocketAddr = format!("{ip}:80").parse().unwrap();
    let before = SystemTime::now();
    let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    a.push(c.name.clone());
    let starter = std::thread::spawn(move || {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ok("docker", &a);
    });
    // After a restart the old namespace may answer until the stop is done: wait for the
    // docker command, then poll.
    starter.join().unwrap();
    let poll = Instant::now();
    let mut answer = None;
    while poll.elapsed() < SHORT {
        if answered(addr) {
            answer = Some(SystemTime::now());
            break;
        }
    }
    let answer = answer.unwrap_or_else(|| panic!("{ip} does not answer after docker {args:?}"));
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let events = c.start_events_ns(
        &(secs(before) - 1).to_string(),
        &(secs(answer) + 1).to_string(),
    );
    let event_ns = events
        .iter()
        .copied()
        .max()
        .unwrap_or_else(|| panic!("no start event in {events:?}")) as u128;
    let answer_ns = answer.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    Duration::from_nanos(answer_ns.saturating_sub(event_ns) as u64)
}

#[test]
fn hand_attached_container_comes_back_after_restart_and_stop_start() {
    if !need_docker() {
        return;
    }
    let _neighbour = Container::bridged("na-l-nb");
    let tool = Tool::new();
    let d = Daemon::start(&tool, &[]);
    assert!(d.wait_ready(SHORT), "{}", d.log());
    let ip = test_ip();
    let c = Container::none("na-l-hand");
    assert_eq!(tool.ok(&["attach", &c.name, "--ip", &ip]).trim(), ip);
    assert!(first_answer(&ip, SHORT).is_some(), "{ip} does not answer");

    let restart = start_to_answer(&c, &["restart", "-t", "0"], &ip);
    assert!(
        wait_until(SHORT, || attached(&tool, &c.name)),
        "not re-attached after restart:\n{}",
        d.log()
    );
    assert_eq!(status_of(&tool, &c.name).unwrap().0, ip);
    assert_eq!(ifaces_inside(c.pid()), ["eth0", "lo"]);
    assert_eq!(veths_of(&c.id).len(), 1);

    ok("docker", &["stop", "-t", "0", &c.name]);
    assert!(
        wait_until(SHORT, || !netns_link_exists(&c.name)
            && veths_of(&c.id).is_empty()),
        "stop not handled:\n{}",
        d.log()
    );
    assert_eq!(status_of(&tool, &c.name).map(|s| s.0), Some(ip.clone()));
    let start = start_to_answer(&c, &["start"], &ip);
    assert!(
        wait_until(SHORT, || attached(&tool, &c.name)),
        "{}",
        d.log()
    );
    eprintln!(
        "hand-attached container, start event -> nginx answering on {ip}: restart {:.1} ms, stop/start {:.1} ms",
        restart.as_secs_f64() * 1e3,
        start.as_secs_f64() * 1e3
    );
    assert_eq!(d.metric("netattach_attaches_total{result=\"error\"}"), 0.0);
    tool.ok(&["detach", &c.name]);
    assert!(status_of(&tool, &c.name).is_none());
}

#[test]
fn created_container_attached_before_its_first_start_answers_after_start() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let d = Daemon::start(&tool, &[]);
    assert!(d.wait_ready(SHORT), "{}", d.log());
    let ip = test_ip();
    let c = Container::created("na-l-new");
    let o = tool.run(&["attach", &c.name, "--ip", &ip]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), ip);
    // a daemon serves this state directory: no note about it
    assert!(!stderr(&o).contains("only while"), "{}", stderr(&o));
    assert_eq!(
        status_of(&tool, &c.name),
        Some((ip.clone(), "pending".into()))
    );
    let (_, body) = d.get("/attachments");
    assert!(body.contains("\"pending\""), "{body}");

    let took = start_to_answer(&c, &["start"], &ip);
    assert!(
        wait_until(SHORT, || attached(&tool, &c.name)),
        "{}",
        d.log()
    );
    eprintln!(
        "created container attached before its first start: start event -> answer {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(ifaces_inside(c.pid()), ["eth0", "lo"]);
    tool.ok(&["detach", &c.name]);
}

#[test]
fn without_a_daemon_attach_of_a_created_container_says_so_and_a_later_attach_applies_it() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let ip = test_ip();
    let c = Container::created("na-l-nod");
    let o = tool.run(&["attach", &c.name, "--ip", &ip, "--dns", "10.0.0.53"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), ip);
    assert!(
        stderr(&o).contains("only while `docker-netattach watch` runs"),
        "{}",
        stderr(&o)
    );
    // (doctor exits 1 when another check fails on this host; the JSON is what counts)
    let checks: serde_json::Value =
        serde_json::from_str(&stdout(&tool.run(&["doctor", "--json"]))).unwrap();
    let pending = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "pending")
        .unwrap_or_else(|| panic!("doctor does not report the pending lease: {checks}"));
    assert_eq!(pending["status"], "warn", "{pending}");

    ok("docker", &["start", &c.name]);
    // nobody applies it at start
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ifaces_inside(c.pid()), ["lo"]);
    assert_eq!(status_of(&tool, &c.name).unwrap().1, "pending");
    // a plain attach (no options) applies it, with the address and options it recorded
    assert_eq!(tool.ok(&["attach", &c.name]).trim(), ip);
    assert!(attached(&tool, &c.name));
    assert!(first_answer(&ip, SHORT).is_some(), "{ip} does not answer");
    let resolv = std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", c.name)).unwrap();
    assert!(resolv.contains("10.0.0.53"), "{resolv}");
    tool.ok(&["detach", &c.name]);
}

#[test]
fn after_a_simulated_reboot_the_daemon_brings_leased_containers_back() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (ip_a, ip_b) = (test_ip(), test_ip());
    let a = Container::none("na-l-rba");
    let b = Container::none("na-l-rbb");
    tool.ok(&["attach", &a.name, "--ip", &ip_a]);
    tool.ok(&["attach", &b.name, "--ip", &ip_b]);
    // A reboot: the veths and /var/run/netns links are gone (a tmpfs), the leases under the
    // state directory stay; containers come back with new namespaces (a), or (b) keep theirs
    // here, which is the harder case (same namespace, no interface).
    ok("docker", &["restart", "-t", "0", &a.name]);
    for c in [&a, &b] {
        for v in veths_of(&c.id) {
            let _ = common::run("ip", &["link", "del", &v]);
        }
        let _ = std::fs::remove_file(format!("/var/run/netns/{}", c.name));
    }
    assert!(veths_of(&a.id).is_empty() && veths_of(&b.id).is_empty());
    assert_eq!(tool.lease_count(), 2);

    let started = Instant::now();
    let d = Daemon::start(&tool, &[]);
    for (c, ip) in [(&a, &ip_a), (&b, &ip_b)] {
        assert!(
            wait_until(SHORT, || attached(&tool, &c.name)),
            "{} not back after the reboot:\n{}",
            c.name,
            d.log()
        );
        assert!(first_answer(ip, SHORT).is_some(), "{ip} does not answer");
        assert!(netns_link_exists(&c.name));
        assert_eq!(veths_of(&c.id).len(), 1);
    }
    eprintln!(
        "simulated reboot: daemon start -> both containers answering in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    tool.ok(&["detach", &a.name]);
    tool.ok(&["detach", &b.name]);
}

#[test]
fn gc_removes_an_empty_bridge_that_attach_created() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let bridge = format!("nal{}", std::process::id() % 100000);
    let _cleanup = DelLink(bridge.clone());
    let subnet = format!("10.231.{}.0/24", std::process::id() % 250);
    let c = Container::none("na-l-br");
    tool.ok(&["attach", &c.name, "--bridge", &bridge, "--subnet", &subnet]);
    assert!(iface_exists(&bridge));
    // a stopped container's lease keeps the bridge (its start brings the port back)
    ok("docker", &["stop", "-t", "0", &c.name]);
    tool.ok(&["gc"]);
    assert!(
        iface_exists(&bridge),
        "bridge removed while a lease names it"
    );
    assert_eq!(tool.lease_count(), 1);
    // removed without detach: gc takes the lease, then the empty bridge
    ok("docker", &["rm", "-f", &c.name]);
    let out = tool.ok(&["gc"]);
    assert!(!iface_exists(&bridge), "bridge {bridge} left by gc: {out}");
    assert!(out.contains(&format!("bridge {bridge}")), "{out}");
    assert_eq!(tool.lease_count(), 0);
}
