//! The daemon's HTTP endpoints: a deliberately small HTTP/1.1 responder on tokio. Side effects:
//! one TCP listener; every endpoint only reads.
//!
//! Bounds (so a slow or hostile client cannot hold the daemon): the request head must arrive
//! within [`READ_TIMEOUT`] and fit in [`MAX_HEAD`] bytes; a body is never read; the answer is
//! written within [`WRITE_TIMEOUT`]; one request per connection (`Connection: close`); at most
//! [`MAX_CONNECTIONS`] connections are served at once and further ones are closed at once.
//!
//! A request whose `Host` names anything but loopback, the endpoints' own address or an
//! `--allow-host` name is refused with 421 (DNS rebinding; see [`super::listen`]).
//! `/attachments` and `/metrics` read every lease: that runs on the blocking pool (plain file
//! reads, never `setns`), at most [`MAX_LEASE_READS`] at once and for [`LEASE_READ_LIMIT`] at
//! most, so a slow state directory never stalls the event loop or the other endpoints.
//!
//! | path           | answer                                                             |
//! |----------------|--------------------------------------------------------------------|
//! | `/healthz`     | 200 `ok` while the process serves                                  |
//! | `/readyz`      | 200 when Docker answers, netlink works and this is the host netns; |
//! |                | 503 otherwise, with a JSON reason                                  |
//! | `/version`     | JSON: tool version, git commit, Docker engine and API version      |
//! | `/metrics`     | Prometheus text                                                    |
//! | `/attachments` | the records of `list --json`                                       |

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::listen::HostPolicy;
use super::metrics::Gauges;
use super::{GIT_COMMIT, Shared, VERSION};
use crate::list;
use crate::output;

pub const MAX_HEAD: usize = 8 * 1024;
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_CONNECTIONS: usize = 512;
/// Lease reads (for /attachments and /metrics) in flight at once.
pub const MAX_LEASE_READS: usize = 2;
/// A lease read that takes longer is answered 503.
pub const LEASE_READ_LIMIT: Duration = Duration::from_secs(10);
/// A readiness answer is reused for this long, so a flood of probes costs Docker nothing.
const READY_CACHE: Duration = Duration::from_secs(1);
const CHECK_LIMIT: Duration = Duration::from_secs(2);

/// A parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Without the query string.
    pub path: String,
    /// The `Host` header, when there is one.
    pub host: Option<String>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    fn json(status: u16, v: &serde_json::Value) -> Self {
        Response {
            status,
            content_type: JSON,
            body: format!("{}\n", output::to_json(v)),
        }
    }

    fn error(status: u16, msg: &str) -> Self {
        Self::json(status, &json!({ "error": msg }))
    }

    /// The bytes on the wire; `HEAD` gets the headers only.
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Runs httparse over `buf`, with room for every header `buf` can hold (a few on the stack
/// first: the common case), and hands the outcome and the parsed request to `f`.
fn parsed<R>(
    buf: &[u8],
    f: impl FnOnce(httparse::Result<usize>, &httparse::Request<'_, '_>) -> R,
) -> R {
    let mut few = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut few);
    let res = req.parse(buf);
    if res != Err(httparse::Error::TooManyHeaders) {
        return f(res, &req);
    }
    // The shortest header line is three bytes (`a:\n`).
    let mut many = vec![httparse::EMPTY_HEADER; buf.len() / 3 + 1];
    let mut req = httparse::Request::new(&mut many);
    let res = req.parse(buf);
    f(res, &req)
}

/// Pure: the request line and `Host` of a complete head (up to the blank line). httparse reads
/// the head; refused on top of what it refuses: a head that is not UTF-8, a method that is not
/// uppercase ASCII, a target that is not a path, more than one `Host`.
pub fn parse_head(head: &[u8]) -> Result<Request, &'static str> {
    std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    parsed(head, |res, req| {
        match res {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) if head.trim_ascii().is_empty() => {
                return Err("empty request");
            }
            Ok(httparse::Status::Partial) => return Err("incomplete request head"),
            Err(httparse::Error::Version) => return Err("only HTTP/1.x is served"),
            Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
                return Err("malformed header");
            }
            Err(_) => return Err("malformed request line"),
        }
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Err("malformed request line");
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("malformed method");
        }
        if !target.starts_with('/') {
            return Err("the target must be a path");
        }
        let path = target.split(['?', '#']).next().unwrap_or(target);
        let mut host = None;
        for header in req.headers.iter() {
            if header.name.trim().eq_ignore_ascii_case("host") {
                if host.is_some() {
                    return Err("more than one Host header");
                }
                let value =
                    std::str::from_utf8(header.value).map_err(|_| "request head is not UTF-8")?;
                host = Some(value.trim().to_string());
            }
        }
        Ok(Request {
            method: method.to_string(),
            path: path.to_string(),
            host,
        })
    })
}

/// Pure: index just past the end of the head (`\r\n\r\n`, or `\n\n` from lax clients), as
/// httparse finds it; `None` while it is incomplete. A head httparse refuses ends where the
/// bytes so far end: it is answered 400 at once (see [`parse_head`]).
pub fn head_end(buf: &[u8]) -> Option<usize> {
    parsed(buf, |res, _| match res {
        Ok(httparse::Status::Complete(n)) => Some(n),
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(buf.len()),
    })
}

/// Accepts connections until the listener fails for good.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, policy: HostPolicy) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let ctx = Arc::new(Context {
        policy,
        cache: tokio::sync::Mutex::new(None),
        lease_reads: Arc::new(Semaphore::new(MAX_LEASE_READS)),
    });
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("too many HTTP connections; closing one");
            drop(stream);
            continue;
        };
        let (shared, ctx) = (shared.clone(), ctx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            handle(stream, &shared, &ctx).await;
        });
    }
}

/// What every connection shares besides [`Shared`].
struct Context {
    policy: HostPolicy,
    /// The last readiness answer.
    cache: tokio::sync::Mutex<Option<(Instant, Response)>>,
    lease_reads: Arc<Semaphore>,
}

async fn handle(mut stream: TcpStream, shared: &Arc<Shared>, ctx: &Context) {
    let (resp, head_only) = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => (
            Response::error(408, "request head not received in time"),
            false,
        ),
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => (
            Response::error(431, "request head larger than 8 KiB"),
            false,
        ),
        Ok(Ok(head)) => match parse_head(&head) {
            Err(why) => (Response::error(400, why), false),
            Ok(req) => {
                let head_only = req.method == "HEAD";
                let local = stream.local_addr().ok();
                match &req.host {
                    Some(h) if !ctx.policy.allows(Some(h), local) => {
                        tracing::debug!(host = %h, path = %req.path, "refused: Host not served");
                        (Response::error(421, &HostPolicy::refusal(h)), head_only)
                    }
                    _ => (route(&req, shared, ctx).await, head_only),
                }
            }
        },
    };
    let bytes = resp.encode(head_only);
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        linger(&mut stream).await;
    }
}

/// Reads and drops what the client still sends (a refused oversized head, a body) for a short,
/// bounded while before closing: closing with unread input makes the kernel send a reset, which
/// can destroy the answer before the client reads it.
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

enum HeadError {
    Closed,
    TooLarge,
}

async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf) {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

async fn route(req: &Request, shared: &Arc<Shared>, ctx: &Context) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "read-only endpoints: use GET or HEAD");
    }
    match req.path.as_str() {
        "/healthz" => Response {
            status: 200,
            content_type: TEXT,
            body: "ok\n".into(),
        },
        "/readyz" => {
            let mut cached = ctx.cache.lock().await;
            if let Some((at, resp)) = cached.as_ref() {
                if at.elapsed() < READY_CACHE {
                    return resp.clone();
                }
            }
            let resp = readiness(shared).await;
            *cached = Some((Instant::now(), resp.clone()));
            resp
        }
        "/version" => version(shared),
        "/metrics" => {
            let rows = match read_leases(shared, ctx).await {
                Ok(rows) => rows.unwrap_or_default(),
                Err(busy) => return busy,
            };
            Response {
                status: 200,
                content_type: PROMETHEUS,
                body: shared.metrics.render(&Gauges {
                    docker_up: shared.docker().engine.is_some(),
                    attachments: &rows,
                    version: VERSION,
                    commit: GIT_COMMIT,
                    job_threads: super::job_threads_busy(),
                    job_threads_limit: super::MAX_JOB_THREADS,
                }),
            }
        }
        "/attachments" => match read_leases(shared, ctx).await {
            Err(busy) => busy,
            Ok(Ok(rows)) => {
                let records: Vec<_> = rows.iter().map(output::list_record).collect();
                Response {
                    status: 200,
                    content_type: JSON,
                    body: format!("{}\n", output::to_json(&records)),
                }
            }
            Ok(Err(e)) => Response::error(500, &format!("{e:#}")),
        },
        _ => Response::error(
            404,
            "no such endpoint; try /healthz, /readyz, /version, /metrics or /attachments",
        ),
    }
}

/// Every lease with its status, read off the event loop (see the module header); `Err` is the
/// 503 to answer when the reads are busy or slow.
async fn read_leases(
    shared: &Arc<Shared>,
    ctx: &Context,
) -> Result<anyhow::Result<Vec<list::Row>>, Response> {
    let slow = || {
        Response::error(
            503,
            &format!(
                "reading the leases of {} took longer than {} s; try again",
                shared.state_dir.display(),
                LEASE_READ_LIMIT.as_secs()
            ),
        )
    };
    let dir = shared.state_dir.clone();
    let work = async move {
        // The permit goes with the read: a read stuck past the limit still holds it, so stuck
        // reads never number more than MAX_LEASE_READS threads.
        let permit = ctx.lease_reads.clone().acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            list::list(&dir)
        })
        .await
    };
    match tokio::time::timeout(LEASE_READ_LIMIT, work).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Ok(Err(anyhow::anyhow!("the lease reader failed: {e}"))),
        Err(_) => Err(slow()),
    }
}

async fn readiness(shared: &Arc<Shared>) -> Response {
    let state = shared.docker();
    let docker = match &state.engine {
        Some(engine) => engine.ping(CHECK_LIMIT).await.map_err(|e| format!("{e:#}")),
        None => Err(state
            .last_error
            .unwrap_or_else(|| "not connected to Docker".into())),
    };
    let netlink = match tokio::time::timeout(CHECK_LIMIT, shared.rtnl.link_by_name("lo")).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err("netlink answers but lists no loopback interface".to_string()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("netlink did not answer in time".to_string()),
    };
    let host = shared.host_problem().map_or(Ok(()), Err);
    let word = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let reason = [&docker, &netlink, &host]
        .into_iter()
        .find_map(|r| r.as_ref().err().cloned());
    let ready = reason.is_none();
    Response::json(
        if ready { 200 } else { 503 },
        &json!({
            "ready": ready,
            "reason": reason,
            "docker": word(&docker),
            "netlink": word(&netlink),
            "host_netns": word(&host),
        }),
    )
}

fn version(shared: &Arc<Shared>) -> Response {
    let state = shared.docker();
    let docker = match &state.engine {
        Some(e) => json!({
            "host": e.host,
            "connected": true,
            "engine_version": e.engine_version,
            "api_version": e.api_version,
        }),
        None => json!({
            "host": shared.docker_host,
            "connected": false,
            "engine_version": null,
            "api_version": null,
        }),
    };
    Response::json(
        200,
        &json!({
            "version": VERSION,
            "git_commit": GIT_COMMIT,
            "docker": docker,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                path: "/metrics".into(),
                host: Some("a".into()),
            }
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nhOsT:  Evil.example:80 \r\nX: y\r\n\r\n")
                .unwrap()
                .host
                .as_deref(),
            Some("Evil.example:80")
        );
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").is_err());
        assert_eq!(
            parse_head(b"HEAD / HTTP/1.0\r\n\r\n").unwrap().method,
            "HEAD"
        );
        for bad in [
            &b""[..],
            b"GET\r\n\r\n",
            b"GET /a HTTP/1.1 extra\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn end_of_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn httparse_reads_the_head_with_every_header_and_names_the_refusal() {
        // More headers than the first, stack-sized try holds.
        let mut head = String::from("GET /healthz HTTP/1.1\r\n");
        for i in 0..200 {
            head.push_str(&format!("X-{i}: {i}\r\n"));
        }
        head.push_str("Host: localhost:4000\r\n\r\n");
        assert_eq!(head_end(head.as_bytes()), Some(head.len()));
        let r = parse_head(head.as_bytes()).unwrap();
        assert_eq!(r.host.as_deref(), Some("localhost:4000"));
        assert_eq!(r.path, "/healthz");
        // A refused head ends where its bytes end: it is answered at once.
        assert_eq!(head_end(b"hello there\r\n"), Some(13));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHo"), None);
        for (bad, why) in [
            (&b""[..], "empty request"),
            (b"GET / HTTP/2\r\n\r\n", "only HTTP/1.x is served"),
            (b"get / HTTP/1.1\r\n\r\n", "malformed method"),
            (b"GET * HTTP/1.1\r\n\r\n", "the target must be a path"),
            (b"GET /\xff HTTP/1.1\r\n\r\n", "request head is not UTF-8"),
            (b"hello there\r\n\r\n", "malformed request line"),
        ] {
            assert_eq!(parse_head(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn encoding() {
        let r = Response::error(405, "no");
        let text = String::from_utf8(r.encode(false)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("Allow: GET, HEAD\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("}\n"));
        let head = String::from_utf8(r.encode(true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", r.body.len())));
    }
}
