//! Kernel tier: the netlink, netns and ARP layers against the real kernel, each test in its own
//! throwaway namespaces ("host" with its own bridge, and "container"), never touching the real
//! host's interfaces. Needs root, not Docker.

mod common;

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use anyhow::Result;
use common::{NamedNs, NetnsProcess, RemoveOnDrop, need_root, ok, unique};
use docker_netattach::link::{Announce, InterfaceConfig, Rtnl, VethSpec};
use docker_netattach::netns::{self, Netns};
use docker_netattach::worker;

/// The namespace's file, to enter it.
fn file(ns: &NamedNs) -> File {
    File::open(netns::link_path(&ns.0)).unwrap()
}

/// The namespace, opened and checked, to run work in it (`worker::run`).
fn ns_of(ns: &NamedNs) -> Netns {
    Netns::open(&ns.0).unwrap()
}

/// A "host" namespace with bridge br0 at 10.99.0.1/24 and an empty "container" namespace.
fn setup() -> (NamedNs, NamedNs) {
    let host = NamedNs::new("nak-h");
    let ctr = NamedNs::new("nak-c");
    // An explicit MAC, as Docker gives docker0: otherwise the bridge takes the lowest port MAC,
    // and each change of it flushes the bridge's neighbour table.
    host.ip(&[
        "link",
        "add",
        "br0",
        "address",
        "02:00:00:00:99:01",
        "type",
        "bridge",
    ]);
    host.ip(&["addr", "add", "10.99.0.1/24", "dev", "br0"]);
    host.ip(&["link", "set", "br0", "up"]);
    // A neighbour port keeps the bridge's carrier up: an empty bridge flushes its ARP cache.
    host.ip(&[
        "link", "add", "keep0", "type", "veth", "peer", "name", "keep1",
    ]);
    host.ip(&["link", "set", "keep0", "master", "br0", "up"]);
    host.ip(&["link", "set", "keep1", "up"]);
    (host, ctr)
}

/// br0's address in [`setup`].
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

/// eth0 at `ip`/24, announced through br0 (whose port state is not visible from here), no
/// routes.
fn eth0_config(ifindex: u32, ip: Ipv4Addr) -> InterfaceConfig<'static> {
    InterfaceConfig {
        ifname: "eth0",
        ifindex,
        v4: (ip, 24),
        v6: None,
        gateway4: None,
        gateway6: None,
        routes: &[],
        announce: Some(Announce {
            ifindex,
            ifname: "eth0",
            gateway: GATEWAY,
            host_port: "nonexistent-in-this-view",
            arp: true,
        }),
        netns: None,
    }
}

/// A veth pair in one request: `host_name` on br0 in `host`, `eth0` (MAC derived from `ip`) in
/// `ctr`, down; then `then` runs on the host side's connection.
fn create_pair<T: Send + 'static>(
    host: &NamedNs,
    ctr: &NamedNs,
    host_name: &'static str,
    ip: Ipv4Addr,
    then: impl AsyncFnOnce(Rtnl) -> Result<T> + Send + 'static,
) -> Result<T> {
    let ctr_fd = file(ctr);
    worker::run("test", Some(&ns_of(host)), move || async move {
        let rtnl = Rtnl::connect()?;
        let br = rtnl.link_by_name("br0").await?.expect("br0");
        rtnl.create_veth(
            &VethSpec {
                host_name,
                host_alias: "0123456789abcdef",
                bridge_index: br.index,
                peer_name: "eth0",
                peer_mac: docker_netattach::plan::mac_for(ip),
                mtu: 1400,
            },
            ctr_fd.as_fd(),
        )
        .await?;
        then(rtnl).await
    })
}

fn attach_in(host: &NamedNs, ctr: &NamedNs, host_name: &'static str, ip: Ipv4Addr) -> Result<()> {
    create_pair(host, ctr, host_name, ip, async |_| Ok(()))?;
    worker::run("test", Some(&ns_of(ctr)), move || async move {
        let rtnl = Rtnl::connect()?;
        let eth0 = rtnl.link_by_name("eth0").await?.expect("eth0");
        rtnl.configure_interface(&InterfaceConfig {
            gateway4: Some(GATEWAY),
            ..eth0_config(eth0.index, ip)
        })
        .await
    })
}

#[test]
fn veth_in_one_request_configured_and_reachable_then_deleted() {
    if !need_root() {
        return;
    }
    let (host, ctr) = setup();
    // A stale neighbour entry for the address, as a previous holder would leave behind.
    host.ip(&[
        "neigh",
        "add",
        "10.99.0.7",
        "lladdr",
        "02:00:00:00:00:01",
        "dev",
        "br0",
        "nud",
        "stale",
    ]);
    attach_in(&host, &ctr, "vnatest0", Ipv4Addr::new(10, 99, 0, 7)).unwrap();
    // The container's announcement corrected it without any traffic from the host.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let neigh = host.ip(&["neigh", "show", "10.99.0.7", "dev", "br0"]);
        if neigh.contains("02:42:0a:63:00:07") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no gratuitous ARP seen: {neigh} / {}",
            host.ip(&["neigh"])
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        ok(
            "ip",
            &[
                "netns",
                "exec",
                &ctr.0,
                "cat",
                "/proc/sys/net/ipv4/conf/eth0/arp_notify"
            ]
        ),
        "1"
    );
    assert_eq!(
        ok(
            "ip",
            &[
                "netns",
                "exec",
                &ctr.0,
                "cat",
                "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"
            ]
        ),
        "1"
    );

    let link = host.ip(&["-d", "link", "show", "vnatest0"]);
    assert!(link.contains("master br0"), "{link}");
    assert!(link.contains("mtu 1400"), "{link}");
    assert!(link.contains("alias 0123456789abcdef"), "{link}");
    assert!(link.contains("state UP"), "{link}");
    let inside = ctr.ip(&["addr", "show", "eth0"]);
    assert!(inside.contains("10.99.0.7/24"), "{inside}");
    assert!(inside.contains("02:42:0a:63:00:07"), "{inside}");
    assert!(inside.contains("mtu 1400"), "{inside}");
    assert!(ctr.ip(&["link", "show", "lo"]).contains("UP"));
    assert!(
        ctr.ip(&["route"])
            .contains("default via 10.99.0.1 dev eth0")
    );
    // The host namespace reaches the container namespace through the bridge, and back.
    ok(
        "ip",
        &["netns", "exec", &host.0, "ping", "-c1", "-W2", "10.99.0.7"],
    );
    ok(
        "ip",
        &["netns", "exec", &ctr.0, "ping", "-c1", "-W2", "10.99.0.1"],
    );

    // Deleting the host end removes the pair; deleting again reports "already gone".
    let gone = worker::run("test", Some(&ns_of(&host)), move || async move {
        let rtnl = Rtnl::connect()?;
        let v = rtnl.link_by_name("vnatest0").await?.expect("vnatest0");
        let first = rtnl.delete(v.index).await?;
        let second = rtnl.delete(v.index).await?;
        Ok((first, second, rtnl.link_by_name("vnatest0").await?))
    })
    .unwrap();
    assert_eq!(gone, (true, false, None));
    assert!(!ctr.ip(&["link"]).contains("eth0"));
}

#[test]
fn existing_names_are_reported_not_clobbered() {
    if !need_root() {
        return;
    }
    let (host, ctr) = setup();
    attach_in(&host, &ctr, "vnatest1", Ipv4Addr::new(10, 99, 0, 8)).unwrap();
    // Same host name again: EEXIST becomes a sentence; the first pair is untouched.
    let err = attach_in(&host, &ctr, "vnatest1", Ipv4Addr::new(10, 99, 0, 9)).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    // Same peer name inside the container under a new host name.
    let err = attach_in(&host, &ctr, "vnatest2", Ipv4Addr::new(10, 99, 0, 9)).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    assert!(!host.ip(&["link"]).contains("vnatest2"));
    assert!(ctr.ip(&["addr", "show", "eth0"]).contains("10.99.0.8/24"));
}

#[test]
fn a_missing_bridge_is_none_and_a_long_name_is_an_error() {
    if !need_root() {
        return;
    }
    let (host, ctr) = setup();
    let missing = worker::run("test", Some(&ns_of(&host)), || async {
        Rtnl::connect()?.link_by_name("nosuchbr").await
    })
    .unwrap();
    assert_eq!(missing, None);
    let ctr_fd = file(&ctr);
    let err = worker::run("test", Some(&ns_of(&host)), move || async move {
        let rtnl = Rtnl::connect()?;
        let br = rtnl.link_by_name("br0").await?.expect("br0");
        rtnl.create_veth(
            &VethSpec {
                host_name: "vna-this-is-too-long",
                host_alias: "x",
                bridge_index: br.index,
                peer_name: "eth0",
                peer_mac: [2, 0x42, 0, 0, 0, 1],
                mtu: 1500,
            },
            ctr_fd.as_fd(),
        )
        .await
    })
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("longer than 15 bytes") || text.contains("cannot create"),
        "{text}"
    );
}

#[test]
fn netns_links_are_made_replaced_when_stale_and_never_stolen() {
    if !need_root() {
        return;
    }
    // A process of our own with its own namespace stands in for a container.
    let child = NetnsProcess::start(30);
    let pid = child.pid();
    let ns = netns::Netns::of_pid(pid, "unshare").unwrap();
    let name = unique("nak-l");
    let path = netns::link_path(&name);
    let _rm = RemoveOnDrop(path.clone());

    assert_eq!(
        netns::ensure_link(&name, &ns, None).unwrap(),
        netns::LinkOutcome::Created
    );
    assert_eq!(
        netns::ensure_link(&name, &ns, None).unwrap(),
        netns::LinkOutcome::Existing
    );
    assert_eq!(netns::id_of(&path), Some(ns.id));
    ok("ip", &["netns", "exec", &name, "true"]);

    // A link of that name to another live namespace (ours) is refused, and not removed.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/proc/self/ns/net", &path).unwrap();
    let err = netns::ensure_link(&name, &ns, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is taken"), "{err}");
    assert!(!netns::remove_link(&name, ns.id).unwrap());
    assert!(path.exists());
    // Unless its text is what we wrote for the attachment being replaced (its Pid reused).
    let err = netns::ensure_link(&name, &ns, Some(std::path::Path::new("/proc/1/ns/net")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is taken"), "{err}");
    assert_eq!(
        netns::ensure_link(&name, &ns, Some(std::path::Path::new("/proc/self/ns/net"))).unwrap(),
        netns::LinkOutcome::Created
    );
    assert_eq!(netns::id_of(&path), Some(ns.id));

    // A dangling link is stale: replaced by ensure_link, removed by remove_link.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/proc/999999999/ns/net", &path).unwrap();
    assert_eq!(
        netns::ensure_link(&name, &ns, None).unwrap(),
        netns::LinkOutcome::Created
    );
    assert!(netns::remove_link(&name, ns.id).unwrap());
    assert!(std::fs::symlink_metadata(&path).is_err());
}

/// STYLE practice 5: only the worker's own thread enters the namespace; the caller's thread
/// stays where it was, and the work sees the namespace it asked for.
#[test]
fn worker_enters_the_namespace_on_its_own_thread_only() {
    if !need_root() {
        return;
    }
    let here = || netns::id_of(std::path::Path::new("/proc/thread-self/ns/net"));
    let before = here();
    assert!(before.is_some());
    let ns = NamedNs::new("nak-w");
    let target = ns_of(&ns);
    let want = target.id;
    let inside = worker::run("test", Some(&target), move || async move {
        Ok(netns::id_of(std::path::Path::new(
            "/proc/thread-self/ns/net",
        )))
    })
    .unwrap();
    assert_eq!(inside, Some(want));
    assert_ne!(inside, before);
    assert_eq!(here(), before, "the caller's thread changed namespace");
    // An error from inside comes back unchanged.
    let err = worker::run("test", Some(&target), || async {
        Err::<(), _>(anyhow::anyhow!("from inside"))
    })
    .unwrap_err();
    assert_eq!(format!("{err:#}"), "from inside");
}

/// A fresh veth end drops everything sent through it (its tx qdisc is `noop`) until the kernel's
/// linkwatch has handled its carrier; the gateway's ARP reply to the first announcement was lost
/// that way in 9 of 20 attaches (perf, skb:kfree_skb: QDISC_DROP at the host end), because the
/// bridge port showed "forwarding" from the moment it was enslaved. The announcement now waits
/// until `passes_packets` (operationally up) holds for both ends; this pins what it reads.
#[test]
fn a_veth_end_passes_packets_only_once_it_is_operationally_up() {
    if !need_root() {
        return;
    }
    let (host, ctr) = setup();
    let ip = Ipv4Addr::new(10, 99, 0, 9);
    let host_before = create_pair(&host, &ctr, "vnatest2", ip, async |rtnl| {
        rtnl.passes_packets("vnatest2").await
    })
    .unwrap();
    // The peer is down: no carrier, so the host end passes nothing yet, though it is up (and,
    // enslaved while its state was still unknown, may already show as a forwarding port).
    let shown = host.ip(&["link", "show", "vnatest2"]);
    assert!(!host_before, "{shown}");
    assert!(
        shown.contains(",UP") && !shown.contains("state UP"),
        "{shown}"
    );
    let (before, after) = worker::run("test", Some(&ns_of(&ctr)), move || async move {
        let rtnl = Rtnl::connect()?;
        let before = rtnl.passes_packets("eth0").await?;
        let eth0 = rtnl.link_by_name("eth0").await?.expect("eth0");
        rtnl.configure_interface(&eth0_config(eth0.index, ip))
            .await?;
        Ok((before, rtnl.passes_packets("eth0").await?))
    })
    .unwrap();
    assert!(!before, "eth0 passed packets while down");
    let shown = ctr.ip(&["link", "show", "eth0"]);
    assert!(after && shown.contains("state UP"), "{shown}");
    assert!(wait_for(|| host
        .ip(&["link", "show", "vnatest2"])
        .contains("state UP")));
}

/// The kernel's linkwatch worker lets a fresh veth end pass packets some hundred microseconds
/// after the pair came up; `carrier::settle` (the ethtool "get link" request) has the kernel do
/// it at once, on the caller's thread, and answers whether the end has a carrier. Ten pairs in
/// a row: before eth0 is up the host end has none (the attach then waits for the worker); right
/// after, both ends answer "link" and pass packets. (On an idle machine the worker is often
/// done by then anyway; what this pins is the answer the attach relies on.)
#[test]
fn settled_veth_ends_pass_packets_at_once() {
    use docker_netattach::link::carrier;
    if !need_root() {
        return;
    }
    let (host, ctr) = setup();
    let missing = carrier::settle("vnanothere0").unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENODEV), "{missing}");
    for round in 0..10 {
        let before = create_pair(
            &host,
            &ctr,
            "vnatest5",
            Ipv4Addr::new(10, 99, 0, 12),
            async |_| Ok(carrier::settle("vnatest5")?),
        )
        .unwrap();
        assert!(!before, "round {round}: a carrier while the peer is down");
        let inside = worker::run("test", Some(&ns_of(&ctr)), move || async move {
            let rtnl = Rtnl::connect()?;
            let eth0 = rtnl.link_by_name("eth0").await?.expect("eth0");
            let cfg = InterfaceConfig {
                announce: None,
                ..eth0_config(eth0.index, Ipv4Addr::new(10, 99, 0, 12))
            };
            rtnl.configure_interface(&cfg).await?;
            let link = carrier::settle("eth0")?;
            Ok((link, rtnl.passes_packets("eth0").await?))
        })
        .unwrap();
        let ctr_ns = ns_of(&ctr);
        let (outside, through_socket) =
            worker::run("test", Some(&ns_of(&host)), move || async move {
                let rtnl = Rtnl::connect()?;
                let link = carrier::settle("vnatest5")?;
                let passes = rtnl.passes_packets("vnatest5").await?;
                // What the announcement does for the container's end: from this (host) thread,
                // through a connection opened into the container's namespace.
                let inside = Rtnl::connect_in(&ctr_ns)?;
                let through_socket = (
                    inside.settle_carrier("eth0")?,
                    inside
                        .settle_carrier("vnatest5")
                        .map_err(|e| e.raw_os_error()),
                );
                let v = rtnl.link_by_name("vnatest5").await?.expect("vnatest5");
                rtnl.delete(v.index).await?;
                Ok(((link, passes), through_socket))
            })
            .unwrap();
        assert_eq!(inside, (true, true), "round {round}: eth0");
        assert_eq!(outside, (true, true), "round {round}: the host end");
        assert_eq!(
            through_socket,
            (true, Err(Some(libc::ENODEV))),
            "round {round}: eth0 through the container's connection, and no host name there"
        );
    }
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !cond() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

/// `detach` returns once the kernel has unregistered the pair, not once it has freed it (the
/// RCU barrier after that, most of a deletion's ~20 ms, is waited out by a child process): by
/// then neither end may be visible anywhere, the container's address and routes must be gone,
/// and the child must hold none of the caller's descriptors (a `$(…)` reading the caller's
/// stdout would otherwise wait for it).
#[test]
fn a_deleted_veth_is_gone_from_both_namespaces_when_delete_returns() {
    use docker_netattach::link::unregister::{self, Deleted};
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    if !need_root() {
        return;
    }
    let (host, ctr) = setup();
    attach_in(&host, &ctr, "vnatest3", Ipv4Addr::new(10, 99, 0, 11)).unwrap();
    let limit = std::time::Duration::from_secs(10);
    let (outcome, again, shown, pipe_r) =
        worker::run("test", Some(&ns_of(&host)), move || async move {
            let rtnl = Rtnl::connect()?;
            let v = rtnl.link_by_name("vnatest3").await?.expect("vnatest3");
            let peer = v.peer.expect("a veth names its peer");
            assert!(peer.nsid.is_some(), "the peer is in another namespace");
            // Held by this process only: the child must not keep a copy open.
            let (pipe_r, pipe_w) = nix::unistd::pipe().unwrap();
            let outcome = unregister::delete(v.index, Some(peer), limit)?;
            drop(pipe_w);
            let shown = rtnl.link_by_name("vnatest3").await?;
            let again = unregister::delete(v.index, Some(peer), limit)?;
            Ok((outcome, again, shown, pipe_r))
        })
        .unwrap();
    assert_eq!(outcome, Deleted::Unregistered);
    assert_eq!(shown, None);
    assert_eq!(again, Deleted::Missing);
    let inside = ctr.ip(&["addr"]);
    assert!(
        !inside.contains("eth0") && !inside.contains("10.99.0.11"),
        "{inside}"
    );
    assert!(!ctr.ip(&["route"]).contains("default"));
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&pipe_r),
        PollFlags::POLLIN,
    )];
    poll(&mut fds, PollTimeout::ZERO).unwrap();
    assert!(
        fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP)),
        "the deleting child still holds the caller's descriptors"
    );
}

#[test]
fn index_of_answers_for_the_connections_namespace_without_reading_the_link() {
    if !need_root() {
        return;
    }
    let (host, ctr) = setup();
    // The host side's connection: br0 and keep0 are there, eth0 is not.
    let (br0, by_name, keep0, eth0, long, empty) =
        worker::run("test", Some(&ns_of(&host)), || async {
            let rtnl = Rtnl::connect()?;
            Ok((
                rtnl.index_of("br0")?,
                rtnl.link_by_name("br0").await?.map(|i| i.index),
                rtnl.index_of("keep0")?,
                rtnl.index_of("eth0")?,
                rtnl.index_of("a-name-longer-than-15")?,
                rtnl.index_of("")?,
            ))
        })
        .unwrap();
    assert!(br0.is_some());
    assert_eq!(br0, by_name);
    assert!(keep0.is_some() && keep0 != br0);
    assert_eq!((eth0, long, empty), (None, None, None));
    // A connection opened into the container's namespace from a thread that stays in the host
    // one answers for the container's namespace (the socket's, not the calling thread's).
    let ctr_ns = ns_of(&ctr);
    let (ctr_lo, ctr_br0) = worker::run("test", Some(&ns_of(&host)), move || async move {
        let rtnl = Rtnl::connect_in(&ctr_ns)?;
        Ok((rtnl.index_of("lo")?, rtnl.index_of("br0")?))
    })
    .unwrap();
    assert_eq!(ctr_lo, Some(1));
    assert_eq!(ctr_br0, None);
    // Gone once deleted.
    let after = worker::run("test", Some(&ns_of(&host)), || async {
        let rtnl = Rtnl::connect()?;
        let keep0 = rtnl.index_of("keep0")?.expect("keep0");
        rtnl.delete(keep0).await?;
        rtnl.index_of("keep0")
    })
    .unwrap();
    assert_eq!(after, None);
}
