//! Shared helpers for the tests that need root and/or Docker.
//!
//! Every resource a test creates carries a unique name (`na-t-<pid><counter>...`) and is removed
//! by a guard's `Drop`, so tests clean up even when they fail. When root or Docker is missing a
//! test prints a loud SKIPPED line; with `NETATTACH_REQUIRE_PRIVILEGED=1` (set by `.ci/run` and
//! `scripts/test`) that is a failure instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_docker-netattach");
pub const REQUIRE_ENV: &str = "NETATTACH_REQUIRE_PRIVILEGED";

pub fn image() -> String {
    std::env::var("NETATTACH_TEST_IMAGE").unwrap_or_else(|_| "netattach-test:latest".into())
}

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

fn skip_or_fail(why: &str) -> bool {
    if required() {
        panic!("{why}, and {REQUIRE_ENV}=1 says this test must run");
    }
    eprintln!("SKIPPED: {why} (set {REQUIRE_ENV}=1 to make this a failure)");
    false
}

/// True when running as root; otherwise skips (or fails under CI).
pub fn need_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        skip_or_fail("this test needs root")
    }
}

/// True when root and Docker are available and the test image is built.
pub fn need_docker() -> bool {
    if !need_root() {
        return false;
    }
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let info = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .map_err(|e| format!("docker CLI: {e}"))?;
        if !info.status.success() {
            return Err(format!(
                "Docker does not answer: {}",
                String::from_utf8_lossy(&info.stderr).trim()
            ));
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-test-image.sh");
        let built = Command::new("bash")
            .arg(script)
            .status()
            .map_err(|e| format!("build-test-image.sh: {e}"))?;
        if !built.success() {
            return Err("scripts/build-test-image.sh failed".into());
        }
        Ok(())
    });
    match ready {
        Ok(()) => true,
        Err(why) => skip_or_fail(why),
    }
}

/// A unique name for a test resource: `<prefix>-<pid><n><nanos>` (kept short for netns names).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}{}{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos & 0xfff
    )
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Runs a command that must succeed and returns its stdout.
pub fn ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed ({}): {}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// A private state directory, removed on drop.
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(unique("na-state"));
        std::fs::create_dir_all(&p).unwrap();
        StateDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tool, run against a private state directory.
pub struct Tool {
    pub state: StateDir,
}

impl Tool {
    pub fn new() -> Self {
        Tool {
            state: StateDir::new(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("DOCKER_NETATTACH_STATE_DIR", self.state.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .expect("run docker-netattach")
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd();
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().expect("run docker-netattach")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "docker-netattach {args:?} failed ({}): {}",
            o.status,
            stderr(&o)
        );
        stdout(&o)
    }

    /// Runs, asserts failure with exit code `code` and one `error: ` line containing `want`.
    pub fn fails(&self, args: &[&str], code: i32, want: &str) -> String {
        let o = self.run(args);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(code),
            "docker-netattach {args:?}: expected exit {code}, stderr: {err}"
        );
        assert!(
            err.contains(want),
            "docker-netattach {args:?}: stderr lacks {want:?}: {err}"
        );
        err
    }

    pub fn lease_count(&self) -> usize {
        let leases = self.state.path().join("leases");
        std::fs::read_dir(&leases)
            .map(|nets| {
                nets.flatten()
                    .map(|n| std::fs::read_dir(n.path()).map(|f| f.count()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// A Docker container removed (with its attachment, if any) on drop.
pub struct Container {
    pub name: String,
    pub id: String,
}

impl Container {
    /// `docker run -d --name <unique> <extra...> <image> [cmd...]`.
    pub fn run(prefix: &str, extra: &[&str], cmd: &[&str]) -> Self {
        let name = unique(prefix);
        let img = image();
        let mut args = vec!["run", "-d", "--name", name.as_str()];
        args.extend_from_slice(extra);
        args.push(&img);
        args.extend_from_slice(cmd);
        let id = ok("docker", &args);
        Container { name, id }
    }

    /// An nginx container with `--network=none`.
    pub fn none(prefix: &str) -> Self {
        Self::run(prefix, &["--network=none"], &[])
    }

    /// An ordinary container on Docker's default bridge.
    pub fn bridged(prefix: &str) -> Self {
        Self::run(prefix, &["--network=bridge"], &[])
    }

    pub fn pid(&self) -> u32 {
        ok("docker", &["inspect", "-f", "{{.State.Pid}}", &self.name])
            .parse()
            .unwrap()
    }

    pub fn docker_ip(&self) -> String {
        ok(
            "docker",
            &[
                "inspect",
                "-f",
                "{{.NetworkSettings.IPAddress}}",
                &self.name,
            ],
        )
    }

    /// `GET /` of `ip` from inside this container (busybox nc: its static wget crashes in the
    /// test image); whether the test page came back.
    pub fn fetches(&self, ip: &str) -> bool {
        let o = self.exec(&[
            "sh",
            "-c",
            &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80"),
        ]);
        stdout(&o).contains("netattach-test ok")
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["exec", self.name.as_str()];
        a.extend_from_slice(args);
        run("docker", &a)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run("docker", &["rm", "-f", &self.name]);
        let _ = std::fs::remove_file(Path::new("/var/run/netns").join(&self.name));
    }
}

/// `curl http://ip/` from the host, with a bounded time; returns the body on success.
pub fn curl(ip: &str, timeout: Duration) -> Option<String> {
    let t = format!("{:.1}", timeout.as_secs_f64());
    let o = run("curl", &["-s", "-m", &t, &format!("http://{ip}/")]);
    o.status.success().then(|| stdout(&o))
}

/// Polls `curl` until it answers or `limit` passes; returns the time to the first answer.
pub fn first_answer(ip: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if curl(ip, Duration::from_millis(500)).is_some() {
            return Some(start.elapsed());
        }
    }
    None
}

/// Host interfaces enslaved to a bridge.
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    let dir = format!("/sys/class/net/{bridge}/brif");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn iface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

pub fn netns_link_exists(name: &str) -> bool {
    std::fs::symlink_metadata(Path::new("/var/run/netns").join(name)).is_ok()
}

/// Removes a file or link on drop (a planted link, a netns link a test made, ...).
pub struct RemoveOnDrop(pub PathBuf);

impl RemoveOnDrop {
    /// /var/run/netns/<name>.
    pub fn netns_link(name: &str) -> Self {
        RemoveOnDrop(Path::new("/var/run/netns").join(name))
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A namespace made with `ip netns add`, deleted on drop.
pub struct NamedNs(pub String);

impl NamedNs {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        ok("ip", &["netns", "add", &name]);
        NamedNs(name)
    }

    /// `ip -n <ns> <args>`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.0.as_str()];
        a.extend_from_slice(args);
        ok("ip", &a)
    }
}

impl Drop for NamedNs {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.0]);
    }
}

/// A Docker network (`docker network create <args> <unique name>`), removed on drop.
pub struct Network(pub String);

impl Network {
    pub fn create(prefix: &str, args: &[&str]) -> Self {
        let name = unique(prefix);
        let mut a = vec!["network", "create"];
        a.extend_from_slice(args);
        a.push(&name);
        ok("docker", &a);
        Network(name)
    }

    /// Its Linux bridge, `br-` + 12 characters of the ID (unless named by an option).
    pub fn bridge(&self) -> String {
        let id = ok("docker", &["network", "inspect", "-f", "{{.Id}}", &self.0]);
        format!("br-{}", &id[..12])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = run("docker", &["network", "rm", &self.0]);
    }
}
