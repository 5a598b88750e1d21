#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
use super::*;
use time::macros::datetime;

fn entry(id: &str, instance: &str, at: OffsetDateTime) -> Entry {
    Entry {
        id: id.into(),
        instance: instance.into(),
        created_at: at,
        created_by: "root".into(),
        reason: REASON_MANUAL.into(),
        message: String::new(),
        labels: vec![],
        kind: TYPE_FULL.into(),
        archive_path: PathBuf::from(format!("/srv/backups/{instance}/{id}.tar.zst")),
        size_bytes: 10,
        checksum_sha256: "00".into(),
        algorithm: Algorithm::Zstd,
        instance_version: Some("26.9.0".into()),
        version_binding: "current".into(),
        domain: "b.example.org".into(),
        port: 5000,
        includes: vec![INCLUDE_DATA.into()],
        status: Status::Present,
        verified_at: None,
    }
}

#[test]
fn id_format_is_utc_and_sortable() {
    let at = datetime!(2026-12-02 08:05:09 +01:00);
    assert_eq!(
        new_id(at, "budget", "a1b2c3"),
        "20261202-070509-budget-a1b2c3"
    );
    let u = uuid::Uuid::parse_str("0190f6d2-3c4b-7def-8abc-0123456789ab").unwrap();
    assert_eq!(short_id(&u), "6789ab");
    assert_eq!(archive_name("x", Algorithm::Gzip), "x.tar.gz".to_string());
    assert_eq!(
        checksum_path(Path::new("/b/x.tar.zst")),
        Path::new("/b/x.tar.zst.sha256")
    );
    assert_eq!(
        sha256sum_line("ab", Path::new("/b/x.tar.zst")),
        "ab  x.tar.zst\n"
    );
}

#[test]
fn compression_levels_follow_the_algorithm() {
    assert_eq!(
        resolve_compression("auto", 3).unwrap(),
        (Algorithm::Zstd, 3)
    );
    assert_eq!(
        resolve_compression("none", 99).unwrap(),
        (Algorithm::None, 0)
    );
    assert_eq!(
        resolve_compression("gzip", 9).unwrap(),
        (Algorithm::Gzip, 9)
    );
    assert!(resolve_compression("gzip", 12).is_err());
    assert!(resolve_compression("zstd", 0).is_err());
    assert!(resolve_compression("zstd", 20).is_err());
    assert!(resolve_compression("lz4", 3).is_err());
}

#[test]
fn index_round_trips_and_pins_the_field_names() {
    let mut idx = Index::default();
    idx.add(entry("a", "budget", datetime!(2026-12-02 08:00 UTC)))
        .unwrap();
    assert!(
        idx.add(entry("a", "budget", datetime!(2026-12-02 08:00 UTC)))
            .is_err()
    );
    let text = idx.render();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema_version"], 1);
    let keys: Vec<&str> = v["backups"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "id",
        "instance",
        "created_at",
        "created_by",
        "reason",
        "message",
        "labels",
        "type",
        "archive_path",
        "size_bytes",
        "checksum_sha256",
        "algorithm",
        "instance_version",
        "domain",
        "port",
        "includes",
        "status",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert_eq!(v["backups"][0]["status"], "present");
    assert_eq!(v["backups"][0]["created_at"], "2026-12-02T08:00:00Z");
    let back = parse_index(Path::new("i.json"), &text).unwrap();
    assert_eq!(back, idx);
}

#[test]
fn broken_index_names_file_and_position() {
    let p = Path::new("/srv/backups/backups.json");
    let e = parse_index(p, "{\n  \"schema_version\": 1,\n  \"backups\": [,]\n}").unwrap_err();
    assert_eq!(e.kind, crate::error::Kind::Validation);
    assert!(
        e.message
            .contains("/srv/backups/backups.json at line 3 column"),
        "{}",
        e.message
    );
    let e = parse_index(p, "{\"schema_version\": 7}").unwrap_err();
    assert!(e.message.contains("schema_version 7"), "{}", e.message);
    let e = parse_index(p, "{\"backups\": []}").unwrap_err();
    assert!(e.message.contains("no schema_version"), "{}", e.message);
    let e = parse_index(p, "{\"schema_version\": 1, \"extra\": 1}").unwrap_err();
    assert!(e.message.contains("extra"), "{}", e.message);
}

#[test]
fn list_filters_and_sorts_and_status_updates() {
    let mut idx = Index::default();
    idx.add(entry("b", "x", datetime!(2026-12-02 09:00 UTC)))
        .unwrap();
    idx.add(entry("a", "y", datetime!(2026-12-02 08:00 UTC)))
        .unwrap();
    idx.add(entry("c", "x", datetime!(2026-12-01 08:00 UTC)))
        .unwrap();
    let ids = |v: Vec<&Entry>| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(idx.of(None)), ["c", "a", "b"]);
    assert_eq!(ids(idx.of(Some("x"))), ["c", "b"]);
    assert!(idx.find("zz").is_err());
    let at = datetime!(2026-12-03 00:00 UTC);
    assert!(idx.set_status("a", Status::Corrupt, at));
    assert!(!idx.set_status("a", Status::Corrupt, at));
    assert_eq!(idx.find("a").unwrap().status, Status::Corrupt);
    assert_eq!(idx.find("a").unwrap().verified_at, Some(at));
}

#[test]
fn data_files_are_classified_by_name() {
    assert_eq!(data_kind("account.sqlite"), DataKind::Sqlite);
    assert_eq!(data_kind("group-1.sqlite"), DataKind::Sqlite);
    assert_eq!(data_kind("group-1.sqlite-journal"), DataKind::Skip);
    assert_eq!(data_kind("account.sqlite-wal"), DataKind::Skip);
    assert_eq!(data_kind("file-1.blob"), DataKind::Copy);
    assert_eq!(data_kind(".migrate"), DataKind::Copy);
}
