//! Root's direct line to systemd: its private D-Bus socket, the one `systemctl` uses as
//! root, for the reads of `instance list`/`status` (the same D-Bus API, without the bus).
//!
//! Why: a list of 50 instances reads 4 properties of each. Over the system bus every
//! call and every answer is routed by dbus-daemon, and that routing was the largest cost
//! after the instances' own servers: 7.5 ms of dbus-daemon CPU per list, against 3 ms
//! for systemd answering (measured in the real tier, 2 cores). Peer to peer, nothing sits
//! in between.
//!
//! One wrinkle: systemd writes its well-known name, `org.freedesktop.systemd1`, in the
//! SENDER header field of what it sends on this socket. The D-Bus specification gives
//! that field to a bus's unique names (`:1.42`), and zbus refuses any message carrying
//! another name there. On a peer-to-peer connection the field says nothing (there is one
//! peer), so [`SenderlessReader`] drops it from each incoming message before zbus
//! parses it. Signals would need it (a proxy matches them by sender), so this connection
//! is for calls only: jobs and their `JobRemoved` stay on the system bus.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zbus_systemd::zbus;
use zbus_systemd::zbus::connection::socket::{ReadHalf, Split, WriteHalf};

/// Where systemd (PID 1) listens for root's peer-to-peer D-Bus connections.
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";

/// The SENDER header field's code (D-Bus specification, "Header Fields").
const FIELD_SENDER: u8 = 7;
/// The fixed part of a message header: endianness, type, flags, version, body length,
/// serial, and the length of the header-field array that follows.
const FIXED_HEADER: usize = 16;
/// Larger than any answer to a property read; a length past it is a broken stream.
const MAX_MESSAGE: usize = 1 << 20;

/// A peer-to-peer connection to systemd over [`PRIVATE_SOCKET`], authenticated as root
/// (SASL EXTERNAL, the uid the kernel vouches for). `Ok(None)` when this process is not
/// root or the socket is not there: the caller uses the system bus.
pub async fn connect() -> Result<Option<zbus::Connection>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let stream = match std::os::unix::net::UnixStream::connect(PRIVATE_SOCKET) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("connecting to {PRIVATE_SOCKET}")),
    };
    stream
        .set_read_timeout(Some(super::call::CALL_TIMEOUT))
        .context("setting a timeout on systemd's private socket")?;
    over(stream).await.map(Some)
}

/// A peer-to-peer D-Bus connection over `stream`, whose other end is systemd's private
/// socket (or, in the tests, what answers as it does).
async fn over(stream: std::os::unix::net::UnixStream) -> Result<zbus::Connection> {
    let guid = handshake(&stream).context("authenticating on systemd's private socket")?;
    stream
        .set_nonblocking(true)
        .context("setting systemd's private socket non-blocking")?;
    let (read, write) = tokio::net::UnixStream::from_std(stream)
        .context("registering systemd's private socket")?
        .into_split();
    let socket = Split::new(
        Box::new(SenderlessReader {
            inner: read,
            pending: Vec::new(),
            at: 0,
        }) as Box<dyn ReadHalf>,
        Box::new(Writer(write)) as Box<dyn WriteHalf>,
    );
    zbus::connection::Builder::authenticated_socket(socket, guid.as_str())
        .p2p()
        .build()
        .await
        .context("opening a D-Bus connection on systemd's private socket")
}

/// The client side of the SASL handshake (D-Bus specification, "Authentication
/// Protocol"), blocking. AUTH and BEGIN go out in ONE write, then the server's OK is read,
/// as systemd's own client (sd-bus) does it: systemd must have read BEGIN before the first
/// message arrives. Sent after the OK, BEGIN could reach systemd in the same read as the
/// first call, and systemd then left that call unanswered (seen: 6 of 10 raw connections
/// made in a row, each waiting for its answer until the timeout). Returns the server's GUID.
fn handshake(stream: &std::os::unix::net::UnixStream) -> Result<String> {
    let uid = nix::unistd::geteuid().as_raw().to_string();
    let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
    let mut w = stream;
    w.write_all(format!("\0AUTH EXTERNAL {hex}\r\nBEGIN\r\n").as_bytes())?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    let Some(guid) = line.strip_prefix("OK ").map(str::trim) else {
        bail!("systemd refused the authentication: {}", line.trim());
    };
    Ok(guid.to_string())
}

/// Reads whole messages from systemd and hands them on without their SENDER field.
#[derive(Debug)]
struct SenderlessReader {
    inner: tokio::net::unix::OwnedReadHalf,
    /// The current message, rewritten; `at` is how much of it zbus has taken.
    pending: Vec<u8>,
    at: usize,
}

#[zbus::export::async_trait::async_trait]
impl ReadHalf for SenderlessReader {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
        if self.at == self.pending.len() {
            let mut fixed = [0u8; FIXED_HEADER];
            match self.inner.read_exact(&mut fixed).await {
                Ok(_) => {}
                // The peer closed between messages: zbus sees the end of the stream.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok((0, vec![])),
                Err(e) => return Err(e),
            }
            let total = message_len(&fixed)?;
            let mut msg = fixed.to_vec();
            msg.resize(total, 0);
            self.inner.read_exact(&mut msg[FIXED_HEADER..]).await?;
            self.pending = without_sender(&msg)?;
            self.at = 0;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok((n, vec![]))
    }
}

/// The sending half, as it is: what abssctl sends is plain D-Bus.
#[derive(Debug)]
struct Writer(tokio::net::unix::OwnedWriteHalf);

#[zbus::export::async_trait::async_trait]
impl WriteHalf for Writer {
    async fn sendmsg(
        &mut self,
        buf: &[u8],
        _fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> std::io::Result<usize> {
        // No file descriptors: neither half says it can pass them, so zbus sends none.
        self.0.write(buf).await
    }

    async fn close(&mut self) -> std::io::Result<()> {
        self.0.shutdown().await
    }
}

fn broken(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a message from systemd with {what}"),
    )
}

/// Read a u32 of the message's byte order at `at`.
fn u32_at(msg: &[u8], at: usize) -> std::io::Result<u32> {
    let b: [u8; 4] = msg
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| broken("a truncated header"))?;
    match msg[0] {
        b'l' => Ok(u32::from_le_bytes(b)),
        b'B' => Ok(u32::from_be_bytes(b)),
        _ => Err(broken("an unknown byte order")),
    }
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// The whole length of the message whose fixed header is `fixed`.
fn message_len(fixed: &[u8; FIXED_HEADER]) -> std::io::Result<usize> {
    let body = u32_at(fixed, 4)? as usize;
    let fields = u32_at(fixed, 12)? as usize;
    let total = align8(FIXED_HEADER + fields) + body;
    if total > MAX_MESSAGE {
        return Err(broken("an impossible length"));
    }
    Ok(total)
}

/// The end (exclusive) of the header field that starts at `at` (its code byte).
fn field_end(msg: &[u8], at: usize, fields_end: usize) -> std::io::Result<usize> {
    let byte = |i: usize| {
        msg.get(i)
            .copied()
            .filter(|_| i < fields_end)
            .ok_or_else(|| broken("a truncated header field"))
    };
    // code, then the variant's signature: its length, its characters, a NUL.
    let sig_len = byte(at + 1)? as usize;
    let sig_at = at + 2;
    let sig = msg
        .get(sig_at..sig_at + sig_len)
        .ok_or_else(|| broken("a truncated header field"))?;
    let value = sig_at + sig_len + 1;
    let end = match sig {
        b"s" | b"o" => {
            let v = value.div_ceil(4) * 4;
            v + 4 + u32_at(msg, v)? as usize + 1
        }
        b"g" => value + 1 + byte(value)? as usize + 1,
        b"u" => value.div_ceil(4) * 4 + 4,
        _ => return Err(broken("a header field of an unknown type")),
    };
    if end > fields_end {
        return Err(broken("a header field past the header"));
    }
    Ok(end)
}

/// `msg` without its SENDER header field (unchanged when it has none). Every field
/// starts on an 8-byte boundary, so the others are copied as they are, each to the next
/// boundary of the new header; the body follows on the boundary after the last.
fn without_sender(msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let fields_end = FIXED_HEADER + u32_at(msg, 12)? as usize;
    let body_at = align8(fields_end);
    if msg.len() < body_at {
        return Err(broken("a truncated header"));
    }
    let mut kept = Vec::new();
    let mut at = FIXED_HEADER;
    let mut dropped = false;
    while at < fields_end {
        let end = field_end(msg, at, fields_end)?;
        if msg[at] == FIELD_SENDER {
            dropped = true;
        } else {
            kept.push(at..end);
        }
        at = align8(end);
    }
    if !dropped {
        return Ok(msg.to_vec());
    }
    let mut out = msg[..FIXED_HEADER].to_vec();
    for r in kept {
        out.resize(align8(out.len()), 0);
        out.extend_from_slice(&msg[r]);
    }
    let len = u32::try_from(out.len() - FIXED_HEADER).map_err(|_| broken("a huge header"))?;
    let len = match msg[0] {
        b'B' => len.to_be_bytes(),
        _ => len.to_le_bytes(),
    };
    out[12..16].copy_from_slice(&len);
    out.resize(align8(out.len()), 0);
    out.extend_from_slice(&msg[body_at..]);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;
    use zbus_systemd::systemd1::ManagerProxy;

    /// systemd 252's answer on its private socket to Get(Manager, "Version"), as read
    /// off the socket: REPLY_SERIAL 1, SENDER "org.freedesktop.systemd1", SIGNATURE "v".
    const VERSION_REPLY: &str = "6c020101190000000100000037000000050175000100000007017300180000006f72672e667265656465736b746f702e73797374656d64310000000000000000080167000176000001730000100000003235322e33392d317e6465623132753200";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// One end of a socket pair that answers as systemd does: the handshake, then the
    /// recorded answer to the first call (its REPLY_SERIAL set to that call's serial).
    fn fake_systemd() -> std::os::unix::net::UnixStream {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut auth = Vec::new();
            let mut b = [0u8; 1];
            while !auth.ends_with(b"BEGIN\r\n") {
                theirs.read_exact(&mut b).unwrap();
                auth.push(b[0]);
            }
            theirs
                .write_all(b"OK 4e45797410ee43beaf8c4c8e53f732f1\r\n")
                .unwrap();
            let mut fixed = [0u8; FIXED_HEADER];
            theirs.read_exact(&mut fixed).unwrap();
            let mut rest = vec![0u8; message_len(&fixed).unwrap() - FIXED_HEADER];
            theirs.read_exact(&mut rest).unwrap();
            let mut reply = hex(VERSION_REPLY);
            reply[20..24].copy_from_slice(&fixed[8..12]);
            theirs.write_all(&reply).unwrap();
            // Hold the socket open until the client hangs up.
            let _ = theirs.read(&mut [0u8; 64]);
        });
        ours
    }

    /// A reader that hands zbus the bytes as they come.
    #[derive(Debug)]
    struct Plain(tokio::net::unix::OwnedReadHalf);

    #[zbus::export::async_trait::async_trait]
    impl ReadHalf for Plain {
        async fn recvmsg(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
            Ok((self.0.read(buf).await?, vec![]))
        }
    }

    async fn version(conn: &zbus::Connection) -> zbus::Result<String> {
        let m = ManagerProxy::builder(conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        m.version().await
    }

    #[tokio::test]
    async fn systemds_answer_is_read_without_its_sender_and_refused_with_it() {
        let conn = over(fake_systemd()).await.unwrap();
        assert_eq!(version(&conn).await.unwrap(), "252.39-1~deb12u2");

        // The same bytes straight into zbus: refused (the reason this reader exists).
        let stream = fake_systemd();
        let guid = handshake(&stream).unwrap();
        stream.set_nonblocking(true).unwrap();
        let (read, write) = tokio::net::UnixStream::from_std(stream)
            .unwrap()
            .into_split();
        let socket = Split::new(
            Box::new(Plain(read)) as Box<dyn ReadHalf>,
            Box::new(Writer(write)) as Box<dyn WriteHalf>,
        );
        let plain = zbus::connection::Builder::authenticated_socket(socket, guid.as_str())
            .p2p()
            .build()
            .await
            .unwrap();
        let refused =
            tokio::time::timeout(std::time::Duration::from_secs(2), version(&plain)).await;
        assert!(
            !matches!(refused, Ok(Ok(_))),
            "zbus took a well-known SENDER: {refused:?}"
        );
    }

    #[test]
    fn the_sender_and_its_padding_go_the_rest_stays_and_a_broken_header_is_refused() {
        let raw = hex(VERSION_REPLY);
        let once = without_sender(&raw).unwrap();
        // 4 + 4 + 24 + NUL, padded to 8: 40 bytes less, the body unchanged at the end.
        assert_eq!(once.len(), raw.len() - 40);
        assert_eq!(
            once[FIXED_HEADER..FIXED_HEADER + 8],
            raw[FIXED_HEADER..FIXED_HEADER + 8]
        );
        assert!(once.ends_with(&raw[raw.len() - 25..]));
        // Without a sender there is nothing to drop.
        assert_eq!(without_sender(&once).unwrap(), once);
        // A field array that claims more than the message holds.
        let mut cut = raw.clone();
        cut[12] = 0xff;
        assert!(without_sender(&cut).is_err());
        // A field whose string runs past the header.
        let mut long = raw.clone();
        long[28] = 0x40;
        assert!(without_sender(&long).is_err());
        // Neither byte order.
        let mut odd = raw;
        odd[0] = b'x';
        assert!(without_sender(&odd).is_err());
    }
}
