//! `completions` and `man`: shell completion scripts and man pages generated from the clap
//! definition, so they never drift from `--help`. Side effects: stdout, or files in `--out-dir`.

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Arg, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::output;

const BIN: &str = "docker-netattach";
/// Global options that mean nothing to the generators themselves: offered on every command but
/// `completions` and `man` (and the main command, where they can precede any subcommand).
const STATEFUL_GLOBALS: &[&str] = &["state_dir", "host"];
const GENERATORS: &[&str] = &["completions", "man"];

/// The command line as completion scripts and man pages describe it: [`STATEFUL_GLOBALS`] are
/// not global here but copied into each subcommand except [`GENERATORS`].
pub fn documented() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    let globals: Vec<Arg> = cmd
        .get_arguments()
        .filter(|a| STATEFUL_GLOBALS.contains(&a.get_id().as_str()))
        .map(|a| a.clone().global(false))
        .collect();
    for id in STATEFUL_GLOBALS {
        cmd = cmd.mut_arg(*id, |a| a.global(false));
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    // Every subcommand is visited, in order: `mut_subcommand` moves it to the end.
    for name in names {
        let generator = GENERATORS.iter().copied().find(|g| *g == name);
        cmd = cmd.mut_subcommand(name, |s| match generator {
            Some(g) => without(g, s, STATEFUL_GLOBALS),
            None => globals.iter().fold(s, |s, a| s.arg(a.clone())),
        });
    }
    cmd.build();
    cmd
}

/// `cmd` without the arguments `ids` (the hidden [`crate::cli::NotUsed`] ones, which the
/// generators would otherwise list: clap_complete offers hidden options too).
fn without(name: &'static str, cmd: clap::Command, ids: &[&str]) -> clap::Command {
    let keep: Vec<Arg> = cmd
        .get_arguments()
        .filter(|a| !ids.contains(&a.get_id().as_str()))
        .cloned()
        .collect();
    let mut out = clap::Command::new(name);
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(about) = cmd.get_long_about() {
        out = out.long_about(about.clone());
    }
    keep.into_iter().fold(out, |c, a| c.arg(a))
}

/// Prints the completion script for `shell` on stdout: clap_complete's script plus the part
/// that asks Docker for container and network names ([`crate::completion`]). (Generated into
/// memory first: clap_complete panics on a failed write, e.g. `completions zsh | head -1`.)
pub fn completions(shell: Shell) -> Result<i32> {
    let mut cmd = documented();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    match shell {
        Shell::Zsh => script = crate::completion::zsh(&script),
        Shell::Bash => script = crate::completion::bash_fixed(&script),
        _ => {}
    }
    script.push_str(&crate::completion::dynamic(shell, &cmd));
    output::print(&script).context("cannot write the completion script")?;
    Ok(0)
}

/// Prints `docker-netattach.1` on stdout, or writes it and one page per subcommand into
/// `out_dir` (`docker-netattach-attach.1`, `docker-netattach-watch.1`, ...; no `help` page).
pub fn man(out_dir: Option<&Path>) -> Result<i32> {
    let cmd = documented();
    let Some(dir) = out_dir else {
        let mut page = Vec::new();
        crate::manpage::render(&cmd, None, &mut page).context("cannot render the man page")?;
        output::print(&String::from_utf8_lossy(&page)).context("cannot write the man page")?;
        return Ok(0);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let subs = crate::manpage::subcommands(&cmd);
    let pages = std::iter::once(None).chain(subs.iter().map(|s| Some(s.as_str())));
    for sub in pages {
        let path = dir.join(crate::manpage::file_name(sub));
        let mut text = Vec::new();
        crate::manpage::render(&cmd, sub, &mut text)
            .and_then(|_| std::fs::write(&path, &text))
            .with_context(|| format!("cannot write the man page {}", path.display()))?;
    }
    Ok(0)
}
