//! `attach`: orchestration as a transaction. Gathers facts (Docker, bridge, namespace, leases),
//! plans, then executes step by step, recording an undo for each step; on any failure the undos
//! run in reverse and the error says what failed and whether cleanup succeeded.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use crate::docker::{ContainerInfo, DockerClient, NetworkInfo};
use crate::ipam::{IpamError, Pool};
use crate::lease::{InsertError, Lease, LeaseStore, StoreLock};
use crate::link::{Rtnl, VethSpec};
use crate::netns::{self, LinkOutcome, Netns, NsId};
use crate::plan::{self, AttachPlan};
use crate::privilege;

pub const DEFAULT_IFNAME: &str = "eth0";
/// Test-only fault injection: make attach fail right after the named step
/// (`lease`, `netns-link`, `veth`, `configure`).
pub const FAIL_AFTER_ENV: &str = "DOCKER_NETATTACH_FAIL_AFTER";

#[derive(Debug, Clone, Default)]
pub struct AttachOpts {
    pub container: String,
    pub network: String,
    pub ip: Option<Ipv4Addr>,
    pub ifname: Option<String>,
    pub netns_name: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug)]
pub enum Outcome {
    /// A new attachment (or a re-attachment after a restart) was made.
    Attached(Lease),
    /// The container was attached already; nothing changed.
    Existing(Lease),
    /// `--dry-run`: what would be done.
    Planned(AttachPlan),
}

/// Hints for people (stderr); kept apart from the result so the caller decides where they go.
pub type Hints = Vec<String>;

pub async fn attach(opts: &AttachOpts, state_dir: &Path) -> Result<(Outcome, Hints)> {
    if let Some(ifname) = &opts.ifname {
        plan::validate_ifname(ifname)?;
    }
    if let Some(name) = &opts.netns_name {
        plan::validate_netns_name(name)?;
    }
    if !opts.dry_run {
        privilege::require("attach")?;
    }
    let docker = DockerClient::connect()?;
    let rtnl = Rtnl::connect()?;
    let (container, network) = futures::join!(
        docker.container(&opts.container),
        docker.network(&opts.network)
    );
    let container = container?;
    let network = network?;
    tracing::debug!(pid = container.pid, network = %network.name, "docker facts");
    check_container(&container, opts)?;
    let ifname = opts.ifname.as_deref().unwrap_or(DEFAULT_IFNAME).to_string();
    let netns_name = opts
        .netns_name
        .clone()
        .unwrap_or_else(|| container.name.clone());
    plan::validate_netns_name(&netns_name)?;

    let bridge = rtnl.link_by_name(&network.bridge).await?.ok_or_else(|| {
        anyhow!(
            "bridge interface {} of network '{}' does not exist; check `ip link show {}` and restart Docker if it is gone",
            network.bridge,
            network.name,
            network.bridge
        )
    })?;
    let gateway = match network.gateway {
        Some(g) => g,
        None => rtnl.first_ipv4(bridge.index).await?.ok_or_else(|| {
            anyhow!(
                "network '{}' names no gateway and bridge {} has no IPv4 address; give the bridge its gateway address",
                network.name,
                network.bridge
            )
        })?,
    };
    let mtu = network.mtu.unwrap_or(bridge.mtu);
    tracing::debug!(%gateway, mtu, "bridge facts");
    let ns = Netns::of_pid(container.pid, &container.name)?;

    let mut hints = Vec::new();
    let store = if opts.dry_run {
        LeaseStore::open_existing(state_dir)?
    } else {
        Some(LeaseStore::open(state_dir)?)
    };
    let lock = match (&store, opts.dry_run) {
        (Some(s), false) => Some(s.lock()?),
        _ => None,
    };
    let existing = match &store {
        Some(s) => s.find(&container.id, &network.id)?,
        None => None,
    };
    let host_ifname = plan::host_ifname(&container.id, &network.id, &ifname);
    let ip = match &existing {
        Some(lease) => {
            if let Some(want) = opts.ip.filter(|w| *w != lease.ip) {
                bail!(
                    "container '{}' already holds {} on network '{}'; run `docker-netattach detach {}` before asking for {want}",
                    container.name,
                    lease.ip,
                    network.name,
                    container.name
                );
            }
            let same_ns = NsId {
                dev: lease.netns_dev,
                ino: lease.netns_ino,
            } == ns.id;
            if same_ns && rtnl.link_by_name(&lease.host_ifname).await?.is_some() {
                return Ok((Outcome::Existing(lease.clone()), hints));
            }
            lease.ip
        }
        None => {
            let mut taken: BTreeSet<u32> = match &store {
                Some(s) => s.taken(&network.id)?,
                None => BTreeSet::new(),
            };
            taken.extend(
                network
                    .endpoints
                    .iter()
                    .chain(&network.aux_addresses)
                    .chain([&gateway])
                    .map(|a| u32::from(*a)),
            );
            let pool = Pool {
                subnet: network.subnet,
                docker_range: network.ip_range,
            };
            if pool.docker_range.is_none() {
                hints.push(format!(
                    "hint: network '{}' has no fixed-cidr/IPRange, so Docker may one day hand out an address we chose; set \"fixed-cidr\" (docker0) or --ip-range (user networks) to make collisions impossible",
                    network.name
                ));
            }
            match opts.ip {
                Some(want) => {
                    pool.check(want, &taken).map_err(|e| ip_err(e, &network))?;
                    want
                }
                None => pool.choose(&taken).map_err(|e| ip_err(e, &network))?,
            }
        }
    };

    let plan = AttachPlan {
        container_id: container.id.clone(),
        container_name: container.name.clone(),
        network: network.name.clone(),
        network_id: network.id.clone(),
        bridge: network.bridge.clone(),
        ip,
        prefix_len: network.subnet.prefix_len(),
        gateway,
        mac: plan::format_mac(plan::mac_for(ip)),
        mtu,
        host_ifname,
        ifname,
        netns_name,
        pid: container.pid,
        // A container with Docker networking keeps its own default route.
        default_route: container.network_mode == "none",
    };
    if opts.dry_run {
        return Ok((Outcome::Planned(plan), hints));
    }
    let (Some(store), Some(lock)) = (store, lock) else {
        bail!("internal: no lease store outside --dry-run");
    };
    if let Some(stale) = existing {
        // Restarted container: its old namespace (and with it the old veth) is gone.
        replace_stale(&rtnl, &store, &lock, &stale).await?;
    }
    let lease = lease_of(&plan, ns.id);
    let mut txn = Txn::new(&rtnl, &store, &lock);
    match txn.run(&plan, &lease, &ns, bridge.index).await {
        Ok(()) => Ok((Outcome::Attached(lease), hints)),
        Err(cause) => Err(txn.rollback(cause).await),
    }
}

fn check_container(c: &ContainerInfo, opts: &AttachOpts) -> Result<()> {
    if !c.running {
        bail!(
            "container '{}' is not running; start it with `docker start {}`",
            c.name,
            c.name
        );
    }
    if c.network_mode.starts_with("container:") || c.network_mode == "host" {
        bail!(
            "container '{}' uses network mode '{}' and has no network namespace of its own; attach the container that owns the namespace",
            c.name,
            c.network_mode
        );
    }
    if c.network_mode != "none" && opts.ifname.is_none() {
        bail!(
            "container '{}' uses network mode '{}', not 'none'; use `docker network connect` for Docker networks, or pass --ifname eth1 to add another interface",
            c.name,
            c.network_mode
        );
    }
    Ok(())
}

fn ip_err(e: IpamError, network: &NetworkInfo) -> anyhow::Error {
    match e {
        IpamError::Exhausted { .. } => anyhow!(
            "network '{}': {e}; detach containers or use a larger subnet",
            network.name
        ),
        _ => anyhow!(
            "--ip refused on network '{}': {e}; choose another address or omit --ip",
            network.name
        ),
    }
}

fn lease_of(p: &AttachPlan, ns: NsId) -> Lease {
    Lease {
        container_id: p.container_id.clone(),
        container_name: p.container_name.clone(),
        network: p.network.clone(),
        network_id: p.network_id.clone(),
        bridge: p.bridge.clone(),
        ip: p.ip,
        prefix_len: p.prefix_len,
        gateway: p.gateway,
        mac: p.mac.clone(),
        host_ifname: p.host_ifname.clone(),
        ifname: p.ifname.clone(),
        netns_name: p.netns_name.clone(),
        pid: p.pid,
        netns_dev: ns.dev,
        netns_ino: ns.ino,
    }
}

async fn replace_stale(
    rtnl: &Rtnl,
    store: &LeaseStore,
    lock: &StoreLock,
    old: &Lease,
) -> Result<()> {
    if let Some(iface) = rtnl.link_by_name(&old.host_ifname).await? {
        if iface.alias.as_deref() == Some(old.container_id.as_str()) {
            rtnl.delete(iface.index).await?;
        }
    }
    netns::remove_link(
        &old.netns_name,
        NsId {
            dev: old.netns_dev,
            ino: old.netns_ino,
        },
    )?;
    store.remove(lock, old)
}

/// A completed step and how to take it back.
enum Undo {
    Lease(Box<Lease>),
    NetnsLink(String, NsId),
    Veth(String),
}

impl Undo {
    fn what(&self) -> String {
        match self {
            Undo::Lease(l) => format!("lease {}", l.ip),
            Undo::NetnsLink(n, _) => format!("netns link {}", netns::link_path(n).display()),
            Undo::Veth(v) => format!("veth {v}"),
        }
    }
}

struct Txn<'a> {
    rtnl: &'a Rtnl,
    store: &'a LeaseStore,
    lock: &'a StoreLock,
    done: Vec<Undo>,
    step: &'static str,
    fail_after: Option<String>,
}

impl<'a> Txn<'a> {
    fn new(rtnl: &'a Rtnl, store: &'a LeaseStore, lock: &'a StoreLock) -> Self {
        Txn {
            rtnl,
            store,
            lock,
            done: Vec::new(),
            step: "start",
            fail_after: std::env::var(FAIL_AFTER_ENV).ok(),
        }
    }

    fn finished(&mut self, step: &'static str) -> Result<()> {
        self.step = step;
        tracing::debug!(step, "done");
        if self.fail_after.as_deref() == Some(step) {
            bail!("injected failure after step '{step}' ({FAIL_AFTER_ENV})");
        }
        Ok(())
    }

    async fn run(
        &mut self,
        p: &AttachPlan,
        lease: &Lease,
        ns: &Netns,
        bridge_index: u32,
    ) -> Result<()> {
        self.step = "lease";
        match self.store.insert(self.lock, lease) {
            Ok(()) => {}
            Err(InsertError::Taken(ip)) => {
                bail!("{ip} was leased by another attach meanwhile; try again")
            }
            Err(InsertError::Other(e)) => return Err(e),
        }
        self.done.push(Undo::Lease(Box::new(lease.clone())));
        self.finished("lease")?;

        self.step = "netns-link";
        if netns::ensure_link(&p.netns_name, ns)? == LinkOutcome::Created {
            self.done.push(Undo::NetnsLink(p.netns_name.clone(), ns.id));
        }
        self.finished("netns-link")?;

        self.step = "veth";
        let spec = VethSpec {
            host_name: &p.host_ifname,
            host_alias: &p.container_id,
            bridge_index,
            peer_name: &p.ifname,
            peer_mac: p.mac_bytes(),
            mtu: p.mtu,
        };
        let created = self.rtnl.create_veth(&spec, ns.fd()).await;
        if created.is_ok()
            || self
                .rtnl
                .link_by_name(&p.host_ifname)
                .await
                .ok()
                .flatten()
                .is_some_and(|i| i.alias.as_deref() == Some(p.container_id.as_str()))
        {
            self.done.push(Undo::Veth(p.host_ifname.clone()));
        }
        created?;
        self.finished("veth")?;

        self.step = "configure";
        let (ifname, ip, prefix) = (p.ifname.clone(), p.ip, p.prefix_len);
        let gw = p.default_route.then_some(p.gateway);
        netns::run_in(ns.fd(), move || configure_inside(&ifname, ip, prefix, gw))?;
        self.finished("configure")
    }

    /// Undoes completed steps in reverse; the error names the failed step, the cause and the
    /// outcome of the cleanup.
    async fn rollback(self, cause: anyhow::Error) -> anyhow::Error {
        let mut undone = Vec::new();
        let mut failed = Vec::new();
        for undo in self.done.iter().rev() {
            let res = match undo {
                Undo::Veth(name) => match self.rtnl.link_by_name(name).await {
                    Ok(Some(i)) => self.rtnl.delete(i.index).await.map(|_| ()),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
                Undo::NetnsLink(name, id) => netns::remove_link(name, *id).map(|_| ()),
                Undo::Lease(l) => self.store.remove(self.lock, l),
            };
            match res {
                Ok(()) => undone.push(undo.what()),
                Err(e) => failed.push(format!("{}: {e:#}", undo.what())),
            }
        }
        let cleanup = if failed.is_empty() {
            if undone.is_empty() {
                "nothing to clean up".to_string()
            } else {
                format!("rolled back {}", undone.join(", "))
            }
        } else {
            format!(
                "CLEANUP FAILED for {}; run `docker-netattach gc` or remove them by hand",
                failed.join("; ")
            )
        };
        anyhow!(
            "attach failed at step '{}': {cause:#} ({cleanup})",
            self.step
        )
    }
}

/// Runs inside the container's namespace on a dedicated thread: its own runtime and socket.
fn configure_inside(ifname: &str, ip: Ipv4Addr, prefix: u8, gw: Option<Ipv4Addr>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| anyhow!("cannot start a runtime in the container namespace: {e}"))?;
    rt.block_on(async {
        let rtnl = Rtnl::connect()?;
        let iface = rtnl
            .link_by_name(ifname)
            .await?
            .ok_or_else(|| anyhow!("interface {ifname} vanished from the container"))?;
        rtnl.configure_inside(ifname, iface.index, ip, prefix, gw)
            .await
    })
}
