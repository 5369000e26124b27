//! Entry point: parse, init logging, run, print the one error, exit.

use docker_netattach::arena::{Arena, SIZE};
use docker_netattach::cli::{Cli, Command};
use docker_netattach::run::run;

/// One-shot commands allocate from a bump arena and free nothing (src/arena.rs); the `watch`
/// daemon stops it and uses the system allocator.
#[global_allocator]
static MEMORY: Arena<SIZE> = Arena::new();

fn main() {
    let cli = Cli::parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if matches!(cli.command, Command::Watch(_)) {
        MEMORY.stop();
    }
    init_logging(cli.global.verbose);
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    tracing::debug!(arena_kib = MEMORY.used() / 1024, "exit");
    std::process::exit(code);
}

fn init_logging(verbose: u8) {
    let filter = match (std::env::var("RUST_LOG"), verbose) {
        (Ok(f), _) => f,
        (_, 0) => return,
        (_, 1) => "docker_netattach=info".into(),
        _ => "docker_netattach=debug".into(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .init();
}
