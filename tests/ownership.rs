//! End to end, root and Docker: `detach` and `gc` act only on their own objects (issue 9).
//! A renamed container keeps its attachment when a new container takes its old name; unknown
//! names and networks are errors; a lease that names a foreign interface never gets it deleted;
//! outside the host's network namespace nothing is changed; a bridge's ports are counted where
//! the bridge is; the store lock is not held while Docker is asked.

mod common;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    BIN, Container, DelLink, NamedNs, RemoveOnDrop, Tool, bridge_ports, curl, iface_exists, image,
    leases, need_docker, netns_link_exists, ok, run, stderr, test_ip, unique, veths_of, wait_until,
};

/// Rewrites one field of a lease file, as someone with root might.
fn edit_lease(path: &Path, field: &str, value: &str) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v[field] = serde_json::Value::String(value.into());
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A veth pair that is not ours: host end `name` (no alias), peer in a namespace of its own.
struct ForeignVeth {
    name: String,
    _ns: NamedNs,
}

impl ForeignVeth {
    fn new() -> Self {
        let ns = NamedNs::new("na-t-fx");
        let name = unique("nf");
        assert!(name.len() <= 15, "{name}");
        ok(
            "ip",
            &[
                "link", "add", &name, "type", "veth", "peer", "name", "p0", "netns", &ns.0,
            ],
        );
        ForeignVeth { name, _ns: ns }
    }
}

impl Drop for ForeignVeth {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.name]);
    }
}

#[test]
fn detach_by_name_after_a_rename_leaves_the_renamed_container_alone() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let mut old = Container::none("na-t-ren");
    let name = old.name.clone();
    let _link = RemoveOnDrop::netns_link(&name);
    let ip = test_ip();
    assert_eq!(tool.ok(&["attach", &name, "--ip", &ip]), ip);
    let renamed = format!("{name}-old");
    ok("docker", &["rename", &name, &renamed]);
    old.name = renamed.clone();
    let id = ok(
        "docker",
        &["run", "-d", "--network", "none", "--name", &name, &image()],
    );
    let new = Container {
        name: name.clone(),
        id,
    };

    let o = tool.run(&["detach", &name]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("not attached"), "{}", stderr(&o));
    // The renamed container keeps its veth, its link, its lease, and answers.
    assert_eq!(veths_of(&old.id).len(), 1, "veth of {renamed} removed");
    assert!(netns_link_exists(&name), "netns link of {renamed} removed");
    assert_eq!(leases(&tool).len(), 1);
    assert!(curl(&ip, Duration::from_secs(3)).is_some());
    assert!(veths_of(&new.id).is_empty());

    // Its new name detaches it.
    tool.ok(&["detach", &renamed]);
    assert!(veths_of(&old.id).is_empty());
    assert!(!netns_link_exists(&name));
    assert!(leases(&tool).is_empty());
}

#[test]
fn a_name_given_to_two_removed_attached_containers_is_refused() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let mut a = Container::none("na-t-twice");
    let name = a.name.clone();
    let _link = RemoveOnDrop::netns_link(&name);
    let second = unique("na-t-ns");
    let _link2 = RemoveOnDrop::netns_link(&second);
    let (ip_a, ip_b) = (test_ip(), test_ip());
    tool.ok(&["attach", &name, "--ip", &ip_a]);
    ok("docker", &["rename", &name, &format!("{name}-old")]);
    a.name = format!("{name}-old");
    let id = ok(
        "docker",
        &["run", "-d", "--network", "none", "--name", &name, &image()],
    );
    let b = Container {
        name: name.clone(),
        id,
    };
    tool.ok(&["attach", &name, "--ip", &ip_b, "--netns-name", &second]);
    ok("docker", &["rm", "-f", &a.name, &b.name]);
    // Docker knows neither now; the leases name two containers 'name'.
    let err = tool.fails(&["detach", &name], 1, "several");
    assert!(err.contains(&a.id) && err.contains(&b.id), "{err}");
    assert_eq!(leases(&tool).len(), 2);
    // By ID each goes.
    tool.ok(&["detach", &a.id]);
    tool.ok(&["detach", &b.id]);
    assert!(leases(&tool).is_empty());
}

#[test]
fn unknown_containers_and_networks_are_errors() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let nobody = unique("na-t-nobody");
    let err = tool.fails(
        &["detach", &nobody],
        1,
        &format!("no such container '{nobody}'"),
    );
    assert!(
        err.contains("docker ps -a") && err.contains("docker-netattach list"),
        "{err}"
    );

    // A container Docker knows, not attached: nothing to do, exit 0.
    let c = Container::none("na-t-known");
    let o = tool.run(&["detach", &c.name]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("not attached"), "{}", stderr(&o));

    let ip = test_ip();
    tool.ok(&["attach", &c.name, "--ip", &ip]);
    let typo = unique("na-t-typo");
    let err = tool.fails(
        &["detach", &c.name, "--network", &typo],
        1,
        &format!("no such network '{typo}'"),
    );
    assert!(err.contains("docker network ls"), "{err}");
    assert_eq!(leases(&tool).len(), 1);
    // A network Docker knows that the container is not attached to: exit 0.
    let o = tool.run(&["detach", &c.name, "--network", "none"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("not attached"), "{}", stderr(&o));
    assert_eq!(leases(&tool).len(), 1);
    tool.ok(&["detach", &c.name, "--network", "bridge"]);
    assert!(leases(&tool).is_empty());
}

/// An attached container whose lease names a foreign veth as its host interface.
fn lease_naming_a_foreign_veth(tool: &Tool, prefix: &str) -> (Container, String, ForeignVeth) {
    let c = Container::none(prefix);
    let ip = test_ip();
    tool.ok(&["attach", &c.name, "--ip", &ip]);
    let foreign = ForeignVeth::new();
    edit_lease(&tool.lease_file(&ip), "host_ifname", &foreign.name);
    (c, ip, foreign)
}

#[test]
fn gc_never_deletes_a_foreign_interface_a_lease_names() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (c, ip, foreign) = lease_naming_a_foreign_veth(&tool, "na-t-fgc");
    ok("docker", &["rm", "-f", &c.name]);
    let out = tool.ok(&["gc"]);
    assert!(
        iface_exists(&foreign.name),
        "gc deleted {}: {out}",
        foreign.name
    );
    assert!(
        out.contains(&format!("removed lease {ip} on bridge")),
        "{out}"
    );
    assert!(!out.contains(&foreign.name), "{out}");
    assert!(leases(&tool).is_empty());
}

#[test]
fn detach_never_deletes_a_foreign_interface_a_lease_names() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (c, _, foreign) = lease_naming_a_foreign_veth(&tool, "na-t-fdt");
    tool.ok(&["detach", &c.name]);
    assert!(
        iface_exists(&foreign.name),
        "detach deleted {}",
        foreign.name
    );
    // The container's own veth (under its derived name) went all the same.
    assert!(veths_of(&c.id).is_empty());
    assert!(leases(&tool).is_empty());

    // An interface under the derived name that is not a veth is not ours either.
    let c2 = Container::none("na-t-fdb");
    let ip2 = test_ip();
    tool.ok(&["attach", &c2.name, "--ip", &ip2]);
    let veth = veths_of(&c2.id).pop().unwrap();
    ok("ip", &["link", "del", &veth]);
    ok("ip", &["link", "add", &veth, "type", "bridge"]);
    let _bridge = DelLink(veth.clone());
    ok("ip", &["link", "set", "dev", &veth, "alias", &c2.id]);
    tool.ok(&["detach", &c2.name]);
    assert!(iface_exists(&veth), "detach deleted the bridge {veth}");
}

/// The hint of a lease's host veth (`<state>/veths/<veth>`, src/lease/hint.rs): written by the
/// attach with the veth's index, used by the detach only while the interface under the name has
/// that index (else the interface is read and checked in full), removed with the lease, and
/// swept by `gc` when its lease is gone.
#[test]
fn a_veth_hint_is_used_only_while_it_names_the_interface_and_goes_with_its_lease() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let hints = tool.state.path().join("veths");
    let debug = [("RUST_LOG", "docker_netattach=debug")];
    let by_hint = "veth found through its hint";

    // Attach: the hint holds the veth's index; detach finds the veth through it.
    let c = Container::none("na-t-hint");
    tool.ok(&["attach", &c.name, "--ip", &test_ip()]);
    let veth = veths_of(&c.id).pop().expect("the container's veth");
    let index = std::fs::read_to_string(format!("/sys/class/net/{veth}/ifindex")).unwrap();
    let text = std::fs::read_to_string(hints.join(&veth)).expect("the attach wrote a hint");
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.get(1), Some(&c.id.as_str()), "{text}");
    assert_eq!(fields.get(4), Some(&index.trim()), "{text}");
    let o = tool.run_env(&["detach", &c.name], &debug);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains(by_hint), "{}", stderr(&o));
    assert!(veths_of(&c.id).is_empty());
    assert!(!hints.join(&veth).exists(), "the hint outlived its lease");

    // A hint whose index is not the interface's (a veth made again under the name): not used;
    // the interface is read in full and, being the lease's own, deleted all the same.
    tool.ok(&["attach", &c.name, "--ip", &test_ip()]);
    let wrong = text.replace(&format!(" {} ", index.trim()), " 2147483000 ");
    assert_ne!(wrong, text);
    std::fs::write(hints.join(&veth), &wrong).unwrap();
    let o = tool.run_env(&["detach", &c.name], &debug);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains(by_hint), "{}", stderr(&o));
    assert!(veths_of(&c.id).is_empty());

    // A hint whose lease is gone: swept by gc.
    std::fs::write(hints.join("nax0orphan"), &text).unwrap();
    tool.ok(&["gc"]);
    assert!(!hints.join("nax0orphan").exists(), "gc left an orphan hint");
}

/// The tool in a network namespace of its own (`unshare --net`, with `--pid --fork
/// --mount-proc` also a PID namespace whose PID 1 is the tool itself): like the image run
/// without --network=host, it cannot reach the host's namespace through PID 1's.
fn outside_host(tool: &Tool, unshare: &[&str], args: &[&str]) -> std::process::Output {
    Command::new("unshare")
        .args(unshare)
        .arg(BIN)
        .args(args)
        .env("DOCKER_NETATTACH_STATE_DIR", tool.state.path())
        .output()
        .expect("unshare")
}

#[test]
fn gc_and_detach_refuse_outside_the_host_network_namespace() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let c = Container::none("na-t-out");
    let ip = test_ip();
    tool.ok(&["attach", &c.name, "--ip", &ip]);
    // With only a network namespace of its own, the tool can still enter the host's through
    // /proc/1/ns/net where PID 1 may be inspected (then it works normally); in a sandbox that
    // hides PID 1 (as here) it is stuck outside, like `--pid=host` without SYS_PTRACE.
    let pid1_hidden = std::fs::metadata("/proc/1/ns/net").is_err();
    let mut ways = vec![vec!["--net", "--pid", "--fork", "--mount-proc"]];
    if pid1_hidden {
        ways.insert(0, vec!["--net"]);
    }
    let detach = ["detach", c.name.as_str()];
    let cases = ways
        .iter()
        .flat_map(|w| [&["gc"][..], &["gc", "--dry-run"], &detach].map(|a| (w.clone(), a)));
    for (unshare, args) in cases {
        let o = outside_host(&tool, &unshare, args);
        let args = [&unshare[..], args].concat();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("not in the host network namespace") && err.contains("--network=host"),
            "{args:?}: {err}"
        );
        assert_eq!(leases(&tool).len(), 1, "{args:?} dropped the lease");
        assert_eq!(veths_of(&c.id).len(), 1);
        assert!(netns_link_exists(&c.name));
    }
    assert!(curl(&ip, Duration::from_secs(3)).is_some());
    tool.ok(&["detach", &c.name]);
}

#[test]
fn detach_counts_bridge_ports_where_the_bridge_is() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let (a, b, elsewhere) = (
        NamedNs::new("na-t-pa"),
        NamedNs::new("na-t-pb"),
        NamedNs::new("na-t-pc"),
    );
    let bridge = unique("nb");
    let _bridge = DelLink(bridge.clone());
    let pid = std::process::id();
    let subnet = format!("10.{}.{}.0/24", 240 + pid % 10, (pid / 10) % 250);
    for ns in [&a, &b] {
        tool.ok(&[
            "attach", "--netns", &ns.0, "--bridge", &bridge, "--subnet", &subnet,
        ]);
    }
    let veth = |name: &str| {
        common::json_of(&tool, &["list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["container_name"] == name)
            .map(|r| r["host_ifname"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (veth_a, veth_b) = (veth(&a.0), veth(&b.0));
    // Run in the host's namespace, but with the /sys of a third namespace (`ip netns exec`
    // remounts it; nsenter then goes back to this test's network namespace only), as in a
    // container that entered the host's namespace: /sys/class/net/<bridge>/brif is not there.
    let host_ns = format!("--net=/proc/{}/ns/net", std::process::id());
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &elsewhere.0,
            "nsenter",
            &host_ns,
            BIN,
            "detach",
            &a.0,
        ])
        .env("DOCKER_NETATTACH_STATE_DIR", tool.state.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!iface_exists(&veth_a), "{veth_a} left behind");
    assert!(
        iface_exists(&bridge),
        "bridge {bridge} deleted under {}",
        b.0
    );
    assert_eq!(bridge_ports(&bridge), vec![veth_b.clone()]);
    assert_eq!(leases(&tool).len(), 1);
    // The last one out takes the bridge it created.
    tool.ok(&["detach", &b.0]);
    assert!(!iface_exists(&bridge));
}

/// A Docker socket that accepts connections and never answers.
struct HangingDocker {
    path: PathBuf,
    accepted: Arc<AtomicUsize>,
}

impl HangingDocker {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("{}.sock", unique("na-hang")));
        let listener = UnixListener::bind(&path).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let held: Arc<Mutex<Vec<std::os::unix::net::UnixStream>>> = Arc::default();
        let n = accepted.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                held.lock().unwrap().push(s);
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
        HangingDocker { path, accepted }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }
}

impl Drop for HangingDocker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the store lock is free right now (a non-blocking flock probe).
fn lock_is_free(tool: &Tool) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tool.state.path().join("lock"))
        .unwrap();
    Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
}

#[test]
fn detach_and_gc_do_not_hold_the_lock_while_waiting_for_docker() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let c = Container::none("na-t-lk");
    let ip = test_ip();
    tool.ok(&["attach", &c.name, "--ip", &ip]);
    let other = Container::none("na-t-lk2");
    let ip2 = test_ip();
    let nobody = unique("na-t-nobody");
    for (i, args) in [vec!["detach", nobody.as_str()], vec!["gc"]]
        .into_iter()
        .enumerate()
    {
        let docker = HangingDocker::new();
        let child = tool
            .cmd()
            .args(&args)
            .env("DOCKER_HOST", docker.host())
            .env("DOCKER_NETATTACH_DOCKER_TIMEOUT", "4")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(3), || docker
                .accepted
                .load(Ordering::SeqCst)
                > 0),
            "{args:?} never asked Docker"
        );
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            lock_is_free(&tool),
            "{args:?} holds the store lock while it waits for Docker"
        );
        if i == 0 {
            // Meanwhile another container can be attached (through the real Docker).
            assert_eq!(tool.ok(&["attach", &other.name, "--ip", &ip2]), ip2);
        }
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(leases(&tool).len(), 2, "nothing was released");
    tool.ok(&["detach", &c.name]);
    tool.ok(&["detach", &other.name]);
}

#[test]
fn a_bridge_gone_with_its_docker_network_is_not_a_refusal() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let pid = std::process::id();
    let subnet = format!("10.{}.{}.0/24", 230 + pid % 10, (pid / 10) % 250);
    let (a, b) = (Container::none("na-t-nra"), Container::none("na-t-nrb"));
    for c in [&a, &b] {
        let net = common::Network::create("na-t-nr", &["--subnet", &subnet]);
        tool.ok(&["attach", &c.name, "--network", &net.0]);
        let bridge = net.bridge();
        drop(net); // `docker network rm`: its bridge goes, the veth with it
        assert!(wait_until(Duration::from_secs(5), || !iface_exists(
            &bridge
        )));
    }
    // detach of a running container, gc of a removed one: both release the lease.
    tool.ok(&["detach", &a.name]);
    ok("docker", &["rm", "-f", &b.name]);
    let out = tool.ok(&["gc"]);
    assert!(out.contains("removed lease"), "{out}");
    assert!(leases(&tool).is_empty());
}
