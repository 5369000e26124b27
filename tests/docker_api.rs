//! The Docker adapter against engines we cannot run here: a Docker 29 that refuses API 1.41, an
//! engine that accepts and never answers, one that answers errors. A scripted unix-socket HTTP
//! server stands in for the engine (the real Docker 20.10 is exercised by tests/e2e.rs). The
//! "container" is this test process itself, so `--dry-run` finds a real Pid and namespace.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A fake engine: `answer(method_and_path) -> Some((status, body))`, or `None` to hang.
struct FakeEngine {
    path: PathBuf,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeEngine {
    fn start(answer: fn(&str) -> Option<(u16, String)>) -> Self {
        let path = std::env::temp_dir().join(format!("{}.sock", unique("na-fake")));
        let listener = UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let request = line.trim().to_string();
                        let mut len = 0usize;
                        loop {
                            let mut h = String::new();
                            reader.read_line(&mut h).unwrap();
                            if h.trim().is_empty() {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        reader.read_exact(&mut body).unwrap();
                        log.lock().unwrap().push(request.clone());
                        match answer(&request) {
                            Some((status, body)) => {
                                let resp = format!(
                                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                    body.len()
                                );
                                if stream.write_all(resp.as_bytes()).is_err() {
                                    return;
                                }
                            }
                            None => std::thread::sleep(Duration::from_secs(30)),
                        }
                    }
                });
            }
        });
        FakeEngine { path, seen }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The fake container's process: `unshare --net sleep 30`, in a network namespace of its own
/// (the host's would be refused, as it must be). Shared by the tests running at once; the last
/// [`NetnsChild`] to go kills it.
static CHILD: Mutex<(Option<std::process::Child>, usize)> = Mutex::new((None, 0));

struct NetnsChild;

impl NetnsChild {
    fn start() -> Self {
        let mut g = CHILD.lock().unwrap();
        if g.0.is_none() {
            let child = std::process::Command::new("unshare")
                .args(["--net", "sleep", "30"])
                .spawn()
                .expect("cannot run unshare --net sleep 30");
            let own = std::fs::read_link("/proc/self/ns/net").unwrap();
            let theirs = format!("/proc/{}/ns/net", child.id());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::fs::read_link(&theirs).ok().is_none_or(|l| l == own) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "unshare --net did not"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            g.0 = Some(child);
        }
        g.1 += 1;
        NetnsChild
    }
}

impl Drop for NetnsChild {
    fn drop(&mut self) {
        let mut g = CHILD.lock().unwrap_or_else(|e| e.into_inner());
        g.1 -= 1;
        if g.1 == 0 {
            if let Some(mut c) = g.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn container_json() -> String {
    let pid = CHILD.lock().unwrap().0.as_ref().map_or(0, |c| c.id());
    format!(
        r#"{{"Id": "fa4e0000000000000000000000000000000000000000000000000000000000aa", "Name": "/fake",
            "State": {{"Running": true, "Pid": {pid}}}, "HostConfig": {{"NetworkMode": "none"}}}}"#
    )
}

const NETWORK_JSON: &str = r#"{"Name": "bridge", "Id": "fa4e0000000000000000000000000000000000000000000000000000000000bb",
    "Driver": "bridge", "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]},
    "Options": {"com.docker.network.bridge.name": "docker0"}, "Containers": {}}"#;

fn docker29(req: &str) -> Option<(u16, String)> {
    let versioned_below_1_44 = ["/v1.41/", "/v1.42/", "/v1.43/"]
        .iter()
        .any(|v| req.contains(v));
    if versioned_below_1_44 && !req.contains("/version") {
        return Some((
            400,
            r#"{"message": "client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version"}"#.into(),
        ));
    }
    if req.contains("/version") {
        let v = r#"{"Version": "29.0.0", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}"#;
        return Some((200, v.into()));
    }
    if req.contains("/containers/fake/json") {
        return Some((200, container_json()));
    }
    if req.contains("/networks/bridge") {
        return Some((200, NETWORK_JSON.into()));
    }
    Some((404, r#"{"message": "not found"}"#.into()))
}

#[test]
fn docker_29_refusing_api_1_41_is_renegotiated_once() {
    if !need_root() || !iface_exists("docker0") && !need_docker() {
        return;
    }
    let _ns = NetnsChild::start();
    let engine = FakeEngine::start(docker29);
    let tool = Tool::new();
    let o = tool.run_env(&["fake", "--dry-run"], &[("DOCKER_HOST", &engine.host())]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("container   fake (fa4e00000000)"),
        "{}",
        stdout(&o)
    );
    // bollard 0.21 sends unversioned paths (which every engine serves at its own current
    // version), so Docker 29 is never refused; were a versioned 1.41 path refused, exactly one
    // version round trip would follow.
    let seen = engine.seen.lock().unwrap().clone();
    assert!(
        seen.iter().filter(|r| r.contains("/version")).count() <= 1,
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|r| r.contains("/containers/fake/json")),
        "{seen:?}"
    );
}

#[test]
fn docker_20_10_pays_no_version_round_trip() {
    if !need_root() || !iface_exists("docker0") && !need_docker() {
        return;
    }
    let _ns = NetnsChild::start();
    let engine = FakeEngine::start(|req| {
        if req.contains("/containers/fake/json") {
            Some((200, container_json()))
        } else if req.contains("/networks/bridge") {
            Some((200, NETWORK_JSON.into()))
        } else {
            Some((404, r#"{"message": "no"}"#.into()))
        }
    });
    let tool = Tool::new();
    let o = tool.run_env(&["fake", "--dry-run"], &[("DOCKER_HOST", &engine.host())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = engine.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(!seen.iter().any(|r| r.contains("/version")), "{seen:?}");
}

#[test]
fn an_engine_that_never_answers_times_out_with_a_clear_error() {
    if !need_root() {
        return;
    }
    let engine = FakeEngine::start(|_| None);
    let tool = Tool::new();
    let start = Instant::now();
    let o = tool.run_env(
        &["fake"],
        &[
            ("DOCKER_HOST", &engine.host()),
            ("DOCKER_NETATTACH_DOCKER_TIMEOUT", "1"),
        ],
    );
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("did not answer within the timeout"),
        "{}",
        stderr(&o)
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(tool.lease_count(), 0);
}

#[test]
fn an_engine_answering_errors_is_reported_and_nothing_is_done() {
    if !need_root() {
        return;
    }
    let engine = FakeEngine::start(|_| Some((500, r#"{"message": "boom"}"#.into())));
    let tool = Tool::new();
    let o = tool.run_env(&["fake"], &[("DOCKER_HOST", &engine.host())]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("Docker answered 500") && err.contains("boom"),
        "{err}"
    );
    assert_eq!(tool.lease_count(), 0);
    assert!(!netns_link_exists("fake"));
}

/// An engine that refuses every path the first time it is asked, with a refusal that names no
/// version (so the client must ask `GET /version`), and serves it afterwards.
fn refuses_each_path_once(req: &str) -> Option<(u16, String)> {
    static ASKED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    if req.contains("/version") {
        let v = r#"{"Version": "29.0.0", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}"#;
        return Some((200, v.into()));
    }
    let path = req.split('?').next().unwrap_or(req).to_string();
    let first = {
        let mut asked = ASKED.lock().unwrap();
        let first = !asked.contains(&path);
        asked.push(path);
        first
    };
    if first {
        return Some((
            400,
            r#"{"message": "client version 1.41 is too old"}"#.into(),
        ));
    }
    docker29(&req.replace("/v1.41/", "/"))
}

#[test]
fn a_refused_api_version_is_negotiated_once_for_both_requests() {
    if !need_root() || !iface_exists("docker0") && !need_docker() {
        return;
    }
    let _ns = NetnsChild::start();
    let engine = FakeEngine::start(refuses_each_path_once);
    let tool = Tool::new();
    let o = tool.run_env(&["fake", "--dry-run"], &[("DOCKER_HOST", &engine.host())]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("container   fake (fa4e00000000)"),
        "{}",
        stdout(&o)
    );
    // The container and the network were each refused once and asked again; the version
    // was asked once, by whichever refusal came first, and shared by the other.
    let seen = engine.seen.lock().unwrap().clone();
    let count = |what: &str| seen.iter().filter(|r| r.contains(what)).count();
    assert_eq!(count("/version"), 1, "{seen:?}");
    assert_eq!(count("/containers/fake/json"), 2, "{seen:?}");
    assert_eq!(count("/networks/bridge"), 2, "{seen:?}");
}
