//! Reading and writing the registry files (the I/O half of `domain::state`).
//!
//! Only a holder of the global lock can write the state: [`State::save`] takes the guard
//! as a parameter and checks it is the global lock (coreos/bootupd's statefile idea), so a
//! write without the lock does not compile and a write under the wrong lock fails loudly.

use crate::domain::layout::Layout;
use crate::domain::state::{self, State};
use crate::error::Failure;
use crate::sys::fs::{FILE_MODE, write_atomic};
use crate::sys::lock::LockGuard;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// Read a registry file; absent = `None`. Permission problems are the machine's, not a bug.
fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Failure::environment(
            format!("cannot read {}: permission denied", path.display()),
        )
        .hint("run it as root (sudo): the registry is readable by root and its group only")
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(Failure::validation(
            format!("invalid registry file {}: it is not UTF-8 text", path.display()),
        )
        .hint("fix the file by hand (or restore it from a backup); abssctl never rewrites a registry file it cannot read")
        .into()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl State {
    /// Load both registry files. Missing files are an empty registry; a broken file is a
    /// validation error naming file and line (and nothing is written afterwards, since
    /// every mutation starts with this load).
    pub fn load(layout: &Layout) -> Result<State> {
        let instances_text = read(&layout.instances_file)?;
        let ports_text = read(&layout.ports_file)?;
        Ok(State {
            instances: state::parse_instances(&layout.instances_file, instances_text.as_deref())?,
            ports: state::parse_ports(&layout.ports_file, ports_text.as_deref())?,
        })
    }

    /// Write both files atomically and durably, each only if its data changed (so a
    /// hand-formatted instances.yml is left alone by a port reservation).
    pub fn save(&self, layout: &Layout, guard: &LockGuard) -> Result<()> {
        if guard.path() != layout.global_lock() {
            bail!(
                "internal: registry write attempted under {} instead of the global lock",
                guard.path().display()
            );
        }
        // Re-parsed with `?`: a file broken by hand since the load is refused, not replaced.
        let path = &layout.instances_file;
        let text = read(path)?;
        if text.is_none() || state::parse_instances(path, text.as_deref())? != self.instances {
            write_atomic(path, self.render_instances()?.as_bytes(), FILE_MODE)?;
        }
        let path = &layout.ports_file;
        let text = read(path)?;
        if text.is_none() || state::parse_ports(path, text.as_deref())? != self.ports {
            write_atomic(path, self.render_ports()?.as_bytes(), FILE_MODE)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use crate::domain::config::Config;
    use std::time::Duration;

    fn layout(root: &Path) -> Layout {
        let cfg = Config {
            root: root.to_path_buf(),
            ..Config::default()
        };
        Layout::new(&cfg, &root.join("etc/abssctl/config.yml"))
    }

    #[test]
    fn save_needs_the_global_lock_and_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let mut s = State::load(&l).unwrap();
        assert_eq!(s, State::default());
        s.ports.push(state::PortReservation {
            port: 5000,
            instance: "a".into(),
            reserved_at: time::macros::datetime!(2026-11-26 08:00:00 UTC),
        });
        let (other, _) =
            crate::sys::lock::acquire(&l.instance_lock("a"), Duration::ZERO, "t").unwrap();
        assert!(s.save(&l, &other).is_err());
        assert!(!l.ports_file.exists());
        let (global, _) = crate::sys::lock::acquire(&l.global_lock(), Duration::ZERO, "t").unwrap();
        s.save(&l, &global).unwrap();
        assert_eq!(State::load(&l).unwrap(), s);
    }

    #[test]
    fn save_leaves_unchanged_files_alone_and_refuses_to_replace_a_broken_one() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let hand = "# kept by hand\nschema_version: 1\ninstances: []\n";
        write_atomic(&l.instances_file, hand.as_bytes(), FILE_MODE).unwrap();
        let (global, _) = crate::sys::lock::acquire(&l.global_lock(), Duration::ZERO, "t").unwrap();
        let s = State::load(&l).unwrap();
        s.save(&l, &global).unwrap();
        assert_eq!(std::fs::read_to_string(&l.instances_file).unwrap(), hand);
        assert!(l.ports_file.exists());

        let broken = "schema_version: 1\nports: [\n";
        std::fs::write(&l.ports_file, broken).unwrap();
        let err = s.save(&l, &global).unwrap_err();
        assert_eq!(
            crate::error::classify(&err).0,
            crate::error::Kind::Validation
        );
        assert_eq!(std::fs::read_to_string(&l.ports_file).unwrap(), broken);
    }
}
