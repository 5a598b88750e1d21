//! The data directory's user against root's reads: directories swapped for links after
//! the walk, hot journals, live writers, the link directory's own checks.
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
use super::tests::{child, links, old, wait_for};
use super::*;
use std::os::unix::fs::MetadataExt;

const SECRET: &[u8] = b"SECRET-MARKER!";

fn has(bytes: &[u8], m: &[u8]) -> bool {
    bytes.windows(m.len()).any(|w| w == m)
}

/// `dir/user-files/{file-a,file-big}.blob` and `dir/server-files/account.sqlite`, all
/// holding `marker`, the blobs last modified an hour ago.
fn data(dir: &Path, marker: &str) {
    std::fs::create_dir_all(dir.join("server-files")).unwrap();
    std::fs::create_dir_all(dir.join("user-files")).unwrap();
    let c = rusqlite::Connection::open(dir.join("server-files/account.sqlite")).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('{marker}');"
    ))
    .unwrap();
    for (name, n) in [("file-a.blob", 100), ("file-big.blob", 20_000)] {
        let p = dir.join("user-files").join(name);
        std::fs::write(&p, marker.repeat(n)).unwrap();
        old(&p);
    }
}

/// The bytes of `db` as a held read gives them to the archive.
fn held_bytes(db: &At, links: &LinkDir) -> Vec<u8> {
    let held = hold_sqlite(db, links, SQLITE_BUSY_TIMEOUT)
        .unwrap()
        .expect("a database that can be held");
    held.read_checked(|mut f, _| {
        let mut b = Vec::new();
        f.read_to_end(&mut b)?;
        Ok(b)
    })
    .unwrap()
}

/// After the walk, `server-files` and `user-files` become links to directories holding
/// files of the same names (another instance's): every reader gets the bytes of the
/// files the walk saw, through the directories it held, never the others'.
#[test]
fn directories_swapped_for_links_after_the_walk_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = tmp.path().join("budget");
    let data_dir = inst.join("data");
    data(&data_dir, "ORIGINAL-BYTES");
    data(
        &tmp.path().join("other"),
        std::str::from_utf8(SECRET).unwrap(),
    );
    let (found, _) = walk(&data_dir).unwrap();
    let at = |rel: &str| &found.iter().find(|f| f.rel == rel).unwrap().at;
    for d in ["server-files", "user-files"] {
        std::fs::rename(data_dir.join(d), data_dir.join(format!("{d}.seen"))).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("other").join(d), data_dir.join(d)).unwrap();
    }
    let original = |rel: &str| std::fs::read(data_dir.join(rel)).unwrap();

    let (copy, _) =
        copy_stable(at("user-files/file-a.blob"), tmp.path(), "s", QUIET_PERIOD).unwrap();
    assert!(
        matches!(copy, StableCopy::Memory(ref b) if *b == original("user-files.seen/file-a.blob"))
    );

    let mut got = Vec::new();
    let r = stream_stable(at("user-files/file-big.blob"), QUIET_PERIOD, |r, _| {
        r.read_to_end(&mut got)?;
        Ok(())
    })
    .unwrap();
    assert!(matches!(r, Streamed::Whole), "{r:?}");
    assert_eq!(got, original("user-files.seen/file-big.blob"));

    let db = at("server-files/account.sqlite");
    let links = LinkDir::new(&inst).unwrap();
    let bytes = held_bytes(db, &links);
    assert!(!has(&bytes, SECRET));
    assert_eq!(bytes, original("server-files.seen/account.sqlite"));

    let snap = tmp.path().join("snap.sqlite");
    sqlite_snapshot(db, &links, &snap, SQLITE_BUSY_TIMEOUT).unwrap();
    let v: String = rusqlite::Connection::open(&snap)
        .unwrap()
        .query_row("SELECT v FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, "ORIGINAL-BYTES");
    // The links went with their reads; the directory goes with its value.
    assert_eq!(std::fs::read_dir(links.dir.path()).unwrap().count(), 0);
    let dir = links.dir.path().to_path_buf();
    drop(links);
    assert!(!dir.exists());
}

/// A database of 300 rows of 4000 bytes, in rollback-journal mode.
fn big_db(db: &Path) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, pad BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
             INSERT INTO t SELECT i, 0, zeroblob(4000) FROM n;",
        )
        .unwrap();
}

/// A writer that died mid-commit (its pages spilled into the database, its journal left
/// hot) makes the database a half-written state: refused by the hold and the snapshot
/// with the way out, database and journal untouched (no rollback through our link).
/// That it was SQLite's real hot journal: a read-write connection then rolls it back.
#[test]
fn a_hot_journal_is_refused_and_the_database_left_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("account.sqlite");
    big_db(&db);
    let clean = std::fs::read(&db).unwrap();
    let status = child("crash", &db).wait().unwrap();
    assert!(status.success());
    let journal = tmp.path().join("account.sqlite-journal");
    let before = (
        std::fs::read(&db).unwrap(),
        std::fs::read(&journal).unwrap(),
    );
    assert_ne!(before.0, clean, "the writer never wrote the database");
    assert_ne!(before.1[0], 0, "the journal's header is not written");

    let at = At::of(&db).unwrap();
    let said = "has a journal left by a writer that stopped mid-commit: open that budget in \
                Actual once so it is rolled back, then back up again";
    let err = hold_sqlite(&at, &links(&db), SQLITE_BUSY_TIMEOUT).unwrap_err();
    assert!(format!("{err:#}").contains(said), "{err:#}");
    assert_eq!(
        crate::error::classify(&err).0,
        crate::error::Kind::Environment
    );
    let snap = tmp.path().join("snap.sqlite");
    let err = sqlite_snapshot(&at, &links(&db), &snap, SQLITE_BUSY_TIMEOUT).unwrap_err();
    assert!(format!("{err:#}").contains(said), "{err:#}");
    let after = (
        std::fs::read(&db).unwrap(),
        std::fs::read(&journal).unwrap(),
    );
    assert!(after == before, "the database or its journal changed");

    let c = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 300);
    drop(c);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        clean,
        "not rolled back: no hot journal"
    );
}

/// A live writer's journal (RESERVED held, the journal's header written) is not hot: the
/// database is held and read as its last commit, the writer goes on after.
#[test]
fn a_live_writers_journal_is_not_hot() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("account.sqlite");
    big_db(&db);
    let clean = std::fs::read(&db).unwrap();
    let mut writer = child("reserved", &db);
    wait_for(&tmp.path().join("account.sqlite.wrote"), &mut writer);
    let journal = std::fs::read(tmp.path().join("account.sqlite-journal")).unwrap();
    // All that tells it from a hot journal is the writer's RESERVED lock.
    assert_ne!(
        journal.first().copied().unwrap_or(0),
        0,
        "{}",
        journal.len()
    );
    let links = links(&db);
    let bytes = held_bytes(&At::of(&db).unwrap(), &links);
    assert_eq!(bytes, clean);
    std::fs::write(tmp.path().join("account.sqlite.stop"), "").unwrap();
    assert!(writer.wait().unwrap().success());
}

/// The links' directory is made only where the instance's user cannot rename it away.
#[test]
fn a_writable_instance_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
    let err = LinkDir::new(tmp.path()).unwrap_err();
    assert!(
        format!("{err:#}").contains("writable by no one else"),
        "{err:#}"
    );
    assert_eq!(
        crate::error::classify(&err).0,
        crate::error::Kind::Environment
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// A data directory on another filesystem than its instance directory cannot be linked:
/// refused, not read by path (where /dev/shm is another filesystem than the temp dir).
#[test]
fn a_database_on_another_filesystem_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    if std::fs::metadata(shm.path()).unwrap().dev() == std::fs::metadata(tmp.path()).unwrap().dev()
    {
        return;
    }
    let db = shm.path().join("account.sqlite");
    big_db(&db);
    let links = LinkDir::new(tmp.path()).unwrap();
    let err = hold_sqlite(&At::of(&db).unwrap(), &links, SQLITE_BUSY_TIMEOUT).unwrap_err();
    assert!(
        format!("{err:#}").contains("is on another filesystem"),
        "{err:#}"
    );
    assert_eq!(
        crate::error::classify(&err).0,
        crate::error::Kind::Environment
    );
}

/// A link directory a crashed create left behind goes with the next create of that
/// instance (the lock makes it no one else's); other entries stay.
#[test]
fn a_crashed_creates_link_directory_is_removed_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let stale = tmp.path().join(".abssctl-links-crashed");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("0.sqlite"), b"a second name").unwrap();
    std::fs::create_dir(tmp.path().join("data")).unwrap();
    let links = LinkDir::new(tmp.path()).unwrap();
    assert!(!stale.exists());
    assert!(tmp.path().join("data").is_dir());
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with(".abssctl-links-") && names[1] == "data");
    drop(links);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}
