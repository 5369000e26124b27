//! The command line as a user meets it, on the real binary: a subcommand word (or a typo of one)
//! is never taken for a container name, and every command exits quietly when the reader of its
//! stdout goes away (`list | head -0`). The subcommand test needs root and Docker; the rest none.

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A container with an exact (not unique) name such as `list`, removed on drop. Another test
/// run may hold the name for a moment, so creating it waits up to a minute.
fn named_none(name: &str) -> Container {
    let start = Instant::now();
    loop {
        let o = run(
            "docker",
            &["run", "-d", "--network=none", "--name", name, &image()],
        );
        if o.status.success() {
            return Container {
                name: name.to_string(),
                id: stdout(&o),
            };
        }
        let err = stderr(&o);
        assert!(
            err.contains("already in use") && start.elapsed() < Duration::from_secs(60),
            "docker run --name {name}: {err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_subcommand_word_is_never_attached() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let c = named_none("list");
    // `list --network bridge` is list's own filter now: it lists (nothing here), never attaches.
    let o = tool.run(&["list", "--network", "bridge"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(tool.lease_count(), 0, "a lease was taken for 'list'");
    let err = tool.fails(
        &["list", "--ip", &test_ip()],
        2,
        "unexpected argument '--ip'",
    );
    assert!(
        err.contains("Usage: docker-netattach list"),
        "not list's usage: {err}"
    );
    assert_eq!(tool.lease_count(), 0, "a lease was taken for 'list'");
    assert!(veths_of(&c.id).is_empty(), "'list' got a veth");
    assert!(!netns_link_exists("list"), "'list' got a netns link");
    let inside = ok("docker", &["exec", "list", "ip", "-o", "link"]);
    assert!(!inside.contains("eth0"), "'list' got an eth0: {inside}");
    // The long form still attaches a container of that name.
    let ip = test_ip();
    assert_eq!(tool.ok(&["attach", "list", "--ip", &ip]), ip);
    tool.ok(&["detach", "list"]);
    assert_eq!(tool.lease_count(), 0);
}

#[test]
fn a_near_miss_of_a_subcommand_is_a_usage_error() {
    let tool = Tool::new();
    for (typo, meant) in [("lsit", "list"), ("detahc", "detach"), ("gcc", "gc")] {
        let err = tool.fails(
            &[typo],
            2,
            &format!("error: unrecognized subcommand '{typo}' — did you mean '{meant}'?"),
        );
        assert!(
            err.contains(&format!("docker-netattach attach {typo}")),
            "the fix is not named: {err}"
        );
    }
    // Also through the Docker CLI plugin form.
    tool.fails(
        &["netattach", "lsit"],
        2,
        "unrecognized subcommand 'lsit' — did you mean 'list'?",
    );
}

#[test]
fn a_subcommand_with_bad_arguments_gets_its_own_error() {
    let tool = Tool::new();
    let err = tool.fails(
        &["gc", "--network", "x"],
        2,
        "unexpected argument '--network'",
    );
    assert!(!err.contains("no such container"), "{err}");
    assert!(err.contains("docker-netattach gc"), "not gc's usage: {err}");
    let err = tool.fails(&["-v", "ls", "--bogus"], 2, "unexpected argument '--bogus'");
    assert!(err.contains("docker-netattach list"), "{err}");
}

/// Runs the binary with stdout a pipe whose read end is already closed (`... | head -0`).
fn with_closed_stdout(tool: &Tool, args: &[&str]) -> Output {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    tool.cmd()
        .args(args)
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn every_command_exits_quietly_on_a_closed_pipe() {
    let tool = Tool::new();
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["completions", "zsh"],
        &["completions", "bash"],
        &["man"],
        &["--help"],
        &["docker-cli-plugin-metadata"],
    ] {
        let o = with_closed_stdout(&tool, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}: {err}", o.status);
        assert!(err.is_empty(), "{args:?} printed on stderr: {err}");
    }
}

#[test]
fn a_failing_command_still_reports_its_error_with_stdout_closed() {
    // Only stdout is gone: an error is still an error, on stderr, with exit 1.
    let tool = Tool::new();
    let state = tool.state.path().join("not-a-dir");
    std::fs::write(&state, "x").unwrap();
    let o = with_closed_stdout(&tool, &["--state-dir", state.to_str().unwrap(), "list"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
}

/// A directory to use as the whole PATH: `bash`, plus stub scripts (name, body).
fn bare_path(stubs: &[(String, String)]) -> tempfile::TempDir {
    let dir = temp_dir();
    std::os::unix::fs::symlink("/bin/bash", dir.path().join("bash")).unwrap();
    for (name, body) in stubs {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    dir
}

/// A stub that runs this host's `cmd`.
fn real(cmd: &str) -> (String, String) {
    let found = stdout(&run("bash", &["-c", &format!("command -v {cmd}")]));
    assert!(!found.is_empty(), "this host lacks {cmd}");
    (cmd.to_string(), format!("exec {found} \"$@\""))
}

fn install_deps(path: &tempfile::TempDir, args: &[&str]) -> Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps.sh");
    std::process::Command::new("/bin/bash")
        .arg(script)
        .args(args)
        .env("PATH", path.path())
        .output()
        .unwrap()
}

#[test]
fn install_deps_names_what_a_bare_machine_lacks() {
    // Nothing on PATH but bash: every package the tests need is named once; nothing installed.
    let path = bare_path(&[]);
    let o = install_deps(&path, &["--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let listed: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    for p in [
        "iproute2",
        "iputils-ping",
        "curl",
        "util-linux",
        "mount",
        "dpkg",
        "libc-bin",
        "coreutils",
        "gcc",
        "strace",
        "docker-compose",
        "systemd",
        "docker.io",
    ] {
        let n = listed.iter().filter(|l| *l == p).count();
        assert_eq!(n, 1, "{p} in {listed:?}");
    }
    assert!(stderr(&o).contains("rustup.rs"), "{}", stderr(&o));
}

#[test]
fn install_deps_installs_only_the_missing_packages() {
    if !need_root() {
        return;
    }
    // apt-get is a stub that records what it is asked; the other commands are this host's,
    // except those left off the PATH.
    let log = temp_dir();
    let apt_log = log.path().join("apt.log");
    let apt = (
        "apt-get".to_string(),
        format!("echo \"$*\" >> {}", apt_log.display()),
    );
    let present = [
        "ip",
        "setpriv",
        "unshare",
        "nsenter",
        "flock",
        "mount",
        "umount",
        "dpkg",
        "ldd",
        "sha256sum",
        "mktemp",
        "install",
        "cc",
        "strace",
        "docker-compose",
        "systemd-analyze",
        "dockerd",
    ];
    let mut stubs: Vec<(String, String)> = present.iter().map(|c| real(c)).collect();
    stubs.push(apt.clone());
    let o = install_deps(&bare_path(&stubs), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&apt_log).unwrap(),
        "update -q\ninstall -y -q --no-install-recommends iputils-ping curl\n",
        "{}",
        stderr(&o)
    );
    // Nothing missing: apt-get is not run at all.
    std::fs::remove_file(&apt_log).unwrap();
    stubs.extend(["ping", "curl", "docker"].map(real));
    let o = install_deps(&bare_path(&stubs), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!apt_log.exists(), "apt-get ran with nothing missing");
}
