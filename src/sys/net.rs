//! Port probes: is a TCP port in use on this machine, and by whom.
//!
//! The kernel's socket tables (/proc/net/tcp and tcp6) are read once per probe: that sees
//! listeners on every address (v4, v6, any interface) without binding anything, so a probe
//! never races the service it is looking at. Where /proc is not readable the probe falls
//! back to trying to bind the port on the IPv4 and IPv6 wildcard addresses.

use crate::domain::state::PortProbe;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::Path;

/// TCP state code of a listening socket in /proc/net/tcp*.
const TCP_LISTEN: &str = "0A";
const PROC_TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// The real probe. Built from a snapshot: port -> socket inode of each listener.
#[derive(Debug)]
pub struct SystemPorts {
    /// `None` when the tables could not be read (then bind attempts decide).
    listeners: Option<HashMap<u16, u64>>,
}

impl SystemPorts {
    /// Take a snapshot of the listening TCP sockets.
    pub fn snapshot() -> SystemPorts {
        let mut map = HashMap::new();
        let mut read_any = false;
        for table in PROC_TABLES {
            match std::fs::read_to_string(table) {
                Ok(text) => {
                    read_any = true;
                    map.extend(parse_listeners(&text));
                }
                Err(e) => tracing::debug!("cannot read {table}: {e}; probing ports by binding"),
            }
        }
        SystemPorts {
            listeners: read_any.then_some(map),
        }
    }
}

/// (port, inode) of every listening socket in one /proc/net/tcp* table.
pub fn parse_listeners(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() < 10 || cols[3] != TCP_LISTEN {
                return None;
            }
            let port_hex = cols[1].rsplit(':').next()?;
            let port = u16::from_str_radix(port_hex, 16).ok()?;
            let inode = cols[9].parse().ok()?;
            Some((port, inode))
        })
        .collect()
}

fn bind_fails(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_err()
        || TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).is_err()
}

/// The process that has socket `inode` open: "pid N (comm)". Scans /proc/*/fd, which only
/// works for other users' processes as root; best effort by design.
fn socket_owner(proc_root: &Path, inode: u64) -> Option<String> {
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir(proc_root).ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let owns = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == wanted.as_str())
        });
        if owns {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", comm.trim()));
        }
    }
    None
}

impl PortProbe for SystemPorts {
    fn in_use(&self, port: u16) -> bool {
        match &self.listeners {
            Some(map) => map.contains_key(&port),
            None => bind_fails(port),
        }
    }

    fn holder(&self, port: u16) -> Option<String> {
        let inode = *self.listeners.as_ref()?.get(&port)?;
        socket_owner(Path::new("/proc"), inode)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1389 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn parses_only_listening_sockets() {
        assert_eq!(parse_listeners(TABLE), vec![(5000, 4242)]);
        let v6 = "header\n   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1\n";
        assert_eq!(parse_listeners(v6), vec![(8080, 99)]);
    }

    #[test]
    fn a_real_listener_is_seen_with_its_holder() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let probe = SystemPorts::snapshot();
        assert!(probe.in_use(port));
        let holder = probe.holder(port).unwrap();
        assert!(
            holder.contains(&format!("pid {}", std::process::id())),
            "{holder}"
        );
        drop(l);
        assert!(!SystemPorts::snapshot().in_use(port));
    }
}
