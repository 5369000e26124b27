//! The attach transaction. Side effects: lease files, an optional bridge, the netns link, the
//! veth pair, the container's interface configuration, /etc/netns/<name>/resolv.conf. Every
//! completed step records its undo; on failure the undos run in reverse and the error names the
//! failed step, the cause and the outcome of the cleanup.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Result, anyhow, bail};

use crate::error::Errors;
use crate::lease::{InsertError, Lease, LeaseStore, StoreLock, Syncer, Ticket, hint};
use crate::link::{Announce, InterfaceConfig, Made, Rtnl, VethSpec, announcement_corrects};
use crate::model::Peer;
use crate::netns::{self, LinkOutcome, Netns, NsId};
use crate::plan::{self, AttachPlan};

/// Test-only fault injection: make attach fail right after the named step
/// (`lease`, `bridge`, `netns-link`, `veth`, `configure`, `dns`). Only a build with the
/// `test-hooks` feature (what `scripts/test` builds) reads it; a shipped binary ignores it.
#[cfg(any(test, feature = "test-hooks"))]
pub const FAIL_AFTER_ENV: &str = "DOCKER_NETATTACH_FAIL_AFTER";
/// Test-only: pause 1.5 s after the named step, holding the lock (to kill things in the middle
/// of an attach). `test-hooks` builds only, as [`FAIL_AFTER_ENV`].
#[cfg(feature = "test-hooks")]
pub const PAUSE_AFTER_ENV: &str = "DOCKER_NETATTACH_PAUSE_AFTER";

/// The test hooks of one attach; always empty unless built with `--features test-hooks`.
#[derive(Debug, Default)]
struct Hooks {
    #[cfg(feature = "test-hooks")]
    fail_after: Option<String>,
    #[cfg(feature = "test-hooks")]
    pause_after: Option<String>,
}

impl Hooks {
    #[cfg(feature = "test-hooks")]
    fn from(lookup: impl Fn(&str) -> Option<String>) -> Hooks {
        Hooks {
            fail_after: lookup(FAIL_AFTER_ENV),
            pause_after: lookup(PAUSE_AFTER_ENV),
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    fn from(_lookup: impl Fn(&str) -> Option<String>) -> Hooks {
        Hooks::default()
    }

    fn from_env() -> Hooks {
        Hooks::from(|var| std::env::var(var).ok())
    }

    /// After `step`: pause and/or fail if asked to.
    #[cfg(feature = "test-hooks")]
    fn after(&self, step: &str) -> Result<()> {
        if self.pause_after.as_deref() == Some(step) {
            std::thread::sleep(std::time::Duration::from_millis(1500));
        }
        if self.fail_after.as_deref() == Some(step) {
            bail!("injected failure after step '{step}' ({FAIL_AFTER_ENV})");
        }
        Ok(())
    }

    #[cfg(not(feature = "test-hooks"))]
    fn after(&self, _step: &str) -> Result<()> {
        Ok(())
    }
}

/// Clears what a restarted container's old attachment left (its veth died with its old
/// namespace; the link dangles or, its Pid reused, leads elsewhere) before it is attached again
/// with the same addresses. The old lease stays: [`run`] writes the new one over it, and writes
/// it back on failure, so the address is never free in between.
pub async fn replace_stale(rtnl: &Rtnl, old: &Lease) -> Result<()> {
    crate::detach::teardown(rtnl, old, false).await
}

/// What the attach acts on, as found under the lock.
pub struct Found<'a> {
    /// The target's open namespace.
    pub ns: &'a Netns,
    /// The bridge, when it exists (`None`: create it).
    pub bridge_index: Option<u32>,
    /// The old lease of this container on this network (a restart, or a killed attach).
    pub replacing: Option<&'a Lease>,
}

/// Runs the plan; on failure undoes what was done and returns the combined error.
pub async fn run(
    rtnl: &Rtnl,
    store: &LeaseStore,
    lock: &StoreLock,
    plan: &AttachPlan,
    found: Found<'_>,
) -> Result<()> {
    let Found {
        ns,
        bridge_index,
        replacing,
    } = found;
    let mut txn = Txn {
        rtnl,
        store,
        lock,
        // The process's one lease-sync thread (the caller started it before asking Docker).
        syncer: Syncer::shared(),
        done: Vec::new(),
        step: "start",
        hooks: Hooks::from_env(),
        hint: None,
    };
    match txn.steps(plan, ns, bridge_index, replacing).await {
        Ok(()) => Ok(()),
        Err(cause) => Err(txn.rollback(cause).await),
    }
}

/// A completed step and how to take it back.
enum Undo {
    Lease(Box<Lease>),
    /// The old lease of a re-attach, to be written back over the new record.
    Restore(Box<Lease>),
    /// A bridge this attach created (name, index): the only kind of bridge it ever deletes.
    Bridge(String, u32),
    NetnsLink(String, NsId),
    Veth(String),
    Dns(String),
}

impl Undo {
    fn what(&self) -> String {
        match self {
            Undo::Lease(l) => format!("lease {}", l.v4.ip),
            Undo::Restore(l) => format!("old lease {}", l.v4.ip),
            Undo::Bridge(b, _) => format!("bridge {b}"),
            Undo::NetnsLink(n, _) => format!("netns link {}", netns::link_path(n).display()),
            Undo::Veth(v) => format!("veth {v}"),
            Undo::Dns(n) => format!("/etc/netns/{n}/resolv.conf"),
        }
    }
}

struct Txn<'a> {
    rtnl: &'a Rtnl,
    store: &'a LeaseStore,
    lock: &'a StoreLock,
    syncer: &'a Syncer,
    done: Vec<Undo>,
    step: &'static str,
    hooks: Hooks,
    /// The veth's hint being written ([`Txn::veth_hint`]).
    hint: Option<Ticket<Result<()>>>,
}

impl Txn<'_> {
    fn finished(&mut self, step: &'static str) -> Result<()> {
        self.step = step;
        tracing::debug!(step, "done");
        self.hooks.after(step)
    }

    async fn steps(
        &mut self,
        p: &AttachPlan,
        ns: &Netns,
        bridge_index: Option<u32>,
        replacing: Option<&Lease>,
    ) -> Result<()> {
        let lease = &p.lease;
        self.step = "lease";
        match replacing {
            // Same container, network and addresses: the new record replaces the old one.
            Some(old) if old.v4.ip == lease.v4.ip && old.ip6() == lease.ip6() => {
                self.store.rewrite_reservation(self.lock, lease)?;
                self.done.push(Undo::Restore(Box::new(old.clone())));
            }
            _ => {
                if let Some(old) = replacing {
                    self.store.remove(self.lock, old)?;
                    self.done.push(Undo::Restore(Box::new(old.clone())));
                }
                match self.store.insert(self.lock, lease) {
                    Ok(()) => {}
                    Err(InsertError::Taken(ip)) => {
                        bail!("{ip} was leased by another attach meanwhile; try again")
                    }
                    Err(InsertError::Other(e)) => return Err(e),
                }
                self.done.push(Undo::Lease(Box::new(lease.clone())));
            }
        }
        // Synced on a thread of its own (or, in a one-shot attach, by a child it starts:
        // lease/durable.rs) while the kernel work runs; dropped on failure.
        let completion = self
            .store
            .prepare_completion(self.lock, lease, self.syncer)?;
        self.finished("lease")?;

        self.step = "bridge";
        let bridge_index = match bridge_index {
            Some(i) => i,
            None => {
                let mac = plan::mac_for(lease.v4.gateway);
                match self.rtnl.create_bridge(&lease.bridge, mac).await? {
                    Made::Created(br) => {
                        self.done.push(Undo::Bridge(lease.bridge.clone(), br.index));
                        self.rtnl
                            .add_address(
                                br.index,
                                IpAddr::V4(lease.v4.gateway),
                                lease.v4.prefix_len,
                            )
                            .await?;
                        self.store.mark_bridge(self.lock, &lease.bridge)?;
                        br.index
                    }
                    // Made meanwhile by someone outside our lock: used, never undone.
                    Made::Existing(br) => {
                        tracing::debug!(bridge = %lease.bridge, "bridge exists already; using it");
                        br.index
                    }
                }
            }
        };
        self.finished("bridge")?;

        self.step = "netns-link";
        let ours = replacing
            .filter(|old| old.netns_name == lease.netns_name)
            .map(Lease::netns_source);
        if netns::ensure_link(&lease.netns_name, ns, ours.as_deref())? == LinkOutcome::Created {
            self.done
                .push(Undo::NetnsLink(lease.netns_name.clone(), ns.id));
        }
        self.finished("netns-link")?;

        self.step = "veth";
        let spec = VethSpec {
            host_name: &lease.host_ifname,
            host_alias: &lease.container_id,
            bridge_index,
            peer_name: &lease.ifname,
            peer_mac: p.mac_bytes()?,
            mtu: p.mtu,
        };
        let created = self.rtnl.create_veth(&spec, ns.fd()).await;
        let ours = |i: crate::link::Iface| i.belongs_to(&lease.container_id, true);
        if created.is_ok()
            || self
                .rtnl
                .link_by_name(&lease.host_ifname)
                .await
                .ok()
                .flatten()
                .is_some_and(ours)
        {
            self.done.push(Undo::Veth(lease.host_ifname.clone()));
        }
        created?;
        self.finished("veth")?;

        self.step = "configure";
        // The host's neighbour entry for the address, read while the container is configured
        // (its own socket; the answer waits on ours): it decides whether the announcement below
        // goes out at all. Before the configuration, the veth's hint (src/lease/hint.rs): the
        // ID the host gives the container's namespace is asked while the socket in there is
        // opened, and the hint is written on the second sync thread while the container is
        // configured, off the attach's path.
        let mut hinted = None;
        let inside = async {
            let (nsid, opened) =
                futures::join!(self.rtnl.nsid_of(ns.fd()), async { open_container(p, ns) });
            let (rtnl, ifindex) = opened?;
            hinted = self.veth_hint(lease, ifindex, nsid.ok().flatten());
            configure_container(p, ns, &rtnl, ifindex).await?;
            Ok::<_, anyhow::Error>((rtnl, ifindex))
        };
        let (inside, cached) = futures::join!(
            inside,
            self.rtnl.cached_neighbour(bridge_index, lease.v4.ip)
        );
        self.hint = hinted;
        let inside = inside?;
        self.finished("configure")?;

        self.step = "dns";
        if !lease.dns.is_empty() {
            netns::write_resolv_conf(&lease.netns_name, &lease.dns)?;
            self.done.push(Undo::Dns(lease.netns_name.clone()));
        }
        self.finished("dns")?;

        // The namespace we configured must still be the one its source leads to: a container
        // that exited meanwhile (we held its namespace open, so the work "succeeded" in a
        // namespace that dies with us) is rolled back, not recorded.
        self.step = "verify";
        if netns::id_of(&ns.source) != Some(ns.id) {
            bail!(
                "'{}' exited during the attach ({} no longer leads to the namespace that was configured); start it and attach again",
                lease.container_name,
                ns.source.display()
            );
        }
        // The announcement decides nothing (the attachment works without it: the neighbours
        // would ask); it goes before the commit, which may wait for the lease's syncs (the
        // daemon's; a one-shot attach's sync child answers meanwhile more often): the first
        // answer does not wait for the disk.
        let (inside, ifindex) = inside;
        // The request is flooded to every port of the bridge: sent only when the host's cache
        // shows something to correct (src/link/neighbour.rs); a failed lookup sends it.
        let arp = match &cached {
            Ok(c) => announcement_corrects(c.as_ref(), &spec.peer_mac),
            Err(_) => true,
        };
        tracing::debug!(?cached, arp, "the host's neighbour entry for the address");
        let announce = Announce {
            ifindex,
            ifname: &lease.ifname,
            gateway: lease.v4.gateway,
            host_port: &lease.host_ifname,
            arp,
        };
        if let Err(e) = inside.announce(announce).await {
            tracing::warn!(
                "could not announce {} to the gateway {}: {e:#}; its neighbours learn it when they ask",
                lease.v4.ip,
                lease.v4.gateway
            );
        }
        self.step = "complete";
        self.store.commit(self.lock, completion)?;
        if let Some(Some(Err(e))) = self.hint.take().map(Ticket::wait) {
            tracing::debug!("{e:#}; a detach reads the veth in full");
        }
        Ok(())
    }

    /// Writes the hint of the lease's host veth ([`hint`]) on the second sync thread; `None`
    /// when the veth's index or the peer's namespace ID is unknown (a detach then reads the
    /// veth in full, as always). A rollback removes it.
    fn veth_hint(
        &self,
        lease: &Lease,
        peer_index: u32,
        nsid: Option<i32>,
    ) -> Option<Ticket<Result<()>>> {
        // Here only what must be asked on this thread (its namespace is the host socket's);
        // the boot ID is read on the sync thread.
        let index = self.rtnl.index_of(&lease.host_ifname).ok().flatten()?;
        let netns = hint::netns_here()?;
        let peer = Peer {
            index: peer_index,
            nsid: Some(nsid?),
        };
        let (root, name) = (self.store.root().to_path_buf(), lease.host_ifname.clone());
        let owner = lease.container_id.clone();
        Some(self.syncer.beside().run(move || {
            let place = hint::Place::of(netns).ok_or_else(|| anyhow!("cannot read the boot ID"))?;
            let hint = hint::VethHint {
                owner,
                place,
                index,
                peer,
            };
            hint::write(&root, &name, &hint)
        }))
    }

    async fn rollback(mut self, cause: anyhow::Error) -> anyhow::Error {
        let mut undone = Vec::new();
        let mut failed = Errors::new();
        // A hint being written is waited for, so that it goes with its veth below.
        if let Some(t) = self.hint.take() {
            let _ = t.wait();
        }
        for undo in self.done.iter().rev() {
            let res = match undo {
                Undo::Veth(name) => match self.rtnl.link_by_name(name).await {
                    Ok(Some(i)) => self.rtnl.delete(i.index).await.map(|_| ()),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
                .and_then(|()| hint::remove(self.store.root(), name)),
                Undo::Bridge(name, index) => match self.rtnl.link_by_name(name).await {
                    Ok(Some(i)) if i.index == *index => self.rtnl.delete(i.index).await.map(|_| ()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
                .and_then(|()| self.store.unmark_bridge(self.lock, name)),
                Undo::NetnsLink(name, id) => netns::remove_link(name, *id).map(|_| ()),
                Undo::Dns(name) => netns::remove_resolv_conf(name),
                Undo::Lease(l) => self.store.remove(self.lock, l),
                Undo::Restore(l) => self.store.rewrite(self.lock, l),
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
                failed
            )
        };
        anyhow!(
            "attach failed at step '{}': {cause:#} ({cleanup})",
            self.step
        )
    }
}

/// A netlink socket in the container's namespace, opened from this thread (no thread of its
/// own), and the index of the veth's end there: for the configuration and the announcement.
fn open_container(p: &AttachPlan, ns: &Netns) -> Result<(Rtnl, u32)> {
    let p = &p.lease;
    let rtnl = Rtnl::connect_in(ns)?;
    // Its index is all that is needed: asked without the RTNL lock (Rtnl::index_of).
    let ifindex = rtnl
        .index_of(&p.ifname)?
        .ok_or_else(|| anyhow!("interface {} vanished from the container", p.ifname))?;
    Ok((rtnl, ifindex))
}

/// Configures the container's interface through that socket, on this thread and runtime.
async fn configure_container(p: &AttachPlan, ns: &Netns, rtnl: &Rtnl, ifindex: u32) -> Result<()> {
    let p = &p.lease;
    let gateway4: Option<Ipv4Addr> = p.default_route.then_some(p.v4.gateway);
    rtnl.configure_interface(&InterfaceConfig {
        ifname: &p.ifname,
        ifindex,
        v4: (p.v4.ip, p.v4.prefix_len),
        v6: p.v6.map(|v| (v.ip, v.prefix_len)),
        gateway4,
        gateway6: p.v6.and_then(|v| v.gateway).filter(|_| p.default_route),
        routes: &p.routes,
        announce: None,
        netns: Some(ns),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in both builds: `cargo test` (what ships: the variables do nothing) and
    /// `cargo test --features test-hooks` (scripts/test runs both).
    #[test]
    fn test_hooks_exist_only_in_a_test_hooks_build() {
        let fail_after_lease = Hooks::from(|var| (var == FAIL_AFTER_ENV).then(|| "lease".into()));
        let failed = fail_after_lease.after("lease");
        assert_eq!(failed.is_err(), cfg!(feature = "test-hooks"), "{failed:?}");
        assert!(fail_after_lease.after("veth").is_ok());
        assert!(Hooks::from(|_| None).after("lease").is_ok());
    }
}
