//! End to end, root and Docker: the top-level Dockerfile builds offline (FROM scratch + the
//! static binary, via scripts/build-image.sh), attaches a container from inside a container, and
//! its default command serves the HTTP endpoints on port 80.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    Container, Tool, docker, first_answer, http, leases, need_docker, netns_link_exists, ok,
    stderr, stdout, test_ip, tool_image, unique, wait_until,
};

/// A container of the tool's image, removed on drop.
struct Named(String);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

/// What the tool's container needs: the two capabilities, the host's PID and network
/// namespaces, Docker's socket, /var/run/netns, and `state_mount` (`DIR:/var/lib/docker-netattach`).
fn host_access(state_mount: &str) -> [&str; 12] {
    [
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "SYS_ADMIN",
        "--pid=host",
        "--network=host",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        "/var/run/netns:/var/run/netns",
        "-v",
        state_mount,
    ]
}

fn tool_in_a_container(img: &str, state: &Path, args: &[&str]) -> std::process::Output {
    tool_in_a_container_env(img, state, &[], args)
}

/// The same with `-e VAR=VALUE` for each of `env`.
fn tool_in_a_container_env(
    img: &str,
    state: &Path,
    env: &[&str],
    args: &[&str],
) -> std::process::Output {
    let state_mount = format!("{}:/var/lib/docker-netattach", state.display());
    let mut a = vec!["run"];
    for e in env {
        a.extend_from_slice(&["-e", e]);
    }
    a.push("--rm");
    a.extend_from_slice(&host_access(&state_mount));
    a.push(img);
    a.extend_from_slice(args);
    docker(&a)
}

#[test]
fn image_is_small_static_and_built_from_scratch() {
    if !need_docker() {
        return;
    }
    let img = tool_image();
    let size: u64 = ok("docker", &["image", "inspect", "-f", "{{.Size}}", img])
        .parse()
        .unwrap();
    assert!(size < 30 << 20, "image is {size} bytes");
    let layers = ok(
        "docker",
        &["image", "inspect", "-f", "{{len .RootFS.Layers}}", img],
    );
    assert_eq!(layers, "1", "FROM scratch + one COPY");
    let entry = ok(
        "docker",
        &[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Entrypoint}} {{json .Config.Cmd}}",
            img,
        ],
    );
    assert_eq!(
        entry,
        r#"["/docker-netattach"] ["watch","--listen","auto"]"#
    );
}

#[test]
fn attach_and_detach_from_inside_a_container() {
    if !need_docker() {
        return;
    }
    let img = tool_image();
    let tool = Tool::new();
    let c = Container::none("na-t-img");
    let ip = test_ip();
    // The shipped binary is built without the `test-hooks` feature: the fault-injection
    // variables do nothing (issue 9 item 7).
    let o = tool_in_a_container_env(
        img,
        tool.state.path(),
        &[
            "DOCKER_NETATTACH_FAIL_AFTER=lease",
            "DOCKER_NETATTACH_PAUSE_AFTER=lease",
        ],
        &["attach", &c.name, "--ip", &ip],
    );
    assert!(
        o.status.success(),
        "attach in a container failed: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), ip);
    assert!(
        first_answer(&ip, Duration::from_secs(5)).is_some(),
        "{ip} does not answer"
    );
    assert!(
        netns_link_exists(&c.name),
        "netns link not visible on the host"
    );
    assert_eq!(leases(&tool).len(), 1);

    let o = tool_in_a_container(img, tool.state.path(), &["detach", &c.name]);
    assert!(
        o.status.success(),
        "detach in a container failed: {}",
        stderr(&o)
    );
    assert!(leases(&tool).is_empty());
    assert!(!netns_link_exists(&c.name));
}

#[test]
fn default_command_serves_the_endpoints_on_port_80() {
    if !need_docker() {
        return;
    }
    let img = tool_image();
    let name = unique("na-t-imgd");
    let guard = Named(name.clone());
    let published = format!("127.0.0.1:{}", common::free_port());
    ok(
        "docker",
        &[
            "run",
            "-d",
            "--name",
            &name,
            "-p",
            &format!("{published}:80"),
            img,
        ],
    );
    let ip = ok(
        "docker",
        &["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &guard.0],
    );
    let addr = format!("{ip}:80");
    assert!(
        wait_until(Duration::from_secs(10), || http(&addr, "GET", "/healthz").0
            == 200),
        "no /healthz on {addr}: {}",
        stdout(&docker(&["logs", &name]))
    );
    let (status, body) = http(&addr, "GET", "/version");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // No Docker socket mounted: not ready, and it says why.
    let (status, body) = http(&addr, "GET", "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cannot reach Docker at unix:///var/run/docker.sock"),
        "{body}"
    );
    // The published port (`-p PORT:80`, here on the host's loopback) reaches the same server.
    assert_eq!(
        http(&published, "GET", "/healthz"),
        (200, "ok\n".to_string())
    );
    let (status, body) = http(&published, "GET", "/version");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");
    // Still running (it never gave up), and it stops cleanly on SIGTERM.
    assert_eq!(
        ok("docker", &["inspect", "-f", "{{.State.Running}}", &name]),
        "true"
    );
    ok("docker", &["stop", "-t", "5", &name]);
    assert_eq!(
        ok("docker", &["inspect", "-f", "{{.State.ExitCode}}", &name]),
        "0"
    );
}

#[test]
fn watch_in_a_container_attaches_labelled_containers() {
    if !need_docker() {
        return;
    }
    let img = tool_image();
    let tool = Tool::new();
    let prefix = unique("nai").replace('-', "");
    let name = unique("na-t-imgw");
    let guard = Named(name.clone());
    let state_mount = format!("{}:/var/lib/docker-netattach", tool.state.path().display());
    let port = common::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["run", "-d", "--name", &name];
    args.extend_from_slice(&host_access(&state_mount));
    args.extend_from_slice(&[img, "watch", "--listen", &listen, "--label-prefix", &prefix]);
    ok("docker", &args);
    assert!(
        wait_until(Duration::from_secs(10), || http(&listen, "GET", "/readyz")
            .0
            == 200),
        "daemon in a container not ready: {:?}\n{}",
        http(&listen, "GET", "/readyz"),
        stderr(&docker(&["logs", &guard.0]))
    );
    let ip = test_ip();
    let c = Container::labelled("na-t-imgl", &prefix, &ip);
    assert!(
        first_answer(&ip, Duration::from_secs(10)).is_some(),
        "{ip} not attached by the daemon in a container:\n{}",
        stderr(&docker(&["logs", &guard.0]))
    );
    assert_eq!(leases(&tool).len(), 1);
    drop(c);
    assert!(wait_until(Duration::from_secs(10), || leases(&tool).is_empty()));
}

/// Issue 9: the image's default command run with `--network=host` (the daemon's documented
/// flags, with and without `--pid=host`) must not listen on the host's public addresses: it
/// serves on the host's 127.0.0.1:9180 only.
#[test]
fn with_host_networking_the_default_command_listens_on_loopback_only() {
    if !need_docker() {
        return;
    }
    let img = tool_image();
    for pid_host in [false, true] {
        let name = unique("na-t-imgh");
        let guard = Named(name.clone());
        let mut args = vec!["run", "-d", "--name", &name, "--network=host"];
        if pid_host {
            args.push("--pid=host");
        }
        args.push(img);
        ok("docker", &args);
        let pid: u32 = ok("docker", &["inspect", "-f", "{{.State.Pid}}", &guard.0])
            .parse()
            .unwrap();
        let mut listening = vec![];
        let found = wait_until(Duration::from_secs(10), || {
            listening = listening_sockets(pid);
            !listening.is_empty()
        });
        let logs = stderr(&docker(&["logs", &name]));
        assert!(
            found,
            "pid-host {pid_host}: the daemon listens nowhere:\n{logs}"
        );
        assert!(
            listening.iter().all(|a| a.ip().is_loopback()),
            "pid-host {pid_host}: listens on {listening:?} with --network=host:\n{logs}"
        );
        assert_eq!(
            listening,
            ["127.0.0.1:9180".parse::<std::net::SocketAddr>().unwrap()],
            "{logs}"
        );
        assert_eq!(http("127.0.0.1:9180", "GET", "/healthz").0, 200, "{logs}");
        drop(guard);
    }
}

/// TCP sockets in LISTEN state that process `pid` holds (its fds matched against the
/// /proc/<pid>/net/tcp{,6} tables of its network namespace).
fn listening_sockets(pid: u32) -> Vec<std::net::SocketAddr> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![];
    for (table, v6) in [("tcp", false), ("tcp6", true)] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" || !inodes.iter().any(|i| i == f[9]) {
                continue;
            }
            if let Some(a) = proc_net_addr(f[1], v6) {
                out.push(a);
            }
        }
    }
    out
}

/// `0100007F:23DC` (little-endian words, as /proc/net/tcp prints them) as an address.
fn proc_net_addr(field: &str, v6: bool) -> Option<std::net::SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).map(u32::swap_bytes))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip: std::net::IpAddr = if v6 {
        let mut b = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        std::net::Ipv6Addr::from(b).into()
    } else {
        std::net::Ipv4Addr::from(*words.first()?).into()
    };
    Some(std::net::SocketAddr::new(ip, port))
}
