//! SIGKILL at random moments during 100 attach/detach cycles; afterwards `gc` brings the host
//! back to a consistent state: every lease matches a live, configured interface or is gone, no
//! orphan veth on the bridge, no dangling link, no temporary file. Needs root and Docker.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A small deterministic generator, so a failing run can be replayed (NETATTACH_KILL_SEED).
struct Lcg(u64);
impl Lcg {
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
    let seed = std::env::var("NETATTACH_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64 ^ u64::from(std::process::id()));
    eprintln!("seed {seed} (NETATTACH_KILL_SEED replays it)");
    let mut rng = Lcg(seed);
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
    let temporaries = walk(tool.state.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))
        })
        .count();
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

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
