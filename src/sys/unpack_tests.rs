#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
use super::*;
use crate::error::Kind;
use crate::sys::archive::ArchiveWriter;
use std::os::unix::fs::MetadataExt;

fn manifest_json() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": bk::ARCHIVE_FORMAT,
        "id": "20261203-070000-a-abcd1234",
        "instance": "a",
        "created_at": "2026-12-03T07:00:00Z",
        "version_binding": "current",
        "instance_version": "26.9.0",
        "domain": "a.example.test",
        "port": 5000,
        "includes": ["data"],
    }))
    .unwrap()
}

/// A raw tar header with `name` written byte for byte (the tar crate's own `set_path`
/// refuses `..` and absolute names, which is what a crafted archive has).
fn raw(name: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_old();
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// A plain (uncompressed) tar: a valid manifest and data dir, then `extra` members.
fn crafted(dir: &Path, extra: &[(tar::Header, Vec<u8>)]) -> (PathBuf, String) {
    let path = dir.join("crafted.tar");
    let mut b = tar::Builder::new(File::create(&path).unwrap());
    let m = manifest_json();
    let mut h = raw(
        bk::MANIFEST_NAME,
        tar::EntryType::Regular,
        0o600,
        m.len() as u64,
    );
    h.set_cksum();
    b.append(&h, &m[..]).unwrap();
    let mut h = raw("data", tar::EntryType::Directory, 0o700, 0);
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    for (h, body) in extra {
        let mut h = h.clone();
        h.set_cksum();
        b.append(&h, &body[..]).unwrap();
    }
    b.into_inner().unwrap().sync_all().unwrap();
    let sum = crate::sys::fs::sha256_file(&path).unwrap();
    (path, sum)
}

struct Box_ {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    staging: PathBuf,
}

/// A scratch tree: `root/staging` (where extraction may write) and `root/outside`.
fn scratch() -> Box_ {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let staging = root.join("staging");
    std::fs::create_dir(&staging).unwrap();
    std::fs::create_dir(root.join("outside")).unwrap();
    Box_ {
        _tmp: tmp,
        root,
        staging,
    }
}

/// Every path under `dir`, relative.
fn tree(dir: &Path) -> Vec<String> {
    let (found, skipped) = crate::sys::archive::walk(dir).unwrap();
    let mut v: Vec<String> = found.into_iter().map(|f| f.rel).collect();
    v.extend(skipped.into_iter().map(|p| p.display().to_string()));
    v.sort();
    v
}

/// The exit category the CLI would give the error (None: an internal error, exit 1).
fn kind_of(e: &anyhow::Error) -> Option<Kind> {
    match crate::error::classify(e).0 {
        Kind::Internal => None,
        k => Some(k),
    }
}

fn assert_refused(extra: Vec<(tar::Header, Vec<u8>)>, words: &str) {
    let extra = &extra;
    let s = scratch();
    let (path, sum) = crafted(&s.root, extra);
    let err = unpack(&path, Algorithm::None, &sum, &s.staging, &Limits::default()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("refusing to restore"), "{msg}");
    assert!(msg.contains(words), "expected '{words}' in: {msg}");
    assert_eq!(kind_of(&err), Some(Kind::Validation), "{msg}");
    // Nothing outside staging (the caller discards staging: see ops::backup::restore).
    assert!(tree(&s.root.join("outside")).is_empty());
    assert_eq!(
        std::fs::read_dir(&s.root).unwrap().count(),
        3,
        "only staging, outside and the archive"
    );
    // The refused member itself was not written.
    let last = extra
        .last()
        .map(|(h, _)| h.path_bytes().into_owned())
        .unwrap_or_default();
    let last = String::from_utf8_lossy(&last).into_owned();
    if let Some(rel) = last.strip_prefix("data/") {
        let p = s.staging.join("data").join(rel);
        let dup = extra.len() > 1;
        assert!(
            dup || std::fs::symlink_metadata(&p).is_err(),
            "{} was written",
            p.display()
        );
    }
}

fn file(name: &str, body: &[u8]) -> (tar::Header, Vec<u8>) {
    (
        raw(name, tar::EntryType::Regular, 0o600, body.len() as u64),
        body.to_vec(),
    )
}

#[test]
fn what_create_writes_comes_back_byte_for_byte_with_the_checksum() {
    for alg in [Algorithm::Zstd, Algorithm::Gzip, Algorithm::None] {
        let s = scratch();
        let src = s.root.join("outside/blob");
        std::fs::write(&src, b"blob bytes").unwrap();
        let meta = std::fs::metadata(&src).unwrap();
        let dirmeta = std::fs::metadata(s.root.join("outside")).unwrap();
        let dest = s.root.join(format!("a.{}", alg.extension()));
        let mut w = ArchiveWriter::create(&dest, alg, 3, 0o600).unwrap();
        w.add_bytes(bk::MANIFEST_NAME, &manifest_json(), 0o600, 0)
            .unwrap();
        w.add_bytes("meta/version.json", b"{\"v\":1}", 0o600, 0)
            .unwrap();
        w.add_dir("data", &dirmeta).unwrap();
        w.add_bytes("data/.migrate", b"m1\n", 0o644, 0).unwrap();
        w.add_dir("data/user-files", &dirmeta).unwrap();
        w.add_file(
            "data/user-files/file-1.blob",
            &meta,
            10,
            File::open(&src).unwrap(),
        )
        .unwrap();
        let written = w.finish().unwrap();
        let u = unpack(&dest, alg, &written.sha256, &s.staging, &Limits::default()).unwrap();
        assert_eq!(u.sha256, written.sha256);
        assert_eq!(u.manifest.instance, "a");
        assert_eq!(u.meta["version.json"], b"{\"v\":1}");
        assert_eq!((u.files, u.bytes), (2, 13));
        assert_eq!(
            std::fs::read(u.data_dir.join("user-files/file-1.blob")).unwrap(),
            b"blob bytes"
        );
        // Owner-only modes whatever the archive said (0644 for .migrate).
        let m = std::fs::metadata(u.data_dir.join(".migrate")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        let d = std::fs::metadata(u.data_dir.join("user-files")).unwrap();
        assert_eq!(d.mode() & 0o777, 0o700);
        // meta/ is read, never written.
        assert!(!s.staging.join("meta").exists());
    }
}

#[test]
fn a_flipped_byte_is_corrupt_and_nothing_is_restored() {
    let s = scratch();
    let (path, sum) = crafted(&s.root, &[file("data/.migrate", b"m1\n")]);
    let mut bytes = std::fs::read(&path).unwrap();
    // Inside .migrate's content (block 3): the tar still parses, only the sum differs.
    bytes[3 * 512] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = unpack(&path, Algorithm::None, &sum, &s.staging, &Limits::default()).unwrap_err();
    assert!(format!("{err:#}").contains("is corrupt"), "{err:#}");
    assert!(err.downcast_ref::<Corrupt>().is_some(), "{err:#}");
    assert_eq!(kind_of(&err), Some(Kind::Environment));
}

#[test]
fn a_damaged_zstd_stream_is_reported_as_corrupt() {
    let s = scratch();
    let dest = s.root.join("a.tar.zst");
    let mut w = ArchiveWriter::create(&dest, Algorithm::Zstd, 3, 0o600).unwrap();
    w.add_bytes(bk::MANIFEST_NAME, &manifest_json(), 0o600, 0)
        .unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    w.add_bytes("data/x.blob", &big, 0o600, 0).unwrap();
    let written = w.finish().unwrap();
    let mut bytes = std::fs::read(&dest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dest, &bytes).unwrap();
    let err = unpack(
        &dest,
        Algorithm::Zstd,
        &written.sha256,
        &s.staging,
        &Limits::default(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("is corrupt"), "{err:#}");
    assert!(err.downcast_ref::<Corrupt>().is_some(), "{err:#}");
    assert_eq!(kind_of(&err), Some(Kind::Environment));
}

#[test]
fn names_that_leave_the_layout_are_refused() {
    assert_refused(vec![file("../x", b"x")], "'..'");
    assert_refused(vec![file("data/../../outside/x", b"x")], "'..'");
    assert_refused(vec![file("/etc/x", b"x")], "absolute path");
    assert_refused(vec![file("data/./x", b"x")], "'.'");
    assert_refused(vec![file("data//x", b"x")], "empty component");
    assert_refused(
        vec![file("etc/passwd", b"x")],
        "not part of a backup's layout",
    );
    assert_refused(
        vec![file("meta/evil.sh", b"x")],
        "not part of a backup's layout",
    );
    assert_refused(vec![file("data/a/b/c/d/e", b"x")], "deeper than");
    assert_refused(vec![file("data/x", b"1"), file("data/x", b"2")], "twice");
}

#[test]
fn links_devices_fifos_sparse_and_special_bits_are_refused() {
    let mut sym = raw("data/etc", tar::EntryType::Symlink, 0o777, 0);
    sym.set_link_name("/etc").unwrap();
    assert_refused(vec![(sym, vec![])], "is a symlink");
    let mut hard = raw("data/passwd", tar::EntryType::Link, 0o600, 0);
    hard.set_link_name("/etc/passwd").unwrap();
    assert_refused(vec![(hard, vec![])], "is a hard link");
    assert_refused(
        vec![(raw("data/null", tar::EntryType::Char, 0o600, 0), vec![])],
        "character device",
    );
    assert_refused(
        vec![(raw("data/sda", tar::EntryType::Block, 0o600, 0), vec![])],
        "block device",
    );
    assert_refused(
        vec![(raw("data/p", tar::EntryType::Fifo, 0o600, 0), vec![])],
        "FIFO",
    );
    assert_refused(
        vec![(
            raw("data/s", tar::EntryType::Regular, 0o4755, 1),
            b"x".to_vec(),
        )],
        "setuid",
    );
    assert_refused(
        vec![(
            raw("data/g", tar::EntryType::Regular, 0o2755, 1),
            b"x".to_vec(),
        )],
        "setuid",
    );
    assert_refused(
        vec![(raw("data/d", tar::EntryType::Directory, 0o1777, 0), vec![])],
        "sticky",
    );
    // A GNU sparse entry claiming 10 GB.
    let mut sparse = tar::Header::new_gnu();
    sparse.set_path("data/big").unwrap();
    sparse.set_entry_type(tar::EntryType::GNUSparse);
    sparse.set_mode(0o600);
    sparse.set_size(0);
    sparse.as_gnu_mut().unwrap().realsize = *b"112402762000";
    assert_refused(vec![(sparse, vec![])], "sparse");
}

#[test]
fn sizes_over_the_limits_are_refused_before_reading() {
    // A regular member whose header claims 10 GB (the body is never read).
    let s = scratch();
    let h = raw("data/huge", tar::EntryType::Regular, 0o600, 10_000_000_000);
    let (path, sum) = {
        // Written by hand: tar::Builder would want the 10 GB body.
        let (p, _) = crafted(&s.root, &[]);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 1024); // drop the end-of-archive blocks
        let mut h = h;
        h.set_cksum();
        bytes.extend_from_slice(h.as_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let sum = crate::sys::fs::sha256_file(&p).unwrap();
        (p, sum)
    };
    let err = unpack(&path, Algorithm::None, &sum, &s.staging, &Limits::default()).unwrap_err();
    assert!(
        format!("{err:#}").contains("claims 10000000000 bytes"),
        "{err:#}"
    );
    assert!(!s.staging.join("data/huge").exists());

    // Total over the limit, each file under it.
    let small = Limits {
        total_bytes: 10,
        ..Limits::default()
    };
    let s = scratch();
    let (path, sum) = crafted(
        &s.root,
        &[file("data/a", b"123456"), file("data/b", b"123456")],
    );
    let err = unpack(&path, Algorithm::None, &sum, &s.staging, &small).unwrap_err();
    assert!(
        format!("{err:#}").contains("over the limit of 10 bytes"),
        "{err:#}"
    );

    // More than the staging filesystem has free: exit 3, not 2.
    let tight = Limits {
        reserve_bytes: u64::MAX / 2,
        ..Limits::default()
    };
    let s = scratch();
    let (path, sum) = crafted(&s.root, &[file("data/a", b"1")]);
    let err = unpack(&path, Algorithm::None, &sum, &s.staging, &tight).unwrap_err();
    assert_eq!(kind_of(&err), Some(Kind::Environment), "{err:#}");
    assert!(format!("{err:#}").contains("bytes free"), "{err:#}");
}

#[test]
fn an_archive_without_manifest_or_data_is_refused() {
    let s = scratch();
    let path = s.root.join("empty.tar");
    let mut b = tar::Builder::new(File::create(&path).unwrap());
    let mut h = raw("data", tar::EntryType::Directory, 0o700, 0);
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    b.finish().unwrap();
    drop(b);
    let sum = crate::sys::fs::sha256_file(&path).unwrap();
    let err = unpack(&path, Algorithm::None, &sum, &s.staging, &Limits::default()).unwrap_err();
    assert!(
        format!("{err:#}").contains("no abssctl-backup.json"),
        "{err:#}"
    );
}

/// An archive of many read chunks (the file is read and hashed on its own thread): every
/// byte arrives, in order, and the sum is the whole file's; one byte changed in the LAST
/// chunk is still caught.
#[test]
fn an_archive_of_many_chunks_arrives_whole_and_its_sum_covers_the_last_byte() {
    let s = scratch();
    let body: Vec<u8> = (0..(3 * CHUNK + 12_345)).map(|i| (i % 251) as u8).collect();
    let (path, sum) = crafted(&s.root, &[file("data/big.blob", &body)]);
    let u = unpack(&path, Algorithm::None, &sum, &s.staging, &Limits::default()).unwrap();
    assert_eq!(std::fs::read(u.data_dir.join("big.blob")).unwrap(), body);
    let s2 = scratch();
    let (path, sum) = crafted(&s2.root, &[file("data/big.blob", &body)]);
    let mut bytes = std::fs::read(&path).unwrap();
    // Inside the blob's last chunk, before tar's trailing blocks.
    let at = bytes.len() - 3 * 512;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = unpack(
        &path,
        Algorithm::None,
        &sum,
        &s2.staging,
        &Limits::default(),
    )
    .unwrap_err();
    assert!(err.downcast_ref::<Corrupt>().is_some(), "{err:#}");
}
