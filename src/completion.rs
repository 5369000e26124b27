//! The part of the completion scripts that clap cannot generate: container names (asked from
//! Docker with `docker ps`) for the CONTAINER argument of `attach`, `detach` and `inspect`, and
//! bridge network names (`docker network ls`) for `--network`. Pure: builds shell text.
//! The scripts run `docker` when the user presses TAB; when that fails (no Docker, no
//! permission) they offer nothing rather than an error.

use clap::Command;
use clap_complete::Shell;

/// Running containers: what `attach` can take.
const RUNNING: &str = "command docker ps --format '{{.Names}}' 2>/dev/null";
/// Every container: `detach` also works after `docker stop`/`docker rm`.
const ALL: &str = "command docker ps -a --format '{{.Names}}' 2>/dev/null";
/// Bridge networks, the only driver `attach` supports.
const NETWORKS: &str =
    "command docker network ls --filter driver=bridge --format '{{.Name}}' 2>/dev/null";

/// Shell text appended to clap_complete's script for `shell` (nothing for elvish, powershell).
pub fn dynamic(shell: Shell, cmd: &Command) -> String {
    match shell {
        Shell::Bash => bash(cmd),
        Shell::Fish => FISH.to_string(),
        _ => String::new(),
    }
}

/// clap_complete's zsh script with the container and network arguments completed from Docker.
pub fn zsh(script: &str) -> String {
    let mut out = String::new();
    for line in script.lines() {
        let spec = line.trim_start();
        let is_container = [
            "':container",
            "'::container",
            "'*:container",
            "'*::container",
        ]
        .iter()
        .any(|p| spec.starts_with(p));
        let is_network = spec.starts_with('\'') && spec.contains("--network=[");
        match line.strip_suffix(":_default' \\") {
            Some(head) if is_container => {
                out.push_str(head);
                out.push_str(":_docker_netattach_containers' \\");
            }
            Some(head) if is_network => {
                out.push_str(head);
                out.push_str(":_docker_netattach_networks' \\");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
        if line.starts_with("#compdef") {
            out.push_str(&format!(
                "\n_docker_netattach_containers() {{\n    local -a names\n    if [[ ${{words[2]}} == attach ]]; then\n        names=(${{(f)\"$({RUNNING})\"}})\n    else\n        names=(${{(f)\"$({ALL})\"}})\n    fi\n    compadd -a names\n}}\n\n_docker_netattach_networks() {{\n    local -a names\n    names=(${{(f)\"$({NETWORKS})\"}})\n    compadd -a names\n}}\n"
            ));
        }
    }
    out
}

/// clap_complete's bash script with its subcommand cases fixed: for a binary whose name has a
/// `-`, clap_complete 4.6 labels them `docker__subcmd__netattach__subcmd__attach` but sets
/// `cmd=docker__netattach__subcmd__attach`, so no subcommand's options were ever completed.
pub fn bash_fixed(script: &str) -> String {
    script.replace(
        "docker__subcmd__netattach__subcmd__",
        "docker__netattach__subcmd__",
    )
}

/// For each (subcommand, option) that takes a value, `"sub --opt"`: the bash function must skip
/// option values when it counts positional arguments.
fn value_options(cmd: &Command) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |sub: &str, c: &Command| {
        for a in c.get_arguments().filter(|a| a.get_action().takes_values()) {
            if a.is_positional() {
                continue;
            }
            for l in a.get_long_and_visible_aliases().unwrap_or_default() {
                out.push(format!("\"{sub} --{l}\""));
            }
            for s in a.get_short_and_visible_aliases().unwrap_or_default() {
                out.push(format!("\"{sub} -{s}\""));
            }
        }
    };
    add("", cmd);
    for sub in cmd.get_subcommands() {
        for name in std::iter::once(sub.get_name()).chain(sub.get_visible_aliases()) {
            add(name, sub);
        }
    }
    out
}

fn bash(cmd: &Command) -> String {
    let values = value_options(cmd).join("|");
    format!(
        r#"
# Container and network names, asked from Docker (docker-netattach's own addition).
_docker__netattach_takes_value() {{
    case "$1 $2" in
        {values}) return 0 ;;
    esac
    return 1
}}

# COMPREPLY = the lines of $2 that start with $1.
_docker__netattach_words() {{
    local IFS=$'\n'
    COMPREPLY=( $(compgen -W "$2" -- "$1") )
}}

_docker__netattach_dynamic() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" sub="" w i skip=0 npos=0 kind=""
    (( COMP_CWORD > 0 )) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [[ $prev == "=" && COMP_CWORD -gt 1 ]]; then
        prev="${{COMP_WORDS[COMP_CWORD-2]}}"
        [[ $cur == "=" ]] && cur=""
    elif [[ $cur == "=" ]]; then
        cur=""
    fi
    for (( i = 1; i < COMP_CWORD; i++ )); do
        w="${{COMP_WORDS[i]}}"
        if (( skip )); then skip=0; continue; fi
        case "$w" in
            =) ;;
            -*) _docker__netattach_takes_value "$sub" "$w" && skip=1 ;;
            *) if [[ -z $sub ]]; then sub="$w"; else npos=$(( npos + 1 )); fi ;;
        esac
    done
    if [[ $prev == --network ]]; then
        kind=networks
    elif [[ $cur != -* ]] && (( ! skip )); then
        case "$sub" in
            attach) (( npos == 0 )) && kind=running ;;
            detach) (( npos == 0 )) && kind=all ;;
            inspect) kind=all ;;
        esac
    fi
    case "$kind" in
        running) _docker__netattach_words "$cur" "$({RUNNING})" ;;
        all) _docker__netattach_words "$cur" "$({ALL})" ;;
        networks) _docker__netattach_words "$cur" "$({NETWORKS})" ;;
        *)
            _docker__netattach "$@"
            # `docker-netattach web` is short for `attach web`: offer running containers too.
            if [[ -z $sub && $cur != -* ]] && (( ! skip )); then
                local base=( "${{COMPREPLY[@]}}" )
                _docker__netattach_words "$cur" "$({RUNNING})"
                COMPREPLY=( "${{base[@]}}" "${{COMPREPLY[@]}}" )
            fi
            ;;
    esac
    return 0
}}

if [[ "${{BASH_VERSINFO[0]}}" -eq 4 && "${{BASH_VERSINFO[1]}}" -ge 4 || "${{BASH_VERSINFO[0]}}" -gt 4 ]]; then
    complete -F _docker__netattach_dynamic -o nosort -o bashdefault -o default docker-netattach
else
    complete -F _docker__netattach_dynamic -o bashdefault -o default docker-netattach
fi
"#
    )
}

const FISH: &str = concat!(
    "\n# Container and network names, asked from Docker (docker-netattach's own addition).\n",
    "complete -c docker-netattach -n \"__fish_docker_netattach_using_subcommand attach\" -f -a \"(command docker ps --format '{{.Names}}' 2>/dev/null)\" -d 'running container'\n",
    "complete -c docker-netattach -n \"__fish_docker_netattach_using_subcommand detach; or __fish_docker_netattach_using_subcommand inspect\" -f -a \"(command docker ps -a --format '{{.Names}}' 2>/dev/null)\" -d container\n",
    "complete -c docker-netattach -n \"__fish_docker_netattach_using_subcommand attach; or __fish_docker_netattach_using_subcommand detach; or __fish_docker_netattach_using_subcommand list; or __fish_docker_netattach_using_subcommand ls; or __fish_docker_netattach_using_subcommand doctor\" -l network -x -a \"(command docker network ls --filter driver=bridge --format '{{.Name}}' 2>/dev/null)\" -d 'bridge network'\n",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_options_come_from_clap() {
        let v = value_options(&crate::generate::documented());
        assert!(v.contains(&"\"attach --network\"".to_string()), "{v:?}");
        assert!(v.contains(&"\"attach --ip\"".to_string()));
        assert!(!v.contains(&"\"attach --json\"".to_string()));
        assert!(
            v.contains(&"\"ls --network\"".to_string())
                || !v.iter().any(|o| o.starts_with("\"list --network"))
        );
    }

    #[test]
    fn zsh_arguments_ask_docker() {
        let mut script = Vec::new();
        clap_complete::generate(
            Shell::Zsh,
            &mut crate::generate::documented(),
            "docker-netattach",
            &mut script,
        );
        let text = zsh(&String::from_utf8_lossy(&script));
        assert!(
            text.contains(
                ":container -- Container name, ID or unique ID prefix:_docker_netattach_containers'"
            ),
            "{text}"
        );
        assert!(text.contains("--network=[Docker network to attach to (bridge driver)]:NETWORK:_docker_netattach_networks'"));
        assert!(text.contains("_docker_netattach_networks() {"));
        assert!(
            !text.contains(
                "--network=[Docker network to attach to (bridge driver)]:NETWORK:_default'"
            )
        );
    }
}
