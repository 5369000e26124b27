//! Helpers for the `watch`, `gc`, image and plugin tests, on top of `tests/common`:
//! a daemon guard (killed on drop, its log printed when the test failed), a bare HTTP client for
//! the endpoints, a Docker socket proxy the test can cut and restore, addresses that do not
//! collide with the other suites' top-down picks, and polling.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{BIN, Tool, unique};

/// An address for a test attachment: 172.17.240.2 .. 172.17.243.251, spread by Pid and a
/// counter. The core picks from the top of docker0 (172.17.255.x) downward and Docker from the
/// bottom, so parallel suites with their own state directories do not pick these.
pub fn test_ip() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed) % 16;
    let idx = (std::process::id() % 62) * 16 + n;
    let a = Ipv4Addr::new(172, 17, 240 + (idx / 250) as u8, (idx % 250) as u8 + 2);
    a.to_string()
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One HTTP request; returns (status, body). Connection errors give status 0.
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
    else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

/// One GET with the given `Host` header (`None`: no Host header, HTTP/1.0); (status, body).
pub fn get_with_host(addr: &str, path: &str, host: Option<&str>) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
    else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = match host {
        Some(h) => format!("GET {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
        None => format!("GET {path} HTTP/1.0\r\n\r\n"),
    };
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The daemon under test, killed on drop.
pub struct Daemon {
    child: Child,
    pub addr: String,
    pub prefix: String,
    log: PathBuf,
}

impl Daemon {
    /// `docker-netattach watch` with the tool's state directory, a unique label prefix and a
    /// free loopback port; `env` adds variables (e.g. DOCKER_HOST).
    pub fn start(tool: &Tool, env: &[(&str, &str)]) -> Daemon {
        Self::start_with_prefix(tool, &unique("nat").replace('-', ""), env)
    }

    /// The same with a given label prefix (to label containers before the daemon runs).
    pub fn start_with_prefix(tool: &Tool, prefix: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_full(tool, prefix, &[], env)
    }

    /// The same with extra `watch` arguments.
    pub fn start_args(tool: &Tool, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_full(tool, &unique("nat").replace('-', ""), args, env)
    }

    fn start_full(tool: &Tool, prefix: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let prefix = prefix.to_string();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("{prefix}.log"));
        let logf = std::fs::File::create(&log).expect("daemon log");
        // NETATTACH_DAEMON_BIN runs another build as the daemon (e.g. the static release one,
        // for latency figures); the attach/list commands of the test stay on the test build.
        let mut cmd = match std::env::var("NETATTACH_DAEMON_BIN") {
            Ok(bin) if !bin.is_empty() => {
                let mut c = Command::new(bin);
                c.env("DOCKER_NETATTACH_STATE_DIR", tool.state.path());
                c
            }
            _ => tool.cmd(),
        };
        cmd.args(["watch", "--listen", &addr, "--label-prefix", &prefix, "-v"])
            .args(args)
            .env("RUST_LOG", "docker_netattach=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the daemon");
        let d = Daemon {
            child,
            addr,
            prefix,
            log,
        };
        assert!(
            wait_until(Duration::from_secs(10), || d.get("/healthz").0 == 200),
            "daemon did not serve /healthz:\n{}",
            d.log()
        );
        d
    }

    pub fn label(&self, key: &str, value: &str) -> String {
        format!("{}.{key}={value}", self.prefix)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(&self.addr, "GET", path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Value of one sample of /metrics (`name{labels}` exactly as printed), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    pub fn wait_ready(&self, limit: Duration) -> bool {
        wait_until(limit, || self.get("/readyz").0 == 200)
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- daemon log ({}) ----\n{}",
                self.log.display(),
                self.log()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A unix-socket proxy in front of /var/run/docker.sock that the test can cut (listener closed,
/// socket removed, every open connection shut) and restore.
pub struct DockerProxy {
    pub path: PathBuf,
    state: Option<ProxyRun>,
}

struct ProxyRun {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    accept: JoinHandle<()>,
}

impl DockerProxy {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("{}.sock", unique("na-proxy")));
        let mut p = DockerProxy { path, state: None };
        p.start();
        p
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn start(&mut self) {
        assert!(self.state.is_none(), "proxy already running");
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind proxy socket");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let (s, c) = (stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(upstream) = UnixStream::connect("/var/run/docker.sock") else {
                            continue;
                        };
                        let mut list = c.lock().unwrap();
                        list.push(client.try_clone().unwrap());
                        list.push(upstream.try_clone().unwrap());
                        drop(list);
                        pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                        pipe(upstream, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.state = Some(ProxyRun {
            stop,
            conns,
            accept,
        });
    }

    /// Cuts Docker off: no new connections, every open one shut down.
    pub fn stop(&mut self) {
        if let Some(run) = self.state.take() {
            run.stop.store(true, Ordering::Relaxed);
            let _ = run.accept.join();
            for c in run.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn pipe(mut from: UnixStream, mut to: UnixStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the tool with `args` and parses its JSON stdout.
pub fn json_of(tool: &Tool, args: &[&str]) -> serde_json::Value {
    let out = tool.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// The leases of the tool's state directory as (container_name, ip, status).
pub fn leases(tool: &Tool) -> Vec<(String, String, String)> {
    let v = json_of(tool, &["list", "--json"]);
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["container_name"].as_str().unwrap().to_string(),
                r["ip"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Host interfaces whose ifalias is `container_id` (our veths of that container).
pub fn veths_of(container_id: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("ifalias"))
                .is_ok_and(|a| a.trim() == container_id)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Interfaces inside a container's namespace (via /proc/<pid>/net/dev: no tool needed inside).
pub fn ifaces_inside(pid: u32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_string()))
        .collect();
    v.sort();
    v
}

/// The tool binary path (for plugin installs and images).
pub fn bin() -> &'static Path {
    Path::new(BIN)
}

/// `docker run` argument list helper: runs a command and returns its Output.
pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

/// Docker's classic MAC for an address (`02:42:` + the four bytes), as the tool sets it.
pub fn mac_of(ip: &str) -> String {
    let a: Ipv4Addr = ip.parse().unwrap();
    let o = a.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
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
