//! The tool run as an ordinary user (uid 65534 through `setpriv`) against root's state: it says
//! to run it as root (sudo), never to chown root's state directory, and a permission error is
//! not mistaken for a missing namespace. Needs root (to create root's state and drop to nobody).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::{BIN, NamedNs, Tool, iface_exists, need_root, stderr, stdout};

/// Runs the binary as nobody, with `caps` (e.g. "+net_admin,+sys_admin") kept when not empty.
fn as_nobody(tool: &Tool, caps: &str, args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if !caps.is_empty() {
        c.arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"));
    }
    c.arg(BIN)
        .args(args)
        .env("DOCKER_NETATTACH_STATE_DIR", tool.state.path())
        .current_dir("/")
        .output()
        .expect("run setpriv")
}

/// A state directory as root leaves it: owned by root, 0700.
fn roots_state() -> Tool {
    let tool = Tool::new();
    std::fs::set_permissions(tool.state.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    tool
}

#[test]
fn list_as_an_ordinary_user_says_run_it_as_root() {
    if !need_root() {
        return;
    }
    let tool = roots_state();
    for args in [&["list"][..], &["ls", "--json"]] {
        let o = as_nobody(&tool, "", args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("sudo docker-netattach list"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("chown"), "{args:?}: {err}");
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
    }
}

#[test]
fn doctor_as_an_ordinary_user_says_run_it_as_root() {
    if !need_root() {
        return;
    }
    let tool = roots_state();
    for args in [&["doctor"][..], &["doctor", "--json"]] {
        let o = as_nobody(&tool, "", args);
        let out = format!("{}\n{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}");
        assert!(
            out.contains("sudo docker-netattach doctor"),
            "{args:?}: {out}"
        );
        assert!(!out.contains("chown"), "{args:?}: {out}");
    }
}

/// With CAP_NET_ADMIN and CAP_SYS_ADMIN but not root, opening root's namespaces fails with
/// EACCES: that is a permission problem, not a namespace to create with `ip netns add`.
#[test]
fn netns_permission_error_is_not_answered_with_ip_netns_add() {
    if !need_root() {
        return;
    }
    let tool = Tool::new();
    let ns = NamedNs::new("na-t-perm");
    // A root process inside that namespace: nobody may not open its /proc/PID/ns/net.
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &ns.0, "sleep", "60"])
        .spawn()
        .unwrap();
    let target = format!("/proc/{}/ns/net", sleeper.id());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let bridge = format!("nap{}", std::process::id() % 100_000);
    let subnet = format!("10.232.{}.0/24", std::process::id() % 250);
    let o = as_nobody(
        &tool,
        "+net_admin,+sys_admin",
        &[
            "attach", "--netns", &target, "--bridge", &bridge, "--subnet", &subnet,
        ],
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{target}: {err}");
    assert!(
        err.to_lowercase().contains("permission denied"),
        "{target}: {err}"
    );
    assert!(!err.contains("ip netns add"), "{target}: {err}");
    assert!(err.contains("sudo"), "{target}: {err}");
    assert!(
        !iface_exists(&bridge),
        "{target}: bridge {bridge} left behind"
    );
    assert_eq!(tool.lease_count(), 0, "{target}");
}
