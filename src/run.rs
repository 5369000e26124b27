//! Dispatch of a parsed command line; returns the exit code. Only `main` prints errors.

use anyhow::{Result, anyhow};

use crate::attach::{self, AttachOpts, Outcome};
use crate::cli::{AttachArgs, Cli, Command, DetachArgs, DoctorArgs, ListArgs};
use crate::detach::{self, DetachOpts};
use crate::doctor;
use crate::lease::Lease;
use crate::list;
use crate::output::{self, Record};

pub fn run(cli: Cli) -> Result<i32> {
    tracing::debug!("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
    if let Some(host) = &cli.global.host {
        crate::docker::use_host(host);
    }
    let verbose = cli.global.verbose > 0;
    let state_dir = cli.global.state_dir;
    match cli.command {
        Command::Attach(a) => rt.block_on(run_attach(a, &state_dir, verbose)),
        Command::Detach(d) => rt.block_on(run_detach(d, &state_dir, verbose)),
        Command::List(l) => run_list(l, &state_dir),
        Command::Inspect(i) => rt.block_on(run_inspect(i, &state_dir)),
        Command::Doctor(d) => rt.block_on(run_doctor(d, &state_dir)),
        Command::Watch(w) => crate::watch::run(w, &state_dir),
        Command::Gc(g) => rt.block_on(crate::gc::run_cli(g, &state_dir)),
        Command::Completions(c) => crate::generate::completions(c.shell),
        Command::Man(m) => crate::generate::man(m.out_dir.as_deref()),
        Command::PluginMetadata => {
            println!("{}", output::to_json(&crate::plugin::metadata()));
            Ok(0)
        }
    }
}

async fn run_attach(a: AttachArgs, state_dir: &std::path::Path, verbose: bool) -> Result<i32> {
    let opts = AttachOpts {
        container: a.container.unwrap_or_default(),
        netns: a.netns,
        network: a.network,
        bridge: a.bridge,
        subnet: a.subnet,
        gateway: a.gateway,
        ip: a.ip,
        ip6: a.ip6,
        ifname: a.ifname,
        netns_name: a.netns_name,
        default_route: match (a.default_route, a.no_default_route) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        dns: a.dns,
        dry_run: a.dry_run,
    };
    let (outcome, hints) = attach::attach(&opts, state_dir).await?;
    for h in hints {
        eprintln!("{h}");
    }
    match outcome {
        Outcome::Planned(plan) => {
            if a.json {
                println!("{}", output::to_json(&plan));
            } else if a.explain {
                println!("{plan}\n\n# the same with ip(8):\n{}", plan.explain());
            } else {
                println!("{plan}");
            }
        }
        Outcome::Attached(lease) | Outcome::Existing(lease) if a.json => {
            println!("{}", output::to_json(&Record::new(&lease, None)));
        }
        Outcome::Attached(lease) => {
            if verbose {
                describe("attached", &lease);
            }
            println!("{}", lease.ip);
        }
        Outcome::Existing(lease) => {
            eprintln!(
                "{} is already attached to {} as {} ({} in the container); nothing changed",
                lease.container_name, lease.network, lease.ip, lease.ifname
            );
            println!("{}", lease.ip);
        }
    }
    Ok(0)
}

fn describe(what: &str, l: &Lease) {
    eprintln!(
        "{what} {} to {} ({}): {}/{} via {}, mac {}, host {} <-> {} inside, /var/run/netns/{}",
        l.container_name,
        l.network,
        l.bridge,
        l.ip,
        l.prefix_len,
        l.gateway,
        l.mac,
        l.host_ifname,
        l.ifname,
        l.netns_name
    );
}

async fn run_detach(d: DetachArgs, state_dir: &std::path::Path, verbose: bool) -> Result<i32> {
    let opts = DetachOpts {
        container: d.container,
        network: d.network,
    };
    let released = detach::detach(&opts, state_dir).await?;
    if d.json {
        let records: Vec<Record> = released.iter().map(|l| Record::new(l, None)).collect();
        println!("{}", output::to_json(&records));
    } else if released.is_empty() {
        eprintln!("'{}' is not attached; nothing to do", opts.container);
    } else if verbose {
        for l in &released {
            describe("detached", l);
        }
    }
    Ok(0)
}

fn run_list(l: ListArgs, state_dir: &std::path::Path) -> Result<i32> {
    crate::privilege::may_read_state("list", state_dir)?;
    let rows = list::list(state_dir)?;
    if l.json {
        let records: Vec<Record> = rows.iter().map(|(l, s)| Record::new(l, Some(s))).collect();
        println!("{}", output::to_json(&records));
    } else {
        print!("{}", output::table(&rows));
    }
    Ok(0)
}

async fn run_inspect(i: crate::cli::InspectArgs, state_dir: &std::path::Path) -> Result<i32> {
    let (rows, missing) = crate::inspect::inspect(&i.containers, state_dir).await?;
    // Like `docker inspect`: what was found is printed even when some name was not.
    println!("{}", output::to_json(&crate::inspect::records(&rows)));
    if !missing.is_empty() {
        return Err(anyhow!("{}", missing.join("; ")));
    }
    Ok(0)
}

async fn run_doctor(d: DoctorArgs, state_dir: &std::path::Path) -> Result<i32> {
    let checks = doctor::doctor(&d.networks, state_dir).await?;
    if d.json {
        println!("{}", output::to_json(&checks));
    } else {
        print!("{}", doctor::text(&checks));
    }
    let failed = checks.iter().any(|c| c.status == doctor::Status::Fail);
    Ok(i32::from(failed))
}
