//! Where a lease's host veth is, as the attach that made it saw it (`<state>/veths/<host
//! ifname>`): its index, its peer's index and namespace ID, and the boot and network namespace
//! those numbers hold in. A detach proves with it that the interface now under the name is the
//! one its attach made — one SIOCGIFINDEX, which the kernel answers without the RTNL lock —
//! instead of reading the interface with an RTM_GETLINK, which waits for that lock behind every
//! other creation and deletion (50 concurrent detaches: a median 8.6 ms each, docs/benchmarks.md).
//!
//! Why the proof holds: the kernel numbers a namespace's interfaces cyclically and never hands
//! an index out again within a boot until 2^31 have been used, so an interface with the hint's
//! name *and* index in the hint's namespace of the hint's boot is the interface the attach
//! created (and named with the container's ID, [`crate::owner::owns`]). Anything else — no
//! hint, another boot or namespace, another index under the name (a veth deleted and made again
//! by hand) — and the interface is read and checked in full, as without hints.
//!
//! Not synced: worthless after a crash of the machine (a new boot), written after the lease
//! is complete (so a failed attach leaves none), removed with the lease; `gc` sweeps those
//! whose lease is gone.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::model::Peer;

/// The directory of the hints, under the state directory.
pub const DIR: &str = "veths";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
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
            boot: fs::read_to_string(BOOT_ID).ok()?.trim().to_string(),
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
    pub place: Place,
    pub index: u32,
    pub peer: Peer,
}

impl VethHint {
    fn to_line(&self) -> String {
        let nsid = self.peer.nsid.map_or("-".to_string(), |n| n.to_string());
        format!(
            "{VERSION} {} {}:{} {} {} {nsid}\n",
            self.place.boot, self.place.netns.0, self.place.netns.1, self.index, self.peer.index
        )
    }

    fn parse(text: &str) -> Option<VethHint> {
        let mut f = text.split_ascii_whitespace();
        if f.next()? != VERSION {
            return None;
        }
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

/// The hint for `ifname`, if there is a readable one.
pub fn read(root: &Path, ifname: &str) -> Option<VethHint> {
    VethHint::parse(&fs::read_to_string(path(root, ifname)?).ok()?)
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

    fn hint(nsid: Option<i32>) -> VethHint {
        VethHint {
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
            whole.trim_end().to_string() + " extra",
        ];
        bad.push(whole[..whole.len() / 2].to_string());
        for text in bad {
            assert_eq!(VethHint::parse(&text), None, "{text:?}");
        }
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
