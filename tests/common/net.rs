//! Host network objects: bridge ports, interfaces, netns links and named namespaces, what an
//! attachment leaves behind, and plain HTTP from the host.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Container, Tool, ok, run, stdout, unique};

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

/// The `n`th private subnet a test binary asks for, as `(seed, n)`: `seed` is derived from the
/// Pid (it spreads parallel suites), `n` counts up from 0 across every helper of the binary, so
/// subnets built as `start(seed) + n` (mod their range of `range` slots) are never the same
/// twice in one binary. Two bridges with one subnet route each other's replies away, and Docker
/// refuses a pool that overlaps another: random draws made both rare, baffling failures.
pub fn subnet_slot(range: u32) -> (u32, u32) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    assert!(
        n < range,
        "more than {range} test subnets in one test binary"
    );
    (std::process::id().wrapping_mul(2654435761), n)
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

/// An interface (a bridge, a stray veth) deleted on drop, if still there.
pub struct DelLink(pub String);

impl Drop for DelLink {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.0]);
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

/// Our host veths of a container: named `vna` + 8 characters of its ID, or with its ID as ifalias.
pub fn veths_of(container_id: &str) -> Vec<String> {
    let prefix = format!("vna{}", &container_id[..8]);
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with(&prefix)
                || std::fs::read_to_string(e.path().join("ifalias"))
                    .is_ok_and(|a| a.trim() == container_id)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// What a container's attachment could have left behind: host veth, netns link, lease file.
pub fn leftovers(c: &Container, tool: &Tool) -> Vec<String> {
    let mut found: Vec<String> = veths_of(&c.id)
        .into_iter()
        .map(|v| format!("veth {v}"))
        .collect();
    if netns_link_exists(&c.name) {
        found.push(format!("netns link {}", c.name));
    }
    for f in tool.lease_files_of(&c.id) {
        found.push(format!("lease {}", f.display()));
    }
    // The hint of its veth on the default network (src/lease/hint.rs), named like the veth.
    let net = ok("docker", &["network", "inspect", "-f", "{{.Id}}", "bridge"]);
    let veth = docker_netattach::plan::host_ifname(&c.id, net.trim(), "eth0");
    let hint = tool.state.path().join("veths").join(veth);
    if hint.exists() {
        found.push(format!("veth hint {}", hint.display()));
    }
    found
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

/// A process of our own in a network namespace of its own (`unshare --net sleep <secs>`), to
/// stand in for a container or hold a reused Pid; killed on drop. `start` returns once the
/// process is in its new namespace (until then /proc/<pid>/ns/net is the host's).
pub struct NetnsProcess(pub Child);

impl NetnsProcess {
    pub fn start(secs: u32) -> Self {
        let child = std::process::Command::new("unshare")
            .args(["--net", "sleep", &secs.to_string()])
            .spawn()
            .expect("cannot run unshare --net sleep");
        let p = NetnsProcess(child);
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let theirs = format!("/proc/{}/ns/net", p.pid());
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&theirs).ok().is_none_or(|l| l == own) {
            assert!(
                Instant::now() < deadline,
                "unshare --net (Pid {}) is not in a namespace of its own after 5 s",
                p.pid()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for NetnsProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
