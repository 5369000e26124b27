//! What an attach acts on (issue 9): the host's own namespace, files that are not network
//! namespaces, interface names the kernel would rewrite, a bridge two attaches create at once,
//! resolv.conf files we did not write. Each hostile target is refused with a named error and
//! leaves nothing behind. Needs root, not Docker.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// A short unique interface name (at most 15 bytes): `<p><pid%100000><n>`.
fn short(p: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{p}{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A private /24 in 10.200.0.0-10.239.249.0, never the same twice in this binary
/// ([`subnet_slot`]).
fn subnet24() -> (String, String) {
    let (seed, n) = subnet_slot(250);
    let prefix = format!("10.{}.{}", 200 + (seed >> 8) % 40, (seed % 250 + n) % 250);
    (format!("{prefix}.0/24"), prefix)
}

/// Host interfaces (a bridge, a stray interface) deleted on drop if present.
struct Links(Vec<String>);

impl Drop for Links {
    fn drop(&mut self) {
        for l in &self.0 {
            if iface_exists(l) {
                let _ = run("ip", &["link", "del", l]);
            }
        }
    }
}

/// Runs the tool with a deadline; kills it and fails the test when it does not return.
fn run_bounded(tool: &Tool, args: &[&str], limit: Duration) -> Output {
    let mut child = tool
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("docker-netattach {args:?} still running after {limit:?}: it blocked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn assert_refused(o: &Output, args: &[&str], want: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "docker-netattach {args:?}: expected exit 1, stderr: {err}"
    );
    assert!(
        err.contains(want),
        "docker-netattach {args:?}: stderr lacks {want:?}: {err}"
    );
}

/// Nothing of an attach is left: no interface of that name in the host, no bridge, no lease, no
/// `attach --netns target` with a fresh interface on a fresh private bridge, which must be
/// refused with `want`; the answer, the two names, and the guard that removes them.
fn refused_attach(
    tool: &Tool,
    target: &str,
    prefix: &str,
    limit: Duration,
    want: &str,
) -> (Output, String, String, Links) {
    let ifname = short(prefix);
    let bridge = short(&format!("{prefix}b"));
    let links = Links(vec![ifname.clone(), bridge.clone()]);
    let (subnet, _) = subnet24();
    let args = [
        "attach",
        "--netns",
        target,
        "--ifname",
        &ifname,
        "--bridge",
        &bridge,
        "--subnet",
        &subnet,
        "--no-default-route",
    ];
    let o = run_bounded(tool, &args, limit);
    assert_refused(&o, &args, want);
    (o, ifname, bridge, links)
}

/// netns link.
fn assert_nothing_left(tool: &Tool, ifname: &str, bridge: &str, netns_name: Option<&str>) {
    assert!(!iface_exists(ifname), "{ifname} was created in the host");
    assert!(!iface_exists(bridge), "bridge {bridge} was left behind");
    assert_eq!(tool.lease_count(), 0, "a lease was left behind");
    if let Some(n) = netns_name {
        assert!(!netns_link_exists(n), "netns link {n} was left behind");
    }
}

/// A file under /var/run/netns with the host's namespace bind-mounted on it (what
/// `ip netns attach NAME 1` makes); unmounted and removed on drop.
struct BindMount(PathBuf);

impl BindMount {
    fn of(source: &str, name: &str) -> Self {
        let path = Path::new("/var/run/netns").join(name);
        std::fs::create_dir_all("/var/run/netns").unwrap();
        std::fs::File::create(&path).unwrap();
        let m = BindMount(path);
        ok("mount", &["--bind", source, &m.0.display().to_string()]);
        m
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = run("umount", &[&self.0.display().to_string()]);
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_host_namespace_and_our_own_are_refused() {
    if !need_root() {
        return;
    }
    let tool = Tool::new();
    let mine = format!("/proc/{}/ns/net", std::process::id());
    let bound = unique("na-tg-host");
    // What `ip netns attach NAME <our pid>` makes: a bind mount of the host's namespace.
    let _bind = BindMount::of(&mine, &bound);
    let mut targets = vec![mine.as_str(), "/proc/self/ns/net", &bound];
    // PID 1's namespace, when this sandbox lets us read it.
    if std::fs::metadata("/proc/1/ns/net").is_ok() {
        targets.push("/proc/1/ns/net");
    }
    for target in targets {
        let (_, ifname, bridge, _links) = refused_attach(
            &tool,
            target,
            "nah",
            Duration::from_secs(20),
            "host's network namespace",
        );
        assert_nothing_left(&tool, &ifname, &bridge, None);
    }
    assert!(
        Path::new("/var/run/netns").join(&bound).exists(),
        "the user's namespace file was removed"
    );
}

#[test]
fn files_that_are_not_network_namespaces_are_refused_without_blocking() {
    if !need_root() {
        return;
    }
    let tool = Tool::new();
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    ok("mkfifo", &[&fifo.display().to_string()]);
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "not a namespace\n").unwrap();
    // A symlink to a real network namespace: refused, never followed.
    let ns = NamedNs::new("na-tg-ln");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(Path::new("/var/run/netns").join(&ns.0), &link).unwrap();
    let mnt_ns = format!("/proc/{}/ns/mnt", std::process::id());
    let cases = [
        (fifo.display().to_string(), "is not a network namespace"),
        (plain.display().to_string(), "is not a network namespace"),
        ("/dev/null".to_string(), "is not a network namespace"),
        (
            dir.path().display().to_string(),
            "is not a network namespace",
        ),
        (mnt_ns, "is not a network namespace"),
        (link.display().to_string(), "is a symbolic link"),
    ];
    for (target, want) in &cases {
        let (o, ifname, bridge, _links) =
            refused_attach(&tool, target, "naf", Duration::from_secs(10), want);
        assert!(
            stderr(&o).contains(target.as_str()),
            "the error does not name {target}: {}",
            stderr(&o)
        );
        assert_nothing_left(&tool, &ifname, &bridge, None);
    }
    assert!(!ns.ip(&["-o", "link"]).contains("eth0"));
}

#[test]
fn interface_names_the_kernel_would_rewrite_are_refused() {
    if !need_root() {
        return;
    }
    let tool = Tool::new();
    let ns = NamedNs::new("na-tg-if");
    for bad in ["eth%d", "e%dx", "a\tb", "eth\u{1}", "..", "a/b", "a:b"] {
        let bridge = short("naib");
        let _links = Links(vec![bridge.clone()]);
        let (subnet, _) = subnet24();
        let args = [
            "attach", "--netns", &ns.0, "--ifname", bad, "--bridge", &bridge, "--subnet", &subnet,
        ];
        let o = run_bounded(&tool, &args, Duration::from_secs(20));
        assert_refused(&o, &args, "interface name");
        assert!(!iface_exists(&bridge), "{bad:?}: bridge left behind");
        assert_eq!(tool.lease_count(), 0, "{bad:?}: lease left behind");
        let inside = ns.ip(&["-o", "link"]);
        assert!(
            !inside.contains("eth0"),
            "{bad:?} reached the kernel: {inside}"
        );
    }
    // --netns-name and --bridge go through the same validator.
    let (subnet, _) = subnet24();
    tool.fails(
        &[
            "attach", "--netns", &ns.0, "--bridge", "br%d", "--subnet", &subnet,
        ],
        1,
        "interface name 'br%d'",
    );
    assert!(!iface_exists("br0"));
    tool.fails(
        &[
            "attach",
            "--netns",
            &ns.0,
            "--netns-name",
            "a%b",
            "--bridge",
            &short("naib"),
            "--subnet",
            &subnet,
        ],
        1,
        "netns name 'a%b'",
    );
}

/// Two namespaces, a fresh bridge name and one subnet: the two attaches of one race.
struct Pair {
    a: NamedNs,
    b: NamedNs,
    bridge: String,
    subnet: String,
    prefix: String,
}

fn attach_cmd(tool: &Tool, ns: &str, p: &Pair, ip: &str, fail: bool) -> Command {
    let mut c = tool.cmd();
    c.args([
        "attach",
        "--netns",
        ns,
        "--bridge",
        &p.bridge,
        "--subnet",
        &p.subnet,
        "--ip",
        &format!("{}.{ip}", p.prefix),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if fail {
        c.env("DOCKER_NETATTACH_FAIL_AFTER", "bridge");
    }
    c
}

#[test]
fn two_attaches_creating_one_bridge_never_delete_each_others() {
    if !need_root() {
        return;
    }
    let tool = Tool::new();
    let pairs: Vec<Pair> = (0..6)
        .map(|_| {
            let (subnet, prefix) = subnet24();
            Pair {
                a: NamedNs::new("na-tg-a"),
                b: NamedNs::new("na-tg-b"),
                bridge: short("nar"),
                subnet,
                prefix,
            }
        })
        .collect();
    let _links = Links(pairs.iter().map(|p| p.bridge.clone()).collect());
    // All at once: every attach reads "no such bridge" before any creates it. In odd pairs `b`
    // fails right after its bridge step, so its rollback runs while `a` holds the bridge.
    let children: Vec<_> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let a = attach_cmd(&tool, &p.a.0, p, "10", false).spawn().unwrap();
            let b = attach_cmd(&tool, &p.b.0, p, "20", i % 2 == 1)
                .spawn()
                .unwrap();
            (a, b)
        })
        .collect();
    let results: Vec<(Output, Output)> = children
        .into_iter()
        .map(|(a, b)| (a.wait_with_output().unwrap(), b.wait_with_output().unwrap()))
        .collect();
    for (i, (p, (a, b))) in pairs.iter().zip(&results).enumerate() {
        assert!(a.status.success(), "pair {i}: a failed: {}", stderr(a));
        if i % 2 == 0 {
            assert!(b.status.success(), "pair {i}: b failed: {}", stderr(b));
        } else {
            assert!(
                stderr(b).contains("injected failure") && !stderr(b).contains("CLEANUP FAILED"),
                "pair {i}: b: {}",
                stderr(b)
            );
        }
        // The bridge, its gateway address and a's connectivity survive.
        let addrs = run("ip", &["-o", "addr", "show", "dev", &p.bridge]);
        assert!(
            stdout(&addrs).contains(&format!("{}.1/24", p.prefix)),
            "pair {i}: bridge {} or its gateway address is gone: {} {}",
            p.bridge,
            stdout(&addrs),
            stderr(&addrs)
        );
        ok("ping", &["-c1", "-W2", &format!("{}.10", p.prefix)]);
        ok(
            "ip",
            &[
                "netns",
                "exec",
                &p.a.0,
                "ping",
                "-c1",
                "-W2",
                &format!("{}.1", p.prefix),
            ],
        );
        if i % 2 == 0 {
            ok("ping", &["-c1", "-W2", &format!("{}.20", p.prefix)]);
        } else {
            assert!(
                !p.b.ip(&["-o", "link"]).contains("eth0"),
                "pair {i}: b kept eth0"
            );
        }
    }
    for (i, p) in pairs.iter().enumerate() {
        tool.ok(&["detach", &p.a.0]);
        if i % 2 == 0 {
            tool.ok(&["detach", &p.b.0]);
        }
        assert!(
            !iface_exists(&p.bridge),
            "pair {i}: our empty bridge is left"
        );
    }
    assert_eq!(tool.lease_count(), 0);
}

/// /etc/netns/<name>, removed on drop.
struct EtcNetns(PathBuf);

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_resolv_conf_we_did_not_write_is_never_overwritten_or_removed() {
    if !need_root() {
        return;
    }
    let tool = Tool::new();
    let ns = NamedNs::new("na-tg-dns");
    let etc = EtcNetns(Path::new("/etc/netns").join(&ns.0));
    std::fs::create_dir_all(&etc.0).unwrap();
    let conf = etc.0.join("resolv.conf");
    let theirs = "nameserver 192.0.2.1\n";
    std::fs::write(&conf, theirs).unwrap();
    let bridge = short("nadb");
    let _links = Links(vec![bridge.clone()]);
    let (subnet, _) = subnet24();
    let args = [
        "attach",
        "--netns",
        &ns.0,
        "--bridge",
        &bridge,
        "--subnet",
        &subnet,
        "--dns",
        "192.0.2.53",
    ];
    let err = tool.fails(&args, 1, &conf.display().to_string());
    assert!(err.contains("not written by docker-netattach"), "{err}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), theirs);
    assert!(!ns.ip(&["-o", "link"]).contains("eth0"));
    assert!(!iface_exists(&bridge));
    assert_eq!(tool.lease_count(), 0);

    // Ours, then replaced by the user: detach takes the interface away but leaves the user's
    // file, names it, and keeps the lease until the file is dealt with.
    std::fs::remove_file(&conf).unwrap();
    tool.ok(&args);
    assert!(
        std::fs::read_to_string(&conf)
            .unwrap()
            .contains("192.0.2.53")
    );
    std::fs::write(&conf, theirs).unwrap();
    tool.fails(
        &["detach", &ns.0],
        1,
        &format!("left in place {}", conf.display()),
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), theirs);
    assert!(!ns.ip(&["-o", "link"]).contains("eth0"));
    std::fs::remove_file(&conf).unwrap();
    tool.ok(&["detach", &ns.0]);
    assert_eq!(tool.lease_count(), 0);
    assert!(!etc.0.exists());
}

#[test]
fn netns_directories_and_resolv_conf_are_readable_whatever_the_umask() {
    if !need_root() {
        return;
    }
    let tool = Tool::new();
    let ns = NamedNs::new("na-tg-um");
    let name = format!("{}-l", ns.0);
    let etc = EtcNetns(Path::new("/etc/netns").join(&name));
    let _rm = RemoveOnDrop::netns_link(&name);
    let bridge = short("naub");
    let _links = Links(vec![bridge.clone()]);
    let (subnet, _) = subnet24();
    let o = Command::new("sh")
        .args(["-c", "umask 077; exec \"$0\" \"$@\"", BIN])
        .args([
            "attach",
            "--netns",
            &ns.0,
            "--netns-name",
            &name,
            "--bridge",
            &bridge,
            "--subnet",
            &subnet,
            "--dns",
            "192.0.2.53",
        ])
        .env("DOCKER_NETATTACH_STATE_DIR", tool.state.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&etc.0), 0o755, "{}", etc.0.display());
    assert_eq!(mode(&etc.0.join("resolv.conf")), 0o644);
    assert_eq!(mode(Path::new("/var/run/netns")), 0o755);
    tool.ok(&["detach", &ns.0]);
    assert!(!etc.0.exists());
}
