//! The tool under test, run against a private state directory, and what it keeps there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use tempfile::TempDir;

use super::{BIN, stderr, stdout, temp_dir};

/// The tool, run against a private state directory.
pub struct Tool {
    pub state: TempDir,
}

impl Tool {
    pub fn new() -> Self {
        Tool { state: temp_dir() }
    }

    /// One tool for a whole test binary, like every command on one host shares
    /// /var/lib/docker-netattach (separate directories would be separate allocators handing out
    /// the same addresses on docker0). Tests running in parallel share its state, so a test
    /// that counts leases uses a `Tool::new()` of its own.
    pub fn shared() -> &'static Tool {
        static TOOL: OnceLock<Tool> = OnceLock::new();
        TOOL.get_or_init(Tool::new)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("DOCKER_NETATTACH_STATE_DIR", self.state.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .expect("run docker-netattach")
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd();
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().expect("run docker-netattach")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "docker-netattach {args:?} failed ({}): {}",
            o.status,
            stderr(&o)
        );
        stdout(&o)
    }

    /// Runs, asserts failure with exit code `code` and one `error: ` line containing `want`.
    pub fn fails(&self, args: &[&str], code: i32, want: &str) -> String {
        let o = self.run(args);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(code),
            "docker-netattach {args:?}: expected exit {code}, stderr: {err}"
        );
        assert!(
            err.contains(want),
            "docker-netattach {args:?}: stderr lacks {want:?}: {err}"
        );
        err
    }

    /// Every entry of `leases/<network>/`.
    pub fn lease_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for net in entries(&self.state.path().join("leases")) {
            out.extend(entries(&net));
        }
        out
    }

    /// The lease file of `ip` (`leases/<network-id>/<ip>`); panics when there is none.
    pub fn lease_file(&self, ip: &str) -> PathBuf {
        entries(&self.state.path().join("leases"))
            .into_iter()
            .map(|net| net.join(ip))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no lease file for {ip}"))
    }

    pub fn lease_count(&self) -> usize {
        self.lease_files().len()
    }

    /// The lease files that record `container_id`.
    pub fn lease_files_of(&self, container_id: &str) -> Vec<PathBuf> {
        self.lease_files()
            .into_iter()
            .filter(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains(container_id)))
            .collect()
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// Every file below `dir`, recursively (symlinks are listed, not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in entries(dir) {
        if p.is_dir() && !p.is_symlink() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Runs the tool with `args` and parses its JSON stdout.
pub fn json_of(tool: &Tool, args: &[&str]) -> serde_json::Value {
    let out = tool.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// The leases of the tool's state directory as (container_name, ip, status).
pub fn leases(tool: &Tool) -> Vec<(String, String, String)> {
    let v = json_of(tool, &["list", "--json"]);
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["container_name"].as_str().unwrap().to_string(),
                r["ip"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The (ip, status) of the lease of container `name`, if any.
pub fn status_of(tool: &Tool, name: &str) -> Option<(String, String)> {
    leases(tool)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, ip, status)| (ip, status))
}

/// Whether container `name` has a lease with status `attached`.
pub fn attached(tool: &Tool, name: &str) -> bool {
    status_of(tool, name).is_some_and(|(_, s)| s == "attached")
}
