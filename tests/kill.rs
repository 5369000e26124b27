//! SIGKILL at random moments during 100 attach/detach cycles; afterwards `gc` brings the host
//! back to a consistent state: every lease matches a live, configured interface or is gone, no
//! orphan veth on the bridge, no dangling link, no temporary file. The same on a dual-stack
//! network, and a SIGKILL at each single store write in turn (strace's fault injection): a
//! lease's IPv6 address is never left free. Needs root and Docker (and strace).

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A small deterministic generator, so a failing run can be replayed (NETATTACH_KILL_SEED).
struct Lcg(u64);
impl Lcg {
    /// Seeded from NETATTACH_KILL_SEED, else from `base` and the Pid; prints the seed.
    fn seeded(base: u64) -> Lcg {
        let seed = std::env::var("NETATTACH_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(base ^ u64::from(std::process::id()));
        eprintln!("seed {seed} (NETATTACH_KILL_SEED replays it)");
        Lcg(seed)
    }

    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn sigkill_during_100_cycles_then_gc_leaves_a_consistent_host() {
    if !need_docker() {
        return;
    }
    let mut rng = Lcg::seeded(0x5eed);
    let tool = Tool::new();
    let _neighbour = Container::bridged("na-kill-nb");
    let cs: Vec<Container> = (0..10)
        .map(|_| Container::run("na-kill", &["--network=none"], &[]))
        .collect();
    let (mut killed, mut finished) = (0, 0);
    for cycle in 0..100 {
        let c = &cs[cycle % cs.len()];
        // Odd rounds attach, even rounds detach: the last round attaches, so the final check
        // sees many leases (and round 0 detaches what was never attached).
        let args: Vec<&str> = if (cycle / cs.len()) % 2 == 1 {
            vec![c.name.as_str()]
        } else {
            vec!["detach", c.name.as_str()]
        };
        let mut child = tool
            .cmd()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread over the whole life of a command (debug builds take 10-30 ms).
        std::thread::sleep(Duration::from_micros(rng.next(30_000)));
        match child.try_wait().unwrap() {
            Some(_) => finished += 1,
            None => {
                let _ = child.kill();
                killed += 1;
            }
        }
        let _ = child.wait();
    }
    eprintln!("100 cycles: {killed} killed mid-flight, {finished} finished first");

    let start = Instant::now();
    let gc = tool.ok(&["gc", "--json"]);
    let removed: Vec<serde_json::Value> = serde_json::from_str(&gc).unwrap_or_default();
    eprintln!(
        "gc took {:?} and removed {} objects: {gc}",
        start.elapsed(),
        removed.len()
    );

    // Every lease is attached and its container answers on its address.
    let list: Vec<serde_json::Value> = serde_json::from_str(&tool.ok(&["ls", "--json"])).unwrap();
    let ids: HashMap<&str, &Container> = cs.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut leased = HashSet::new();
    for l in &list {
        let id = l["container_id"].as_str().unwrap();
        assert!(ids.contains_key(id), "a lease of someone else: {l}");
        assert_eq!(l["status"], "attached", "{l}");
        let ip = l["ip"].as_str().unwrap();
        if first_answer(ip, Duration::from_secs(3)).is_none() {
            let name = l["netns_name"].as_str().unwrap();
            let diag = [
                ok(
                    "sh",
                    &[
                        "-c",
                        &format!(
                            "ip netns exec {name} ip addr; ip netns exec {name} ip route; ip netns exec {name} ip neigh"
                        ),
                    ],
                ),
                ok(
                    "sh",
                    &[
                        "-c",
                        &format!(
                            "ip neigh show {ip}; bridge fdb show br docker0 | grep -i 02:42:ac:11; ip -br link show master docker0"
                        ),
                    ],
                ),
            ];
            panic!(
                "{ip} of a lease does not answer: {l}\n{}",
                diag.join("\n---\n")
            );
        }
        leased.insert(id.to_string());
    }
    // No orphan veth of ours, no dangling or foreign link, no temporaries.
    // (by name: an attach killed before it set the alias leaves a veth without one)
    for port in bridge_ports("docker0") {
        if let Some(c) = cs
            .iter()
            .find(|c| port.starts_with(&format!("vna{}", &c.id[..8])))
        {
            assert!(leased.contains(&c.id), "orphan veth {port} of {}", c.name);
        }
    }
    for c in &cs {
        let link = std::path::Path::new("/var/run/netns").join(&c.name);
        if std::fs::symlink_metadata(&link).is_ok() {
            assert!(
                leased.contains(&c.id),
                "link {} without a lease",
                link.display()
            );
            assert!(
                std::fs::metadata(&link).is_ok(),
                "dangling link {}",
                link.display()
            );
        }
    }
    let temporaries = temporaries(&tool);
    assert_eq!(temporaries, 0, "temporary lease files left");
    eprintln!(
        "after gc: {} leases, all attached and answering; 0 orphan veths, 0 dangling links, 0 temporaries",
        list.len()
    );

    for c in &cs {
        tool.ok(&["detach", &c.name]);
    }
    assert_eq!(tool.lease_count(), 0);
    assert!(cs.iter().all(|c| !netns_link_exists(&c.name)));
}

/// The binary under test; `NETATTACH_TEST_BIN` runs another build (an older one, to show that
/// it fails these tests).
fn bin() -> PathBuf {
    std::env::var_os("NETATTACH_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BIN))
}

/// A dual-stack Docker network with a private /24 and /64, and an ordinary container on it
/// (it keeps the bridge's carrier); never the same subnet twice in this binary
/// ([`subnet_slot`]): two tests may hold one at once.
fn dual_stack() -> (Network, Container) {
    let (seed, n) = subnet_slot(250);
    let (a, b) = (100 + (seed >> 8) % 100, (seed % 250 + n) % 250);
    let net = Network::create(
        "na-kill6",
        &[
            "--ipv6",
            "--subnet",
            &format!("fd00:{a:x}:{b:x}::/64"),
            "--subnet",
            &format!("10.{a}.{b}.0/24"),
        ],
    );
    let peer = Container::run("na-kill6p", &["--network", &net.0], &[]);
    (net, peer)
}

/// How many temporaries (`.tmp*`) are anywhere under the tool's state directory.
fn temporaries(tool: &Tool) -> usize {
    files_under(tool.state.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))
        })
        .count()
}

/// Every lease (an IPv4-named file) that records an IPv6 address still has that address's
/// name beside it: the address is taken for as long as the lease exists.
fn ipv6_names_missing(state: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    for file in files_under(&state.join("leases")) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name.parse::<std::net::Ipv4Addr>().is_err() {
            continue;
        }
        let Ok(json) = std::fs::read_to_string(&file)
            .map_err(|_| ())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|_| ()))
        else {
            continue;
        };
        if let Some(ip6) = json["ip6"].as_str() {
            if std::fs::symlink_metadata(file.with_file_name(ip6)).is_err() {
                missing.push(format!(
                    "{} (complete: {})",
                    file.display(),
                    json["complete"]
                ));
            }
        }
    }
    missing
}

#[test]
fn a_kill_at_any_store_write_never_frees_the_ipv6_address_of_a_lease() {
    if !need_docker() {
        return;
    }
    assert!(
        run("strace", &["-V"]).status.success(),
        "this test needs strace (apt-get install strace)"
    );
    let (net, _peer) = dual_stack();
    let c = Container::none("na-kill6");
    let tool = Tool::new();
    let attach = ["attach", c.name.as_str(), "--network", net.0.as_str()];
    let detach = ["detach", c.name.as_str()];
    let killed_at = |args: &[&str], syscall: &str, n: u32| -> bool {
        let o = Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-e"])
            .arg(format!("trace={syscall}"))
            .arg("-e")
            .arg(format!("inject={syscall}:signal=KILL:when={n}"))
            .arg(bin())
            .args(args)
            .env("DOCKER_NETATTACH_STATE_DIR", tool.state.path())
            .output()
            .unwrap();
        o.status.signal() == Some(9) || o.status.code() == Some(137)
    };
    let mut kills = 0;
    for syscall in [
        "link",
        "linkat",
        "rename",
        "renameat",
        "renameat2",
        "unlink",
        "unlinkat",
        "symlink",
        "symlinkat",
    ] {
        for (what, args) in [("attach", &attach[..]), ("detach", &detach[..])] {
            for n in 1..=16 {
                // From a known state: detached before an attach, attached before a detach.
                tool.ok(&detach);
                if what == "detach" {
                    tool.ok(&attach);
                }
                let killed = killed_at(args, syscall, n);
                let missing = ipv6_names_missing(tool.state.path());
                assert!(
                    missing.is_empty(),
                    "{what} killed at {syscall} #{n}: a lease whose IPv6 address is free: {missing:?}"
                );
                if !killed {
                    break;
                }
                kills += 1;
            }
        }
    }
    eprintln!("{kills} kills, each at one store write; no IPv6 address was ever left free");
    tool.ok(&["gc"]);
    tool.ok(&detach);
    assert_eq!(tool.lease_count(), 0);
}

#[test]
fn sigkill_during_dual_stack_cycles_then_gc_leaves_every_lease_whole() {
    if !need_docker() {
        return;
    }
    let mut rng = Lcg::seeded(0x6eed);
    let (net, _peer) = dual_stack();
    let tool = Tool::new();
    let cs: Vec<Container> = (0..5).map(|_| Container::none("na-kill6")).collect();
    let mut killed = 0;
    for cycle in 0..50 {
        let c = &cs[cycle % cs.len()];
        let args: Vec<&str> = if (cycle / cs.len()) % 2 == 1 {
            vec!["attach", c.name.as_str(), "--network", net.0.as_str()]
        } else {
            vec!["detach", c.name.as_str()]
        };
        let mut child = Command::new(bin())
            .args(&args)
            .env("DOCKER_NETATTACH_STATE_DIR", tool.state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.next(30_000)));
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
            killed += 1;
        }
        let _ = child.wait();
        let missing = ipv6_names_missing(tool.state.path());
        assert!(missing.is_empty(), "cycle {cycle}: {missing:?}");
    }
    eprintln!("50 dual-stack cycles, {killed} killed mid-flight");
    tool.ok(&["gc"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&tool.ok(&["ls", "--json"])).unwrap();
    for l in &list {
        assert_eq!(l["status"], "attached", "{l}");
        assert!(l["ip6"].is_string(), "{l}");
    }
    assert!(ipv6_names_missing(tool.state.path()).is_empty());
    let temporaries = temporaries(&tool);
    assert_eq!(temporaries, 0, "temporary files left");
    for c in &cs {
        tool.ok(&["detach", &c.name]);
    }
    assert_eq!(tool.lease_count(), 0);
}
