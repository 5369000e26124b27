//! Checks that we may change the host's network before touching anything.

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

fn has(eff: u64, cap: u32) -> bool {
    eff & (1 << cap) != 0
}
