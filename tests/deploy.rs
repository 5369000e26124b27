//! End to end, root and Docker: the deployments of deploy/ run the daemon from the image
//! `scripts/build-image.sh` builds (`docker-netattach:latest`) and attach a labelled
//! `--network none` container: Compose (docker-compose v1, a Compose-spec file), a Swarm global
//! service on a single-node swarm the test creates (the host's /proc through `--proc-root`), and
//! the systemd unit, checked by `systemd-analyze verify`. Each run uses its own label prefix,
//! state directory and listen port, so it never acts on another test's containers.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{
    Container, Tool, docker, first_answer, free_port, http, leases, need_docker, need_root, ok,
    stderr, stdout, test_ip, tool_image_id, unique, wait_until,
};

fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

/// The variables the deploy files read, for one test run: the image by ID (another run may move
/// the tag), a private state directory, a free loopback port, a unique label prefix.
struct Vars {
    image: String,
    state: String,
    listen: String,
    prefix: String,
}

impl Vars {
    fn new(tool: &Tool) -> Self {
        Vars {
            image: tool_image_id().to_string(),
            state: tool.state.path().display().to_string(),
            listen: format!("127.0.0.1:{}", free_port()),
            prefix: unique("nad").replace('-', ""),
        }
    }

    fn apply<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("DOCKER_NETATTACH_IMAGE", &self.image)
            .env("DOCKER_NETATTACH_STATE_DIR", &self.state)
            .env("DOCKER_NETATTACH_LISTEN", &self.listen)
            .env("DOCKER_NETATTACH_LABEL_PREFIX", &self.prefix)
    }

    fn ready(&self) -> bool {
        wait_until(Duration::from_secs(30), || {
            http(&self.listen, "GET", "/readyz").0 == 200
        })
    }

    /// A labelled `--network none` nginx on docker0 at a test address; whether it answers.
    fn labelled(&self, tag: &str) -> (Container, String, bool) {
        self.labelled_within(tag, Duration::from_secs(15))
    }

    /// The same, looking only briefly (for a container no daemon is watching).
    fn labelled_no_wait(&self, tag: &str) -> (Container, String, bool) {
        self.labelled_within(tag, Duration::from_millis(500))
    }

    fn labelled_within(&self, tag: &str, limit: Duration) -> (Container, String, bool) {
        let ip = test_ip();
        let c = Container::run(
            tag,
            &[
                "--network=none",
                "--label",
                &format!("{}.network=bridge", self.prefix),
                "--label",
                &format!("{}.ip={ip}", self.prefix),
            ],
            &[],
        );
        let answered = first_answer(&ip, limit);
        if let Some(t) = answered {
            eprintln!(
                "{tag}: {ip} answered {} ms after `docker run`",
                t.as_millis()
            );
        }
        (c, ip, answered.is_some())
    }
}

fn run_with(vars: &Vars, cmd: &str, args: &[&str]) -> Output {
    vars.apply(Command::new(cmd).args(args))
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// The host sees the link the daemon in a container wrote: it points at the host's
/// /proc/<pid>/ns/net, and `ip netns exec` reaches the attached interface through it.
fn host_link_works(c: &Container, ip: &str) {
    let link = Path::new("/var/run/netns").join(&c.name);
    let target = std::fs::read_link(&link).expect("netns link on the host");
    assert_eq!(target, PathBuf::from(format!("/proc/{}/ns/net", c.pid())));
    let addrs = ok("ip", &["netns", "exec", &c.name, "ip", "-4", "-o", "addr"]);
    assert!(addrs.contains(&format!("inet {ip}/")), "{addrs}");
}

/// `docker-compose down` of the test's project on drop.
struct ComposeProject<'a> {
    name: String,
    vars: &'a Vars,
}

impl ComposeProject<'_> {
    fn compose(&self, args: &[&str]) -> Output {
        let file = deploy_file("compose.yaml");
        let mut a = vec!["-p", &self.name, "-f", file.to_str().unwrap()];
        a.extend_from_slice(args);
        run_with(self.vars, "docker-compose", &a)
    }
}

impl Drop for ComposeProject<'_> {
    fn drop(&mut self) {
        let o = self.compose(&["down", "-t", "5"]);
        if !o.status.success() {
            eprintln!("docker-compose down {}: {}", self.name, stderr(&o));
        }
    }
}

fn inspect(container: &str, format: &str) -> String {
    ok("docker", &["inspect", "-f", format, container])
}

#[test]
fn compose_file_runs_the_daemon_that_attaches_labelled_containers() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let vars = Vars::new(&tool);
    let project = ComposeProject {
        name: unique("na-t-co"),
        vars: &vars,
    };
    // A Compose-spec file (no `version:`): v1 1.27+ validates it against the same spec schema
    // Compose v2 uses.
    let o = project.compose(&["config", "-q"]);
    assert!(o.status.success(), "invalid compose file: {}", stderr(&o));

    let o = project.compose(&["up", "-d"]);
    assert!(o.status.success(), "docker-compose up: {}", stderr(&o));
    let id = ok(
        "docker",
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", project.name),
        ],
    );
    assert!(!id.is_empty(), "no container of project {}", project.name);
    assert!(
        vars.ready(),
        "daemon of the compose project not ready: {:?}\n{}",
        http(&vars.listen, "GET", "/readyz"),
        stderr(&docker(&["logs", &id]))
    );

    // Exactly what it needs: three capabilities, the host's network and PID namespaces, four
    // mounts, no privileged mode.
    assert_eq!(
        inspect(
            &id,
            "{{.HostConfig.NetworkMode}} {{.HostConfig.PidMode}} {{.HostConfig.Privileged}}"
        ),
        "host host false"
    );
    let mut caps: Vec<String> =
        serde_json::from_str(&inspect(&id, "{{json .HostConfig.CapAdd}}")).unwrap();
    caps.sort();
    assert_eq!(caps, ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]);
    let mut mounts: Vec<String> = inspect(
        &id,
        "{{range .Mounts}}{{.Destination}} {{.RW}} {{.Propagation}}\n{{end}}",
    )
    .lines()
    .map(str::to_string)
    .collect();
    mounts.sort();
    assert_eq!(
        mounts,
        [
            "/etc/netns true rprivate",
            "/var/lib/docker-netattach true rprivate",
            "/var/run/docker.sock true rprivate",
            "/var/run/netns true rslave",
        ]
    );

    let (c, ip, answered) = vars.labelled("na-t-col");
    assert!(
        answered,
        "{ip} not attached by the compose daemon:\n{}",
        stderr(&docker(&["logs", &id]))
    );
    host_link_works(&c, &ip);
    assert_eq!(leases(&tool).len(), 1);

    // A container whose process runs as another user: its /proc/<pid>/ns/net needs SYS_PTRACE.
    let ip2 = test_ip();
    let other_user = Container::run(
        "na-t-cou",
        &[
            "--network=none",
            "--user",
            "1000:1000",
            "--label",
            &format!("{}.network=bridge", vars.prefix),
            "--label",
            &format!("{}.ip={ip2}", vars.prefix),
        ],
        &["sleep", "300"],
    );
    assert!(
        wait_until(Duration::from_secs(15), || {
            let o = common::run(
                "ip",
                &["netns", "exec", &other_user.name, "ip", "-4", "-o", "addr"],
            );
            stdout(&o).contains(&format!("inet {ip2}/"))
        }),
        "container running as uid 1000 not attached:\n{}",
        stderr(&docker(&["logs", &id]))
    );
    host_link_works(&other_user, &ip2);
    drop(other_user);
    assert!(wait_until(Duration::from_secs(10), || leases(&tool).len() == 1));

    // Upgrade as docs/deploy.md says: stop, replace (a new container of the image), start.
    // The attachment stays up while no daemon runs; a container started meanwhile is attached
    // by the new daemon's start-up reconcile.
    let o = project.compose(&["stop", "-t", "5"]);
    assert!(o.status.success(), "docker-compose stop: {}", stderr(&o));
    assert!(
        common::curl(&ip, Duration::from_secs(2)).is_some(),
        "{ip} lost with the daemon stopped"
    );
    let (late, late_ip, answered) = vars.labelled_no_wait("na-t-col2");
    assert!(!answered);
    let o = project.compose(&["up", "-d", "--force-recreate"]);
    assert!(
        o.status.success(),
        "docker-compose up --force-recreate: {}",
        stderr(&o)
    );
    let restarted = std::time::Instant::now();
    let t = first_answer(&late_ip, Duration::from_secs(20));
    assert!(t.is_some(), "{late_ip} not attached by the replaced daemon");
    eprintln!(
        "upgrade: a container started while the daemon was down answered {} ms after `up -d --force-recreate` returned",
        restarted.elapsed().as_millis()
    );
    assert!(
        common::curl(&ip, Duration::from_secs(2)).is_some(),
        "{ip} lost by the upgrade"
    );
    assert_eq!(leases(&tool).len(), 2);
    drop(late);

    drop(c);
    assert!(wait_until(Duration::from_secs(10), || leases(&tool).is_empty()));
}

/// The single-node swarm the test created: left (`--force`) on drop, and `docker_gwbridge`
/// (which leaving keeps) removed when the swarm created it.
struct Swarm {
    gwbridge_was_there: bool,
}

impl Swarm {
    /// `None` (with a loud SKIPPED line) when a swarm the test did not create is active: it is
    /// someone's, and the test must not deploy into it or leave it.
    fn init() -> Option<Swarm> {
        let state = ok("docker", &["info", "-f", "{{.Swarm.LocalNodeState}}"]);
        if state != "inactive" {
            eprintln!(
                "SKIPPED: this Docker engine is already part of a swarm (state '{state}') that this test did not create; it will not touch it"
            );
            return None;
        }
        let gwbridge_was_there = docker(&["network", "inspect", "docker_gwbridge"])
            .status
            .success();
        let swarm = Swarm { gwbridge_was_there };
        let o = docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--listen-addr",
            "127.0.0.1:2377",
        ]);
        assert!(o.status.success(), "docker swarm init: {}", stderr(&o));
        Some(swarm)
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let o = docker(&["swarm", "leave", "--force"]);
        if !o.status.success() {
            eprintln!("docker swarm leave --force: {}", stderr(&o));
        }
        if !self.gwbridge_was_there {
            // Its endpoints go with the swarm's tasks; give the engine a moment.
            let gone = wait_until(Duration::from_secs(10), || {
                let o = docker(&["network", "rm", "docker_gwbridge"]);
                o.status.success() || stderr(&o).contains("No such network")
            });
            if !gone {
                eprintln!("could not remove docker_gwbridge");
            }
        }
    }
}

/// `docker stack rm` on drop, waiting until its task containers are gone.
struct Stack<'a> {
    name: String,
    vars: &'a Vars,
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        let _ = docker(&["stack", "rm", &self.name]);
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        wait_until(Duration::from_secs(30), || {
            stdout(&docker(&["ps", "-aq", "--filter", &label])).is_empty()
        });
        let _ = self.vars;
    }
}

#[test]
fn swarm_global_service_attaches_labelled_containers_through_the_hosts_proc() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let vars = Vars::new(&tool);
    for dir in ["/var/run/netns", "/etc/netns"] {
        // Swarm bind mounts need their sources (docs/deploy.md says so too).
        std::fs::create_dir_all(dir).unwrap();
    }
    let Some(_swarm) = Swarm::init() else {
        return;
    };
    let stack = Stack {
        name: unique("na-t-sw"),
        vars: &vars,
    };
    let file = deploy_file("swarm.yaml");
    let o = run_with(
        &vars,
        "docker",
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            file.to_str().unwrap(),
            &stack.name,
        ],
    );
    assert!(o.status.success(), "docker stack deploy: {}", stderr(&o));
    let service = format!("{}_netattach", stack.name);
    assert_eq!(
        ok(
            "docker",
            &[
                "service",
                "inspect",
                "-f",
                "{{.Spec.Mode.Global}}",
                &service
            ]
        ),
        "{}",
        "a global service (one task per node)"
    );
    let label = format!("label=com.docker.swarm.service.name={service}");
    let mut task = String::new();
    let started = wait_until(Duration::from_secs(60), || {
        task = stdout(&docker(&["ps", "-q", "--filter", &label]));
        !task.is_empty()
    });
    assert!(
        started,
        "no task of {service}: {}",
        stdout(&docker(&["service", "ps", "--no-trunc", &service]))
    );
    assert!(
        vars.ready(),
        "daemon of the swarm service not ready: {:?}\n{}",
        http(&vars.listen, "GET", "/readyz"),
        stderr(&docker(&["logs", &task]))
    );
    // Not in the host's PID namespace (services cannot be), with the capabilities it asked for.
    assert_eq!(inspect(&task, "{{.HostConfig.PidMode}}"), "");
    let mut caps: Vec<String> =
        serde_json::from_str(&inspect(&task, "{{json .HostConfig.CapAdd}}")).unwrap();
    caps.sort();
    assert_eq!(caps, ["CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]);

    let (c, ip, answered) = vars.labelled("na-t-swl");
    assert!(
        answered,
        "{ip} not attached by the swarm service:\n{}",
        stderr(&docker(&["logs", &task]))
    );
    // An ordinary container on docker0 reaches it too.
    let neighbour = Container::bridged("na-t-swn");
    assert!(neighbour.fetches(&ip), "{ip} not reachable from docker0");
    host_link_works(&c, &ip);
    assert_eq!(leases(&tool).len(), 1);
    drop(c);
    assert!(
        wait_until(Duration::from_secs(10), || leases(&tool).is_empty()),
        "lease not released after the container's removal:\n{}",
        stderr(&docker(&["logs", &task]))
    );
}

/// The tool in a container without the host's PID namespace: with the host's /proc at
/// /host/proc and `--proc-root` (here its environment variable) it attaches and detaches, and
/// the link it leaves on the host is the host's /proc path. Without it, it says what is missing.
#[test]
fn proc_root_reaches_containers_from_another_pid_namespace() {
    if !need_docker() {
        return;
    }
    let img = tool_image_id();
    let tool = Tool::new();
    let c = Container::none("na-t-pr");
    let ip = test_ip();
    let state = format!("{}:/var/lib/docker-netattach", tool.state.path().display());
    let in_container = |env: &[&str], args: &[&str]| {
        let mut a = vec![
            "run",
            "--rm",
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "SYS_ADMIN",
            "--cap-add",
            "SYS_PTRACE",
            "--network=host",
            "-v",
            "/proc:/host/proc:ro",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            "/var/run/netns:/var/run/netns",
            "-v",
            &state,
        ];
        for e in env {
            a.extend_from_slice(&["-e", e]);
        }
        a.push(img);
        a.extend_from_slice(args);
        docker(&a)
    };
    let o = in_container(&[], &["attach", &c.name, "--ip", &ip]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--proc-root"), "{}", stderr(&o));
    assert!(leases(&tool).is_empty());

    let env = ["DOCKER_NETATTACH_PROC_ROOT=/host/proc"];
    // A pipework-style link to another live container's namespace, by its host path: the tool
    // looks through the proc root (where that Pid is not its own) and refuses the name.
    let other = Container::none("na-t-pro");
    let taken = unique("na-pr");
    let _taken_link = common::RemoveOnDrop::netns_link(&taken);
    std::os::unix::fs::symlink(
        format!("/proc/{}/ns/net", other.pid()),
        Path::new("/var/run/netns").join(&taken),
    )
    .unwrap();
    let o = in_container(
        &env,
        &["attach", &c.name, "--ip", &ip, "--netns-name", &taken],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("netns name '{taken}' is taken")),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_link(Path::new("/var/run/netns").join(&taken)).unwrap(),
        PathBuf::from(format!("/proc/{}/ns/net", other.pid()))
    );
    assert!(leases(&tool).is_empty());

    let o = in_container(&env, &["attach", &c.name, "--ip", &ip]);
    assert!(o.status.success(), "attach: {}", stderr(&o));
    assert!(
        first_answer(&ip, Duration::from_secs(5)).is_some(),
        "{ip} does not answer"
    );
    host_link_works(&c, &ip);
    let o = in_container(&env, &["list", "--json"]);
    assert!(stdout(&o).contains("\"attached\""), "{}", stdout(&o));
    let o = in_container(&env, &["detach", &c.name]);
    assert!(o.status.success(), "detach: {}", stderr(&o));
    assert!(leases(&tool).is_empty());
    assert!(!Path::new("/var/run/netns").join(&c.name).exists());
}

/// The unit file passes `systemd-analyze verify` without a warning (its ExecStart rewritten to
/// this build, which verify requires to exist), and says what the deployment promises.
#[test]
fn systemd_unit_verifies_and_keeps_to_its_directories_and_capabilities() {
    if !need_root() {
        return;
    }
    let unit = std::fs::read_to_string(deploy_file("docker-netattach.service")).unwrap();
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .flat_map(|v| v.split_whitespace().map(str::to_string))
            .collect()
    };
    assert_eq!(values("After"), ["docker.service"]);
    assert_eq!(values("Requires"), ["docker.service"]);
    assert_eq!(values("Restart"), ["always"]);
    assert_eq!(values("ProtectSystem"), ["strict"]);
    assert_eq!(
        values("ReadWritePaths"),
        ["/var/lib/docker-netattach", "/run/netns", "/etc/netns"]
    );
    assert_eq!(
        values("CapabilityBoundingSet"),
        ["CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]
    );
    assert_eq!(
        values("ExecStart"),
        ["/usr/local/bin/docker-netattach", "watch"]
    );

    let dir = common::temp_dir();
    let copy = dir.path().join("docker-netattach.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/docker-netattach", common::BIN),
    )
    .unwrap();
    let o = common::run("systemd-analyze", &["verify", copy.to_str().unwrap()]);
    assert!(o.status.success(), "systemd-analyze verify: {}", stderr(&o));
    assert_eq!(stderr(&o), "", "systemd-analyze verify warns");
    let o = common::run(
        "systemd-analyze",
        &["security", "--offline=yes", copy.to_str().unwrap()],
    );
    if let Some(line) = stdout(&o).lines().find(|l| l.contains("Overall exposure")) {
        eprintln!("systemd-analyze security: {line}");
    }
}
