//! End to end, root and Docker: the top-level Dockerfile builds offline (FROM scratch + the
//! static binary, via scripts/build-image.sh), attaches a container from inside a container, and
//! its default command serves the HTTP endpoints on port 80.

mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{
    Container, Tool, first_answer, need_docker, netns_link_exists, ok, stderr, stdout, unique,
};
use support::{docker, http, leases, test_ip, wait_until};

/// The image, built once per test binary by the script users run (`docker-netattach:latest`;
/// the static build and the image layers are cached, so later builds take seconds).
fn built() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-image.sh");
        let o = Command::new("bash")
            .arg(script)
            .output()
            .expect("run build-image.sh");
        assert!(o.status.success(), "build-image.sh failed:\n{}", stderr(&o));
        assert_eq!(stdout(&o), "docker-netattach:latest");
        stdout(&o)
    })
}

/// A container of the tool's image, removed on drop.
struct Named(String);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
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
    a.extend_from_slice(&[
        "--rm",
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
        &state_mount,
        img,
    ]);
    a.extend_from_slice(args);
    docker(&a)
}

#[test]
fn image_is_small_static_and_built_from_scratch() {
    if !need_docker() {
        return;
    }
    let img = built();
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
        r#"["/docker-netattach"] ["watch","--listen","0.0.0.0:80"]"#
    );
}

#[test]
fn attach_and_detach_from_inside_a_container() {
    if !need_docker() {
        return;
    }
    let img = built();
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
    let img = built();
    let name = unique("na-t-imgd");
    let guard = Named(name.clone());
    ok(
        "docker",
        &["run", "-d", "--name", &name, "-p", "127.0.0.1::80", img],
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
    // The published port (loopback) reaches the same server.
    let port = ok("docker", &["port", &name, "80/tcp"]);
    let published = port
        .lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .unwrap()
        .to_string();
    assert_eq!(http(&published, "GET", "/healthz").0, 200);
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
    let img = built();
    let tool = Tool::new();
    let prefix = unique("nai").replace('-', "");
    let name = unique("na-t-imgw");
    let guard = Named(name.clone());
    let state_mount = format!("{}:/var/lib/docker-netattach", tool.state.path().display());
    let port = support::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    ok(
        "docker",
        &[
            "run",
            "-d",
            "--name",
            &name,
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
            &state_mount,
            img,
            "watch",
            "--listen",
            &listen,
            "--label-prefix",
            &prefix,
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || http(&listen, "GET", "/readyz")
            .0
            == 200),
        "daemon in a container not ready: {:?}\n{}",
        http(&listen, "GET", "/readyz"),
        stderr(&docker(&["logs", &guard.0]))
    );
    let ip = test_ip();
    let c = Container::run(
        "na-t-imgl",
        &[
            "--network=none",
            "--label",
            &format!("{prefix}.network=bridge"),
            "--label",
            &format!("{prefix}.ip={ip}"),
        ],
        &[],
    );
    assert!(
        first_answer(&ip, Duration::from_secs(10)).is_some(),
        "{ip} not attached by the daemon in a container:\n{}",
        stderr(&docker(&["logs", &guard.0]))
    );
    assert_eq!(leases(&tool).len(), 1);
    drop(c);
    assert!(wait_until(Duration::from_secs(10), || leases(&tool).is_empty()));
}
