//! Faults and hostile state: a container that exits in the middle of an attach, a restart
//! between attach and detach, Pid reuse, a read-only state directory, symlinks planted where we
//! write, a lease outside the subnet. Afterwards nothing is left behind and nothing that is not
//! ours was touched. Needs root and Docker.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

#[test]
fn a_container_that_exits_mid_attach_is_rolled_back() {
    need_test_hooks("injects faults with DOCKER_NETATTACH_PAUSE_AFTER");
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    for step in ["netns-link", "veth", "configure"] {
        let web = Container::none("na-ft-exit");
        let child = tool
            .cmd()
            .arg(&web.name)
            .env("DOCKER_NETATTACH_PAUSE_AFTER", step)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The kill must land in the 1.5 s pause after the step: wait until the step's work is
        // visible (a fixed sleep was too short for a slow start, or ate into the pause).
        let reached = wait_until(Duration::from_secs(10), || match step {
            "netns-link" => netns_link_exists(&web.name),
            "veth" => !veths_of(&web.id).is_empty(),
            _ => stdout(&run(
                "ip",
                &["-n", &web.name, "-4", "-o", "addr", "show", "dev", "eth0"],
            ))
            .contains("inet "),
        });
        assert!(reached, "{step}: the attach did not get there within 10 s");
        ok("docker", &["kill", &web.name]);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{step}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("rolled back") && !err.contains("CLEANUP FAILED"),
            "{step}: {err}"
        );
        assert_eq!(tool.lease_count(), 0, "{step}: lease left");
        assert!(!netns_link_exists(&web.name), "{step}: link left");
        assert!(veths_of(&web.id).is_empty(), "{step}: veth left");
    }
}

/// An attach stopped after its kernel work, as a crash of the machine stops it (SIGKILL during
/// the pause after `configure`, when the complete record is synced under its temporary name):
/// in this boot its lease stays incomplete (`stale`, for gc or the next attach to deal with);
/// once the state directory's mark names another boot, as after a restart of the machine, the
/// first command keeps the lease as complete (src/lease/reboot.rs).
#[test]
fn an_attach_a_crash_stops_after_its_kernel_work_keeps_its_lease_in_the_next_boot() {
    need_test_hooks("pauses an attach with DOCKER_NETATTACH_PAUSE_AFTER");
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = Container::none("na-ft-boot");
    let mut child = tool
        .cmd()
        .arg(&web.name)
        .env("DOCKER_NETATTACH_PAUSE_AFTER", "configure")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let complete_record = || {
        tool.lease_files().into_iter().any(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".complete"))
        })
    };
    let configured = || {
        stdout(&run(
            "ip",
            &["-n", &web.name, "-4", "-o", "addr", "show", "dev", "eth0"],
        ))
        .contains("inet ")
    };
    let reached = wait_until(Duration::from_secs(10), || {
        configured() && complete_record()
    });
    assert!(
        reached,
        "the attach did not get past its kernel work within 10 s"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let (ip, status) = status_of(&tool, &web.name).expect("the reservation is listed");
    assert_eq!(status, "stale", "in the boot that made it");
    assert!(
        complete_record(),
        "the complete record is still where it was"
    );

    let mark = tool.state.path().join("boot");
    let _ = std::fs::remove_file(&mark);
    std::os::unix::fs::symlink("an-earlier-boot", &mark).unwrap();
    assert_eq!(
        status_of(&tool, &web.name),
        Some((ip.clone(), "attached".to_string())),
        "in the next boot the lease is complete (its veth and namespace are still here: no real reboot)"
    );
    assert!(!complete_record(), "the temporary went into place");
    assert_ne!(
        std::fs::read_link(&mark).unwrap(),
        Path::new("an-earlier-boot")
    );
    tool.ok(&["detach", &web.name]);
    assert!(
        leftovers(&web, &tool).is_empty(),
        "{:?}",
        leftovers(&web, &tool)
    );
}

#[test]
fn a_restart_between_attach_and_detach() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = Container::none("na-ft-rst");
    tool.ok(&[&web.name]);
    ok("docker", &["restart", "-t", "0", &web.name]);
    tool.ok(&["detach", &web.name]);
    assert_eq!(tool.lease_count(), 0);
    assert!(!netns_link_exists(&web.name));
    assert!(veths_of(&web.id).is_empty());
    // The new incarnation was never touched: it has only lo.
    assert!(!stdout(&web.exec(&["ip", "-o", "link"])).contains("eth0"));
}

#[test]
fn pid_reuse_never_reaches_another_namespace() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = Container::none("na-ft-pid");
    tool.ok(&[&web.name]);
    ok("docker", &["stop", "-t", "0", &web.name]);
    // Another process now holds "the Pid": the lease's Pid and the link lead to its namespace.
    let other = NetnsProcess::start(30);
    let lease = tool.lease_files().pop().unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lease).unwrap()).unwrap();
    json["pid"] = other.pid().into();
    std::fs::write(&lease, json.to_string()).unwrap();
    let link = Path::new("/var/run/netns").join(&web.name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("/proc/{}/ns/net", other.pid()), &link).unwrap();
    let _rm = RemoveOnDrop(link.clone());
    ok(
        "ip",
        &[
            "-n", &web.name, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
        ],
    );

    let list = tool.ok(&["ls"]);
    assert!(list.contains("stale"), "{list}");
    tool.ok(&["detach", &web.name]);
    // The other namespace's link and interface are untouched; our lease is gone.
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "the other namespace's link was removed"
    );
    assert!(ok("ip", &["-n", &web.name, "link"]).contains("probe0"));
    assert_eq!(tool.lease_count(), 0);
    drop(other);
}

#[test]
fn a_read_only_state_directory_is_a_clear_error_with_nothing_done() {
    if !need_docker() {
        return;
    }
    let web = Container::none("na-ft-ro");
    let dir = std::env::temp_dir().join(unique("na-ft-ro"));
    std::fs::create_dir_all(&dir).unwrap();
    ok(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "ro,mode=0700",
            "tmpfs",
            dir.to_str().unwrap(),
        ],
    );
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = run("umount", &[self.0.to_str().unwrap()]);
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _u = Umount(dir.clone());
    let o = std::process::Command::new(BIN)
        .arg(&web.name)
        .env("DOCKER_NETATTACH_STATE_DIR", &dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("state directory") && err.contains("Read-only"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(veths_of(&web.id).is_empty());
    assert!(!netns_link_exists(&web.name));
}

#[test]
fn planted_symlinks_are_never_followed() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let victim = std::env::temp_dir().join(unique("na-ft-victim"));
    std::fs::write(&victim, "precious\n").unwrap();
    let _v = RemoveOnDrop(victim.clone());

    // A lease "file" that is a link to the victim, where the next address would go.
    let web = Container::none("na-ft-sym");
    let net_id = ok("docker", &["network", "inspect", "-f", "{{.Id}}", "bridge"]);
    let dir = tool.state.path().join("leases").join(&net_id);
    std::fs::create_dir_all(&dir).unwrap();
    let planted = dir.join("172.17.255.254");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let ip = tool.ok(&[&web.name]);
    assert_ne!(ip, "172.17.255.254", "a planted name still counts as taken");
    // `list` reports it as corrupt (O_NOFOLLOW: ELOOP) and never reads through it.
    let list = tool.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("172.17.255.254") && l.contains("corrupt")),
        "{list}"
    );
    std::fs::remove_file(&planted).unwrap();

    // A netns link planted to the victim: refused, not replaced, not removed.
    let other = Container::none("na-ft-sym2");
    let link = Path::new("/var/run/netns").join(&other.name);
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let _l = RemoveOnDrop(link.clone());
    tool.fails(&[&other.name], 1, "is taken");
    tool.ok(&["detach", &other.name]);
    assert_eq!(std::fs::read_link(&link).unwrap(), victim);

    // The lock file planted as a link: refused.
    let lock = tool.state.path().join("lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    tool.fails(&["detach", &web.name], 1, "lock");
    std::fs::remove_file(&lock).unwrap();
    tool.ok(&["detach", &web.name]);

    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn a_lease_outside_the_subnet_is_listed_and_harmless() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = Container::none("na-ft-out");
    tool.ok(&[&web.name]);
    let lease = tool.lease_files().pop().unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lease).unwrap()).unwrap();
    json["ip"] = "10.99.99.99".into();
    json["container_id"] = "f".repeat(64).into();
    json["container_name"] = "ghost".into();
    std::fs::write(lease.with_file_name("10.99.99.99"), json.to_string()).unwrap();
    let list = tool.ok(&["ls"]);
    assert!(
        list.contains("ghost") && list.contains("10.99.99.99"),
        "{list}"
    );
    let second = Container::none("na-ft-out2");
    let ip = tool.ok(&[&second.name]);
    assert!(ip.starts_with("172.17."), "{ip}");
    tool.ok(&["detach", "ghost"]);
    tool.ok(&["detach", &web.name]);
    tool.ok(&["detach", &second.name]);
    assert_eq!(tool.lease_count(), 0);
}

/// After `docker stop`, another process takes the Pid our lease and our link recorded
/// (simulated: the lease's Pid and the link we wrote are pointed at a new process with its own
/// namespace). `docker start` and attach again: the container keeps its address, the link we
/// wrote is replaced, and the other process's namespace is untouched. A link we did not write
/// is never replaced, and then the old lease (and its address) is kept.
#[test]
fn a_restart_after_pid_reuse_keeps_the_address_and_replaces_only_our_link() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = Container::none("na-ft-reuse");
    let ip = tool.ok(&[&web.name]);
    ok("docker", &["stop", "-t", "0", &web.name]);
    let other = NetnsProcess::start(60);
    let other_pid = other.pid();
    let lease = tool.lease_files().pop().unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lease).unwrap()).unwrap();
    json["pid"] = other_pid.into();
    std::fs::write(&lease, json.to_string()).unwrap();
    let link = Path::new("/var/run/netns").join(&web.name);
    let _rm = RemoveOnDrop(link.clone());
    let other_ns = format!("/proc/{other_pid}/ns/net");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&other_ns, &link).unwrap();
    ok(
        "ip",
        &[
            "netns", "exec", &web.name, "ip", "link", "add", "probe0", "type", "veth", "peer",
            "name", "probe1",
        ],
    );
    ok("docker", &["start", &web.name]);

    // A link we did not write (its text is not the lease's path): refused, lease kept.
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("/proc/{other_pid}/./ns/net"), &link).unwrap();
    tool.fails(&[&web.name], 1, "is taken");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new(&format!("/proc/{other_pid}/./ns/net"))
    );
    assert_eq!(tool.lease_count(), 1, "the old lease was dropped");
    assert!(
        tool.ok(&["ls"]).contains(&ip),
        "the sticky address was lost"
    );

    // The link we wrote: replaced; the same address again.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&other_ns, &link).unwrap();
    let again = tool.ok(&[&web.name]);
    assert_eq!(again, ip, "the restarted container lost its address");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new(&format!("/proc/{}/ns/net", web.pid()))
    );
    assert!(web.exec(&["ip", "-o", "addr"]).status.success());
    assert!(stdout(&web.exec(&["ip", "-o", "addr"])).contains(&format!("{ip}/")));
    let probe = run(
        "nsenter",
        &["-t", &other_pid.to_string(), "-n", "ip", "-o", "link"],
    );
    assert!(
        stdout(&probe).contains("probe0"),
        "the other namespace was touched"
    );
    tool.ok(&["detach", &web.name]);
    assert_eq!(tool.lease_count(), 0);
    assert!(!netns_link_exists(&web.name));
}

/// The processes whose command line is `docker-netattach attach <name>`: an attach, or the
/// child it started to sync its lease (src/lease/durable.rs).
fn attach_processes(name: &str) -> Vec<u32> {
    let mut pids = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() >= 3 && args[1] == b"attach" && args[2] == name.as_bytes() {
            pids.push(pid);
        }
    }
    pids
}

/// A slow disk does not hold a one-shot attach: its lease is in place and complete when the command
/// returns (its output closed: a `$(…)` ends), and the child it started syncs the record afterwards
/// (SIGTERM does not stop it) and ends on its own. A failed attach waits for that child and leaves
/// no record behind.
#[test]
fn an_attach_returns_before_a_slow_disk_has_synced_its_lease_and_the_sync_ends_on_its_own() {
    need_test_hooks("slows the lease's sync with DOCKER_NETATTACH_TEST_SLOW_SYNC_MS");
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let web = Container::none("na-ft-sync");
    let slow = Duration::from_secs(3);
    let started = std::time::Instant::now();
    let o = tool
        .cmd()
        .args(["attach", &web.name])
        .env(
            "DOCKER_NETATTACH_TEST_SLOW_SYNC_MS",
            slow.as_millis().to_string(),
        )
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        status_of(&tool, &web.name).map(|(_, s)| s).as_deref(),
        Some("attached"),
        "the lease is not complete when the attach returns"
    );
    // Only where an init that goes on reaps the child and the child can close what it must not
    // hold (the tool's own test, asked here in the same namespaces and under the same seccomp
    // profile): elsewhere, e.g. in a container with a PID namespace of its own, the attach
    // waits for its syncs, as it must.
    if !docker_netattach::can_outlive() {
        assert!(took >= slow, "{took:?}: it did not wait for its syncs");
        assert!(attach_processes(&web.name).is_empty(), "a sync child left");
        tool.ok(&["detach", &web.name]);
        return;
    }
    assert!(
        took < slow / 2,
        "the attach (output closed, process ended) took {took:?}: it waited for the sync"
    );
    let child = attach_processes(&web.name);
    assert_eq!(child.len(), 1, "no sync child outlived the attach");
    // What stops a command's leftovers (a service manager, `timeout`) does not cut it short.
    ok("kill", &["-TERM", &child[0].to_string()]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        attach_processes(&web.name),
        child,
        "SIGTERM ended the sync child"
    );
    assert!(
        wait_until(Duration::from_secs(20), || attach_processes(&web.name)
            .is_empty()),
        "the sync child did not end"
    );
    tool.ok(&["detach", &web.name]);

    // A failed attach waits for the child before it removes the record.
    let started = std::time::Instant::now();
    let o = tool
        .cmd()
        .args(["attach", &web.name])
        .env("DOCKER_NETATTACH_TEST_SLOW_SYNC_MS", "1000")
        .env("DOCKER_NETATTACH_FAIL_AFTER", "configure")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(attach_processes(&web.name).is_empty(), "a sync child left");
    assert_eq!(tool.lease_count(), 0, "lease left");
    assert!(
        files_under(tool.state.path())
            .iter()
            .all(|p| !p.to_string_lossy().contains(".tmp.")),
        "a record left: {:?}",
        files_under(tool.state.path())
    );
    assert!(veths_of(&web.id).is_empty(), "veth left");
}
