//! Embeds the git commit for `watch`'s /version and /metrics (NETATTACH_GIT_COMMIT overrides it,
//! e.g. when building from a source tarball; "unknown" when neither is available).

// Cargo reads a build script's stdout; println! is its protocol.
#![allow(clippy::disallowed_macros)]

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=NETATTACH_GIT_COMMIT");
    let commit = std::env::var("NETATTACH_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NETATTACH_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves (works in worktrees too: --git-path resolves the shared parts).
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(r);
    }
    for w in watched {
        // A path that does not exist (no packed-refs yet) would make cargo rerun this script,
        // and rebuild the crate, on every build.
        if let Some(p) =
            git(&["rev-parse", "--git-path", &w]).filter(|p| std::path::Path::new(p).exists())
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
