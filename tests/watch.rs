//! End to end, root and Docker: the `watch` daemon against real containers.
//!
//! Each test runs its own daemon with a private state directory and a unique label prefix, so
//! it only ever acts on the containers this test labelled. An ordinary `--network bridge`
//! container stays on docker0 throughout, so address reuse is tested with a live neighbour.

mod common;

use std::time::Duration;

use common::{
    Container, Daemon, DockerProxy, RemoveOnDrop, Tool, attached, curl, first_answer,
    ifaces_inside, leases, need_docker, netns_link_exists, ok, status_of, test_ip, veths_of,
    wait_until,
};

const SHORT: Duration = Duration::from_secs(10);

fn answers(ip: &str) -> bool {
    first_answer(ip, SHORT).is_some()
}

#[test]
fn labelled_container_is_attached_kept_across_restarts_and_cleaned_up() {
    if !need_docker() {
        return;
    }
    let neighbour = Container::bridged("na-t-nb");
    let tool = Tool::new();
    let d = Daemon::start(&tool, &[]);
    let ip = test_ip();
    let net = d.label("network", "bridge");
    let want_ip = d.label("ip", &ip);
    let c = Container::run(
        "na-t-w",
        &["--network=none", "--label", &net, "--label", &want_ip],
        &[],
    );
    let plain = Container::none("na-t-plain");

    // start -> attached, answers from the host and from an ordinary container on docker0
    assert!(
        wait_until(SHORT, || attached(&tool, &c.name)),
        "not attached:\n{}",
        d.log()
    );
    assert_eq!(status_of(&tool, &c.name).unwrap().0, ip);
    assert!(answers(&ip), "{ip} does not answer");
    assert!(
        neighbour.fetches(&ip),
        "an ordinary container cannot reach {ip}"
    );
    assert!(netns_link_exists(&c.name));
    assert_eq!(veths_of(&c.id).len(), 1);

    // restart -> new namespace, same address, answers again
    let pid_before = c.pid();
    ok("docker", &["restart", "-t", "0", &c.name]);
    assert_ne!(c.pid(), pid_before);
    assert!(
        wait_until(SHORT, || attached(&tool, &c.name)),
        "not re-attached after restart:\n{}",
        d.log()
    );
    assert_eq!(status_of(&tool, &c.name).unwrap().0, ip);
    assert!(answers(&ip), "{ip} does not answer after restart");
    assert!(
        neighbour.fetches(&ip),
        "neighbour cannot reach {ip} after restart"
    );
    assert_eq!(ifaces_inside(c.pid()), ["eth0", "lo"]);
    assert_eq!(veths_of(&c.id).len(), 1, "duplicate veths after restart");

    // stop -> netns link and veth gone, lease kept (the address comes back on start)
    ok("docker", &["stop", "-t", "0", &c.name]);
    assert!(
        wait_until(SHORT, || !netns_link_exists(&c.name)
            && veths_of(&c.id).is_empty()),
        "link or veth left after stop:\n{}",
        d.log()
    );
    assert_eq!(status_of(&tool, &c.name).map(|l| l.0), Some(ip.clone()));
    ok("docker", &["start", &c.name]);
    assert!(wait_until(SHORT, || attached(&tool, &c.name)));
    assert!(answers(&ip), "{ip} does not answer after stop/start");

    // the unlabelled container was never touched
    assert_eq!(ifaces_inside(plain.pid()), ["lo"]);
    assert!(status_of(&tool, &plain.name).is_none());
    assert!(!netns_link_exists(&plain.name));

    // rm -> lease released, nothing left
    ok("docker", &["rm", "-f", &c.name]);
    assert!(
        wait_until(SHORT, || status_of(&tool, &c.name).is_none()),
        "lease left after rm:\n{}",
        d.log()
    );
    assert!(!netns_link_exists(&c.name));
    assert!(veths_of(&c.id).is_empty());
    assert!(curl(&ip, Duration::from_millis(500)).is_none());
    assert_eq!(d.metric("netattach_attaches_total{result=\"error\"}"), 0.0);
    assert!(d.metric("netattach_attaches_total{result=\"attached\"}") >= 3.0);
    assert_eq!(d.metric("netattach_detaches_total{result=\"ok\"}"), 1.0);
}

#[test]
fn daemon_started_later_picks_up_running_containers_and_cleans_up() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    // The containers are labelled before any daemon runs.
    let prefix = common::unique("nat").replace('-', "");

    let (ip1, ip2, ip_gone) = (test_ip(), test_ip(), test_ip());
    let label = |k: &str, v: &str| format!("{prefix}.{k}={v}");
    let a = Container::run(
        "na-t-la",
        &[
            "--network=none",
            "--label",
            &label("network", "bridge"),
            "--label",
            &label("ip", &ip1),
        ],
        &[],
    );
    let b = Container::run(
        "na-t-lb",
        &[
            "--network=none",
            "--label",
            &label("network", "bridge"),
            "--label",
            &label("ip", &ip2),
        ],
        &[],
    );
    // A container attached by hand and removed while no daemon was watching: stale lease.
    let gone = Container::none("na-t-gone");
    assert_eq!(tool.ok(&["attach", &gone.name, "--ip", &ip_gone]), ip_gone);
    ok("docker", &["rm", "-f", &gone.name]);
    assert!(status_of(&tool, &gone.name).is_some());

    // Past the daemon's event replay window (one second back): only the reconcile can do it.
    std::thread::sleep(Duration::from_millis(2500));
    let d = Daemon::start_with_prefix(&tool, &prefix, &[]);
    assert!(
        wait_until(SHORT, || attached(&tool, &a.name)
            && attached(&tool, &b.name)),
        "running containers not picked up:\n{}",
        d.log()
    );
    assert!(answers(&ip1) && answers(&ip2));
    assert!(
        wait_until(SHORT, || status_of(&tool, &gone.name).is_none()),
        "stale lease not collected:\n{}",
        d.log()
    );
    assert!(d.metric("netattach_reconciles_total{result=\"ok\"}") >= 1.0);
}

#[test]
fn docker_connection_drops_and_comes_back() {
    if !need_docker() {
        return;
    }
    let neighbour = Container::bridged("na-t-nb");
    let mut proxy = DockerProxy::new();
    let tool = Tool::new();
    let host = proxy.docker_host();
    let d = Daemon::start(&tool, &[("DOCKER_HOST", &host)]);
    assert!(
        d.wait_ready(SHORT),
        "not ready through the proxy:\n{}",
        d.log()
    );
    let (ip_a, ip_b, ip_c) = (test_ip(), test_ip(), test_ip());
    let labels = |ip: &str| {
        vec![
            "--network=none".to_string(),
            "--label".into(),
            d.label("network", "bridge"),
            "--label".into(),
            d.label("ip", ip),
        ]
    };
    let run_labelled = |prefix: &str, ip: &str| {
        let l = labels(ip);
        let args: Vec<&str> = l.iter().map(String::as_str).collect();
        Container::run(prefix, &args, &[])
    };
    let a = run_labelled("na-t-ra", &ip_a);
    let c = run_labelled("na-t-rc", &ip_c);
    assert!(wait_until(SHORT, || attached(&tool, &a.name)
        && attached(&tool, &c.name)));

    // Docker goes away: health stays, readiness turns 503 and says why.
    proxy.stop();
    assert!(
        wait_until(SHORT, || d.get("/readyz").0 == 503),
        "readyz still 200 with Docker cut off:\n{}",
        d.log()
    );
    let (_, why) = d.get("/readyz");
    assert!(why.contains("Docker"), "{why}");
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.metric("netattach_docker_up"), 0.0);

    // Meanwhile: a restart (new namespace, no interface), a new container, a removal.
    ok("docker", &["restart", "-t", "0", &a.name]);
    let b = run_labelled("na-t-rb", &ip_b);
    ok("docker", &["rm", "-f", &c.name]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ifaces_inside(a.pid()), ["lo"]);
    assert!(!attached(&tool, &b.name));

    // Docker comes back: reconnect, reconcile, everything in order, nothing doubled.
    proxy.start();
    assert!(
        d.wait_ready(Duration::from_secs(20)),
        "never ready again:\n{}",
        d.log()
    );
    assert!(
        wait_until(SHORT, || attached(&tool, &a.name)
            && attached(&tool, &b.name)
            && status_of(&tool, &c.name).is_none()),
        "not reconciled after reconnect: {:?}\n{}",
        leases(&tool),
        d.log()
    );
    assert!(answers(&ip_a) && answers(&ip_b));
    assert_eq!(status_of(&tool, &a.name).unwrap().0, ip_a);
    assert_eq!(ifaces_inside(a.pid()), ["eth0", "lo"]);
    assert_eq!(veths_of(&a.id).len(), 1);
    assert_eq!(veths_of(&b.id).len(), 1);
    assert_eq!(leases(&tool).len(), 2);
    assert!(d.metric("netattach_docker_reconnects_total") >= 1.0);
    assert!(d.metric("netattach_reconciles_total{result=\"ok\"}") >= 2.0);
    assert_eq!(d.metric("netattach_docker_up"), 1.0);
    assert!(
        neighbour.fetches(&ip_a),
        "an ordinary container cannot reach {ip_a}"
    );
}

/// Issue 13: the daemon begins the attach when Docker connects a labelled container to `none`
/// while starting it (before the `start` event) and counts it once, on the `start` event; a
/// start that fails leaves nothing behind and reports nothing.
#[test]
fn a_labelled_container_is_attached_while_docker_starts_it_and_counted_once() {
    if !need_docker() {
        return;
    }
    let _neighbour = Container::bridged("na-t-nb");
    let tool = Tool::new();
    let d = Daemon::start(&tool, &[]);
    let ip = test_ip();
    let c = Container::labelled_created("na-t-ahead", &d.prefix, &ip);
    // Lines of the daemon's log that say `what` about container `name`.
    let logged = |what: &str, name: &str| {
        d.log()
            .lines()
            .filter(|l| l.contains(what) && l.contains(name))
            .count()
    };
    for start in 1..=2 {
        if start == 1 {
            ok("docker", &["start", &c.name]);
        } else {
            ok("docker", &["restart", "-t", "0", &c.name]);
        }
        assert!(
            wait_until(SHORT, || d
                .metric("netattach_attaches_total{result=\"attached\"}")
                >= start as f64),
            "start {start}: not counted:\n{}",
            d.log()
        );
        assert!(answers(&ip), "start {start}: {ip} does not answer");
        let ahead = logged("attached ahead of the start event", &c.name);
        assert_eq!(ahead, start, "start {start}:\n{}", d.log());
        // One attach per start: the start event's job asked Docker nothing more.
        let asked = logged("docker facts", &c.name);
        assert_eq!(asked, start, "start {start}:\n{}", d.log());
        assert_eq!(veths_of(&c.id).len(), 1);
    }
    // Counted once per start, with a latency each: the start event's job counted the attach
    // made ahead (and did not attach again).
    assert_eq!(
        d.metric("netattach_attaches_total{result=\"attached\"}"),
        2.0
    );
    assert_eq!(
        d.metric("netattach_attaches_total{result=\"existing\"}"),
        0.0
    );
    assert_eq!(d.metric("netattach_attach_latency_seconds_count"), 2.0);

    // A labelled container whose start fails (no such command): Docker connects it to `none`
    // and answers the inspect with a container that does not run; nothing is made or reported.
    let ip2 = test_ip();
    let ip2_label = d.label("ip", &ip2);
    let broken = Container::create(
        "na-t-ahead-bad",
        &[
            "--network=none",
            "--label",
            &d.label("network", "bridge"),
            "--label",
            &ip2_label,
        ],
        &["/no/such/command"],
    );
    assert!(
        !common::run("docker", &["start", &broken.name])
            .status
            .success()
    );
    assert!(
        wait_until(SHORT, || d.log().lines().any(|l| l
            .contains("not attached ahead of the start event")
            && l.contains(&broken.name))),
        "{}",
        d.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(status_of(&tool, &broken.name).is_none(), "{}", d.log());
    assert!(veths_of(&broken.id).is_empty());
    assert!(!netns_link_exists(&broken.name));
    assert_eq!(d.metric("netattach_attaches_total{result=\"error\"}"), 0.0);
    assert!(leases(&tool).iter().all(|l| l.1 != ip2), "{}", d.log());
}

#[test]
fn bad_labels_are_reported_and_do_not_stop_the_others() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let mut d = Daemon::start(&tool, &[]);
    let bad = Container::run(
        "na-t-bad",
        &[
            "--network=none",
            "--label",
            &d.label("network", "bridge"),
            "--label",
            &d.label("ip", "300.1.1.1"),
        ],
        &[],
    );
    let taken = Container::run(
        "na-t-nonet",
        &[
            "--network=none",
            "--label",
            &d.label("network", "no-such-network-here"),
        ],
        &[],
    );
    let ip = test_ip();
    let good = Container::labelled("na-t-good", &d.prefix, &ip);
    assert!(
        wait_until(SHORT, || attached(&tool, &good.name)),
        "{}",
        d.log()
    );
    assert!(answers(&ip));
    assert!(
        wait_until(SHORT, || d
            .metric("netattach_attaches_total{result=\"error\"}")
            >= 2.0),
        "{}",
        d.log()
    );
    let log = d.log();
    assert!(
        log.contains(&bad.name) && log.contains("is not an IPv4 address"),
        "{log}"
    );
    assert!(
        log.contains(&taken.name) && log.contains("no-such-network-here"),
        "{log}"
    );
    assert!(status_of(&tool, &bad.name).is_none());
    assert!(status_of(&tool, &taken.name).is_none());
    assert!(d.alive());
}

#[test]
fn labels_choose_interface_and_netns_names() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let d = Daemon::start(&tool, &[]);
    let ip = test_ip();
    let link = common::unique("na-t-ns");
    let _link = RemoveOnDrop::netns_link(&link);
    let c = Container::run(
        "na-t-names",
        &[
            "--network=none",
            "--label",
            &d.label("network", "bridge"),
            "--label",
            &d.label("ip", &ip),
            "--label",
            &d.label("ifname", "eth7"),
            "--label",
            &d.label("netns-name", &link),
        ],
        &[],
    );
    assert!(
        wait_until(SHORT, || attached(&tool, &c.name)),
        "{}",
        d.log()
    );
    assert!(answers(&ip));
    assert_eq!(ifaces_inside(c.pid()), ["eth7", "lo"]);
    assert!(netns_link_exists(&link));
    assert!(!netns_link_exists(&c.name));
    let inside = ok(
        "ip",
        &["netns", "exec", &link, "cat", "/sys/class/net/eth7/address"],
    );
    let mac = docker_netattach::plan::mac_for(ip.parse().unwrap());
    assert_eq!(inside, docker_netattach::plan::format_mac(mac));
    ok("docker", &["rm", "-f", &c.name]);
    assert!(
        wait_until(SHORT, || !netns_link_exists(&link)
            && status_of(&tool, &c.name).is_none()),
        "{}",
        d.log()
    );
}

#[test]
fn a_corrupt_lease_does_not_stop_the_reconcile_from_attaching() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let net_id = ok("docker", &["network", "inspect", "-f", "{{.Id}}", "bridge"]);
    let dir = tool.state.path().join("leases").join(&net_id);
    std::fs::create_dir_all(&dir).unwrap();
    for d in [
        tool.state.path().to_path_buf(),
        tool.state.path().join("leases"),
        dir.clone(),
    ] {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let junk_ip = test_ip();
    std::fs::write(dir.join(&junk_ip), "{ truncated").unwrap();

    let prefix = common::unique("nat").replace('-', "");
    let ip = test_ip();
    let _c = Container::labelled("na-t-corrupt", &prefix, &ip);
    // Past the daemon's event replay window (one second back): only the reconcile can do it.
    std::thread::sleep(Duration::from_millis(2500));
    let d = Daemon::start_with_prefix(&tool, &prefix, &[]);
    assert!(
        answers(&ip),
        "not attached despite the reconcile:\n{}",
        d.log()
    );
    // The cleanup succeeds around it, sets it aside (its address stays taken) and says so.
    assert!(
        wait_until(SHORT, || d
            .metric("netattach_reconciles_total{result=\"ok\"}")
            >= 1.0),
        "{}",
        d.log()
    );
    assert!(d.log().contains("is corrupt"), "{}", d.log());
    assert!(!dir.join(&junk_ip).exists());
    assert!(
        tool.state
            .path()
            .join("quarantine")
            .join(&net_id)
            .join(&junk_ip)
            .exists()
    );
    assert_eq!(d.get("/attachments").0, 200);
    assert_eq!(d.metric("netattach_corrupt_leases"), 1.0);
}

/// Threads of a process (`/proc/<pid>/task`).
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Issue 9: one OS thread per job with no bound, and per-container queues that live until
/// `destroy`. A daemon started next to 30 labelled running containers queues 30 attaches at
/// once: it must never run more than its bound (16) of job threads, and once the work is done
/// no container keeps a queue.
#[test]
fn many_jobs_at_once_use_a_bounded_number_of_threads_and_idle_queues_are_dropped() {
    if !need_docker() {
        return;
    }
    const N: usize = 30;
    const BOUND: usize = 16;
    let tool = Tool::new();
    let prefix = common::unique("natb").replace('-', "");
    let net = private_network("na-t-tb");
    let label = format!("{prefix}.network={}", net.0);
    let cs: Vec<Container> = (0..N)
        .map(|_| Container::run("na-t-tb", &["--network=none", "--label", &label], &[]))
        .collect();
    let d = Daemon::start_with_prefix(&tool, &prefix, &[]);
    let mut peak = 0;
    let start = std::time::Instant::now();
    while leases(&tool).iter().filter(|l| l.2 == "attached").count() < N
        && start.elapsed() < Duration::from_secs(90)
    {
        for _ in 0..50 {
            peak = peak.max(threads_of(d.pid()));
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert_eq!(
        leases(&tool).iter().filter(|l| l.2 == "attached").count(),
        N,
        "not all attached:\n{}",
        d.log()
    );
    eprintln!("peak: {peak} threads for {N} queued attaches");
    // The main thread, the bounded job threads, the two lease-sync threads, the namespace
    // thread of the attach holding the lock (they run one at a time) and a few of tokio's
    // blocking pool.
    assert!(
        peak <= BOUND + 7,
        "the daemon ran {peak} threads for {N} queued attaches (bound {BOUND} job threads)"
    );
    assert!(
        wait_until(SHORT, || d.metric("netattach_container_queues") == 0.0
            && d.get("/metrics").1.contains("netattach_container_queues 0")),
        "queues left: {}",
        d.get("/metrics").1
    );
    assert_eq!(d.metric("netattach_job_threads_limit"), BOUND as f64);
    drop(cs);
    assert!(wait_until(SHORT, || leases(&tool).is_empty()));
}

/// The daemon keeps what a network inspect said until Docker's events report a change (issue
/// 13): a network removed and created again under the same name with another subnet, and a
/// container connected to it, are both seen by the next attach.
#[test]
fn a_network_changed_under_its_name_is_seen_by_the_next_attach() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let d = Daemon::start(&tool, &[]);
    let net = private_network("na-t-renet");
    let on_net = |prefix: &str| {
        Container::run(
            prefix,
            &["--network=none", "--label", &d.label("network", &net.0)],
            &[],
        )
    };
    let subnet_of = |name: &str| {
        ok(
            "docker",
            &[
                "network",
                "inspect",
                "-f",
                "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
                name,
            ],
        )
    };
    let inside = |ip: &str, subnet: &str| {
        let net: ipnet::Ipv4Net = subnet.parse().unwrap();
        net.contains(&ip.parse::<std::net::Ipv4Addr>().unwrap())
    };
    let a = on_net("na-t-renet-a");
    assert!(
        wait_until(SHORT, || attached(&tool, &a.name)),
        "{}",
        d.log()
    );
    let (ip_a, _) = status_of(&tool, &a.name).unwrap();
    let first = subnet_of(&net.0);
    assert!(inside(&ip_a, &first), "{ip_a} not in {first}");
    drop(a);
    assert!(
        wait_until(SHORT, || leases(&tool).is_empty()),
        "{}",
        d.log()
    );

    // Same name, another subnet (and another bridge).
    ok("docker", &["network", "rm", &net.0]);
    let second = create_named_network(&net.0, &first);
    let b = on_net("na-t-renet-b");
    assert!(
        wait_until(SHORT, || attached(&tool, &b.name)),
        "{}",
        d.log()
    );
    let (ip_b, _) = status_of(&tool, &b.name).unwrap();
    assert!(
        inside(&ip_b, &second),
        "{ip_b} not in {second}: the daemon used the old network's facts"
    );
    assert!(answers(&ip_b));

    // A container Docker connects to the network takes an address the next attach must avoid:
    // the endpoints are part of the facts.
    let docker_ctr = Container::run("na-t-renet-d", &["--network", &net.0], &[]);
    let docker_ip = ok(
        "docker",
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &docker_ctr.name,
        ],
    );
    let c = Container::run(
        "na-t-renet-c",
        &[
            "--network=none",
            "--label",
            &d.label("network", &net.0),
            "--label",
            &d.label("ip", &docker_ip),
        ],
        &[],
    );
    // Refused: Docker's container holds that address (the daemon saw it connect).
    assert!(
        wait_until(SHORT, || d.log().contains(&docker_ip)
            && d.log().contains(&c.name)),
        "{}",
        d.log()
    );
    assert!(!attached(&tool, &c.name), "{}", d.log());
    drop(c);
    drop(b);
    drop(docker_ctr);
    assert!(
        wait_until(SHORT, || leases(&tool).is_empty()),
        "{}",
        d.log()
    );
}

/// Creates Docker network `name` on a private /24 other than `avoid`; returns its subnet.
fn create_named_network(name: &str, avoid: &str) -> String {
    for i in 1..40u32 {
        let n = std::process::id()
            .wrapping_mul(40503)
            .wrapping_add(i * 104729);
        let subnet = format!("10.{}.{}.0/24", 150 + n % 100, (n >> 8) % 250);
        if subnet == avoid {
            continue;
        }
        let o = common::run("docker", &["network", "create", "--subnet", &subnet, name]);
        if o.status.success() {
            return subnet;
        }
        assert!(
            common::stderr(&o).contains("overlap"),
            "{}",
            common::stderr(&o)
        );
    }
    panic!("no free private /24 for network {name}");
}

/// A Docker network on a private /24 (10.150-249.x.0), retried when the pool overlaps another.
fn private_network(prefix: &str) -> common::Network {
    for i in 0..8u32 {
        let n = std::process::id()
            .wrapping_mul(2654435761)
            .wrapping_add(i * 7919);
        let subnet = format!("10.{}.{}.0/24", 150 + n % 100, (n >> 8) % 250);
        let name = common::unique(prefix);
        let o = common::run("docker", &["network", "create", "--subnet", &subnet, &name]);
        if o.status.success() {
            return common::Network(name);
        }
        assert!(
            common::stderr(&o).contains("overlap"),
            "{}",
            common::stderr(&o)
        );
    }
    panic!("no free private /24 for the test network");
}
