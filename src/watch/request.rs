//! The HTTP/1.1 wire of the daemon's endpoints, pure: the request head (parsed by httparse, with
//! the refusals on top) and the encoding of an answer.

use serde_json::json;

use crate::output;

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

pub(super) const JSON: &str = "application/json";
pub(super) const TEXT: &str = "text/plain; charset=utf-8";
pub(super) const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    pub(super) fn json(status: u16, v: &serde_json::Value) -> Self {
        Response {
            status,
            content_type: JSON,
            body: format!("{}\n", output::to_json(v)),
        }
    }

    pub(super) fn error(status: u16, msg: &str) -> Self {
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
