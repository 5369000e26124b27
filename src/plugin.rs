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

/// Drops argv[1] when it is the plugin's name, and makes the usage text say `docker netattach`.
/// (So a container literally named `netattach` needs the long form `attach netattach`.)
pub fn strip_plugin_arg(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.get(1).is_some_and(|a| a == PLUGIN_NAME) {
        args.remove(1);
        args[0] = "docker netattach".into();
    }
    args
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
}
