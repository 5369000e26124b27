//! The docs cannot rot: every `sh` block of docs/how-it-works.md runs, in order, as one script
//! against the real binary, Docker and kernel; and the `ip` commands that `--dry-run --explain`
//! prints are run as they are on a real container, which must then answer.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The contents of the fenced blocks tagged `lang` in a markdown file.
fn blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(tag)) if tag.trim() == lang => current = Some(String::new()),
            (Some(block), Some(_)) => {
                out.push(std::mem::take(block));
                current = None;
            }
            (Some(block), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// A directory on PATH holding `docker-netattach`, as a user would have it.
fn bin_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("na-docs-bin"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(BIN, dir.join("docker-netattach")).unwrap();
    dir
}

#[test]
fn every_sh_block_of_how_it_works_runs() {
    if !need_docker() {
        return;
    }
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/how-it-works.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let scripts = blocks(&text, "sh");
    assert!(
        scripts.len() >= 4,
        "expected the walkthrough blocks, found {}",
        scripts.len()
    );
    let state = temp_dir();
    let bin = bin_dir();
    let n = std::process::id() % 200 + 20;
    let vars = [
        ("C", unique("na-doc")),
        ("NS", unique("na-docns")),
        ("BR", format!("nad{}", std::process::id() % 100000)),
        ("NET", unique("na-docnet")),
        ("SUBNET", format!("10.212.{n}.0/24")),
        ("GATEWAY", format!("10.212.{n}.1")),
        ("SUBNET2", format!("10.211.{n}.0/24")),
        ("SUBNET6", format!("fd00:212:{n:x}::/64")),
        ("IMAGE", image()),
    ];
    let mut script = String::from("set -euo pipefail\nset -x\n");
    script.push_str(
        "cleanup() { set +e; docker rm -f \"$C\" >/dev/null 2>&1; docker network rm \"$NET\" >/dev/null 2>&1; ip netns del \"$NS\" 2>/dev/null; ip link del \"$BR\" 2>/dev/null; rm -f \"/var/run/netns/$C\"; }\ntrap cleanup EXIT\n",
    );
    for s in &scripts {
        script.push_str(s);
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .env("PATH", path)
        .env("DOCKER_NETATTACH_STATE_DIR", state.path());
    for (k, v) in &vars {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&bin);
    assert!(
        o.status.success(),
        "docs/how-it-works.md failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    assert!(stdout(&o).contains("netattach-test ok"), "{}", stdout(&o));
}

#[test]
fn the_explained_ip_commands_attach_for_real() {
    if !need_docker() {
        return;
    }
    let _neighbour = Container::bridged("na-doc-nb");
    let web = Container::none("na-doc-ip");
    let tool = Tool::new();
    let out = tool.ok(&[
        "attach",
        &web.name,
        "--dry-run",
        "--explain",
        "--ip",
        "172.17.254.77",
    ]);
    let (_, commands) = out
        .split_once("# the same with ip(8):\n")
        .expect("explain section");
    let host_if = commands
        .split_whitespace()
        .skip_while(|w| *w != "add")
        .nth(1)
        .unwrap()
        .to_string();
    struct Undo(String, String);
    impl Drop for Undo {
        fn drop(&mut self) {
            let _ = run("ip", &["link", "del", &self.0]);
            let _ = std::fs::remove_file(format!("/var/run/netns/{}", self.1));
        }
    }
    let _undo = Undo(host_if, web.name.clone());
    let script = format!("set -euo pipefail\n{commands}");
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{script}\n{}", stderr(&o));
    let answer = first_answer("172.17.254.77", Duration::from_secs(3));
    assert!(
        answer.is_some(),
        "the explained commands did not make a reachable container"
    );
}

#[test]
fn markdown_blocks_are_found() {
    let md = "a\n```sh\necho 1\n```\n```text\nx\n```\n```sh\necho 2\necho 3\n```\n";
    assert_eq!(blocks(md, "sh"), vec!["echo 1\n", "echo 2\necho 3\n"]);
}
