//! `watch --listen HOST:PORT`: a socket address or a host name (`localhost:9180`), resolved
//! like any server's bind address. Side effects: a name lookup (getaddrinfo) and one bound TCP
//! socket.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use anyhow::{Result, anyhow, bail};

/// clap's check of `--listen`: `ADDR:PORT`, `[IPV6]:PORT` or `NAME:PORT` with a numeric port.
/// The name is resolved only when the daemon starts ([`bind`]).
pub fn parse(s: &str) -> Result<String, String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' has no port; give HOST:PORT such as 127.0.0.1:9180"))?;
    port.parse::<u16>()
        .map_err(|_| format!("'{port}' is not a port number (0-65535)"))?;
    let name_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !name_ok {
        return Err(format!(
            "'{host}' is neither an IP address nor a host name; give HOST:PORT such as localhost:9180 or [::1]:9180"
        ));
    }
    Ok(s.to_string())
}

/// Binds `spec`: the addresses its name resolves to, in the resolver's order of preference,
/// the first one that can be bound (non-blocking, for tokio).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_syntax() {
        for ok in [
            "127.0.0.1:9180",
            "[::1]:9180",
            "localhost:9180",
            "my-host.lan:80",
            "0.0.0.0:0",
        ] {
            assert_eq!(parse(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "localhost",
            "localhost:http",
            "localhost:70000",
            ":9180",
            "a b:1",
            "::1:9180x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
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
}
