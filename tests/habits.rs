//! Docker users' habits: `watch --listen localhost:PORT`, help that states each default once,
//! and error texts that name what holds a refused address. Real binary; root and Docker where
//! said.

mod common;
mod support;

use std::net::ToSocketAddrs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Tool, need_root, stdout, unique};
use support::{free_port, http, wait_until};

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
