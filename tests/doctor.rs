//! `doctor` against real trouble made on purpose: a network with icc off whose bridge is down,
//! a lease whose container was removed behind our back. Needs root and Docker.

mod common;

use common::*;

#[test]
fn doctor_names_each_problem_and_fails_until_fixed() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let n = std::process::id() % 200 + 20;
    let network = Network::create(
        "na-doc-net",
        &[
            "--subnet",
            &format!("10.214.{n}.0/24"),
            "-o",
            "com.docker.network.bridge.enable_icc=false",
        ],
    );
    let net = network.0.clone();
    let bridge = network.bridge();

    let gone = Container::none("na-doc-gone");
    tool.ok(&[&gone.name, "--network", &net]);
    ok("docker", &["rm", "-f", &gone.name]);
    ok("ip", &["link", "set", &bridge, "down"]);

    let o = tool.run(&["doctor", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let checks: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let find = |check: &str, status: &str| {
        checks.iter().any(|c| {
            c["check"] == check
                && c["status"] == status
                && c["subject"]
                    .as_str()
                    .is_some_and(|s| s == net || s == gone.name)
        })
    };
    assert!(find("bridge", "fail"), "{checks:#?}");
    assert!(find("icc", "warn"), "{checks:#?}");
    assert!(find("lease", "fail"), "{checks:#?}");
    let text = stdout(&tool.run(&["doctor"]));
    assert!(
        text.contains(&format!("fix: ip link set {bridge} up")),
        "{text}"
    );

    ok("ip", &["link", "set", &bridge, "up"]);
    tool.ok(&["detach", &gone.name]);
    let o = tool.run(&["doctor", "--network", &net]);
    let text = stdout(&o);
    assert!(!text.contains("FAIL"), "{text}");
    assert_eq!(o.status.code(), Some(0), "{text}");
}
