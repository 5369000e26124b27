//! Checks that we may change the host's network before touching anything.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Result, bail};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Root, or both CAP_NET_ADMIN (interfaces) and CAP_SYS_ADMIN (setns) in the effective set.
pub fn require(command: &str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if has(eff, CAP_NET_ADMIN) && has(eff, CAP_SYS_ADMIN) {
        return Ok(());
    }
    bail!(
        "{command} needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN): it changes the host's network; run it with sudo"
    )
}

/// For the read-only commands (`list`, `doctor`): an ordinary user may not read root's state
/// directory, and must not be told to take it over (chown); the fix is to run `command` as root.
/// Nothing to say when the directory is missing or is the caller's own.
pub fn may_read_state(command: &str, state_dir: &Path) -> Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    let Ok(meta) = std::fs::symlink_metadata(state_dir) else {
        return Ok(());
    };
    if euid == 0 || meta.uid() == euid {
        return Ok(());
    }
    let owner = match meta.uid() {
        0 => "root".to_string(),
        uid => format!("uid {uid}"),
    };
    bail!(
        "{command} reads the leases in {}, which belongs to {owner} (you are uid {euid}); run it as root: sudo docker-netattach {command}",
        state_dir.display()
    )
}

fn has(eff: u64, cap: u32) -> bool {
    eff & (1 << cap) != 0
}
