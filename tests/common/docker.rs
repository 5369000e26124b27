//! Docker objects a test creates (each removed on drop) and the images the tests run.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{ok, run, stdout, unique};

pub fn image() -> String {
    std::env::var("NETATTACH_TEST_IMAGE").unwrap_or_else(|_| "netattach-test:latest".into())
}

/// `docker <args>`, whatever its outcome.
pub fn docker(args: &[&str]) -> Output {
    run("docker", args)
}

/// A Docker container removed (with its attachment, if any) on drop.
pub struct Container {
    pub name: String,
    pub id: String,
}

impl Container {
    /// `docker run -d --name <unique> <extra...> <image> [cmd...]`. With the image's own
    /// command (nginx) it returns once nginx listens on port 80.
    pub fn run(prefix: &str, extra: &[&str], cmd: &[&str]) -> Self {
        let c = Self::make(&["run", "-d"], prefix, extra, cmd);
        if cmd.is_empty() {
            c.wait_listening(80, Duration::from_secs(10));
        }
        c
    }

    /// `docker create --name <unique> --network=none <image>`: never started yet.
    pub fn created(prefix: &str) -> Self {
        Self::make(&["create"], prefix, &["--network=none"], &[])
    }

    /// `docker create --name <unique> <extra...> <image> [cmd...]`: never started yet.
    pub fn create(prefix: &str, extra: &[&str], cmd: &[&str]) -> Self {
        Self::make(&["create"], prefix, extra, cmd)
    }

    fn make(verb: &[&str], prefix: &str, extra: &[&str], cmd: &[&str]) -> Self {
        let name = unique(prefix);
        let img = image();
        let mut args = verb.to_vec();
        args.extend_from_slice(&["--name", name.as_str()]);
        args.extend_from_slice(extra);
        args.push(&img);
        args.extend_from_slice(cmd);
        let id = ok("docker", &args);
        Container { name, id }
    }

    /// A `--network=none` container labelled for a daemon with label prefix `labels`: attach
    /// it to the bridge network at `ip`.
    pub fn labelled(prefix: &str, labels: &str, ip: &str) -> Self {
        Self::labelled_by(Self::run, prefix, labels, ip)
    }

    /// [`Container::labelled`], created only (`docker create`): never started yet.
    pub fn labelled_created(prefix: &str, labels: &str, ip: &str) -> Self {
        Self::labelled_by(Self::create, prefix, labels, ip)
    }

    fn labelled_by(
        make: fn(&str, &[&str], &[&str]) -> Self,
        prefix: &str,
        labels: &str,
        ip: &str,
    ) -> Self {
        let network = format!("{labels}.network=bridge");
        let address = format!("{labels}.ip={ip}");
        make(
            prefix,
            &["--network=none", "--label", &network, "--label", &address],
            &[],
        )
    }

    /// An nginx container with `--network=none`.
    pub fn none(prefix: &str) -> Self {
        Self::run(prefix, &["--network=none"], &[])
    }

    /// An ordinary container on Docker's default bridge.
    pub fn bridged(prefix: &str) -> Self {
        Self::run(prefix, &["--network=bridge"], &[])
    }

    /// The times (ns since the epoch) of this container's `start` events between two
    /// `docker events` bounds (`--since`/`--until`, seconds).
    pub fn start_events_ns(&self, since: &str, until: &str) -> Vec<i128> {
        let filter = format!("container={}", self.id);
        let events = ok(
            "docker",
            &[
                "events",
                "--since",
                since,
                "--until",
                until,
                "--filter",
                &filter,
                "--filter",
                "event=start",
                "--format",
                "{{.TimeNano}}",
            ],
        );
        events
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Waits until a socket in this container's network namespace listens on `port` (read
    /// from the host, in `/proc/<pid>/net/tcp{,6}`), at most `limit`; returns whether one
    /// does. `docker run -d` returns when the process is started, and nginx listens 20-30 ms
    /// later on an idle host (more under a parallel suite): a test that attached and asked at
    /// once could be refused.
    pub fn wait_listening(&self, port: u16, limit: Duration) -> bool {
        let pid = self.pid();
        if pid == 0 {
            return false;
        }
        let local = format!(":{port:04X}");
        let listens = || {
            ["tcp", "tcp6"].iter().any(|f| {
                std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
                    .unwrap_or_default()
                    .lines()
                    .skip(1)
                    .any(|l| {
                        let cols: Vec<&str> = l.split_whitespace().collect();
                        cols.len() > 3 && cols[1].ends_with(&local) && cols[3] == "0A"
                    })
            })
        };
        let start = Instant::now();
        while start.elapsed() < limit {
            if listens() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
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

/// The tool's image, built once per test binary by the script users run (the static build and
/// the image layers are cached, so later builds take seconds). Tagged for this checkout
/// (`docker-netattach:t<hash of its path>`), so parallel checkouts never test each other's image.
pub fn tool_image() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        env!("CARGO_MANIFEST_DIR").hash(&mut h);
        let tag = format!("docker-netattach:t{:012x}", h.finish() & 0xffff_ffff_ffff);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-image.sh");
        let o = Command::new("bash")
            .arg(script)
            .env("NETATTACH_IMAGE", &tag)
            .output()
            .expect("run build-image.sh");
        assert!(
            o.status.success(),
            "build-image.sh failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), tag);
        tag
    })
}

/// The ID of the image [`tool_image`] built, read right after the build: a tag other test runs
/// may move, an ID they cannot (and Swarm never tries to pull an image named by its ID).
pub fn tool_image_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let tag = tool_image();
        let o = docker(&["image", "inspect", "-f", "{{.Id}}", tag]);
        assert!(o.status.success(), "docker image inspect {tag} failed");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    })
}
