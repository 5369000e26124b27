//! Docker users' habits: `watch --listen localhost:PORT`, help that states each default once,
//! and error texts that name what holds a refused address. Real binary; root and Docker where
//! said.

mod common;

use std::net::ToSocketAddrs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Tool, free_port, http, need_root, stdout, unique, wait_until};

#[test]
fn watch_listens_on_a_host_name() {
    if !need_root() {
        return;
    }
    let tool = Tool::new();
    let port = free_port();
    let spec = format!("localhost:{port}");
    // What the name resolves to first is where the daemon must listen.
    let want = spec.to_socket_addrs().unwrap().next().unwrap();
    let mut child = tool
        .cmd()
        .args([
            "watch",
            "--listen",
            &spec,
            "--label-prefix",
            &unique("nah").replace('-', ""),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let served = wait_until(Duration::from_secs(10), || {
        http(&want.to_string(), "GET", "/healthz").0 == 200
    });
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        served,
        "watch --listen {spec} did not serve /healthz on {want} (exit {exited:?}): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Bad forms are usage errors, a name that does not resolve a named error.
    for bad in ["localhost", "localhost:http", "no spaces:1"] {
        let o = tool.run(&["watch", "--listen", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
    let o = tool.run(&["watch", "--listen", "na-no-such-host.invalid:9180"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("cannot resolve --listen na-no-such-host.invalid:9180"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `--help` of every command states each default once (doctor's said `[default: bridge]` twice).
#[test]
fn help_states_each_default_once() {
    let subs = [
        "attach",
        "detach",
        "list",
        "watch",
        "gc",
        "doctor",
        "completions",
        "man",
    ];
    for sub in subs {
        let help = stdout(&Command::new(BIN).args([sub, "--help"]).output().unwrap());
        for line in help.lines() {
            assert!(
                line.matches("[default:").count() <= 1,
                "{sub} --help repeats a default: {line}"
            );
        }
    }
    let help = stdout(
        &Command::new(BIN)
            .args(["doctor", "--help"])
            .output()
            .unwrap(),
    );
    assert!(help.contains("[default: bridge]"), "{help}");
}

/// A refused `--ip` says what holds the address: the gateway, a Docker endpoint (and its
/// container) or another attachment (and its container); no internal prefix such as `subnets:`.
#[test]
fn a_refused_ip_names_what_holds_it() {
    if !common::need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = common::Container::none("na-t-hip");
    let neighbour = common::Container::bridged("na-t-hipn");
    let other = common::Container::none("na-t-hipo");
    let leased = common::test_ip();
    assert_eq!(tool.ok(&[&other.name, "--ip", &leased]), leased);
    let gateway = common::ok("ip", &["-4", "-o", "addr", "show", "docker0"])
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next().map(str::to_string))
        .unwrap();
    let docker_ip = neighbour.docker_ip();
    let cases = [
        (gateway.clone(), format!("--ip {gateway} is already in use: it is the gateway of network 'bridge'")),
        (
            docker_ip.clone(),
            format!(
                "--ip {docker_ip} is already in use: Docker gave it to container '{}' on network 'bridge'",
                neighbour.name
            ),
        ),
        (
            leased.clone(),
            format!(
                "--ip {leased} is already in use: it is leased to container '{}' on network 'bridge' by docker-netattach; detach it (`docker-netattach detach {} --network bridge`)",
                other.name, other.name
            ),
        ),
        (
            "10.1.2.3".to_string(),
            "--ip 10.1.2.3 is outside the subnet 172.17.0.0/16 (network 'bridge'); choose another address".to_string(),
        ),
    ];
    for (ip, want) in &cases {
        let err = tool.fails(&[&web.name, "--ip", ip], 1, want);
        assert!(err.starts_with("error: --ip "), "{err}");
        assert!(
            !err.contains("subnets:") && !err.contains("address refused"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(tool.lease_count(), 1, "{ip}: a refused attach left a lease");
    }
    tool.ok(&["detach", &other.name]);
    assert_eq!(tool.lease_count(), 0);
}

/// `--state-dir` and `--host` are offered where they mean something, not on the generators.
#[test]
fn generators_offer_no_state_dir() {
    let help = |sub: &str| stdout(&Command::new(BIN).args([sub, "--help"]).output().unwrap());
    for sub in ["completions", "man"] {
        let h = help(sub);
        assert!(
            !h.contains("--state-dir") && !h.contains("--host"),
            "{sub}: {h}"
        );
    }
    for sub in [
        "attach", "detach", "list", "inspect", "watch", "gc", "doctor",
    ] {
        let h = help(sub);
        assert!(
            h.contains("--state-dir") && h.contains("--host"),
            "{sub}: {h}"
        );
    }
    // Still accepted before any subcommand.
    let o = Command::new(BIN)
        .args(["--state-dir", "/nonexistent/na-t", "completions", "bash"])
        .output()
        .unwrap();
    assert!(o.status.success());
}
