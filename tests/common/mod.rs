//! The one root of the test helpers: privilege checks, unique names and command runners here;
//! the tool under test in [`tool`], Docker objects in [`docker`], host network objects in
//! [`net`], the daemon and HTTP in [`daemon`]. Everything is re-exported, so a test file says
//! `mod common; use common::*;`. A helper lives here when two test files need it.
//!
//! Every resource a test creates carries a unique name (`na-t-<pid><counter>...`) and is removed
//! by a guard's `Drop`, so tests clean up even when they fail. When root or Docker is missing a
//! test prints a loud SKIPPED line; with `NETATTACH_REQUIRE_PRIVILEGED=1` (set by `.ci/run` and
//! `scripts/test`) that is a failure instead.
// Each test binary uses some of these helpers: the rest, and re-exports it never names, are
// not an error there.
#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod docker;
pub mod net;
pub mod tool;

pub use daemon::*;
pub use docker::*;
pub use net::*;
pub use tool::*;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_docker-netattach");
pub const REQUIRE_ENV: &str = "NETATTACH_REQUIRE_PRIVILEGED";

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

pub fn skip_or_fail(why: &str) -> bool {
    if required() {
        panic!("{why}, and {REQUIRE_ENV}=1 says this test must run");
    }
    eprintln!("SKIPPED: {why} (set {REQUIRE_ENV}=1 to make this a failure)");
    false
}

/// True when running as root; otherwise skips (or fails under CI).
pub fn need_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        skip_or_fail("this test needs root")
    }
}

/// Fails a test that drives the tool through a test hook (`what`: how, naming its variable)
/// when the build lacks them: a shipped build ignores those variables, so the test would not
/// test anything.
pub fn need_test_hooks(what: &str) {
    if !cfg!(feature = "test-hooks") {
        panic!(
            "this test {what}, which only a `--features test-hooks` build honours; run it with that feature (scripts/test does)"
        );
    }
}

/// True when root and Docker are available and the test image is built.
pub fn need_docker() -> bool {
    if !need_root() {
        return false;
    }
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let info = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .map_err(|e| format!("docker CLI: {e}"))?;
        if !info.status.success() {
            return Err(format!(
                "Docker does not answer: {}",
                String::from_utf8_lossy(&info.stderr).trim()
            ));
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-test-image.sh");
        let built = Command::new("bash")
            .arg(script)
            .status()
            .map_err(|e| format!("build-test-image.sh: {e}"))?;
        if !built.success() {
            return Err("scripts/build-test-image.sh failed".into());
        }
        Ok(())
    });
    match ready {
        Ok(()) => true,
        Err(why) => skip_or_fail(why),
    }
}

/// A unique name for a test resource: `<prefix>-<pid><n><nanos>` (kept short for netns names;
/// the nanoseconds always three hex digits, so that no two counters can run into one name:
/// unpadded, n=3 with `3a` and n=33 with `a` were both `…33a`).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}{}{:03x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos & 0xfff
    )
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Runs a command that must succeed and returns its stdout.
pub fn ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed ({}): {}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// A scratch directory (`na-state-…` under the temp dir, mode 0755 like `mkdir`), removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("na-state-")
        .tempdir()
        .expect("create a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temporary directory");
    dir
}
