//! Where a lease's host veth is, as the attach that made it saw it (`<state>/veths/<host
//! ifname>`): the container it was made for, its index, its peer's index and namespace ID, and
//! the boot and network namespace those numbers hold in. A detach proves with it that the
//! interface now under the name is the one its attach made — one SIOCGIFINDEX, which the kernel
//! answers without the RTNL lock — instead of reading the interface with an RTM_GETLINK, which
//! waits for that lock behind every other creation and deletion (50 concurrent detaches: a
//! median 8.6 ms each, docs/benchmarks.md).
//!
//! Why the proof holds ([`proves`]): the kernel numbers a namespace's interfaces cyclically and
//! does not hand an index out again within a boot until 2^31 have been used, so an interface
//! with the hint's name *and* index in the hint's namespace of the hint's boot is the interface
//! the attach created for that container. Anything else — no hint, another container, boot or
//! namespace, another index under the name (a veth deleted and made again) — and the interface
//! is read and checked in full ([`crate::owner::owns`]: a veth carrying the container's ID as
//! alias). (Only a person could defeat it, by deleting our veth and making another interface
//! under its name with `ip link add … index N` of the same number — as a person could copy our
//! alias onto a veth of theirs for the full check.)
//!
//! Not synced: worthless after a crash of the machine (a new boot). Written while the attach
//! configures the container (a rollback removes it), removed with the lease; `gc` sweeps those
//! whose lease is gone.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::model::Peer;

/// The directory of the hints, under the state directory.
pub const DIR: &str = "veths";
const VERSION: &str = "v1";

/// A boot and a network namespace: where an interface index means one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    boot: String,
    /// st_dev and st_ino of the namespace (unique while it lives; the host's lives as long as
    /// the boot).
    netns: (u64, u64),
}

impl Place {
    /// The calling thread's network namespace in this boot (None when /proc cannot tell).
    pub fn here() -> Option<Place> {
        Place::of(netns_here()?)
    }

    /// The namespace `netns` ([`netns_here`] of some thread) in this boot.
    pub fn of(netns: (u64, u64)) -> Option<Place> {
        Some(Place {
            boot: super::reboot::boot_id()?,
            netns,
        })
    }
}

/// The calling thread's network namespace: st_dev and st_ino (one `stat`).
pub fn netns_here() -> Option<(u64, u64)> {
    let meta = fs::metadata("/proc/thread-self/ns/net").ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The host veth of a lease, as its attach made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethHint {
    /// The container (or `--netns` target) ID the veth was made for.
    pub owner: String,
    pub place: Place,
    pub index: u32,
    pub peer: Peer,
}

/// Whether `hint` proves that the interface now under its name, whose index is `live` (asked
/// in `here`), is the veth its attach made for container `owner`.
pub fn proves(hint: &VethHint, owner: &str, here: Option<&Place>, live: Option<u32>) -> bool {
    hint.owner == owner && Some(&hint.place) == here && live == Some(hint.index)
}

impl VethHint {
    fn to_line(&self) -> String {
        let nsid = self.peer.nsid.map_or("-".to_string(), |n| n.to_string());
        format!(
            "{VERSION} {} {} {}:{} {} {} {nsid}\n",
            self.owner,
            self.place.boot,
            self.place.netns.0,
            self.place.netns.1,
            self.index,
            self.peer.index
        )
    }

    fn parse(text: &str) -> Option<VethHint> {
        // Whole lines only: a reader racing the writer sees a prefix at worst.
        let text = text.strip_suffix('\n')?;
        let mut f = text.split_ascii_whitespace();
        if f.next()? != VERSION {
            return None;
        }
        let owner = f.next()?.to_string();
        let boot = f.next()?.to_string();
        let (dev, ino) = f.next()?.split_once(':')?;
        let index = f.next()?.parse().ok()?;
        let peer_index = f.next()?.parse().ok()?;
        let nsid = match f.next()? {
            "-" => None,
            n => Some(n.parse().ok()?),
        };
        if f.next().is_some() {
            return None;
        }
        Some(VethHint {
            owner,
            place: Place {
                boot,
                netns: (dev.parse().ok()?, ino.parse().ok()?),
            },
            index,
            peer: Peer {
                index: peer_index,
                nsid,
            },
        })
    }
}

fn path(root: &Path, ifname: &str) -> Option<PathBuf> {
    // An interface name is a single path component (names.rs); checked again here.
    (!ifname.is_empty() && !ifname.contains('/') && !ifname.starts_with('.'))
        .then(|| root.join(DIR).join(ifname))
}

/// Writes the hint for `ifname` (a temporary file renamed over the old hint: a reader sees
/// one whole hint or none). Not synced.
pub fn write(root: &Path, ifname: &str, hint: &VethHint) -> anyhow::Result<()> {
    let Some(path) = path(root, ifname) else {
        anyhow::bail!("'{ifname}' cannot name a file");
    };
    let dir = root.join(DIR);
    super::files::ensure_private_dir(&dir)?;
    let tmp = dir.join(format!(".tmp.{ifname}.{}", std::process::id()));
    let written = crate::fsutil::create_private_file(&tmp, hint.to_line().as_bytes(), 0o600)
        .and_then(|_| fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The hint for `ifname`, if there is a readable one (a regular file, never followed through
/// a symlink nor waited on as a FIFO).
pub fn read(root: &Path, ifname: &str) -> Option<VethHint> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path(root, ifname)?)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(512).read_to_string(&mut text).ok()?;
    VethHint::parse(&text)
}

/// Removes the hint for `ifname` (none is fine).
pub fn remove(root: &Path, ifname: &str) -> anyhow::Result<()> {
    let Some(path) = path(root, ifname) else {
        return Ok(());
    };
    match fs::remove_file(&path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            anyhow::bail!("cannot remove {}: {e}", path.display())
        }
        _ => Ok(()),
    }
}

/// The interface names that have a hint.
pub fn names(root: &Path) -> std::io::Result<Vec<String>> {
    match crate::fsutil::names_in(&root.join(DIR)) {
        Ok(names) => Ok(names
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn hint(nsid: Option<i32>) -> VethHint {
        VethHint {
            owner: OWNER.into(),
            place: Place {
                boot: "0b8c4a3e-7f1d-4c55-9a51-2b6b1d3f4e5a".into(),
                netns: (4, 4026531840),
            },
            index: 4711,
            peer: Peer { index: 2, nsid },
        }
    }

    #[test]
    fn a_hint_is_written_read_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(read(root, "nax0"), None);
        for h in [hint(Some(3)), hint(None)] {
            write(root, "nax0", &h).unwrap();
            assert_eq!(read(root, "nax0"), Some(h));
        }
        assert_eq!(names(root).unwrap(), ["nax0"]);
        let mode = fs::metadata(root.join(DIR).join("nax0")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        remove(root, "nax0").unwrap();
        remove(root, "nax0").unwrap();
        assert_eq!(read(root, "nax0"), None);
        assert!(names(root).unwrap().is_empty());
    }

    #[test]
    fn anything_but_a_whole_hint_reads_as_none() {
        let whole = hint(Some(3)).to_line();
        assert_eq!(VethHint::parse(&whole), Some(hint(Some(3))));
        let mut bad = vec![
            String::new(),
            whole.replace("v1", "v2"),
            whole.replace(" 4711 ", " x "),
            whole.replace("4:4026531840", "4026531840"),
            whole.trim_end().to_string() + " extra\n",
            whole.trim_end().to_string(),
            whole.replace(&format!(" {OWNER} "), " "),
        ];
        bad.push(whole[..whole.len() / 2].to_string());
        for text in bad {
            assert_eq!(VethHint::parse(&text), None, "{text:?}");
        }
    }

    #[test]
    fn a_hint_proves_only_its_own_container_s_interface_by_index_in_its_place() {
        let h = hint(Some(3));
        let here = h.place.clone();
        assert!(proves(&h, OWNER, Some(&here), Some(4711)));
        // Another container whose veth name is the same (the name keeps 8 hex digits of the ID).
        let other = OWNER.replace("0123456789abcdef0123", "0123456799abcdef0123");
        assert!(!proves(&h, &other, Some(&here), Some(4711)));
        // Another index under the name, no interface, no place, another boot or namespace.
        assert!(!proves(&h, OWNER, Some(&here), Some(4712)));
        assert!(!proves(&h, OWNER, Some(&here), None));
        assert!(!proves(&h, OWNER, None, Some(4711)));
        let rebooted = Place {
            boot: "another boot".into(),
            ..here.clone()
        };
        assert!(!proves(&h, OWNER, Some(&rebooted), Some(4711)));
        let elsewhere = Place {
            netns: (4, 4026532000),
            ..here
        };
        assert!(!proves(&h, OWNER, Some(&elsewhere), Some(4711)));
    }

    #[test]
    fn a_symlink_or_a_fifo_is_no_hint() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "real", &hint(None)).unwrap();
        std::os::unix::fs::symlink(root.join(DIR).join("real"), root.join(DIR).join("link"))
            .unwrap();
        assert_eq!(read(root, "link"), None);
        nix::unistd::mkfifo(&root.join(DIR).join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read(root, "fifo"), None);
    }

    #[test]
    fn a_name_that_is_not_one_path_component_has_no_hint() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "../x", ".tmp", "a/b"] {
            assert!(write(dir.path(), name, &hint(None)).is_err(), "{name}");
            assert_eq!(read(dir.path(), name), None);
            remove(dir.path(), name).unwrap();
        }
    }

    #[test]
    fn here_names_this_boot_and_namespace() {
        let a = Place::here().expect("/proc tells the boot and the namespace");
        assert_eq!(a.boot.len(), 36, "{a:?}");
        assert_eq!(Some(a), Place::here());
    }
}
