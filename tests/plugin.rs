//! The Docker CLI plugin (through the real docker CLI), shell completions and man pages.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{
    BIN, Container, Network, Tool, first_answer, leases, need_docker, netns_link_exists, run,
    stderr, stdout, temp_dir, test_ip,
};

#[test]
fn plugin_metadata_is_what_the_docker_cli_reads() {
    let o = Command::new(BIN)
        .arg("docker-cli-plugin-metadata")
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["SchemaVersion"], "0.1.0");
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["Vendor"], "docker-netattach");
    assert!(
        v["ShortDescription"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    // Hidden from help, completions and man pages.
    let help = stdout(&Command::new(BIN).arg("--help").output().unwrap());
    assert!(!help.contains("docker-cli-plugin-metadata"), "{help}");
}

/// A docker CLI config directory with the plugin installed (a symlink to the built binary).
struct PluginHome(tempfile::TempDir);

impl PluginHome {
    fn new() -> Self {
        let home = temp_dir();
        let dir = home.path().join("cli-plugins");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(BIN, dir.join("docker-netattach")).unwrap();
        PluginHome(home)
    }

    fn docker(&self, tool: &Tool, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", self.0.path())
            .env("DOCKER_NETATTACH_STATE_DIR", tool.state.path())
            .output()
            .unwrap()
    }

    fn docker_env(&self, tool: &Tool, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .envs(env.iter().copied())
            .env("DOCKER_CONFIG", self.0.path())
            .env("DOCKER_NETATTACH_STATE_DIR", tool.state.path())
            .output()
            .unwrap()
    }
}

/// `docker -D netattach ls`, `docker --log-level error netattach ls`, `docker -H URL netattach`:
/// the docker CLI passes its global flags on verbatim, before the plugin's name.
#[test]
fn docker_global_flags_before_the_plugin_name() {
    if !need_docker() {
        return;
    }
    let home = PluginHome::new();
    let tool = Tool::new();
    for args in [
        &["-D", "netattach", "ls"][..],
        &["--debug", "netattach", "ls"],
        &["--log-level", "error", "netattach", "ls"],
        &["-l", "warn", "netattach", "list", "--json"],
        &[
            "--config",
            home.0.path().to_str().unwrap(),
            "netattach",
            "ls",
        ],
    ] {
        let o = home.docker(&tool, args);
        assert!(o.status.success(), "docker {args:?}: {}", stderr(&o));
    }
    // -D means debug logs on stderr, like docker's own.
    let o = home.docker(&tool, &["-D", "netattach", "ls"]);
    assert!(stderr(&o).contains("DEBUG"), "{}", stderr(&o));
    let o = home.docker(&tool, &["--log-level", "error", "netattach", "ls"]);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    // -H picks the engine: a socket that does not exist is named in the error ...
    let dir = temp_dir();
    let missing = format!("unix://{}/no.sock", dir.path().display());
    let c = Container::none("na-t-plugh");
    let o = home.docker(&tool, &["-H", &missing, "netattach", &c.name]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&missing[7..]), "{}", stderr(&o));
    assert!(leases(&tool).is_empty());
    // ... and a working one wins over a broken DOCKER_HOST.
    let sock = dir.path().join("d.sock");
    std::os::unix::fs::symlink("/var/run/docker.sock", &sock).unwrap();
    let host = format!("unix://{}", sock.display());
    let ip = test_ip();
    let o = home.docker_env(
        &tool,
        &["-H", &host, "netattach", &c.name, "--ip", &ip],
        &[("DOCKER_HOST", &missing)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), ip);
    // A docker context names its engine the same way (`--context`, `-c`).
    let broken = common::unique("na-t-ctxb");
    let working = common::unique("na-t-ctxw");
    for (ctx, h) in [(&broken, &missing), (&working, &host)] {
        let o = home.docker(
            &tool,
            &["context", "create", ctx, "--docker", &format!("host={h}")],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = home.docker(&tool, &["-c", &broken, "netattach", "doctor"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains(&missing[7..]), "{}", stdout(&o));
    let o = home.docker_env(
        &tool,
        &["--context", &working, "netattach", &c.name],
        &[("DOCKER_HOST", &missing)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), ip);
    let o = home.docker(
        &tool,
        &[&format!("--host={host}"), "netattach", "detach", &c.name],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(leases(&tool).is_empty());
}

#[test]
fn docker_netattach_through_the_real_docker_cli() {
    if !need_docker() {
        return;
    }
    let home = PluginHome::new();
    let tool = Tool::new();
    let listed = home.docker(&tool, &["--help"]);
    assert!(
        stdout(&listed).contains("netattach*") || stdout(&listed).contains("netattach "),
        "docker --help does not list the plugin: {}",
        stdout(&listed)
    );
    let help = home.docker(&tool, &["netattach", "--help"]);
    assert!(help.status.success(), "{}", stderr(&help));
    assert!(
        stdout(&help).contains("Usage: docker netattach"),
        "{}",
        stdout(&help)
    );

    let c = Container::none("na-t-plug");
    let ip = test_ip();
    let o = home.docker(&tool, &["netattach", &c.name, "--ip", &ip]);
    assert!(
        o.status.success(),
        "docker netattach failed: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), ip);
    assert!(
        first_answer(&ip, Duration::from_secs(5)).is_some(),
        "{ip} does not answer"
    );
    let listed = home.docker(&tool, &["netattach", "ls"]);
    assert!(stdout(&listed).contains(&c.name), "{}", stdout(&listed));

    let o = home.docker(&tool, &["netattach", "detach", &c.name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(leases(&tool).is_empty());
    assert!(!netns_link_exists(&c.name));

    // Errors keep the tool's exit codes and messages.
    let o = home.docker(&tool, &["netattach", "na-t-no-such-container-xyz"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no such container 'na-t-no-such-container-xyz'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("docker-netattach"), "{shell}");
        for sub in ["attach", "detach", "watch", "gc"] {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(!text.contains("docker-cli-plugin-metadata"), "{shell}");
    }
    let o = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bash_completion_completes_subcommands() {
    let script = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let dir = temp_dir();
    let file = dir.path().join("c.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    // Ask bash itself what `docker-netattach wa<TAB>` offers.
    let probe = format!(
        "source {}; COMP_WORDS=(docker-netattach wa); COMP_CWORD=1; COMP_LINE='docker-netattach wa'; COMP_POINT=19; _docker__netattach docker-netattach wa docker-netattach; echo \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let o = Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(
        stdout(&o).split_whitespace().any(|w| w == "watch"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
}

/// Runs the bash completion function of `script` on the command line `words` (the last word is
/// the one being completed) and returns COMPREPLY, as bash would on TAB.
fn bash_complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let probe = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={cword}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _docker__netattach_dynamic docker-netattach '{}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.join(" "),
        words[cword],
    );
    let o = Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_asks_docker_for_container_and_network_names() {
    if !need_docker() {
        return;
    }
    let c = Container::none("na-t-cmpl");
    let net = Network::create("na-t-cmpln", &[]);
    let script = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let dir = temp_dir();
    let file = dir.path().join("c.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    let prefix = &c.name[..c.name.len() - 2];
    for words in [
        vec!["docker-netattach", "attach", prefix],
        vec!["docker-netattach", "attach", "--ip", "172.17.0.9", prefix],
        vec!["docker-netattach", "detach", prefix],
        vec![
            "docker-netattach",
            "-v",
            "detach",
            "--network",
            "bridge",
            prefix,
        ],
        vec!["docker-netattach", prefix],
        vec!["docker-netattach", "inspect", "other", prefix],
    ] {
        let got = bash_complete(&file, &words);
        assert_eq!(got, vec![c.name.clone()], "{words:?}");
    }
    for words in [
        vec![
            "docker-netattach",
            "attach",
            "web",
            "--network",
            &net.0[..8],
        ],
        vec![
            "docker-netattach",
            "detach",
            "web",
            "--network",
            &net.0[..8],
        ],
        vec!["docker-netattach", "doctor", "--network", &net.0[..8]],
    ] {
        let got = bash_complete(&file, &words);
        assert!(got.contains(&net.0), "{words:?}: {got:?}");
        assert!(!got.contains(&c.name), "{words:?}: {got:?}");
    }
    // The value of --ip is not a container, and options still complete.
    let got = bash_complete(&file, &["docker-netattach", "attach", "--ip", prefix]);
    assert!(!got.contains(&c.name), "{got:?}");
    assert_eq!(
        bash_complete(&file, &["docker-netattach", "attach", "--js"]),
        vec!["--json"]
    );
    // The generators take no --state-dir (nor --host).
    let opts = bash_complete(&file, &["docker-netattach", "completions", "--"]);
    assert!(
        !opts.iter().any(|o| o == "--state-dir" || o == "--host"),
        "{opts:?}"
    );
    let opts = bash_complete(&file, &["docker-netattach", "attach", "--"]);
    assert!(opts.iter().any(|o| o == "--state-dir"), "{opts:?}");
}

#[test]
fn zsh_and_fish_completion_ask_docker() {
    let zsh = stdout(&run(BIN, &["completions", "zsh"]));
    assert!(zsh.contains(":_docker_netattach_containers'"), "{zsh}");
    assert!(
        zsh.contains("'*::containers -- Container name, ID or unique ID prefix (or the name of a --netns target):_docker_netattach_containers'"),
        "{zsh}"
    );
    assert!(
        zsh.contains(":NETWORK:_docker_netattach_networks'"),
        "{zsh}"
    );
    assert!(zsh.contains("docker ps"), "{zsh}");
    let fish = stdout(&run(BIN, &["completions", "fish"]));
    assert!(fish.contains("docker ps --format '{{.Names}}'"), "{fish}");
    assert!(
        fish.contains("-l network -x -a \"(command docker network ls"),
        "{fish}"
    );
}

#[test]
fn man_pages() {
    let o = Command::new(BIN).arg("man").output().unwrap();
    assert!(o.status.success());
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH docker-netattach 1"),
        "{page}"
    );
    assert!(page.contains(".TH docker-netattach"));
    for sub in ["attach", "watch", "gc", "completions"] {
        assert!(page.contains(sub), "man page lacks {sub}");
    }
    let dir = temp_dir();
    let out: PathBuf = dir.path().join("man1");
    let o = Command::new(BIN)
        .args(["man", "--out-dir", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut pages: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let mut want: Vec<String> = [
        "",
        "-attach",
        "-completions",
        "-detach",
        "-doctor",
        "-gc",
        "-list",
        "-man",
        "-watch",
    ]
    .iter()
    .map(|s| format!("docker-netattach{s}.1"))
    .collect();
    want.sort();
    if pages.iter().any(|p| p == "docker-netattach-inspect.1") {
        want.push("docker-netattach-inspect.1".to_string());
        want.sort();
    }
    // One page per subcommand; no `help` page, no plugin-metadata page.
    assert_eq!(pages, want);
    for f in &pages {
        let text = std::fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.contains(".TH"), "{f}");
        let sections: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .map(|s| s.trim_matches('"'))
            .collect();
        let mut expected = vec!["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS"];
        if f == "docker-netattach.1" {
            expected.push("SUBCOMMANDS");
        }
        expected.extend([
            "EXAMPLES",
            "EXIT STATUS",
            "FILES",
            "ENVIRONMENT",
            "SEE ALSO",
        ]);
        let got: Vec<&str> = sections
            .iter()
            .copied()
            .filter(|s| *s != "VERSION")
            .collect();
        assert_eq!(got, expected, "{f}");
        for needle in [
            "ip\\-netns(8)",
            "docker\\-network\\-connect(1)",
            "DOCKER_HOST",
            "/var/run/netns/NAME",
        ] {
            assert!(text.contains(needle), "{f} lacks {needle}");
        }
        let synopsis = text.split(".SH SYNOPSIS").nth(1).unwrap_or_default();
        let synopsis = synopsis.split(".SH").next().unwrap_or_default();
        if f.contains("-completions") || f.contains("-man.") {
            assert!(!synopsis.contains("state\\-dir"), "{f}: {synopsis}");
            assert!(!synopsis.contains("\\-\\-host"), "{f}: {synopsis}");
        } else if f != "docker-netattach.1" {
            assert!(synopsis.contains("state\\-dir"), "{f}: {synopsis}");
        }
    }
    let attach = std::fs::read_to_string(out.join("docker-netattach-attach.1")).unwrap();
    assert!(
        attach.contains("sudo docker\\-netattach attach web \\-\\-network lab"),
        "{attach}"
    );
    // `man` renders it (groff is not needed for the test to be meaningful: skip when absent).
    if Command::new("man").arg("--version").output().is_ok() {
        let o = Command::new("man")
            .args(["-l", out.join("docker-netattach-watch.1").to_str().unwrap()])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        if o.status.success() {
            assert!(stdout(&o).contains("--listen"), "{}", stdout(&o));
        }
    }
}
