//! Command line (clap derive). The doc comments are the help text.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::endpoint::{Mac, RouteArg};
use crate::ipam::Subnet;
use crate::lease::DEFAULT_STATE_DIR;
use crate::short_form::{self, Word};

/// Give a Docker container started with --network=none a real interface on a Docker bridge.
///
/// `docker-netattach web` is short for `docker-netattach attach web` (not for a name that is, or is
/// close to, a subcommand: use `attach NAME` for those).
#[derive(Debug, Parser)]
#[command(name = "docker-netattach", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: Global,
}

impl Cli {
    /// Parses the command line; a first word that is not a subcommand means `attach`, so
    /// `docker-netattach web` works, unless the word is (within edit distance 2 of) a subcommand
    /// name or alias: see [`short_form`].
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let args = crate::plugin::strip_plugin_arg(args);
        if args.len() == 2 && args[1] == crate::plugin::METADATA_COMMAND {
            let mut cli = Cli::try_parse_from([args[0].clone(), "list".into()])?;
            cli.command = Command::PluginMetadata;
            return Ok(cli);
        }
        if let Some(cli) = parse_plain(&args, |k| std::env::var_os(k)).or_else(|| parse_one(&args))
        {
            return Ok(cli);
        }
        match Cli::try_parse_from(&args) {
            Err(e)
                if args.len() > 1
                    && matches!(
                        e.kind(),
                        clap::error::ErrorKind::InvalidSubcommand
                            | clap::error::ErrorKind::UnknownArgument
                    ) =>
            {
                match short_form::classify(&Cli::command(), &args[1..]) {
                    Word::Subcommand => Err(e),
                    Word::NearMiss { word, meant } => Err(near_miss(&args[0], &word, &meant)),
                    Word::Container => {
                        let mut with_attach = args;
                        with_attach.insert(1, "attach".into());
                        Cli::try_parse_from(with_attach)
                    }
                }
            }
            other => other,
        }
    }
}

/// The plainest and most frequent lines, `attach NAME` and `detach NAME` (no option), built
/// without clap: even the one-subcommand parse below builds ~25 arguments first, and with the
/// first touch of clap's code that held an attach's Docker requests back by ~0.1 ms (exec to
/// the runtime's first system call: 241-250 µs with it, 148-159 µs without, medians of 30
/// attaches traced with `perf record -e raw_syscalls:sys_enter`). The result is the `Cli` clap
/// gives for the same line, defaults and the three environment variables of the global
/// options included (unit tests compare the two, also in a child process with the variables
/// set); an empty variable, a `DOCKER_HOST` that is not UTF-8, and every other line go to clap,
/// so its messages and rules stay the only ones.
fn parse_plain(args: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Option<Cli> {
    let [_, sub, name] = args else { return None };
    let name = name
        .to_str()
        .filter(|n| !n.is_empty() && !n.starts_with('-'))?;
    // Unset: the default; set: the value. Set but empty: clap's to judge (it refuses an empty
    // --state-dir, for one).
    let path = |key: &str, default: &str| match env(key) {
        None => Some(PathBuf::from(default)),
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
    };
    let host = match env("DOCKER_HOST") {
        None => None,
        Some(v) => Some(v.into_string().ok().filter(|h| !h.is_empty())?),
    };
    let global = Global {
        state_dir: path("DOCKER_NETATTACH_STATE_DIR", DEFAULT_STATE_DIR)?,
        proc_root: path("DOCKER_NETATTACH_PROC_ROOT", crate::procroot::DEFAULT)?,
        verbose: 0,
        host,
    };
    let command = match sub.to_str()? {
        "attach" => Command::Attach(AttachArgs {
            container: Some(name.to_string()),
            netns: None,
            network: crate::docker::DEFAULT_NETWORK.to_string(),
            bridge: None,
            subnet: None,
            gateway: None,
            ip: None,
            ip6: None,
            default_route: false,
            no_default_route: false,
            dns: Vec::new(),
            mac: None,
            mtu: None,
            route: Vec::new(),
            ifname: None,
            netns_name: None,
            json: false,
            dry_run: false,
            explain: false,
        }),
        "detach" => Command::Detach(DetachArgs {
            container: name.to_string(),
            network: None,
            json: false,
        }),
        _ => return None,
    };
    Some(Cli { command, global })
}

/// The two commands run most (`attach ...`, `detach ...`, the subcommand first) parsed against
/// a tree that holds only that subcommand and the global options. clap builds the arguments of
/// every subcommand before it parses (0.2-0.3 ms of an attach here, most of it the other
/// subcommands'); the result is the same `Cli`, from the same derived definitions (a unit test
/// compares the two parses over many command lines). What this does not take (an error,
/// `--help`, `--version`, any other form) returns `None` and goes to the full parse, so every
/// message is the full tree's.
fn parse_one(args: &[OsString]) -> Option<Cli> {
    let sub = match args.get(1)?.to_str()? {
        "attach" => AttachArgs::augment_args(clap::Command::new("attach")),
        "detach" => DetachArgs::augment_args(clap::Command::new("detach")),
        _ => return None,
    };
    let matches = Global::augment_args(clap::Command::new("docker-netattach"))
        .subcommand(sub)
        .subcommand_required(true)
        .try_get_matches_from(args)
        .ok()?;
    Cli::from_arg_matches(&matches).ok()
}

/// `error: unrecognized subcommand 'lsit' — did you mean 'list'?`, and the long form that
/// attaches a container of that name. Exit code 2, as every clap usage error.
fn near_miss(argv0: &OsString, word: &str, meant: &str) -> clap::Error {
    let bin = Path::new(argv0)
        .file_name()
        .unwrap_or(argv0)
        .to_string_lossy();
    clap::Error::raw(
        ErrorKind::InvalidSubcommand,
        format!(
            "unrecognized subcommand '{word}' — did you mean '{meant}'?\n\n\
             To attach a container named '{word}', use the long form: `{bin} attach {word}`.\n"
        ),
    )
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where leases are kept.
    #[arg(long, global = true, env = "DOCKER_NETATTACH_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Where the host's /proc is mounted, for a daemon in a container that cannot share the
    /// host's PID namespace (a Swarm service: -v /proc:/host/proc:ro --proc-root /host/proc).
    /// Netns links still point at /proc/PID/ns/net, the host's path.
    #[arg(long, global = true, value_name = "DIR", env = "DOCKER_NETATTACH_PROC_ROOT", default_value = crate::procroot::DEFAULT)]
    pub proc_root: PathBuf,

    /// Print details on stderr (repeat for debug logs; RUST_LOG also works).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The Docker engine, unix:///path/docker.sock or tcp://HOST:PORT, like `docker -H`
    /// [default: unix:///var/run/docker.sock].
    #[arg(
        short = 'H',
        long,
        global = true,
        value_name = "URL",
        env = "DOCKER_HOST"
    )]
    pub host: Option<String>,
}

// One command line is parsed per process: the size of `Attach` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach a running container to a Docker bridge network; prints the address.
    Attach(AttachArgs),
    /// Remove a container's interface, netns link and lease (idempotent).
    Detach(DetachArgs),
    /// List attachments.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Print every attachment of containers (networks, addresses, MAC, interfaces, netns link,
    /// status) as a JSON array.
    Inspect(InspectArgs),
    /// Daemon: attach labelled containers when they start (again after every restart), clean up
    /// after them, and serve read-only HTTP endpoints.
    Watch(WatchArgs),
    /// Remove leases, netns links and host veths left behind by containers or namespaces that
    /// no longer exist.
    Gc(GcArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command with --out-dir.
    Man(ManArgs),
    /// The docker CLI's plugin discovery (`docker-cli-plugin-metadata`): recognised by
    /// [`Cli::parse_args`] before clap, so it shows in no help, completion or man page.
    #[command(skip)]
    PluginMetadata,
    /// Check the host and print what will bite; exits 1 when something is wrong.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Docker networks to check besides those with leases.
    #[arg(long = "network", value_name = "NAME", default_values_t = vec!["bridge".to_string()])]
    pub networks: Vec<String>,

    /// Print the findings as a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Container name, ID or unique ID prefix.
    #[arg(required_unless_present = "netns", conflicts_with = "netns")]
    pub container: Option<String>,

    /// Attach a network namespace instead of a container: a name under /var/run/netns
    /// (`ip netns add NAME`) or a path such as /proc/PID/ns/net.
    #[arg(long, value_name = "NAME|PATH")]
    pub netns: Option<String>,

    /// Docker network to attach to (bridge driver).
    #[arg(long, default_value = crate::docker::DEFAULT_NETWORK, conflicts_with = "bridge")]
    pub network: String,

    /// A Linux bridge outside Docker (created, addressed and brought up if missing; removed
    /// by `detach` once empty if it was created here). Needs --subnet.
    #[arg(long, value_name = "NAME", requires = "subnet")]
    pub bridge: Option<String>,

    /// Subnet of --bridge, e.g. 10.77.0.0/24.
    #[arg(long, value_name = "CIDR", requires = "bridge")]
    pub subnet: Option<Subnet>,

    /// Gateway of --bridge [default: the bridge's address in the subnet, or the first address
    /// of the subnet when the bridge is created].
    #[arg(long, value_name = "A.B.C.D", requires = "bridge")]
    pub gateway: Option<Ipv4Addr>,

    /// Ask for this address instead of choosing a free one.
    #[arg(long, value_name = "A.B.C.D")]
    pub ip: Option<Ipv4Addr>,

    /// Ask for this IPv6 address (on a network with IPv6).
    #[arg(long, value_name = "ADDR")]
    pub ip6: Option<Ipv6Addr>,

    /// Give this attachment the default route(s) even if another one has them.
    #[arg(long, conflicts_with = "no_default_route")]
    pub default_route: bool,

    /// Do not touch the container's default route(s).
    #[arg(long)]
    pub no_default_route: bool,

    /// Name server for programs run with `ip netns exec` (writes
    /// /etc/netns/<netns-name>/resolv.conf; repeatable).
    #[arg(long, value_name = "ADDR")]
    pub dns: Vec<IpAddr>,

    /// MAC address of the interface inside the container (unicast) [default: 02:42: followed by
    /// the four bytes of the IPv4 address, so a reused address keeps its MAC].
    #[arg(long, value_name = "ADDR")]
    pub mac: Option<Mac>,

    /// MTU of the interface (and its host end), from 68 (1280 with IPv6) up to the bridge's
    /// MTU [default: the network's MTU].
    #[arg(long, value_name = "N")]
    pub mtu: Option<u32>,

    /// Add a route inside the container via GATEWAY, which must be in the attachment's subnet
    /// [default gateway: the network's] (repeatable; IPv6 routes need an IPv6 attachment).
    #[arg(long, value_name = "CIDR[@GATEWAY]")]
    pub route: Vec<RouteArg>,

    /// Interface name inside the container [default: eth0]. Needed for a container whose
    /// network mode is not `none` (e.g. eth1).
    #[arg(long)]
    pub ifname: Option<String>,

    /// Name of the link under /var/run/netns [default: the container's name].
    #[arg(long)]
    pub netns_name: Option<String>,

    /// Print the attachment as a JSON record instead of the address.
    #[arg(long)]
    pub json: bool,

    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: print the equivalent `ip` commands.
    #[arg(long, requires = "dry_run")]
    pub explain: bool,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Container name, ID or unique ID prefix (also works after `docker rm`).
    pub container: String,

    /// Only detach from this network.
    #[arg(long)]
    pub network: Option<String>,

    /// Print the released attachments as a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the attachments of these containers (name, ID or unique ID prefix, as for detach).
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,

    /// Only the attachments on this network (name or ID).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,

    /// Print only the short container IDs, one per container.
    #[arg(short, long, conflicts_with_all = ["json", "format"])]
    pub quiet: bool,

    /// Print each attachment with a Go template, as `docker ps --format` does: fields .ID .Name
    /// .Network .IP .IPv6 .MAC .Status .Interface .HostInterface .Netns .Bridge .Gateway and the
    /// --json keys (.container_id, .ip, ...); '{{json .}}' prints the record; a `table` prefix
    /// prints a header row.
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "json")]
    pub format: Option<String>,

    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Container name, ID or unique ID prefix (or the name of a --netns target).
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Options of the `watch` daemon.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Address of the read-only HTTP endpoints (/healthz, /readyz, /version, /metrics,
    /// /attachments). Loopback by default; anything else exposes them to the network. A host
    /// name is resolved at start-up and the first address it gives is used (`localhost:9180`).
    /// `auto` (the image's default): 0.0.0.0:80 in a network namespace of its own,
    /// 127.0.0.1:9180 when this may be the host's (`--network=host`).
    #[arg(long, value_name = "HOST:PORT|auto", default_value = "127.0.0.1:9180")]
    pub listen: crate::watch::listen::Listen,

    /// Also serve requests whose Host header is NAME (repeatable). Loopback names and the
    /// endpoints' own address are always served; other names are refused (DNS rebinding).
    #[arg(
        long = "allow-host",
        value_name = "NAME",
        env = "DOCKER_NETATTACH_ALLOW_HOST",
        value_delimiter = ','
    )]
    pub allow_host: Vec<String>,

    /// Label prefix: a container is attached when it carries `<prefix>.network=<network>`
    /// (optional `<prefix>.ip`, `<prefix>.ifname`, `<prefix>.netns-name`).
    #[arg(long, value_name = "PREFIX", default_value = "netattach")]
    pub label_prefix: String,

    /// Seconds between full reconciles while Docker is connected (0: only at start-up and after
    /// each reconnect).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub resync: u64,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// List what would be removed and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the removed (or, with --dry-run, removable) objects as a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate for.
    pub shell: clap_complete::Shell,

    #[command(flatten)]
    pub not_used: NotUsed,
}

/// `--state-dir` and `--host` mean nothing to `completions` and `man`: these hidden arguments
/// take their ids there, so clap does not add the global ones to those commands' help.
#[derive(Debug, Args)]
pub struct NotUsed {
    #[arg(long = "state-dir", id = "state_dir", hide = true)]
    pub state_dir: Option<PathBuf>,
    #[arg(long = "host", id = "host", hide = true)]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write docker-netattach.1 and one page per subcommand into this directory instead of
    /// printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    #[command(flatten)]
    pub not_used: NotUsed,
}

#[cfg(test)]
mod tests;
