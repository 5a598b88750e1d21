//! Reading and writing the registry file (the I/O half of `domain::state`), and the
//! upconvert of the schema-1 pair instances.yml + ports.yml into it.
//!
//! Only a holder of the global lock can write the state: [`State::save`] takes the guard
//! as a parameter and checks it is the global lock (coreos/bootupd's statefile idea), so a
//! write without the lock does not compile and a write under the wrong lock fails loudly.

use crate::domain::layout::Layout;
use crate::domain::state::{self, State};
use crate::error::Failure;
use crate::sys::fs::{FILE_MODE, remove_file_if_exists, sync_dir, write_atomic};
use crate::sys::lock::LockGuard;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

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
    /// Load the registry: registry.yml when it exists, else the schema-1 pair upconverted
    /// in memory (nothing is written by a read; the first save writes registry.yml).
    /// Missing files are an empty registry; a broken file is a validation error naming file
    /// and line (and nothing is written afterwards, since every mutation starts with this
    /// load and `save` parses again before it writes).
    pub fn load(layout: &Layout) -> Result<State> {
        let path = &layout.registry_file;
        match read(path)? {
            Some(text) => {
                let state = state::parse_registry(path, &text)?;
                for legacy in legacy_files(layout).into_iter().filter(|p| p.exists()) {
                    // Left by an upconvert interrupted after registry.yml was durable; the
                    // next save removes it. Never read again: registry.yml is the truth.
                    tracing::warn!(
                        "ignoring {} (replaced by {}; removed at the next change)",
                        legacy.display(),
                        path.display()
                    );
                }
                Ok(state)
            }
            None => load_legacy(layout),
        }
    }

    /// Write the registry atomically and durably, as ONE file: the instances and their
    /// port reservations change in the same rename, so no crash or failure can leave one
    /// changed without the other. Written only when its data changed (a hand-formatted
    /// registry.yml is left alone). A schema-1 pair is removed only after registry.yml is
    /// durable (write_atomic fsyncs the file and the directory): a crash in between leaves
    /// both, and `load` takes registry.yml.
    pub fn save(&self, layout: &Layout, guard: &LockGuard) -> Result<()> {
        if guard.path() != layout.global_lock() {
            bail!(
                "internal: registry write attempted under {} instead of the global lock",
                guard.path().display()
            );
        }
        // Parsed again with `?`: a file broken by hand since the load is refused, not
        // replaced (and so is a broken legacy file that this save would upconvert).
        let path = &layout.registry_file;
        let unchanged = match read(path)? {
            Some(text) => state::parse_registry(path, &text)? == *self,
            None => {
                load_legacy(layout)?;
                false
            }
        };
        if !unchanged {
            write_atomic(path, self.render()?.as_bytes(), FILE_MODE)?;
        }
        let mut removed = false;
        for legacy in legacy_files(layout) {
            removed |= remove_file_if_exists(&legacy)?;
        }
        if removed {
            sync_dir(&layout.registry_dir)?;
        }
        Ok(())
    }
}

/// The schema-1 files, in the order they were written.
fn legacy_files(layout: &Layout) -> [PathBuf; 2] {
    [
        layout.legacy_instances_file.clone(),
        layout.legacy_ports_file.clone(),
    ]
}

/// The schema-1 pair, upconverted (both absent: an empty registry).
fn load_legacy(layout: &Layout) -> Result<State> {
    let (ip, pp) = (&layout.legacy_instances_file, &layout.legacy_ports_file);
    let (it, pt) = (read(ip)?, read(pp)?);
    Ok(state::upconvert_v1(
        (ip, it.as_deref()),
        (pp, pt.as_deref()),
    )?)
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

    fn global(l: &Layout) -> LockGuard {
        crate::sys::lock::acquire(&l.global_lock(), Duration::ZERO, "t")
            .unwrap()
            .0
    }

    fn reservation(port: u16, instance: &str) -> state::PortReservation {
        state::PortReservation {
            port,
            instance: instance.into(),
            reserved_at: time::macros::datetime!(2026-11-26 08:00:00 UTC),
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    const LEGACY_INSTANCES: &str = "schema_version: 1\ninstances:\n  - name: budget\n    domain: budget.example.org\n    port: 5000\n    version_binding: current\n    data_dir: /srv/budget/data\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n";
    const LEGACY_PORTS: &str = "schema_version: 1\nports:\n  - port: 5000\n    instance: budget\n    reserved_at: 2026-11-26T08:00:00Z\n";

    #[test]
    fn save_needs_the_global_lock_and_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let mut s = State::load(&l).unwrap();
        assert_eq!(s, State::default());
        s.ports.push(reservation(5000, "a"));
        let (other, _) =
            crate::sys::lock::acquire(&l.instance_lock("a"), Duration::ZERO, "t").unwrap();
        assert!(s.save(&l, &other).is_err());
        assert!(!l.registry_file.exists());
        s.save(&l, &global(&l)).unwrap();
        assert_eq!(State::load(&l).unwrap(), s);
    }

    #[test]
    fn instances_and_ports_change_in_one_file() {
        // The failure this format removes: two files written one after the other, with a
        // crash possible between them. Now the registry dir holds one file, and the text
        // of that one file carries both halves of the change.
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let g = global(&l);
        let mut s = state::upconvert_v1(
            (&l.legacy_instances_file, Some(LEGACY_INSTANCES)),
            (&l.legacy_ports_file, Some(LEGACY_PORTS)),
        )
        .unwrap();
        s.save(&l, &g).unwrap();
        s.instances[0].port = 5001;
        s.ports[0].port = 5001;
        s.save(&l, &g).unwrap();
        assert_eq!(entries(&l.registry_dir), ["registry.yml"]);
        let text = std::fs::read_to_string(&l.registry_file).unwrap();
        let back = state::parse_registry(&l.registry_file, &text).unwrap();
        assert_eq!((back.instances[0].port, back.ports[0].port), (5001, 5001));
    }

    #[test]
    fn the_legacy_pair_is_upconverted_and_removed_after_the_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        write_atomic(
            &l.legacy_instances_file,
            LEGACY_INSTANCES.as_bytes(),
            FILE_MODE,
        )
        .unwrap();
        write_atomic(&l.legacy_ports_file, LEGACY_PORTS.as_bytes(), FILE_MODE).unwrap();
        // A read upconverts in memory and writes nothing.
        let s = State::load(&l).unwrap();
        assert_eq!((s.instances.len(), s.ports.len()), (1, 1));
        assert_eq!(entries(&l.registry_dir), ["instances.yml", "ports.yml"]);
        let mut after = s.clone();
        after.ports.push(reservation(5001, "other"));
        after.save(&l, &global(&l)).unwrap();
        assert_eq!(entries(&l.registry_dir), ["registry.yml"]);
        let text = std::fs::read_to_string(&l.registry_file).unwrap();
        assert!(text.starts_with("schema_version: 2\n"), "{text}");
        assert_eq!(State::load(&l).unwrap(), after);
    }

    #[test]
    fn an_upconvert_interrupted_after_the_new_file_is_recovered() {
        // The crash window of the upconvert: registry.yml durable, legacy files not yet
        // removed. registry.yml wins (the stale pair here even says something else), and
        // the next save removes the pair without touching registry.yml.
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let g = global(&l);
        let mut s = State::default();
        s.ports.push(reservation(6000, "new"));
        s.save(&l, &g).unwrap();
        let written = std::fs::read(&l.registry_file).unwrap();
        write_atomic(
            &l.legacy_instances_file,
            LEGACY_INSTANCES.as_bytes(),
            FILE_MODE,
        )
        .unwrap();
        write_atomic(
            &l.legacy_ports_file,
            b"schema_version: 1\nports: [\n",
            FILE_MODE,
        )
        .unwrap();
        let loaded = State::load(&l).unwrap();
        assert_eq!(loaded, s);
        loaded.save(&l, &g).unwrap();
        assert_eq!(entries(&l.registry_dir), ["registry.yml"]);
        assert_eq!(std::fs::read(&l.registry_file).unwrap(), written);
    }

    #[test]
    fn a_broken_legacy_file_is_reported_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let broken = "schema_version: 1\nports: [\n";
        write_atomic(
            &l.legacy_instances_file,
            LEGACY_INSTANCES.as_bytes(),
            FILE_MODE,
        )
        .unwrap();
        std::fs::write(&l.legacy_ports_file, broken).unwrap();
        let err = State::load(&l).unwrap_err();
        assert_eq!(
            crate::error::classify(&err).0,
            crate::error::Kind::Validation
        );
        assert!(format!("{err:#}").contains("ports.yml"), "{err:#}");
        let err = State::default().save(&l, &global(&l)).unwrap_err();
        assert_eq!(
            crate::error::classify(&err).0,
            crate::error::Kind::Validation
        );
        assert_eq!(entries(&l.registry_dir), ["instances.yml", "ports.yml"]);
        assert_eq!(
            std::fs::read_to_string(&l.legacy_ports_file).unwrap(),
            broken
        );
    }

    #[test]
    fn save_leaves_an_unchanged_file_alone_and_refuses_to_replace_a_broken_one() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let hand = "# kept by hand\nschema_version: 2\ninstances: []\nports: []\n";
        write_atomic(&l.registry_file, hand.as_bytes(), FILE_MODE).unwrap();
        let g = global(&l);
        let s = State::load(&l).unwrap();
        s.save(&l, &g).unwrap();
        assert_eq!(std::fs::read_to_string(&l.registry_file).unwrap(), hand);

        let broken = "schema_version: 2\nports: [\n";
        std::fs::write(&l.registry_file, broken).unwrap();
        let err = s.save(&l, &g).unwrap_err();
        assert_eq!(
            crate::error::classify(&err).0,
            crate::error::Kind::Validation
        );
        assert_eq!(std::fs::read_to_string(&l.registry_file).unwrap(), broken);
    }
}
