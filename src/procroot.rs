//! Where this process sees the host's processes: `/proc`, or the host's `/proc` bind-mounted
//! elsewhere (`--proc-root`, for a daemon in a container that cannot join the host's PID
//! namespace, such as a Swarm service). Side effects: `statfs(2)` of the root when it is set,
//! `readlink(2)` of a netns link when a path is looked up through it.
//!
//! Docker reports container Pids in the host's PID namespace, so `/proc/<pid>` must be read from
//! the host's `/proc`. The paths the tool *writes* for others stay host paths: a
//! `/var/run/netns/<name>` link points at `/proc/<pid>/ns/net`, which is what `ip netns exec` on
//! the host resolves, and leases keep no proc root (a lease written by the daemon in a Swarm task
//! means the same to the tool run on the host). Only where this process opens or compares such a
//! path does it look through the root: [`host_view`].

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Result, bail};

/// The default proc root: this process shares the host's PID namespace.
pub const DEFAULT: &str = "/proc";

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Sets the proc root for the whole process (once, before any namespace is opened). Anything
/// but `/proc` must be a mounted proc file system.
pub fn set(root: &Path) -> Result<()> {
    if root != Path::new(DEFAULT) {
        if !root.is_absolute() {
            bail!(
                "--proc-root {}: give an absolute path (where the host's /proc is mounted)",
                root.display()
            );
        }
        match nix::sys::statfs::statfs(root) {
            Ok(fs) if fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC => {}
            Ok(_) => bail!(
                "--proc-root {}: not a proc file system; mount the host's /proc there (docker run -v /proc:{}:ro)",
                root.display(),
                root.display()
            ),
            Err(e) => bail!(
                "--proc-root {}: {e}; mount the host's /proc there (docker run -v /proc:{}:ro)",
                root.display(),
                root.display()
            ),
        }
    }
    // A second call (only tests could make one) keeps the first root.
    let _ = ROOT.set(root.to_path_buf());
    Ok(())
}

/// The proc root in use.
pub fn root() -> &'static Path {
    ROOT.get().map_or(Path::new(DEFAULT), PathBuf::as_path)
}

/// Pure: a host path `/proc/<pid>/...` as seen through `root` (`<root>/<pid>/...`); any other
/// path (`/proc/self`, `/var/run/netns/x`, relative paths) unchanged.
pub fn map(root: &Path, path: &Path) -> PathBuf {
    let Ok(rest) = path.strip_prefix(DEFAULT) else {
        return path.to_path_buf();
    };
    if !path.is_absolute() || root == Path::new(DEFAULT) {
        return path.to_path_buf();
    }
    match rest.components().next() {
        Some(Component::Normal(pid)) if pid.to_str().is_some_and(is_pid) => root.join(rest),
        _ => path.to_path_buf(),
    }
}

fn is_pid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The path this process must open to reach what `path` means on the host: a `/proc/<pid>` path
/// through the proc root, and a symlink (a `/var/run/netns` link) whose target is one through
/// its mapped target. Unchanged with the default root.
pub fn host_view(path: &Path) -> PathBuf {
    let root = root();
    if root == Path::new(DEFAULT) {
        return path.to_path_buf();
    }
    let mapped = map(root, path);
    if mapped != path {
        return mapped;
    }
    match std::fs::read_link(path) {
        Ok(target) => {
            let m = map(root, &target);
            if m == target { path.to_path_buf() } else { m }
        }
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_only_pid_paths_under_proc() {
        let root = Path::new("/host/proc");
        let cases = [
            ("/proc/42/ns/net", "/host/proc/42/ns/net"),
            ("/proc/1/ns/net", "/host/proc/1/ns/net"),
            ("/proc/self/ns/net", "/proc/self/ns/net"),
            ("/proc/thread-self/ns/net", "/proc/thread-self/ns/net"),
            (
                "/proc/sys/net/ipv4/ip_forward",
                "/proc/sys/net/ipv4/ip_forward",
            ),
            ("/proc", "/proc"),
            ("/procs/42/ns/net", "/procs/42/ns/net"),
            ("/var/run/netns/web", "/var/run/netns/web"),
            ("proc/42/ns/net", "proc/42/ns/net"),
        ];
        for (input, want) in cases {
            assert_eq!(map(root, Path::new(input)), Path::new(want), "{input}");
        }
    }

    #[test]
    fn default_root_maps_nothing() {
        assert_eq!(
            map(Path::new("/proc"), Path::new("/proc/42/ns/net")),
            Path::new("/proc/42/ns/net")
        );
    }

    #[test]
    fn a_root_that_is_not_procfs_is_refused_by_name() {
        let e = set(Path::new("/tmp")).unwrap_err().to_string();
        assert!(
            e.contains("--proc-root /tmp: not a proc file system"),
            "{e}"
        );
        let e = set(Path::new("host/proc")).unwrap_err().to_string();
        assert!(e.contains("give an absolute path"), "{e}");
    }
}
