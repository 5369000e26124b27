//! The daemon under test (killed on drop, its log printed when the test failed), a bare HTTP
//! client for its endpoints, a Docker socket proxy a test can cut and restore, and polling.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Tool, unique};

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
    send(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// One GET with the given `Host` header (`None`: no Host header, HTTP/1.0); (status, body).
pub fn get_with_host(addr: &str, path: &str, host: Option<&str>) -> (u16, String) {
    let req = match host {
        Some(h) => format!("GET {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
        None => format!("GET {path} HTTP/1.0\r\n\r\n"),
    };
    send(addr, &req)
}

/// Sends one raw request and reads the answer to the end; (status, body), status 0 when the
/// connection fails.
fn send(addr: &str, req: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
    else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
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

    /// Sends `signal` and waits up to `limit` for the daemon to exit: its exit code (`None`:
    /// still running, or ended by a signal).
    pub fn stop_with(&mut self, signal: i32, limit: Duration) -> Option<i32> {
        // SAFETY: kill(2) on our own child's process ID.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
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
