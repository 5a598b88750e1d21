//! A tiny HTTP/1.1 client for the instance's own loopback port (GET /health, POST
//! /account/bootstrap). Loopback plain HTTP needs no TLS, proxy or redirect handling, so a
//! TcpStream with timeouts is all there is: no second async runtime, no connection pool.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Largest response we read (health and bootstrap answers are tiny).
const MAX_RESPONSE: u64 = 1 << 20;

fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Response> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .with_context(|| format!("sending {method} {path} to {addr}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path} from {addr}"))?;
    parse_response(&raw).with_context(|| format!("answer to {method} {path} from {addr}"))
}

/// GET `path` on 127.0.0.1:`port`.
pub fn get(port: u16, path: &str, timeout: Duration) -> Result<Response> {
    request(port, "GET", path, None, timeout)
}

/// Whether the servers on 127.0.0.1:`ports` answer a connection: connect, send nothing
/// and hang up our side, then wait for the server to hang up too (or say anything, or
/// reset). That proves what Actual's own GET /health proves (its handler answers UP
/// unconditionally) short of HTTP routing: the process on the port accepts and its event
/// loop runs, since Node accepts and closes in that loop, while a hung one leaves the
/// connection in the kernel's backlog. It costs the server a third of a GET's CPU (no
/// parsing, middleware or answer; benches/list.sh), and it is no request, so it never
/// counts against the server's rate limits.
///
/// All on one thread: every connection is opened at once and all are watched with one
/// epoll (tokio's current-thread runtime), so fifty cost the servers' time and little of
/// ours: no thread per server competing for the cores with the servers it waits for.
///
/// One entry per port, in order: `Some(true)` answered, `Some(false)` refused or failed,
/// `None` no answer by `timeout` (a hung server: however many hang, the call takes
/// `timeout` once).
pub fn answer_connections(ports: &[u16], timeout: Duration) -> Result<Vec<Option<bool>>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the probe runtime")?;
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut set = tokio::task::JoinSet::new();
        for (i, port) in ports.iter().copied().enumerate() {
            set.spawn(async move {
                let probe = async {
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                        return false;
                    };
                    if s.shutdown().await.is_err() {
                        return false;
                    }
                    match s.read(&mut [0u8; 512]).await {
                        Ok(_) => true,
                        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                    }
                };
                (i, tokio::time::timeout_at(deadline, probe).await.ok())
            });
        }
        let mut out = vec![None; ports.len()];
        while let Some(done) = set.join_next().await {
            let (i, answer) = done.context("a connection probe failed")?;
            out[i] = answer;
        }
        Ok(out)
    })
}

/// POST a JSON body to `path` on 127.0.0.1:`port`.
pub fn post_json(port: u16, path: &str, json: &str, timeout: Duration) -> Result<Response> {
    request(port, "POST", path, Some(json), timeout)
}

/// Parse a whole HTTP/1.1 response (status line, headers, body; chunked or not).
pub fn parse_response(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (proto, code) = (parts.next(), parts.next());
    if !proto.is_some_and(|p| p.starts_with("HTTP/1.")) {
        bail!("not an HTTP/1.x status line: {status_line:?}");
    }
    let status: u16 = code
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let rest = &raw[split + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..eol])?;
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"UP\"}")
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "{\"status\":\"UP\"}"));
        let r = parse_response(
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (400, "{\"a\":1}"));
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"SSH-2.0 x\r\n\r\n").is_err());
    }

    #[test]
    fn talks_to_a_real_socket() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // Read the whole request (it may arrive in several segments): answering and
            // closing with unread bytes makes the kernel send a reset instead of the answer.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"}") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8_lossy(&got).into_owned();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            req
        });
        let r = post_json(
            port,
            "/account/bootstrap",
            "{\"password\":\"x\"}",
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        let req = server.join().unwrap();
        assert!(
            req.starts_with("POST /account/bootstrap HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.ends_with("{\"password\":\"x\"}"), "{req}");
        // Nothing listens there any more: a connection error, not a hang.
        assert!(get(port, "/health", Duration::from_millis(500)).is_err());
    }

    #[test]
    fn many_connections_are_probed_at_once_and_a_hung_one_costs_one_timeout() {
        let live = TcpListener::bind("127.0.0.1:0").unwrap();
        let live_port = live.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = live.accept().unwrap();
                assert_eq!(s.read(&mut [0u8; 16]).unwrap(), 0, "the probe sent bytes");
            }
        });
        // Two listeners that never accept: their connections wait in the backlog.
        let hung: Vec<TcpListener> = (0..2)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let ports = [
            live_port,
            hung[0].local_addr().unwrap().port(),
            closed_port,
            hung[1].local_addr().unwrap().port(),
            live_port,
        ];
        let started = std::time::Instant::now();
        let got = answer_connections(&ports, Duration::from_millis(300)).unwrap();
        let took = started.elapsed();
        assert_eq!(got, [Some(true), None, Some(false), None, Some(true)]);
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(
            took < Duration::from_millis(590),
            "two hung cost two timeouts: {took:?}"
        );
        server.join().unwrap();
        assert_eq!(
            answer_connections(&[], Duration::from_millis(300)).unwrap(),
            []
        );
    }
}
