//! Concurrency: many attaches and detaches at once, mixed with `list` and `gc`: zero duplicate
//! addresses, zero failures, zero leaks; and two attaches of one container at once make one
//! attachment. Needs root and Docker.

mod common;

use std::collections::HashSet;
use std::process::{Child, Stdio};
use std::time::Instant;

use common::*;

fn spawn(tool: &Tool, args: &[&str]) -> Child {
    tool.cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_ok(child: Child, what: &str) -> String {
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{what}: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn two_attaches_of_one_container_at_once_make_one_attachment() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = Container::none("na-st-twin");
    for _ in 0..5 {
        // Its own state directory: keep clear of the other test's top-down addresses.
        let a = spawn(&tool, &[&web.name, "--ip", "172.17.253.202"]);
        let b = spawn(&tool, &[&web.name, "--ip", "172.17.253.202"]);
        let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(
            oa.status.success() && ob.status.success(),
            "{} / {}",
            stderr(&oa),
            stderr(&ob)
        );
        assert_eq!(stdout(&oa), stdout(&ob), "both report the same address");
        let reported = [stderr(&oa), stderr(&ob)]
            .iter()
            .filter(|e| e.contains("already attached"))
            .count();
        assert_eq!(reported, 1, "exactly one reports the existing attachment");
        let ports = bridge_ports("docker0")
            .into_iter()
            .filter(|p| p.starts_with(&format!("vna{}", &web.id[..8])))
            .count();
        assert_eq!(ports, 1);
        assert_eq!(tool.lease_count(), 1);
        tool.ok(&["detach", &web.name]);
        assert_eq!(tool.lease_count(), 0);
    }
}

#[test]
fn fifty_containers_five_rounds_of_parallel_attach_and_detach() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let _neighbour = Container::bridged("na-st-nb");
    let cs: Vec<Container> = (0..50)
        .map(|_| Container::run("na-st", &["--network=none"], &["sleep", "3600"]))
        .collect();
    let mut totals = (0usize, 0usize, 0u128, 0u128);
    for round in 0..5 {
        let start = Instant::now();
        let mut lists: Vec<Child> = (0..3).map(|_| spawn(&tool, &["list"])).collect();
        lists.push(spawn(&tool, &["gc"]));
        let attaches: Vec<Child> = cs.iter().map(|c| spawn(&tool, &[&c.name])).collect();
        let ips: Vec<String> = attaches
            .into_iter()
            .map(|ch| wait_ok(ch, "attach"))
            .collect();
        let attach_ms = start.elapsed().as_millis();
        for l in lists {
            wait_ok(l, "list or gc");
        }
        let distinct: HashSet<&String> = ips.iter().collect();
        assert_eq!(
            distinct.len(),
            cs.len(),
            "round {round}: duplicate addresses {ips:?}"
        );
        assert_eq!(tool.lease_count(), cs.len());

        let start = Instant::now();
        let lists: Vec<Child> = (0..3).map(|_| spawn(&tool, &["list", "--json"])).collect();
        let detaches: Vec<Child> = cs
            .iter()
            .map(|c| spawn(&tool, &["detach", &c.name]))
            .collect();
        for d in detaches {
            wait_ok(d, "detach");
        }
        let detach_ms = start.elapsed().as_millis();
        for l in lists {
            wait_ok(l, "list or gc");
        }
        assert_eq!(tool.lease_count(), 0, "round {round}: leases left");
        let left: Vec<String> = bridge_ports("docker0")
            .into_iter()
            .filter(|p| {
                cs.iter()
                    .any(|c| p.starts_with(&format!("vna{}", &c.id[..8])))
            })
            .collect();
        assert!(left.is_empty(), "round {round}: veths left {left:?}");
        assert!(
            cs.iter().all(|c| !netns_link_exists(&c.name)),
            "round {round}: links left"
        );
        totals = (
            totals.0 + ips.len(),
            totals.1 + cs.len(),
            totals.2 + attach_ms,
            totals.3 + detach_ms,
        );
        eprintln!(
            "round {round}: 50 parallel attaches {attach_ms} ms, 50 parallel detaches {detach_ms} ms"
        );
    }
    eprintln!(
        "totals: {} attaches, {} detaches, 0 failures, 0 duplicates, 0 leaks; {} ms attaching, {} ms detaching",
        totals.0, totals.1, totals.2, totals.3
    );
}
