//! Unit tests of the command line: what parses, what is refused, and the help text.

use super::*;
use clap::CommandFactory;

#[test]
fn cli_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn short_form_means_attach() {
    for args in [
        vec!["docker-netattach", "web", "--ip", "172.17.0.9"],
        vec!["docker-netattach", "--ip", "172.17.0.9", "web"],
        vec!["docker-netattach", "-v", "web", "--ip", "172.17.0.9"],
        vec!["docker-netattach", "-vv", "--ip", "172.17.0.9", "web"],
        vec![
            "docker-netattach",
            "--state-dir",
            "/tmp/x",
            "web",
            "--ip",
            "172.17.0.9",
        ],
        vec![
            "docker-netattach",
            "--state-dir=/x",
            "--ip=172.17.0.9",
            "web",
        ],
        vec!["docker-netattach", "netattach", "web", "--ip", "172.17.0.9"],
    ] {
        let cli = Cli::parse_args(&args).unwrap();
        let Command::Attach(a) = cli.command else {
            panic!("{args:?} is not attach")
        };
        assert_eq!(a.container.as_deref(), Some("web"));
        assert_eq!(a.ip, Some(Ipv4Addr::new(172, 17, 0, 9)));
    }
}

#[test]
fn subcommand_words_are_never_containers() {
    for args in [
        // (`list --network NAME` is list's own filter: it parses, and lists.)
        vec!["docker-netattach", "list", "--ip", "172.17.0.9"],
        vec!["docker-netattach", "ls", "--ip", "172.17.0.9"],
        vec!["docker-netattach", "gc", "--network", "x"],
        vec!["docker-netattach", "-v", "watch", "--ip", "172.17.0.9"],
        vec![
            "docker-netattach",
            "--state-dir",
            "/tmp/x",
            "doctor",
            "--ip",
            "1.2.3.4",
        ],
        vec![
            "docker-netattach",
            "netattach",
            "list",
            "--ip",
            "172.17.0.9",
        ],
    ] {
        let err = Cli::parse_args(&args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
        assert_eq!(err.kind(), ErrorKind::UnknownArgument, "{args:?}: {err}");
    }
}

#[test]
fn near_misses_are_usage_errors_that_name_the_fix() {
    for (args, word, meant, bin) in [
        (
            vec!["docker-netattach", "lsit"],
            "lsit",
            "list",
            "docker-netattach",
        ),
        (
            vec!["/usr/bin/docker-netattach", "-v", "detahc", "web"],
            "detahc",
            "detach",
            "docker-netattach",
        ),
        (
            vec!["docker-netattach", "--state-dir", "/s", "gcc", "--dry-run"],
            "gcc",
            "gc",
            "docker-netattach",
        ),
        (
            vec!["docker-netattach", "netattach", "lsit"],
            "lsit",
            "list",
            "docker netattach",
        ),
    ] {
        let err = Cli::parse_args(&args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "error: unrecognized subcommand '{word}' — did you mean '{meant}'?\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("`{bin} attach {word}`")), "{text}");
    }
    // The long form still reaches a container of that name.
    let cli = Cli::parse_args(["docker-netattach", "attach", "lsit"]).unwrap();
    assert!(matches!(cli.command, Command::Attach(a) if a.container.as_deref() == Some("lsit")));
}

#[test]
fn subcommands_and_aliases() {
    let cli = Cli::parse_args(["docker-netattach", "ls", "--json"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::List(ListArgs { json: true, .. })
    ));
    let cli = Cli::parse_args(["docker-netattach", "detach", "web", "--network", "n"]).unwrap();
    assert!(matches!(cli.command, Command::Detach(_)));
    let cli =
        Cli::parse_args(["docker-netattach", "--state-dir", "/tmp/x", "attach", "web"]).unwrap();
    assert_eq!(cli.global.state_dir, PathBuf::from("/tmp/x"));
}

#[test]
fn netns_and_bridge_forms() {
    let cli = Cli::parse_args([
        "docker-netattach",
        "attach",
        "--netns",
        "blue",
        "--bridge",
        "nabr0",
        "--subnet",
        "10.77.0.0/24",
        "--dns",
        "10.77.0.1",
    ])
    .unwrap();
    let Command::Attach(a) = cli.command else {
        panic!()
    };
    assert_eq!(a.netns.as_deref(), Some("blue"));
    assert_eq!(a.subnet.unwrap().to_string(), "10.77.0.0/24");
    assert_eq!(a.dns.len(), 1);
    for bad in [
        vec!["docker-netattach", "attach", "web", "--netns", "blue"],
        vec!["docker-netattach", "attach", "web", "--bridge", "b"],
        vec![
            "docker-netattach",
            "attach",
            "web",
            "--subnet",
            "10.0.0.0/24",
        ],
        vec!["docker-netattach", "attach", "web", "--explain"],
        vec![
            "docker-netattach",
            "attach",
            "web",
            "--default-route",
            "--no-default-route",
        ],
        vec![
            "docker-netattach",
            "attach",
            "web",
            "--network",
            "n",
            "--bridge",
            "b",
            "--subnet",
            "10.0.0.0/24",
        ],
    ] {
        assert_eq!(Cli::parse_args(&bad).unwrap_err().exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn usage_errors() {
    for args in [
        vec!["docker-netattach"],
        vec!["docker-netattach", "web", "--ip", "300.1.1.1"],
        vec!["docker-netattach", "attach"],
        vec!["docker-netattach", "detach"],
    ] {
        let err = Cli::parse_args(&args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn watch_gc_and_generators() {
    let cli = Cli::parse_args(["docker-netattach", "watch"]).unwrap();
    let Command::Watch(w) = cli.command else {
        panic!("not watch")
    };
    assert_eq!(w.listen.to_string(), "127.0.0.1:9180");
    assert_eq!(w.label_prefix, "netattach");
    let cli = Cli::parse_args(["docker-netattach", "gc", "--dry-run", "--json"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Gc(GcArgs {
            dry_run: true,
            json: true
        })
    ));
    let cli = Cli::parse_args(["docker-netattach", "completions", "bash"]).unwrap();
    assert!(matches!(cli.command, Command::Completions(_)));
    assert!(Cli::parse_args(["docker-netattach", "completions", "nosh"]).is_err());
    let cli = Cli::parse_args(["docker-netattach", "docker-cli-plugin-metadata"]).unwrap();
    assert!(matches!(cli.command, Command::PluginMetadata));
}

#[test]
fn invoked_as_a_docker_cli_plugin() {
    let cli = Cli::parse_args(["docker-netattach", "netattach", "web"]).unwrap();
    assert!(matches!(cli.command, Command::Attach(a) if a.container.as_deref() == Some("web")));
    let cli = Cli::parse_args(["docker-netattach", "netattach", "detach", "web"]).unwrap();
    assert!(matches!(cli.command, Command::Detach(d) if d.container == "web"));
    let err = Cli::parse_args(["docker-netattach", "netattach", "--help"]).unwrap_err();
    assert!(err.to_string().contains("docker netattach"), "{err}");
}

/// `docker-netattach` followed by the words of `line`.
fn argv(line: &str) -> Vec<OsString> {
    std::iter::once("docker-netattach")
        .chain(line.split_whitespace())
        .map(OsString::from)
        .collect()
}

/// `got` is what clap gives for `args` in this process's environment.
fn assert_as_clap(got: Option<Cli>, args: &[OsString]) {
    let got = got.unwrap_or_else(|| panic!("{args:?} not taken"));
    let full = Cli::try_parse_from(args).unwrap();
    assert_eq!(format!("{got:?}"), format!("{full:?}"), "{args:?}");
}

/// The clap-free parse of `attach NAME` / `detach NAME` (`parse_plain`) takes only those lines,
/// reads the global options' environment variables as clap does (through its lookup here: the
/// values clap takes from the variables, given as flags), and leaves a variable set but empty
/// (clap refuses an empty --state-dir) to clap. The comparison in the real environment is the
/// next test's.
#[test]
fn the_plain_parse_equals_clap() {
    let unset = |_: &str| None;
    for line in [
        "attach",
        "attach -v web",
        "attach web -v",
        "attach --help",
        "attach -",
        "detach web --json",
        "detach a b",
        "web",
        "list web",
        "inspect web",
    ] {
        assert!(parse_plain(&argv(line), unset).is_none(), "{line:?} taken");
    }
    let set = |k: &str| match k {
        "DOCKER_NETATTACH_STATE_DIR" => Some(OsString::from("/srv/leases")),
        "DOCKER_NETATTACH_PROC_ROOT" => Some(OsString::from("/host/proc")),
        "DOCKER_HOST" => Some(OsString::from("tcp://10.0.0.1:2375")),
        _ => None,
    };
    let flags =
        argv("attach web --state-dir /srv/leases --proc-root /host/proc -H tcp://10.0.0.1:2375");
    let cli = parse_plain(&argv("attach web"), set).unwrap();
    let full = Cli::try_parse_from(flags).unwrap();
    assert_eq!(format!("{cli:?}"), format!("{full:?}"));
    for key in [
        "DOCKER_NETATTACH_STATE_DIR",
        "DOCKER_NETATTACH_PROC_ROOT",
        "DOCKER_HOST",
    ] {
        let empty = |k: &str| (k == key).then(OsString::new);
        assert!(
            parse_plain(&argv("detach web"), empty).is_none(),
            "{key} empty"
        );
    }
}

/// `parse_plain` against clap in the real environment: this test binary run again, once with
/// the global options' variables unset, once set, once each empty (clap reads them from the
/// process's environment; setting them here would change them for the tests running beside).
/// Each child runs `plain_parse_child_compares` and fails on a difference.
#[test]
fn the_plain_parse_equals_clap_with_the_variables_set() {
    let exe = std::env::current_exe().unwrap();
    let cases: [&[(&str, &str)]; 4] = [
        &[],
        &[
            ("DOCKER_NETATTACH_STATE_DIR", "/srv/leases"),
            ("DOCKER_NETATTACH_PROC_ROOT", "/host/proc"),
            ("DOCKER_HOST", "tcp://10.0.0.1:2375"),
        ],
        &[("DOCKER_NETATTACH_STATE_DIR", "")],
        &[("DOCKER_HOST", "")],
    ];
    for vars in cases {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "--exact",
            "cli::tests::plain_parse_child_compares",
            "--nocapture",
        ])
        .env("NETATTACH_PLAIN_PARSE_CHILD", "1")
        .env_remove("DOCKER_NETATTACH_STATE_DIR")
        .env_remove("DOCKER_NETATTACH_PROC_ROOT")
        .env_remove("DOCKER_HOST");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{vars:?}: {text}");
        assert!(
            text.contains("plain parse compared"),
            "{vars:?}: the child ran nothing: {text}"
        );
    }
}

/// The child of the test above (does nothing in an ordinary run): the plain lines, also in the
/// Docker CLI plugin's form (`netattach attach NAME`), give clap's result, through
/// `parse_plain` and through `Cli::parse_args`; with an empty variable `parse_plain` takes none.
#[test]
fn plain_parse_child_compares() {
    if std::env::var_os("NETATTACH_PLAIN_PARSE_CHILD").is_none() {
        return;
    }
    let real = |k: &str| std::env::var_os(k);
    let empty = ["DOCKER_NETATTACH_STATE_DIR", "DOCKER_HOST"]
        .iter()
        .any(|k| real(k).is_some_and(|v| v.is_empty()));
    for line in [
        "attach web",
        "detach web",
        "attach my_app.1-x",
        "detach 3f9a2b",
        "netattach attach web",
    ] {
        let args = crate::plugin::strip_plugin_arg(argv(line));
        let plain = parse_plain(&args, real);
        if empty {
            assert!(plain.is_none(), "{line:?} taken with an empty variable");
            continue;
        }
        assert_as_clap(plain, &args);
        assert_as_clap(Cli::parse_args(argv(line)).ok(), &args);
    }
    use std::io::Write;
    writeln!(std::io::stdout(), "plain parse compared").unwrap();
}

/// The one-subcommand parse (`parse_one`) takes the common `attach`/`detach` lines and gives
/// exactly what the full tree gives; what it refuses is left to the full parse.
#[test]
fn the_one_subcommand_parse_equals_the_full_parse() {
    for line in [
        "attach web",
        "detach web",
        "attach web --ip 172.17.0.9 --network n1 -v",
        "attach -vv web --state-dir /tmp/x --json",
        "attach --netns ns1 --bridge br9 --subnet 10.9.0.0/24 --gateway 10.9.0.1",
        "attach web --mac 02:42:ac:11:00:09 --mtu 1400 --dry-run --explain",
        "attach web --route 10.1.0.0/16 --dns 1.1.1.1 --dns 9.9.9.9 --ifname eth3",
        "attach web --no-default-route -H unix:///x.sock --ip6 fd00::9",
        "attach web --proc-root /host/proc --netns-name w --default-route",
        "detach web --network n1 --json -v",
        "detach --state-dir=/x web",
    ] {
        assert_as_clap(parse_one(&argv(line)), &argv(line));
    }
    for line in [
        "attach",
        "attach --help",
        "attach web --version",
        "attach web --bogus",
        "attach web --ip nope",
        "attach web --bridge br0",
        "attach web --netns x",
        "detach",
        "detach a b",
        "--version",
        "web",
        "list",
        "-v attach web",
    ] {
        assert!(parse_one(&argv(line)).is_none(), "{line:?} taken");
    }
}
