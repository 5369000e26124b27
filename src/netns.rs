//! Network namespaces: open and check them, their /var/run/netns links and resolv.conf. Side
//! effects: symlinks under /var/run/netns, files under /etc/netns. Entering a namespace is
//! [`crate::worker`]'s job.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

pub const NETNS_DIR: &str = "/var/run/netns";

pub use crate::model::NsId;

/// An open network namespace, with its identity and the path it was opened from (the target
/// of the /var/run/netns link).
#[derive(Debug)]
pub struct Netns {
    file: File,
    pub id: NsId,
    pub source: PathBuf,
}

impl Netns {
    /// Opens /proc/<pid>/ns/net (through the proc root, see `procroot`). Fails with a named
    /// error when the process is gone, and when that namespace is the host's (a Pid that
    /// resolves to PID 1's or our own namespace).
    pub fn of_pid(pid: u32, owner: &str) -> Result<Self> {
        let path = proc_path(pid);
        let file = open_ns_file(&crate::procroot::host_view(&path), true).map_err(|e| match e.kind() {
            ErrorKind::NotFound => anyhow!(
                "container '{owner}' exited (Pid {pid} is gone from {}); start it and try again (or, when Docker says it runs, this process does not see the host's processes: run it with --pid=host, or mount the host's /proc and pass --proc-root)",
                crate::procroot::root().display()
            ),
            ErrorKind::PermissionDenied => anyhow!(
                "cannot open {}: permission denied; docker-netattach needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN, and CAP_SYS_PTRACE for a container that runs as another user)",
                path.display()
            ),
            _ => anyhow!("cannot open {}: {e}", path.display()),
        })?;
        let ns = Self::checked(file, path)?;
        ns.refuse_host(&format!("container '{owner}' (Pid {pid})"))?;
        Ok(ns)
    }

    /// Opens a namespace by name (/var/run/netns/NAME) or by path (e.g. /proc/PID/ns/net).
    ///
    /// Opened without blocking (a FIFO answers at once) and without following a link: a path
    /// that is a symbolic link is refused, except the kernel's own /proc/<pid>/ns/net links and
    /// a /var/run/netns/NAME link whose text is such a path (what we write for containers).
    /// `ip netns add` names are bind mounts, which are the namespace file itself. What was
    /// opened must be a network namespace (nsfs, NS_GET_NSTYPE = CLONE_NEWNET) and not the
    /// host's.
    pub fn open(name_or_path: &str) -> Result<Self> {
        let given = if name_or_path.contains('/') {
            PathBuf::from(name_or_path)
        } else {
            crate::names::validate_netns_name(name_or_path)?;
            link_path(name_or_path)
        };
        let path = match fs::symlink_metadata(&given) {
            Ok(m) if m.file_type().is_symlink() && !is_proc_ns_link(&given) => {
                let text = fs::read_link(&given).unwrap_or_default();
                if name_or_path.contains('/') || !is_proc_ns_link(&text) {
                    bail!(
                        "{} is a symbolic link (to {}), not a network namespace file; give the namespace itself: /proc/PID/ns/net or a name from `ip netns list`",
                        given.display(),
                        text.display()
                    );
                }
                text
            }
            _ => given.clone(),
        };
        let file = open_ns_file(&crate::procroot::host_view(&path), is_proc_ns_link(&path)).map_err(|e| match e.kind() {
            ErrorKind::PermissionDenied => anyhow!(
                "cannot open network namespace {}: permission denied; another user's namespace needs root: run it with sudo",
                given.display()
            ),
            ErrorKind::NotFound => anyhow!(
                "cannot open network namespace {}: {e}; create it with `ip netns add` or give a path like /proc/PID/ns/net",
                given.display()
            ),
            _ => anyhow!("cannot open network namespace {}: {e}", given.display()),
        })?;
        let ns = Self::checked(file, path)?;
        ns.refuse_host(&format!("--netns {name_or_path}"))?;
        Ok(ns)
    }

    /// Accepts an open file only if it is a network namespace: on nsfs, and of type NET.
    fn checked(file: File, path: PathBuf) -> Result<Self> {
        let not_netns = |why: String| {
            anyhow!(
                "{} is not a network namespace ({why}); give /proc/PID/ns/net or a name from `ip netns list`",
                path.display()
            )
        };
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let on_nsfs = nix::sys::statfs::fstatfs(&file)
            .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
            .unwrap_or(false);
        if !on_nsfs {
            return Err(not_netns(format!("a {}", kind_of(&meta))));
        }
        match ns_type(&file) {
            Ok(t) if t == libc::CLONE_NEWNET => {}
            Ok(_) => return Err(not_netns("a namespace of another kind".into())),
            Err(e) => return Err(not_netns(format!("NS_GET_NSTYPE: {e}"))),
        }
        Ok(Netns {
            file,
            id: NsId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
            source: path,
        })
    }

    /// Refuses the host's namespace: the one this process works in and PID 1's (where it may
    /// be read). Attaching it would give the host itself the interface and the address.
    fn refuse_host(&self, what: &str) -> Result<()> {
        for (path, whose) in [
            ("/proc/self/ns/net", "the one docker-netattach runs in"),
            (
                "/proc/thread-self/ns/net",
                "the one docker-netattach runs in",
            ),
            ("/proc/1/ns/net", "PID 1's"),
        ] {
            if id_of(Path::new(path)) == Some(self.id) {
                bail!(
                    "{what} is the host's network namespace ({whose}, {}); docker-netattach only attaches containers and namespaces of their own: give a container or another namespace",
                    self.source.display()
                );
            }
        }
        Ok(())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Opens a namespace file read-only, never blocking (O_NONBLOCK: a FIFO does not wait for a
/// writer) and, unless `follow` (the kernel's /proc magic links), not through a symlink.
fn open_ns_file(path: &Path, follow: bool) -> std::io::Result<File> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | nofollow)
        .open(path)
}

/// The namespace type of an nsfs file (a CLONE_NEW* constant).
fn ns_type(file: &File) -> std::io::Result<libc::c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which `file` keeps open
    // for the duration of the call.
    let t = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if t < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(t)
    }
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_dir() {
        "directory"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else if t.is_socket() {
        "socket"
    } else {
        "file outside nsfs"
    }
}

/// `/proc/<pid>/ns/<kind>` (or `self`, `thread-self` for the Pid): the kernel's own links to a
/// process's namespaces. (The type is checked after opening.)
fn is_proc_ns_link(path: &Path) -> bool {
    let parts: Vec<_> = path.components().collect();
    match parts.as_slice() {
        [std::path::Component::RootDir, proc, who, ns, net] => {
            let who = who.as_os_str().to_string_lossy();
            let kind = net.as_os_str().to_string_lossy();
            proc.as_os_str() == "proc"
                && ns.as_os_str() == "ns"
                && !kind.is_empty()
                && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && (who == "self"
                    || who == "thread-self"
                    || (!who.is_empty() && who.bytes().all(|b| b.is_ascii_digit())))
        }
        _ => false,
    }
}

/// The host's path of a process's namespace: what a netns link points at and a lease means.
pub fn proc_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// Identity of the namespace a path leads to, `None` when it cannot be read.
pub fn id_of(path: &Path) -> Option<NsId> {
    match state_of(path) {
        NsState::Live(id) => Some(id),
        _ => None,
    }
}

/// Where a netns path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsState {
    /// To a live namespace.
    Live(NsId),
    /// Nowhere: the process is gone or the path is missing (ENOENT, ESRCH).
    Dead,
    /// Somewhere we may not look (EACCES, ...): treated as someone else's, never as dead.
    Unknown,
}

/// Where `path` leads on the host (a /proc/<pid> path or a link to one is looked up through the
/// proc root).
pub fn state_of(path: &Path) -> NsState {
    match fs::metadata(crate::procroot::host_view(path)) {
        Ok(m) => NsState::Live(NsId {
            dev: m.dev(),
            ino: m.ino(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            NsState::Dead
        }
        Err(_) => NsState::Unknown,
    }
}

pub fn link_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Result of making /var/run/netns/<name> point at a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    /// We created the link (undo removes it).
    Created,
    /// It already pointed at this namespace (undo leaves it).
    Existing,
}

/// Points /var/run/netns/<name> at the namespace's source (/proc/<pid>/ns/net for a
/// container) so `ip netns exec <name>` works.
/// Replaces a stale link: a dangling one, or one whose text is `ours` (what we wrote for the
/// lease being replaced: after a restart its Pid may belong to another process, so where it
/// leads proves nothing). Refuses any other link to a live namespace and anything that is not a
/// symlink (an `ip netns add` bind mount).
pub fn ensure_link(name: &str, ns: &Netns, ours: Option<&Path>) -> Result<LinkOutcome> {
    let path = link_path(name);
    let target = &ns.source;
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => bail!("cannot inspect {}: {e}", path.display()),
        Ok(meta) if !meta.file_type().is_symlink() => {
            if id_of(&path) == Some(ns.id) {
                return Ok(LinkOutcome::Existing);
            }
            bail!(
                "{} already exists and is not a netns link of this container (created by `ip netns add`?); choose another --netns-name",
                path.display()
            );
        }
        Ok(_) => match state_of(&path) {
            NsState::Live(id) if id == ns.id => return Ok(LinkOutcome::Existing),
            _ if ours.is_some_and(|t| {
                fs::read_link(&path).is_ok_and(|l| l.as_os_str() == t.as_os_str())
            }) =>
            {
                tracing::debug!(path = %path.display(), "replacing the link of the old attachment");
                remove_path(&path)?;
            }
            NsState::Live(_) | NsState::Unknown => bail!(
                "netns name '{name}' is taken: {} leads to another namespace; choose another --netns-name or remove the link",
                path.display()
            ),
            NsState::Dead => {
                tracing::debug!(path = %path.display(), "replacing stale netns link");
                remove_path(&path)?;
            }
        },
    }
    create_dir_netns()?;
    std::os::unix::fs::symlink(target, &path)
        .with_context(|| format!("cannot create netns link {}", path.display()))?;
    Ok(LinkOutcome::Created)
}

/// Removes /var/run/netns/<name> if it is a symlink that is dangling or leads to `expected`.
/// Never removes a link to another live namespace or anything that is not a symlink.
/// Returns whether something was removed.
pub fn remove_link(name: &str, expected: NsId) -> Result<bool> {
    let path = link_path(name);
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => bail!("cannot inspect {}: {e}", path.display()),
        Ok(meta) if !meta.file_type().is_symlink() => Ok(false),
        Ok(_) => match state_of(&path) {
            NsState::Dead => remove_path(&path).map(|_| true),
            NsState::Live(id) if id == expected => remove_path(&path).map(|_| true),
            NsState::Live(_) | NsState::Unknown => Ok(false),
        },
    }
}

fn remove_path(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("cannot remove {}: {e}", path.display())),
    }
}

fn create_dir_netns() -> Result<()> {
    make_dir(Path::new(NETNS_DIR))
}

/// Creates a directory 0755 whatever the umask (as iproute2 does), with its missing parents;
/// an existing directory is left as it is; anything else in its place is an error.
fn make_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot set the mode of {}", dir.display())),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(dir)?;
            if !meta.is_dir() {
                bail!("{} is not a directory; remove it", dir.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => match dir.parent() {
            Some(parent) if parent != dir => {
                make_dir(parent)?;
                make_dir(dir)
            }
            _ => Err(anyhow!("cannot create {}: {e}", dir.display())),
        },
        Err(e) => Err(anyhow!("cannot create {}: {e}", dir.display())),
    }
}

/// The first line of every resolv.conf we write: only a file that starts with it is ours to
/// replace or remove.
pub const RESOLV_HEADER: &str = "# written by docker-netattach";

/// Where `ip netns exec <name>` finds the namespace's resolv.conf.
pub fn resolv_conf_path(name: &str) -> PathBuf {
    Path::new("/etc/netns").join(name).join("resolv.conf")
}

/// Whether the file at `path` is ours: `Ok(None)` when there is none, `Ok(Some(false))` for a
/// file (or link, never followed) we did not write.
fn resolv_conf_ours(path: &Path) -> Result<Option<bool>> {
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Some(false)),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(Some(false));
    }
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::io::Read::take(file, 256)),
        &mut first,
    )
    .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(first.trim_end() == RESOLV_HEADER))
}

fn not_ours(path: &Path, doing: &str, fix: &str) -> anyhow::Error {
    anyhow!(
        "{doing} {}: it was not written by docker-netattach (its first line is not '{RESOLV_HEADER}'); {fix}",
        path.display()
    )
}

/// Writes /etc/netns/<name>/resolv.conf (bind-mounted over /etc/resolv.conf by `ip netns exec`):
/// 0644 in directories 0755 whatever the umask, and never over a file we did not write.
pub fn write_resolv_conf(name: &str, servers: &[std::net::IpAddr]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = resolv_conf_path(name);
    let dir = path.parent().unwrap_or(Path::new("/etc/netns"));
    if resolv_conf_ours(&path)? == Some(false) {
        return Err(not_ours(
            &path,
            "will not overwrite",
            "remove or rename it yourself, or leave out --dns",
        ));
    }
    make_dir(dir)?;
    let body: String = servers
        .iter()
        .map(|s| format!("nameserver {s}\n"))
        .collect();
    let tmp = dir.join(".resolv.conf.tmp");
    let _ = fs::remove_file(&tmp);
    // O_EXCL|O_NOFOLLOW: never write through a planted link; rename replaces a link itself.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| {
            f.set_permissions(fs::Permissions::from_mode(0o644))?;
            std::io::Write::write_all(&mut f, format!("{RESOLV_HEADER}\n{body}").as_bytes())
        })
        .and_then(|()| fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Removes what `write_resolv_conf` wrote (and the directory when it is empty then); a file
/// without our header is left in place and named in the error.
pub fn remove_resolv_conf(name: &str) -> Result<()> {
    let path = resolv_conf_path(name);
    match resolv_conf_ours(&path)? {
        None => {}
        Some(true) => remove_path(&path)?,
        Some(false) => {
            return Err(not_ours(
                &path,
                "left in place",
                "remove it yourself if it is stale, then detach again",
            ));
        }
    }
    if let Some(dir) = path.parent() {
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}
