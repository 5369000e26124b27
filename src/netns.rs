//! Network namespaces. Side effects: symlinks under /var/run/netns, `setns(2)` on threads this
//! module creates (never on a caller's or a tokio worker's thread).

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};

pub const NETNS_DIR: &str = "/var/run/netns";

/// Identity of a network namespace: (st_dev, st_ino) of its nsfs inode. Unlike a Pid it is
/// never reused while anything refers to the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

/// An open network namespace, with its identity and the path it was opened from (the target
/// of the /var/run/netns link).
pub struct Netns {
    file: File,
    pub id: NsId,
    pub source: PathBuf,
}

impl Netns {
    /// Opens /proc/<pid>/ns/net (through the proc root, see `procroot`). Fails with a named
    /// error when the process is gone.
    pub fn of_pid(pid: u32, owner: &str) -> Result<Self> {
        let path = proc_path(pid);
        let file = File::open(crate::procroot::host_view(&path)).map_err(|e| match e.kind() {
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
        Self::from_file(file, path)
    }

    /// Opens a namespace by name (/var/run/netns/NAME) or by path (e.g. /proc/PID/ns/net).
    pub fn open(name_or_path: &str) -> Result<Self> {
        let path = if name_or_path.contains('/') {
            PathBuf::from(name_or_path)
        } else {
            crate::plan::validate_netns_name(name_or_path)?;
            link_path(name_or_path)
        };
        let file = File::open(crate::procroot::host_view(&path)).map_err(|e| {
            anyhow!(
                "cannot open network namespace {}: {e}; create it with `ip netns add` or give a path like /proc/PID/ns/net",
                path.display()
            )
        })?;
        let ns = Self::from_file(file, path)?;
        // nsfs files all live on one device; anything else is not a namespace.
        if let Some(own) = id_of(Path::new("/proc/self/ns/net")) {
            if own.dev != ns.id.dev {
                bail!("{} is not a network namespace", ns.source.display());
            }
        }
        Ok(ns)
    }

    fn from_file(file: File, path: PathBuf) -> Result<Self> {
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        Ok(Netns {
            file,
            id: NsId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
            source: path,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The host's path of a process's namespace: what a netns link points at and a lease means.
pub fn proc_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// Identity of the namespace a path leads to, `None` when it cannot be read.
pub fn id_of(path: &Path) -> Option<NsId> {
    match probe(path) {
        Target::Live(id) => Some(id),
        _ => None,
    }
}

/// Where a netns path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// To a live namespace.
    Live(NsId),
    /// Nowhere: the process is gone or the path is missing (ENOENT, ESRCH).
    Dead,
    /// Somewhere we may not look (EACCES, ...): treated as someone else's, never as dead.
    Unknown,
}

/// Where `path` leads on the host (a /proc/<pid> path or a link to one is looked up through the
/// proc root).
pub fn probe(path: &Path) -> Target {
    match fs::metadata(crate::procroot::host_view(path)) {
        Ok(m) => Target::Live(NsId {
            dev: m.dev(),
            ino: m.ino(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            Target::Dead
        }
        Err(_) => Target::Unknown,
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
/// Replaces a stale link (dead target); refuses one that leads to another live namespace or
/// anything that is not a symlink.
pub fn ensure_link(name: &str, ns: &Netns) -> Result<LinkOutcome> {
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
        Ok(_) => match probe(&path) {
            Target::Live(id) if id == ns.id => return Ok(LinkOutcome::Existing),
            Target::Live(_) | Target::Unknown => bail!(
                "netns name '{name}' is taken: {} leads to another namespace; choose another --netns-name or remove the link",
                path.display()
            ),
            Target::Dead => {
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
        Ok(_) => match probe(&path) {
            Target::Dead => remove_path(&path).map(|_| true),
            Target::Live(id) if id == expected => remove_path(&path).map(|_| true),
            Target::Live(_) | Target::Unknown => Ok(false),
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
    match fs::create_dir(NETNS_DIR) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(NETNS_DIR)?;
            if !meta.is_dir() {
                bail!("{NETNS_DIR} is not a directory; remove it");
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(NETNS_DIR).with_context(|| format!("cannot create {NETNS_DIR}"))
        }
        Err(e) => Err(anyhow!("cannot create {NETNS_DIR}: {e}")),
    }
}

/// Where `ip netns exec <name>` finds the namespace's resolv.conf.
pub fn resolv_conf_path(name: &str) -> PathBuf {
    Path::new("/etc/netns").join(name).join("resolv.conf")
}

/// Writes /etc/netns/<name>/resolv.conf (bind-mounted over /etc/resolv.conf by `ip netns exec`).
pub fn write_resolv_conf(name: &str, servers: &[std::net::IpAddr]) -> Result<()> {
    let path = resolv_conf_path(name);
    let dir = path.parent().unwrap_or(Path::new("/etc/netns"));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
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
            std::io::Write::write_all(
                &mut f,
                format!("# written by docker-netattach\n{body}").as_bytes(),
            )
        })
        .and_then(|()| fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Removes what `write_resolv_conf` wrote (and the directory when it is empty then).
pub fn remove_resolv_conf(name: &str) -> Result<()> {
    let path = resolv_conf_path(name);
    remove_path(&path)?;
    if let Some(dir) = path.parent() {
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}

/// Runs `work` on a new thread that has entered the namespace `fd`; the thread exits when the
/// work is done, so no other code ever runs in the wrong namespace. `work` typically builds
/// its own current-thread runtime and netlink socket (a socket belongs to the namespace of the
/// thread that created it).
pub fn run_in<T, F>(fd: BorrowedFd<'_>, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let owned = fd
        .try_clone_to_owned()
        .context("cannot duplicate the namespace fd")?;
    let handle = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> Result<T> {
            setns(&owned, CloneFlags::CLONE_NEWNET).map_err(|e| {
                anyhow!("cannot enter the container's network namespace: {e} (needs CAP_SYS_ADMIN)")
            })?;
            drop(owned);
            work()
        })
        .context("cannot start the namespace thread")?;
    handle
        .join()
        .map_err(|_| anyhow!("the namespace thread panicked"))?
}
