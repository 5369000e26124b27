//! Docker CLI plugin protocol. No side effects besides printing.
//!
//! With the binary installed as `~/.docker/cli-plugins/docker-netattach` (or under
//! `/usr/local/lib/docker/cli-plugins/`), the docker CLI first runs
//! `docker-netattach docker-cli-plugin-metadata` and reads the JSON it prints, then runs
//! `docker netattach web` as `docker-netattach netattach web`: the plugin's own name comes as
//! argv[1] and is dropped here before clap sees the arguments.

use std::ffi::OsString;

use serde::Serialize;

/// The word the docker CLI puts in argv[1] (`docker netattach ...`).
pub const PLUGIN_NAME: &str = "netattach";
/// The subcommand the docker CLI runs to discover plugins.
pub const METADATA_COMMAND: &str = "docker-cli-plugin-metadata";

/// What `docker-cli-plugin-metadata` prints (field names fixed by the docker CLI).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata {
    pub schema_version: &'static str,
    pub vendor: &'static str,
    pub version: &'static str,
    pub short_description: &'static str,
}

pub fn metadata() -> Metadata {
    Metadata {
        schema_version: "0.1.0",
        vendor: "docker-netattach",
        version: env!("CARGO_PKG_VERSION"),
        short_description: "Attach --network=none containers to a Docker bridge",
    }
}

/// Turns the docker CLI's way of running us into our own command line.
///
/// The docker CLI runs `docker [GLOBAL FLAGS] netattach ARGS` as
/// `docker-netattach [GLOBAL FLAGS] netattach ARGS`: its own global flags come first, verbatim
/// (it sets no environment variable for them). They are dropped here, and the ones that matter
/// are translated and appended to ARGS (before a `--`): `-H/--host URL` becomes our hidden
/// `--host URL` (the engine to use), `-D/--debug` becomes `-vv`, `-l/--log-level debug|info`
/// becomes `-vv`/`-v`, `-c/--context NAME` becomes `--host` with that context's engine.
/// `--config` (the docker CLI's own directory) and `--context default` need nothing. Any other flag before `netattach` means this is not a plugin invocation, and the
/// arguments are left for clap to judge. The usage text says `docker netattach`.
/// (So a container literally named `netattach` needs the long form `attach netattach`.)
pub fn strip_plugin_arg(args: Vec<OsString>) -> Vec<OsString> {
    let Some((name_at, extra)) = docker_globals(&args) else {
        return args;
    };
    let mut out: Vec<OsString> = vec!["docker netattach".into()];
    let mut rest: Vec<OsString> = args.into_iter().skip(name_at + 1).collect();
    let at = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    rest.splice(at..at, extra.into_iter().map(OsString::from));
    out.append(&mut rest);
    out
}

/// Where the plugin's name is in `args`, and our flags for the docker flags before it; `None`
/// when the words before it are not all docker global flags (or it is absent).
fn docker_globals(args: &[OsString]) -> Option<(usize, Vec<String>)> {
    let mut extra = Vec::new();
    let mut verbose = 0u8;
    let mut i = 1;
    loop {
        let word = args.get(i)?.to_str()?;
        if word == PLUGIN_NAME {
            break;
        }
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
            _ => (word, None),
        };
        // `-Hunix:///x`, `-lerror`, `-cdefault`: a short flag with its value attached.
        // (`get`, not `[..2]`: the word may start with a multi-byte character.)
        let short = flag.get(..2).filter(|f| ["-H", "-l", "-c"].contains(f));
        let (flag, inline) = match (short, flag.get(2..), inline) {
            (Some(f), Some(rest), None) if !rest.is_empty() => (f, Some(rest.to_string())),
            (_, _, inline) => (flag, inline),
        };
        let value = |i: &mut usize| -> Option<String> {
            match &inline {
                Some(v) => Some(v.clone()),
                None => {
                    *i += 1;
                    args.get(*i)?.to_str().map(str::to_string)
                }
            }
        };
        match flag {
            "-D" | "--debug" => {
                if inline.as_deref().is_none_or(|v| v == "true") {
                    verbose = 2;
                }
            }
            "-l" | "--log-level" => match value(&mut i)?.as_str() {
                "debug" => verbose = verbose.max(2),
                "info" => verbose = verbose.max(1),
                _ => {}
            },
            "-H" | "--host" => {
                extra.push("--host".to_string());
                extra.push(value(&mut i)?);
            }
            "--config" => {
                value(&mut i)?;
            }
            "-c" | "--context" => {
                let name = value(&mut i)?;
                if name != "default" {
                    extra.push("--host".to_string());
                    extra.push(context_host(&name)?);
                }
            }
            _ => return None,
        }
        i += 1;
    }
    if verbose > 0 {
        extra.push(format!("-{}", "v".repeat(verbose.into())));
    }
    Some((i, extra))
}

/// The engine of a docker CLI context (`docker --context NAME netattach ...`), asked from the
/// docker CLI that runs us (it knows where its contexts are kept). Side effect: runs
/// `docker context inspect`; `None` when it fails (clap then refuses `--context`).
fn context_host(name: &str) -> Option<String> {
    let docker = std::env::var_os("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "docker".into());
    let out = std::process::Command::new(docker)
        .args([
            "context",
            "inspect",
            "--format",
            "{{.Endpoints.docker.Host}}",
            name,
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let host = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_has_the_fields_the_docker_cli_reads() {
        let json: serde_json::Value = serde_json::to_value(metadata()).unwrap();
        assert_eq!(json["SchemaVersion"], "0.1.0");
        assert_eq!(json["Version"], env!("CARGO_PKG_VERSION"));
        assert!(json["Vendor"].as_str().is_some_and(|v| !v.is_empty()));
        assert!(
            json["ShortDescription"]
                .as_str()
                .is_some_and(|v| !v.is_empty())
        );
    }

    #[test]
    fn plugin_name_is_dropped_only_in_first_position() {
        let v = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            strip_plugin_arg(v(&["/p/docker-netattach", "netattach", "web"])),
            v(&["docker netattach", "web"])
        );
        assert_eq!(
            strip_plugin_arg(v(&["docker-netattach", "attach", "netattach"])),
            v(&["docker-netattach", "attach", "netattach"])
        );
        assert_eq!(strip_plugin_arg(v(&["x"])), v(&["x"]));
    }

    #[test]
    fn a_word_that_starts_with_a_multibyte_character_is_no_flag() {
        let args: Vec<std::ffi::OsString> = ["docker-netattach", "=Ü𑙒I", "netattach", "ls"]
            .map(Into::into)
            .to_vec();
        let _ = strip_plugin_arg(args);
        let args: Vec<std::ffi::OsString> = ["docker-netattach", "-Ü", "netattach", "ls"]
            .map(Into::into)
            .to_vec();
        let _ = strip_plugin_arg(args);
    }

    #[test]
    fn docker_global_flags_before_the_plugin_name() {
        let v = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["p", "-D", "netattach", "ls"],
                &["docker netattach", "ls", "-vv"],
            ),
            (
                &["p", "--debug", "netattach", "ls"],
                &["docker netattach", "ls", "-vv"],
            ),
            (
                &["p", "--debug=false", "netattach", "ls"],
                &["docker netattach", "ls"],
            ),
            (
                &["p", "--log-level", "error", "netattach", "ls"],
                &["docker netattach", "ls"],
            ),
            (
                &["p", "-l", "debug", "netattach", "ls"],
                &["docker netattach", "ls", "-vv"],
            ),
            (
                &["p", "--log-level=info", "netattach", "ls"],
                &["docker netattach", "ls", "-v"],
            ),
            (
                &["p", "-H", "unix:///s", "netattach", "web", "--", "-x"],
                &["docker netattach", "web", "--host", "unix:///s", "--", "-x"],
            ),
            (
                &["p", "--host=tcp://h:1", "--config", "/c", "netattach", "ls"],
                &["docker netattach", "ls", "--host", "tcp://h:1"],
            ),
            (
                &["p", "-Hunix:///s", "-cdefault", "netattach", "ls"],
                &["docker netattach", "ls", "--host", "unix:///s"],
            ),
        ];
        for (args, want) in cases {
            assert_eq!(strip_plugin_arg(v(args)), v(want), "{args:?}");
        }
        // Not a plugin invocation: left alone.
        for args in [
            &["p", "--tlsverify", "netattach", "ls"][..],
            &[
                "p",
                "--context",
                "na-no-such-context-xyz",
                "netattach",
                "ls",
            ],
            &["p", "-v", "netattach"],
            &["p", "-H"],
        ] {
            assert_eq!(strip_plugin_arg(v(args)), v(args), "{args:?}");
        }
    }
}
