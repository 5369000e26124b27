//! Dispatch of a parsed command line; returns the exit code. Only `main` prints errors.

use anyhow::{Result, anyhow};

use crate::attach::{self, AttachOpts, Outcome};
use crate::cli::{AttachArgs, Cli, Command, DetachArgs, DoctorArgs, GcArgs, InspectArgs, ListArgs};
use crate::detach::{self, DetachOpts};
use crate::endpoint::EndpointOpts;
use crate::lease::Lease;
use crate::list;
use crate::output::{self, Record};
use crate::select::{self, Docker};
use crate::template::Format;
use crate::{doctor, gc, hostns, privilege};

pub fn run(cli: Cli) -> Result<i32> {
    tracing::debug!("start");
    crate::procroot::set(&cli.global.proc_root)?;
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
        Command::List(l) => rt.block_on(run_list(l, &state_dir)),
        Command::Inspect(i) => rt.block_on(run_inspect(i, &state_dir)),
        Command::Doctor(d) => rt.block_on(run_doctor(d, &state_dir)),
        Command::Watch(w) => crate::watch::run(w, &state_dir),
        Command::Gc(g) => rt.block_on(run_gc(g, &state_dir)),
        Command::Completions(c) => crate::generate::completions(c.shell),
        Command::Man(m) => crate::generate::man(m.out_dir.as_deref()),
        Command::PluginMetadata => {
            output::println(&output::to_json(&crate::plugin::metadata()))?;
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
        endpoint: EndpointOpts {
            mac: a.mac,
            mtu: a.mtu,
            routes: a.route,
        },
        dry_run: a.dry_run,
        running_only: false,
    };
    let attached = attach::attach(&opts, state_dir).await;
    // Nothing more to sync: the lease-sync threads end while the result is printed.
    crate::lease::Syncer::retire_shared();
    let (outcome, hints) = attached?;
    for h in hints {
        eprintln!("{h}");
    }
    match outcome {
        Outcome::Planned(plan) => {
            if a.json {
                output::println(&output::to_json(&output::dry_run_record(&plan, a.explain)))?;
            } else if a.explain {
                output::println(&format!(
                    "{plan}\n\n# the same with ip(8):\n{}",
                    plan.explain()
                ))?;
            } else {
                output::println(&plan.to_string())?;
            }
        }
        Outcome::Pending(lease) => {
            if a.json {
                output::println(&output::to_json(&Record::new(
                    &lease,
                    Some(list::Status::Pending),
                )))?;
            } else {
                eprintln!(
                    "{} is not running: {} on {} is reserved (pending) and applied when it starts",
                    lease.container_name, lease.v4.ip, lease.network
                );
                output::println(&lease.v4.ip.to_string())?;
            }
        }
        Outcome::Attached(lease) | Outcome::Existing(lease) if a.json => {
            output::println(&output::to_json(&Record::new(&lease, None)))?;
        }
        Outcome::Attached(lease) => {
            if verbose {
                describe("attached", &lease);
            }
            output::println(&lease.v4.ip.to_string())?;
        }
        Outcome::Existing(lease) => {
            eprintln!(
                "{} is already attached to {} as {} ({} in the container); nothing changed",
                lease.container_name, lease.network, lease.v4.ip, lease.ifname
            );
            output::println(&lease.v4.ip.to_string())?;
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
        l.v4.ip,
        l.v4.prefix_len,
        l.v4.gateway,
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
        return_when_unregistered: true,
    };
    // As `gc` does: from a container run with --pid=host, work in the host's namespace.
    crate::privilege::require("detach")?;
    crate::hostns::enter()?;
    let released = detach::detach(&opts, state_dir).await?;
    if d.json {
        let records: Vec<Record> = released.iter().map(|l| Record::new(l, None)).collect();
        output::println(&output::to_json(&records))?;
    } else if released.is_empty() {
        match &opts.network {
            Some(net) => eprintln!(
                "'{}' is not attached to network '{net}'; nothing to do",
                opts.container
            ),
            None => eprintln!("'{}' is not attached; nothing to do", opts.container),
        }
    } else if verbose {
        for l in &released {
            describe("detached", l);
        }
    }
    Ok(0)
}

/// `list`: the rows the arguments select, as a table, JSON, short IDs or a template. An
/// argument that names no container is reported (exit 1) after the rows of the others; a bad
/// template is a usage error (exit 2) before anything is printed.
async fn run_list(l: ListArgs, state_dir: &std::path::Path) -> Result<i32> {
    crate::privilege::may_read_state("list", state_dir)?;
    let format = match l.format.as_deref().map(|f| match f.trim() {
        "json" => Format::parse("{{json .}}"),
        f => Format::parse(f),
    }) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
        Some(Ok(f)) => f,
        None => None,
    };
    let mut rows = list::list(state_dir)?;
    let mut errors = Vec::new();
    if !l.containers.is_empty() || l.network.is_some() {
        let docker = Docker::connect();
        if let Some(net) = &l.network {
            let ids = select::network_ids(&rows, net, &docker).await?;
            rows.retain(|r| select::on_network(r, &ids));
        }
        if !l.containers.is_empty() {
            let all = select::leases(&rows);
            let mut ids = Vec::new();
            for (_, found) in select::containers(&all, &l.containers, &docker).await {
                match found {
                    Ok(found) => ids.extend(found),
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            rows.retain(|r| select::of_containers(r, &ids));
        }
    }
    let records: Vec<_> = rows.iter().map(output::list_record).collect();
    if l.quiet {
        for id in select::short_ids(&rows) {
            output::println(&id)?;
        }
    } else if let Some(f) = &format {
        match f.render(&records) {
            Ok(text) => output::print(&text)?,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(2);
            }
        }
    } else if l.json {
        output::println(&output::to_json(&records))?;
    } else {
        output::print(&output::table(&rows))?;
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(i32::from(!errors.is_empty()))
}

/// `inspect`: a JSON array of the containers found; each argument that names none is an error
/// on stderr (exit 1), as with `docker inspect`.
async fn run_inspect(i: InspectArgs, state_dir: &std::path::Path) -> Result<i32> {
    let (found, errors) = crate::inspect::inspect(&i.containers, state_dir).await?;
    let records: Vec<output::InspectRecord> = found
        .iter()
        .map(|c| output::InspectRecord {
            id: c.id.clone(),
            name: c.name.clone(),
            attachments: c
                .attachments
                .iter()
                .map(|(l, s)| output::AttachmentRecord::new(l, *s))
                .collect(),
        })
        .collect();
    output::println(&output::to_json(&records))?;
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(i32::from(!errors.is_empty()))
}

async fn run_doctor(d: DoctorArgs, state_dir: &std::path::Path) -> Result<i32> {
    let checks = doctor::doctor(&d.networks, state_dir).await?;
    if d.json {
        output::println(&output::to_json(&checks))?;
    } else {
        output::print(&doctor::text(&checks))?;
    }
    let failed = checks.iter().any(|c| c.status == doctor::Status::Fail);
    Ok(i32::from(failed))
}

/// `docker-netattach gc [--dry-run] [--json]`.
async fn run_gc(args: GcArgs, state_dir: &std::path::Path) -> Result<i32> {
    privilege::require("gc")?;
    hostns::enter()?;
    let removed = gc::gc(state_dir, args.dry_run).await?;
    if args.json {
        output::println(&output::to_json(&removed))?;
    } else if removed.is_empty() {
        eprintln!("nothing to collect");
    } else {
        output::print(&output::removals(&removed, args.dry_run))?;
    }
    Ok(0)
}
