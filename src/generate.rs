//! `completions` and `man`: shell completion scripts and man pages generated from the clap
//! definition, so they never drift from `--help`. Side effects: stdout, or files in `--out-dir`.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::output;

const BIN: &str = "docker-netattach";

/// Prints the completion script for `shell` on stdout. (Generated into memory first:
/// clap_complete panics on a failed write, e.g. `completions zsh | head -1`.)
pub fn completions(shell: Shell) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    output::print(&String::from_utf8_lossy(&script))
        .context("cannot write the completion script")?;
    Ok(0)
}

/// Prints `docker-netattach.1` on stdout, or writes one page per command into `out_dir`
/// (`docker-netattach.1`, `docker-netattach-watch.1`, ...).
pub fn man(out_dir: Option<&Path>) -> Result<i32> {
    let cmd = Cli::command();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("cannot render the man page")?;
            output::print(&String::from_utf8_lossy(&page)).context("cannot write the man page")?;
        }
    }
    Ok(0)
}
