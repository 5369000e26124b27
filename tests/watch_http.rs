//! End to end, root and Docker: the daemon's HTTP endpoints, their bounds, and readiness when
//! Docker is unreachable. Traffic goes to 127.0.0.1 only.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    Container, Daemon, Tool, get_with_host, http, json_of, need_docker, parse_response, test_ip,
    unique, wait_until,
};

#[test]
fn every_endpoint_answers() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let c = Container::none("na-t-h");
    let ip = test_ip();
    assert_eq!(tool.ok(&["attach", &c.name, "--ip", &ip]), ip);
    let d = Daemon::start(&tool, &[]);
    assert!(d.wait_ready(Duration::from_secs(10)), "{}", d.log());

    let (status, body) = d.get("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let (status, body) = d.get("/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["docker"], "ok");
    assert_eq!(ready["netlink"], "ok");

    let (status, body) = d.get("/version");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        v["git_commit"].as_str().is_some_and(|c| !c.is_empty()),
        "{v}"
    );
    assert_eq!(v["docker"]["connected"], true);
    assert_eq!(v["docker"]["api_version"], "1.41");
    let engine = common::ok("docker", &["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(v["docker"]["engine_version"], engine.as_str());

    let (status, metrics) = d.get("/metrics");
    assert_eq!(status, 200);
    for family in [
        "netattach_attaches_total",
        "netattach_detaches_total",
        "netattach_attachments",
        "netattach_attach_latency_seconds_bucket",
        "netattach_reconciles_total",
        "netattach_docker_reconnects_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {}", family.trim_end_matches("_bucket"))),
            "{family} missing:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("netattach_attachments{network=\"bridge\",status=\"attached\"} 1"),
        "{metrics}"
    );

    let (status, body) = d.get("/attachments");
    assert_eq!(status, 200);
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served, json_of(&tool, &["list", "--json"]));
    assert_eq!(served[0]["ip"], ip.as_str());

    // HEAD: headers only; unknown paths: 404; anything but GET/HEAD: 405 (read-only).
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.write_all(b"HEAD /version HTTP/1.1\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200 OK\r\n") && raw.ends_with("\r\n\r\n"),
        "{raw}"
    );
    assert_eq!(d.get("/nope").0, 404);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        assert_eq!(http(&d.addr, method, "/attachments").0, 405, "{method}");
    }
    assert_eq!(http(&d.addr, "GET", "/attachments?x=1").0, 200);
    // The attachment was not changed by any of it.
    assert_eq!(json_of(&tool, &["list", "--json"]), served);
}

#[test]
fn requests_are_bounded_in_size_time_and_number() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let mut d = Daemon::start(&tool, &[]);

    // Oversized head: 431, connection closed.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = s.write_all(big.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert_eq!(parse_response(&raw).0, 431);

    // Garbage: 400.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.write_all(b"hello there\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(parse_response(&raw).0, 400);

    // A client that never finishes its head is answered 408 and dropped after ~5 s.
    let start = Instant::now();
    let mut slow = TcpStream::connect(&d.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = slow.read_to_end(&mut raw);
    let took = start.elapsed();
    assert_eq!(parse_response(&raw).0, 408);
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );

    // A bounded flood of idle connections (300, loopback only) does not take the daemon down,
    // and once they time out it answers again.
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(&d.addr).ok())
        .collect();
    assert!(flood.len() >= 250, "only {} connections", flood.len());
    // 300 is below the daemon's connection bound (512): it still answers during the flood.
    let served_during = (0..5).filter(|_| d.get("/healthz").0 == 200).count();
    assert_eq!(served_during, 5, "healthz starved by 300 idle connections");
    drop(flood);
    assert!(
        wait_until(Duration::from_secs(10), || d.get("/healthz").0 == 200),
        "no answer after the flood"
    );
    assert!(d.alive());
}

#[test]
fn readiness_is_503_when_docker_is_unreachable() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let nowhere = std::env::temp_dir().join(format!("{}.sock", unique("na-nowhere")));
    let host = format!("unix://{}", nowhere.display());
    let d = Daemon::start(&tool, &[("DOCKER_HOST", &host)]);
    assert!(wait_until(Duration::from_secs(5), || d.get("/readyz").0 == 503));
    let (_, body) = d.get("/readyz");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["ready"], false);
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|w| w.contains("cannot reach Docker") && w.contains(&host)),
        "{r}"
    );
    assert_eq!(r["netlink"], "ok");
    assert_eq!(d.get("/healthz").0, 200);
    let (_, v) = d.get("/version");
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["docker"]["connected"], false);
    assert_eq!(v["docker"]["host"], host.as_str());
    assert!(d.metric("netattach_docker_up") == 0.0);
}

#[test]
fn sigterm_and_sigint_stop_the_daemon_with_exit_code_0() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut d = Daemon::start(&tool, &[]);
        assert!(d.wait_ready(Duration::from_secs(10)), "{}", d.log());
        assert_eq!(
            d.stop_with(signal, Duration::from_secs(5)),
            Some(0),
            "signal {signal}:\n{}",
            d.log()
        );
    }
}

#[test]
fn listen_address_in_use_is_a_clear_error() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let d = Daemon::start(&tool, &[]);
    let o = tool.run(&["watch", "--listen", &d.addr]);
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert!(
        err.contains(&format!("cannot listen on {}", d.addr)) && err.contains("--listen"),
        "{err}"
    );
}

/// Issue 9: DNS rebinding. A page on evil.example whose name now resolves to 127.0.0.1 must not
/// read /attachments: only loopback names, the listen address and `--allow-host` names are served.
#[test]
fn only_loopback_and_allowed_host_names_are_served() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let plain = Daemon::start(&tool, &[]);
    let (status, body) = get_with_host(&plain.addr, "/attachments", Some("evil.example"));
    assert_eq!(status, 421, "Host evil.example was served: {body}");
    drop(plain);
    let d = Daemon::start_args(&tool, &["--allow-host", "dash.example"], &[]);
    let port = d.addr.rsplit(':').next().unwrap().to_string();
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "dash.example.evil",
    ] {
        for path in ["/attachments", "/metrics", "/healthz"] {
            let (status, body) = get_with_host(&d.addr, path, Some(host));
            assert_eq!(status, 421, "Host {host} {path}: {body}");
            assert!(body.contains("--allow-host"), "{body}");
        }
    }
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("LocalHost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.3.4.5:{port}"),
        format!("[::1]:{port}"),
        format!("dash.example:{port}"),
        "DASH.example".to_string(),
    ] {
        let (status, body) = get_with_host(&d.addr, "/attachments", Some(&host));
        assert_eq!(status, 200, "Host {host}: {body}");
    }
    // No Host at all (HTTP/1.0, curl --http1.0 -H 'Host:'): not a browser, served.
    assert_eq!(get_with_host(&d.addr, "/version", None).0, 200);
    // The names can come from the environment too (comma-separated).
    let e = Daemon::start(
        &tool,
        &[("DOCKER_NETATTACH_ALLOW_HOST", "a.example,b.example")],
    );
    assert_eq!(get_with_host(&e.addr, "/healthz", Some("b.example")).0, 200);
    assert_eq!(get_with_host(&e.addr, "/healthz", Some("c.example")).0, 421);
}

/// Issue 9: /attachments and /metrics read every lease; a read that blocks (here a FIFO where a
/// lease file should be) must not stall the event loop: /healthz and /version still answer.
#[test]
fn a_stuck_lease_read_does_not_stall_the_other_endpoints() {
    if !need_docker() {
        return;
    }
    let tool = Tool::new();
    let c = Container::none("na-t-hb");
    let ip = test_ip();
    tool.ok(&["attach", &c.name, "--ip", &ip]);
    let d = Daemon::start(&tool, &[]);
    assert!(d.wait_ready(Duration::from_secs(10)), "{}", d.log());
    let net_dir = std::fs::read_dir(tool.state.path().join("leases"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let fifo = net_dir.join("172.17.250.250");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let stuck: Vec<_> = ["/attachments", "/metrics"]
        .into_iter()
        .map(|p| {
            let addr = d.addr.clone();
            std::thread::spawn(move || http(&addr, "GET", p))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let health = get_with_timeout(&d.addr, "/healthz", Duration::from_secs(3));
    let version = get_with_timeout(&d.addr, "/version", Duration::from_secs(3));
    let took = start.elapsed();
    // Unblock the readers (a writer opens and closes the FIFO), then remove it.
    let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    let _ = std::fs::remove_file(&fifo);
    for t in stuck {
        let _ = t.join();
    }
    assert_eq!(
        health, 200,
        "/healthz did not answer while /attachments was stuck"
    );
    assert_eq!(
        version, 200,
        "/version did not answer while /attachments was stuck"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Status of one GET that gives up after `limit` (0 then).
fn get_with_timeout(addr: &str, path: &str, limit: Duration) -> u16 {
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), limit) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(limit));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw).0
}
