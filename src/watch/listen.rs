//! Where the daemon's HTTP endpoints listen (`--listen ADDR:PORT`, `--listen HOST:PORT` or
//! `--listen auto`) and which `Host` names they answer. Pure but for [`facts`], which reads /proc
//! and dumps this network namespace's interfaces over netlink (read-only), and [`bind`], which
//! resolves a host name (getaddrinfo) and binds one TCP socket.
//!
//! `auto` (the image's default command) listens on `0.0.0.0:80` only when the process is in a
//! network namespace of its own, and on `127.0.0.1:9180` when it may be in the host's: run with
//! `--network=host` the image must not expose the endpoints on the host's public addresses
//! unless asked (`--listen 0.0.0.0:9180`). "Its own" must be proven, so any doubt means loopback:
//! - it shares the namespace of PID 1 while not being PID 1 itself (`--pid=host` plus
//!   `--network=host`, or run on the host): the host's;
//! - any interface but loopback that is not a veth (a bridge such as docker0, a NIC, a macvlan):
//!   the host's, or one too rich to be sure of. A container on a Docker network has `lo` and
//!   veths only (`docker run -p 4000:80`), so there it listens on port 80 of its own address.
//!
//! The `Host` check defeats DNS rebinding (a page on evil.example whose name now resolves to
//! 127.0.0.1 sends `Host: evil.example`): only loopback names (`localhost`, 127.0.0.0/8, `::1`),
//! the listen address, the address the client connected to and the `--allow-host` names are
//! served. A request without a Host header (HTTP/1.0) is not from a browser and is served.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::str::FromStr;

use anyhow::{Result, anyhow, bail};
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};

use crate::netns;

/// Where the endpoints listen by default (and under `auto` when it may be the host's netns).
pub const LOOPBACK: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9180);
/// Where `auto` listens in a network namespace of the container's own.
pub const CONTAINER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80);

/// The `--listen` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    At(SocketAddr),
    /// `NAME:PORT` (`localhost:9180`): resolved only when the daemon starts ([`bind`]).
    Name(String),
    /// [`CONTAINER`] in a namespace of its own, else [`LOOPBACK`] (see the module header).
    Auto,
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Listen::Auto);
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Listen::At(a));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| {
            format!("'{s}' has no port; give HOST:PORT such as 127.0.0.1:9180, or auto")
        })?;
        port.parse::<u16>()
            .map_err(|_| format!("'{port}' is not a port number (0-65535)"))?;
        let name_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !name_ok {
            return Err(format!(
                "'{host}' is neither an IP address nor a host name; give HOST:PORT such as localhost:9180 or [::1]:9180, or auto"
            ));
        }
        Ok(Listen::Name(s.to_string()))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::At(a) => write!(f, "{a}"),
            Listen::Name(n) => f.write_str(n),
            Listen::Auto => f.write_str("auto"),
        }
    }
}

/// Binds `spec` (an address or `NAME:PORT`): the addresses its name resolves to, in the
/// resolver's order of preference, the first one that can be bound (non-blocking, for tokio).
pub fn bind(spec: &str) -> Result<(TcpListener, SocketAddr)> {
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| {
            anyhow!(
                "cannot resolve --listen {spec}: {e}; give an IP address such as 127.0.0.1:9180"
            )
        })?
        .collect();
    let mut errors = Vec::new();
    for addr in &addrs {
        match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
            Ok(l) => return Ok((l, *addr)),
            Err(e) => errors.push(if addr.to_string() == spec {
                e.to_string()
            } else {
                format!("{addr}: {e}")
            }),
        }
    }
    if errors.is_empty() {
        bail!("--listen {spec} resolves to no address; give an IP address such as 127.0.0.1:9180");
    }
    bail!(
        "cannot listen on {spec}: {}; choose another --listen",
        errors.join(", ")
    )
}

/// What `auto` decides on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// This process is not PID 1 and shares PID 1's network namespace.
    pub shares_init_netns: bool,
    /// Interfaces other than loopback that are not veths (name, kind).
    pub not_veth: Vec<String>,
}

/// Pure: the address `auto` listens on, and why.
pub fn resolve_auto(f: &Facts) -> (SocketAddr, String) {
    if f.shares_init_netns {
        return (
            LOOPBACK,
            "this is PID 1's network namespace (the host's, with --network=host)".into(),
        );
    }
    if let Some(first) = f.not_veth.first() {
        return (
            LOOPBACK,
            format!(
                "interface {first} is not a container's veth, so this may be the host's network namespace; pass --listen 0.0.0.0:PORT to expose the endpoints"
            ),
        );
    }
    (
        CONTAINER,
        "a network namespace of its own (only loopback and veths)".into(),
    )
}

/// Reads the facts of the calling thread's network namespace. Run it on a thread that has not
/// changed namespace (it makes its own runtime and netlink socket).
pub async fn facts() -> Result<Facts> {
    let own = netns::id_of(Path::new("/proc/thread-self/ns/net"));
    let init = netns::id_of(Path::new("/proc/1/ns/net"));
    let shares_init_netns = std::process::id() != 1 && own.is_some() && own == init;
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| anyhow!("cannot open a netlink socket: {e}"))?;
    tokio::spawn(conn);
    let mut links = handle.link().get().execute();
    let mut not_veth = Vec::new();
    while let Some(msg) = links
        .try_next()
        .await
        .map_err(|e| anyhow!("cannot list interfaces: {e}"))?
    {
        let mut name = String::new();
        let mut kind = None;
        for a in &msg.attributes {
            match a {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            kind = Some(k.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        if name != "lo" && kind != Some(InfoKind::Veth) {
            not_veth.push(name);
        }
    }
    Ok(Facts {
        shares_init_netns,
        not_veth,
    })
}

/// Which `Host` names are served.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// The address the listener is bound to.
    pub listen: Option<SocketAddr>,
    /// `--allow-host` names, lower case, without port.
    pub allowed: Vec<String>,
}

impl HostPolicy {
    pub fn new(listen: Option<SocketAddr>, allowed: &[String]) -> Self {
        HostPolicy {
            listen,
            allowed: allowed
                .iter()
                .map(|a| host_name(a))
                .filter(|a| !a.is_empty())
                .collect(),
        }
    }

    /// Pure: whether a request with this `Host` header, on a connection to `local`, is served.
    pub fn allows(&self, host: Option<&str>, local: Option<SocketAddr>) -> bool {
        let Some(host) = host.map(str::trim).filter(|h| !h.is_empty()) else {
            return true;
        };
        let name = host_name(host);
        if name == "localhost" || self.allowed.contains(&name) {
            return true;
        }
        let Ok(ip) = name.parse::<IpAddr>() else {
            return false;
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_loopback()
            || self
                .listen
                .is_some_and(|l| !l.ip().is_unspecified() && l.ip() == ip)
            || local.is_some_and(|l| l.ip() == ip)
    }

    /// The sentence a refused request gets.
    pub fn refusal(host: &str) -> String {
        let name = host_name(host);
        format!(
            "Host '{name}' is not served here (a defence against DNS rebinding): the endpoints answer localhost, 127.0.0.0/8, [::1] and their own address; start watch with --allow-host {name} (or DOCKER_NETATTACH_ALLOW_HOST={name}) to serve this name"
        )
    }
}

/// Pure: the name of a Host header value, lower case, without port, brackets or final dot.
fn host_name(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default().to_string()
    } else if h.parse::<IpAddr>().is_ok() {
        h
    } else {
        h.split(':').next().unwrap_or_default().to_string()
    };
    name.trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values() {
        assert_eq!("auto".parse::<Listen>(), Ok(Listen::Auto));
        assert_eq!(
            "127.0.0.1:9180".parse::<Listen>().map(|l| l.to_string()),
            Ok("127.0.0.1:9180".into())
        );
        assert!("[::1]:80".parse::<Listen>().is_ok());
        for name in ["localhost:9180", "my-host.lan:80", "Auto:80"] {
            assert_eq!(name.parse::<Listen>(), Ok(Listen::Name(name.into())));
        }
        for bad in [
            "",
            "Auto",
            "0.0.0.0",
            ":80",
            "localhost",
            "localhost:http",
            "localhost:70000",
            "a b:1",
            "::1:9180x",
        ] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }

    #[test]
    fn localhost_binds_to_what_it_resolves_to() {
        let (l, addr) = bind("localhost:0").unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert!(l.local_addr().unwrap().ip().is_loopback());
        let first = "localhost:0".to_socket_addrs().unwrap().next().unwrap();
        assert_eq!(addr.ip(), first.ip());
    }

    #[test]
    fn auto_is_public_only_in_a_namespace_of_its_own() {
        let own = Facts::default();
        assert_eq!(resolve_auto(&own).0, CONTAINER);
        let host = Facts {
            shares_init_netns: true,
            not_veth: vec![],
        };
        assert_eq!(resolve_auto(&host).0, LOOPBACK);
        let bridge = Facts {
            shares_init_netns: false,
            not_veth: vec!["docker0".into()],
        };
        let (addr, why) = resolve_auto(&bridge);
        assert_eq!(addr, LOOPBACK);
        assert!(why.contains("docker0") && why.contains("--listen"), "{why}");
    }

    #[test]
    fn host_names() {
        let listen: SocketAddr = "127.0.0.1:9180".parse().unwrap();
        let p = HostPolicy::new(Some(listen), &["Dash.Example.".into(), "10.9.9.9".into()]);
        let local: SocketAddr = "172.17.0.5:80".parse().unwrap();
        for ok in [
            "localhost",
            "localhost:9180",
            "LOCALHOST.",
            "127.0.0.1",
            "127.0.0.1:9180",
            "127.255.0.1:1",
            "[::1]:9180",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]:80",
            "dash.example",
            "DASH.EXAMPLE:9180",
            "10.9.9.9:80",
            "172.17.0.5:80",
            "",
        ] {
            assert!(p.allows(Some(ok), Some(local)), "{ok}");
        }
        assert!(p.allows(None, None));
        for bad in [
            "evil.example",
            "evil.example:9180",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "dash.example.evil",
            "172.17.0.6",
            "0.0.0.0",
            "[fe80::1]",
            "10.9.9.8",
        ] {
            assert!(!p.allows(Some(bad), Some(local)), "{bad}");
        }
        // Listening on a wildcard does not make every address "the listen address".
        let any = HostPolicy::new(Some("0.0.0.0:80".parse().unwrap()), &[]);
        assert!(!any.allows(Some("0.0.0.0"), Some(local)));
        assert!(any.allows(Some("172.17.0.5"), Some(local)));
        let msg = HostPolicy::refusal("Evil.example:9180");
        assert!(
            msg.contains("'evil.example'") && msg.contains("--allow-host evil.example"),
            "{msg}"
        );
    }
}
