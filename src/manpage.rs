//! The man pages: clap_mangen's NAME, SYNOPSIS, DESCRIPTION, OPTIONS (and COMMANDS on the main
//! page) from the clap definition, followed by the sections clap knows nothing about: EXAMPLES,
//! EXIT STATUS, FILES, ENVIRONMENT, SEE ALSO. Pure: renders into a writer.

use std::io::{self, Write};

use clap::Command;

use crate::lease::DEFAULT_STATE_DIR;

/// Renders the page of the main command (`sub` = None) or of one of its subcommands; `root` is
/// built (`Command::build`), so a subcommand's page is named `docker-netattach-<sub>`.
pub fn render(root: &Command, sub: Option<&str>, w: &mut dyn Write) -> io::Result<()> {
    let cmd = match sub {
        Some(s) => root
            .find_subcommand(s)
            .ok_or_else(|| io::Error::other(format!("no subcommand '{s}'")))?,
        None => root,
    };
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    section(w, "EXAMPLES", &examples(sub))?;
    section(w, "EXIT STATUS", &exit_status())?;
    section(w, "FILES", &files())?;
    section(w, "ENVIRONMENT", &environment())?;
    section(w, "SEE ALSO", &see_also(&subcommands(root), sub))?;
    if cmd.get_version().is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

/// The file name of a page: `docker-netattach.1`, `docker-netattach-attach.1`.
pub fn file_name(sub: Option<&str>) -> String {
    match sub {
        Some(s) => format!("docker-netattach-{s}.1"),
        None => "docker-netattach.1".to_string(),
    }
}

/// A section of `.TP` paragraphs: each entry is (term, text); an empty term is a plain paragraph,
/// a term starting with `$ ` is an example command shown in bold.
fn section(w: &mut dyn Write, title: &str, items: &[(String, String)]) -> io::Result<()> {
    writeln!(w, ".SH \"{title}\"")?;
    for (term, text) in items {
        if term.is_empty() {
            writeln!(w, ".PP\n{}", escape(text))?;
        } else {
            writeln!(w, ".TP\n\\fB{}\\fR\n{}", escape(term), escape(text))?;
        }
    }
    Ok(())
}

/// roff escaping: backslashes, hyphens (so they copy as ASCII), and a leading dot or quote.
fn escape(text: &str) -> String {
    let body = text.replace('\\', "\\e").replace('-', "\\-");
    match body.chars().next() {
        Some('.') | Some('\'') => format!("\\&{body}"),
        _ => body,
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn examples(sub: Option<&str>) -> Vec<(String, String)> {
    pairs(match sub {
        None | Some("attach") => &[
            (
                "sudo docker-netattach web",
                "Attach the --network=none container web to the default bridge; prints its address.",
            ),
            (
                "sudo docker-netattach attach web --network lab --ip 172.20.0.50",
                "Attach to the user-defined bridge network lab with a chosen address.",
            ),
            (
                "sudo docker-netattach attach web --dry-run --explain",
                "Show the plan and the equivalent ip(8) commands; change nothing.",
            ),
            (
                "sudo ip netns exec web ip addr",
                "The container's network namespace is linked as /var/run/netns/web.",
            ),
        ],
        Some("detach") => &[
            (
                "sudo docker-netattach detach web",
                "Remove web's interface, netns link and lease (also after docker rm).",
            ),
            (
                "sudo docker-netattach detach web --network lab",
                "Only the attachment to the network lab.",
            ),
        ],
        Some("list") => &[
            (
                "sudo docker-netattach ls",
                "A table of every attachment and its status.",
            ),
            (
                "sudo docker-netattach list --json",
                "The same as a JSON array.",
            ),
        ],
        Some("inspect") => &[
            (
                "sudo docker-netattach inspect web db",
                "Every attachment of web and db as one JSON array, with status and netns link.",
            ),
            (
                "sudo docker-netattach inspect web | jq -r '.[].ip'",
                "The addresses alone.",
            ),
        ],
        Some("watch") => &[
            (
                "sudo docker-netattach watch",
                "Attach containers labelled netattach.network=NAME whenever they start; HTTP on 127.0.0.1:9180.",
            ),
            (
                "docker run -d --network none --label netattach.network=bridge nginx",
                "A container the daemon attaches (again after every restart).",
            ),
        ],
        Some("gc") => &[
            (
                "sudo docker-netattach gc --dry-run",
                "List what would be removed.",
            ),
            ("sudo docker-netattach gc", "Remove it."),
        ],
        Some("doctor") => &[
            (
                "sudo docker-netattach doctor",
                "Check forwarding, NAT, the bridges and the address space.",
            ),
            (
                "sudo docker-netattach doctor --network lab --json",
                "Also check the network lab; JSON output.",
            ),
        ],
        Some("completions") => &[
            (
                "docker-netattach completions bash > /etc/bash_completion.d/docker-netattach",
                "Install bash completion (container and network names are asked from Docker).",
            ),
            (
                "docker-netattach completions fish > ~/.config/fish/completions/docker-netattach.fish",
                "The same for fish; zsh: write _docker-netattach into a directory of $fpath.",
            ),
        ],
        Some("man") => &[(
            "docker-netattach man --out-dir /usr/local/share/man/man1",
            "Install these pages, one per command.",
        )],
        Some(_) => &[],
    })
}

fn exit_status() -> Vec<(String, String)> {
    pairs(&[
        (
            "0",
            "Success (attach: the container is attached, or already was).",
        ),
        (
            "1",
            "An error, named on standard error with how to fix it; doctor: a check failed. A failed attach leaves nothing behind.",
        ),
        (
            "2",
            "A usage error: unknown command or option, bad or missing argument.",
        ),
    ])
}

fn files() -> Vec<(String, String)> {
    vec![
        (
            DEFAULT_STATE_DIR.to_string(),
            "The leases, one file per address (root only; --state-dir or DOCKER_NETATTACH_STATE_DIR chooses another directory).".to_string(),
        ),
        (
            "/var/run/netns/NAME".to_string(),
            "The link to the container's network namespace, for ip netns exec (see ip-netns(8)).".to_string(),
        ),
        (
            "/etc/netns/NAME/resolv.conf".to_string(),
            "Written by attach --dns for programs run with ip netns exec.".to_string(),
        ),
    ]
}

fn environment() -> Vec<(String, String)> {
    pairs(&[
        (
            "DOCKER_HOST",
            "The Docker engine: unix:///path/to/docker.sock (default unix:///var/run/docker.sock) or tcp://host:port; -H/--host (which docker -H URL netattach passes on) wins over it.",
        ),
        (
            "DOCKER_NETATTACH_STATE_DIR",
            "The state directory, as --state-dir.",
        ),
        (
            "DOCKER_NETATTACH_DOCKER_TIMEOUT",
            "Seconds to wait for each request to Docker.",
        ),
        ("RUST_LOG", "Log filter for standard error (overrides -v)."),
    ])
}

fn see_also(subs: &[String], sub: Option<&str>) -> Vec<(String, String)> {
    let mut pages: Vec<String> = Vec::new();
    if sub.is_some() {
        pages.push("docker-netattach(1)".to_string());
    }
    pages.extend(
        subs.iter()
            .filter(|s| Some(s.as_str()) != sub)
            .map(|s| format!("docker-netattach-{s}(1)")),
    );
    pages.extend(
        [
            "ip-netns(8)",
            "docker-network-connect(1)",
            "docker-network-inspect(1)",
            "docker(1)",
        ]
        .map(String::from),
    );
    vec![(String::new(), pages.join(", "))]
}

/// The commands that get a page of their own: every visible subcommand (no `help`).
pub fn subcommands(root: &Command) -> Vec<String> {
    root.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_string())
        .collect()
}
