#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
use super::*;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

/// The directory for the links to databases in `db`'s directory (see [`LinkDir`]).
pub(super) fn links(db: &Path) -> LinkDir {
    LinkDir::new(db.parent().unwrap()).unwrap()
}

/// Make `path` an hour old: past the quiet period.
pub(super) fn old(path: &Path) {
    let f = File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

/// Every member of an archive: name -> content (directories: empty).
fn members(path: &Path, alg: Algorithm) -> BTreeMap<String, Vec<u8>> {
    let f = File::open(path).unwrap();
    let r: Box<dyn Read> = match alg {
        Algorithm::Zstd => Box::new(zstd::stream::read::Decoder::new(f).unwrap()),
        Algorithm::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
        Algorithm::None => Box::new(f),
    };
    let mut a = tar::Archive::new(r);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        out.insert(name, buf);
    }
    out
}

#[test]
fn archive_round_trips_and_hash_is_of_the_file() {
    for alg in [Algorithm::Zstd, Algorithm::Gzip, Algorithm::None] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("blob");
        std::fs::write(&src, b"blob bytes").unwrap();
        let meta = std::fs::metadata(&src).unwrap();
        let dest = tmp.path().join(format!("a.{}", alg.extension()));
        let mut w = ArchiveWriter::create(&dest, alg, 3, 0o600).unwrap();
        w.add_bytes("m.json", b"{}", 0o600, 0).unwrap();
        w.add_dir("data", &std::fs::metadata(tmp.path()).unwrap())
            .unwrap();
        w.add_file("data/blob", &meta, 10, File::open(&src).unwrap())
            .unwrap();
        assert_eq!(w.input_bytes, 12);
        let done = w.finish().unwrap();
        assert_eq!(done.path, dest);
        assert_eq!(done.size, std::fs::metadata(&dest).unwrap().len());
        assert_eq!(done.sha256, crate::sys::fs::sha256_file(&dest).unwrap());
        assert_eq!(std::fs::metadata(&dest).unwrap().mode() & 0o777, 0o600);
        let m = members(&dest, alg);
        assert_eq!(m["m.json"], b"{}");
        assert_eq!(m["data/blob"], b"blob bytes");
        assert!(m.contains_key("data/") || m.contains_key("data"), "{m:?}");
        // Nothing else was left in the directory.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
    }
}

#[test]
fn an_unfinished_archive_leaves_nothing_and_short_reads_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a.tar.zst");
    let mut w = ArchiveWriter::create(&dest, Algorithm::Zstd, 3, 0o600).unwrap();
    let meta = std::fs::metadata(tmp.path()).unwrap();
    // The header says 10 bytes, the reader has 3: refused, not a short member.
    assert!(w.add_file("x", &meta, 10, &b"abc"[..]).is_err());
    drop(w);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    // Never over an existing archive.
    std::fs::write(&dest, b"old").unwrap();
    let w = ArchiveWriter::create(&dest, Algorithm::None, 0, 0o600).unwrap();
    assert!(w.finish().is_err());
    assert_eq!(std::fs::read(&dest).unwrap(), b"old");
}

/// Two rows whose sum is always 100, moved between in transactions by another connection
/// in a loop while snapshots are taken: every snapshot is whole (integrity ok) and one
/// committed state (the sum holds).
#[test]
fn snapshot_during_writes_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("group-x.sqlite");
    sum_db(&db);
    let writer = Writer::start(&db);
    for i in 0..10 {
        let snap = tmp.path().join(format!("snap-{i}.sqlite"));
        sqlite_snapshot(
            &At::of(&db).unwrap(),
            &links(&db),
            &snap,
            SQLITE_BUSY_TIMEOUT,
        )
        .unwrap();
        let c = rusqlite::Connection::open(&snap).unwrap();
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let sum: i64 = c
            .query_row("SELECT sum(v) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, 100, "snapshot {i} is not one committed state");
        assert_eq!(std::fs::metadata(&snap).unwrap().mode() & 0o777, 0o600);
    }
    writer.stop();
}

#[test]
fn a_quiet_file_is_copied_once_large_ones_are_staged() {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("file-a.blob");
    std::fs::write(&small, b"abc").unwrap();
    old(&small);
    let (c, meta) = copy_stable(&At::of(&small).unwrap(), tmp.path(), "s1", QUIET_PERIOD).unwrap();
    assert_eq!(meta.len(), 3);
    assert!(matches!(c, StableCopy::Memory(ref b) if b == b"abc"));

    let big = tmp.path().join("file-b.blob");
    let content = vec![7u8; MEMORY_COPY_MAX as usize + 1];
    std::fs::write(&big, &content).unwrap();
    old(&big);
    let (c, _) = copy_stable(&At::of(&big).unwrap(), tmp.path(), "s2", QUIET_PERIOD).unwrap();
    match c {
        StableCopy::Staged(p) => assert_eq!(std::fs::read(p).unwrap(), content),
        StableCopy::Memory(_) => panic!("a large file was held in memory"),
    }
}

/// A blob overwritten in place while it is copied: the copy is always one whole version
/// (all bytes the same), never a mix of two.
#[test]
fn a_blob_written_during_the_copy_is_never_torn() {
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("file-c.blob");
    let size = 256 * 1024;
    std::fs::write(&blob, vec![b'a'; size]).unwrap();
    let writer = {
        let blob = blob.clone();
        std::thread::spawn(move || {
            for round in 0..15u8 {
                let mut f = File::options().write(true).open(&blob).unwrap();
                let byte = b'b' + (round % 20);
                for _ in 0..16 {
                    f.write_all(&vec![byte; size / 16]).unwrap();
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    // No quiet period: the change checks alone must keep the copy whole.
    let (c, meta) = copy_stable(&At::of(&blob).unwrap(), tmp.path(), "s", Duration::ZERO).unwrap();
    writer.join().unwrap();
    let StableCopy::Memory(b) = c else {
        panic!("small file staged")
    };
    assert_eq!(b.len(), size);
    assert_eq!(meta.len() as usize, size);
    assert!(b.iter().all(|x| *x == b[0]), "torn copy");
}

#[test]
fn a_file_that_never_settles_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("file-d.blob");
    std::fs::write(&blob, b"x").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (blob, stop) = (blob.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::write(&blob, b"y").unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let err = copy_stable(
        &At::of(&blob).unwrap(),
        tmp.path(),
        "s",
        Duration::from_millis(200),
    )
    .unwrap_err();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(format!("{err:#}").contains("kept changing"), "{err:#}");
}

#[test]
fn prepare_ahead_keeps_the_order_and_stops_at_the_first_error() {
    let items: Vec<u64> = (0..50).collect();
    let mut seen = Vec::new();
    prepare_ahead(
        &items,
        |x| *x * 1024 * 1024,
        |i, x| Ok((i as u64, *x * 2)),
        |x, (i, y)| {
            assert_eq!((i, y), (*x, *x * 2));
            seen.push(*x);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(seen, items);

    // A failed preparation is the result, and nothing after it is consumed.
    let consumed = std::sync::atomic::AtomicUsize::new(0);
    let err = prepare_ahead(
        &items,
        |_| 0,
        |i, _| if i == 7 { anyhow::bail!("no") } else { Ok(i) },
        |_, _| {
            consumed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        },
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "no");
    assert_eq!(consumed.into_inner(), 7);

    // A failed consumer stops the producer (which may be waiting for room).
    let prepared = std::sync::atomic::AtomicUsize::new(0);
    let err = prepare_ahead(
        &items,
        |_| AHEAD_BYTES,
        |_, _| {
            prepared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        },
        |_, ()| anyhow::bail!("full"),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "full");
    assert!(prepared.into_inner() <= 2, "the producer ran on");
}

/// The snapshot of a database is whole and readable without the journal it was
/// written without.
#[test]
fn a_snapshot_has_no_journal_and_is_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("account.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t(v);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO t SELECT randomblob(3000) FROM n;",
    )
    .unwrap();
    let snap = tmp.path().join("snap.sqlite");
    sqlite_snapshot(
        &At::of(&db).unwrap(),
        &links(&db),
        &snap,
        SQLITE_BUSY_TIMEOUT,
    )
    .unwrap();
    assert!(!tmp.path().join("snap.sqlite-journal").exists());
    let s = rusqlite::Connection::open(&snap).unwrap();
    let n: i64 = s
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2000);
}

/// A database with a damaged b-tree page is refused by the snapshot's check (the backup
/// API copies the page as it is; the quick_check of the copy must see it).
#[test]
fn a_damaged_database_fails_the_snapshot_check() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("group-x.sqlite");
    damaged_db(&db);
    let snap = tmp.path().join("snap.sqlite");
    let err = sqlite_snapshot(
        &At::of(&db).unwrap(),
        &links(&db),
        &snap,
        SQLITE_BUSY_TIMEOUT,
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("integrity check"),
        "unexpected error: {err:#}"
    );
}

/// A database of two rows whose sum is 100 and some padding, in rollback-journal mode.
fn sum_db(db: &Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, pad BLOB);
         INSERT INTO t VALUES (1, 100, zeroblob(20000)), (2, 0, zeroblob(20000));",
    )
    .unwrap();
}

/// This test binary run again as a child process that runs `mode` on `db` (see
/// [`sqlite_child`]). A writer must be another process: the hot-journal check sees other
/// processes' locks only (F_GETLK), as SQLite's own check does for them, and no connection
/// of abssctl's writes an instance's database.
pub(super) fn child(mode: &str, db: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sys::archive::tests::sqlite_child",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(
            "ABSSCTL_TEST_SQLITE_CHILD",
            format!("{mode}:{}", db.display()),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait (30 s at most) until `child` made `flag`.
pub(super) fn wait_for(flag: &Path, child: &mut std::process::Child) {
    let started = std::time::Instant::now();
    while !flag.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the child never got there"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The child's side of [`child`]; in a plain test run it does nothing. Modes:
/// `writer`: [`Writer`]'s loop, until `<db>.stop` exists, then its count in `<db>.count`;
/// `crash`: a write transaction that spills pages into the database, then an exit without
/// commit or rollback (a writer that died mid-commit: a real hot journal);
/// `reserved`: a write transaction kept open (RESERVED held, its journal written) until
/// `<db>.stop` exists, then rolled back.
#[test]
fn sqlite_child() {
    let Ok(arg) = std::env::var("ABSSCTL_TEST_SQLITE_CHILD") else {
        return;
    };
    let (mode, db) = arg.split_once(':').unwrap();
    let flag = |ext: &str| PathBuf::from(format!("{db}.{ext}"));
    // A test that failed before telling its child to stop must not leave it running.
    let parent = nix::unistd::getppid();
    let orphan = || nix::unistd::getppid() != parent;
    let mut c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    match mode {
        "writer" => {
            let mut n = 0u64;
            while !flag("stop").exists() && !orphan() {
                let tx = c.transaction().unwrap();
                tx.execute(
                    "UPDATE t SET v = v - 1, pad = randomblob(20000) WHERE id = 1",
                    [],
                )
                .unwrap();
                tx.execute("INSERT INTO t(v, pad) VALUES (0, randomblob(5000))", [])
                    .unwrap();
                tx.execute("UPDATE t SET v = v + 1 WHERE id = 2", [])
                    .unwrap();
                tx.commit().unwrap();
                n += 1;
                if n == 1 {
                    std::fs::write(flag("wrote"), "").unwrap();
                }
            }
            std::fs::write(flag("count"), n.to_string()).unwrap();
        }
        "crash" => {
            // A cache of 10 pages: the update spills, writing the database under EXCLUSIVE
            // after syncing the journal (its header then has its magic).
            c.execute_batch("PRAGMA cache_size = 10; BEGIN; UPDATE t SET pad = randomblob(20000);")
                .unwrap();
            std::process::exit(0);
        }
        "reserved" => {
            // synchronous=OFF writes the journal's header with its magic at once, so the
            // journal looks hot but for the RESERVED lock.
            c.execute_batch("PRAGMA synchronous = OFF; BEGIN; UPDATE t SET v = v + 1;")
                .unwrap();
            std::fs::write(flag("wrote"), "").unwrap();
            while !flag("stop").exists() && !orphan() {
                std::thread::sleep(Duration::from_millis(5));
            }
            c.execute_batch("ROLLBACK").unwrap();
        }
        _ => panic!("unknown mode {mode}"),
    }
}

/// Another process moving 1 between the two rows of a [`sum_db`] in a loop of
/// transactions (each also rewrites a row's padding and adds a row, so pages change).
struct Writer {
    db: PathBuf,
    child: std::process::Child,
}

impl Writer {
    /// Start the loop; returns once it has committed (on a loaded machine the child may
    /// otherwise not run before every read is taken, and the test would prove nothing).
    fn start(db: &Path) -> Writer {
        let mut child = child("writer", db);
        wait_for(
            &PathBuf::from(format!("{}.wrote", db.display())),
            &mut child,
        );
        Writer {
            db: db.to_path_buf(),
            child,
        }
    }

    /// Stop the loop; it must have committed at least once.
    fn stop(mut self) {
        let flag = |ext: &str| PathBuf::from(format!("{}.{ext}", self.db.display()));
        std::fs::write(flag("stop"), "").unwrap();
        assert!(self.child.wait().unwrap().success(), "the writer failed");
        let n: u64 = std::fs::read_to_string(flag("count"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(n > 0, "the writer never ran");
    }
}

/// A 3000-row database whose page 3, a leaf of its table's b-tree (page 1 the schema,
/// page 2 the root), has garbage for cell pointers and cells under a leaf header.
fn damaged_db(db: &Path) {
    {
        let c = rusqlite::Connection::open(db).unwrap();
        c.execute_batch(
            "PRAGMA page_size = 4096;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t SELECT i, printf('row %d of the budget', i) FROM n;",
        )
        .unwrap();
    }
    let mut bytes = std::fs::read(db).unwrap();
    assert!(bytes.len() > 4 * 4096);
    for b in &mut bytes[2 * 4096 + 8..3 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(db, &bytes).unwrap();
}

/// Hold `db`, read all of its file (checking the length given) with `during` run while
/// still held, and return the bytes.
fn read_held(db: &Path, during: impl FnOnce()) -> Result<Vec<u8>> {
    let links = links(db);
    let held = hold_sqlite(&At::of(db)?, &links, SQLITE_BUSY_TIMEOUT)?
        .expect("a rollback-journal database is held");
    held.read_checked(|file, len| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &*file, &mut bytes)?;
        assert_eq!(bytes.len() as u64, len);
        during();
        Ok(bytes)
    })
}

/// The held file, read while another connection commits in a loop, is one committed
/// state each time (integrity ok, the sum holds): the read transaction keeps the writer
/// from changing the file until the read and its check are done.
#[test]
fn a_held_database_read_during_writes_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("group-x.sqlite");
    sum_db(&db);
    let writer = Writer::start(&db);
    let mut rows = Vec::new();
    for i in 0..10 {
        let copy = tmp.path().join(format!("copy-{i}.sqlite"));
        std::fs::write(&copy, read_held(&db, || ()).unwrap()).unwrap();
        let c = rusqlite::Connection::open(&copy).unwrap();
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "copy {i} is torn");
        let (sum, n): (i64, i64) = c
            .query_row("SELECT sum(v), count(*) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(sum, 100, "copy {i} is not one committed state");
        rows.push(n);
    }
    writer.stop();
    assert!(
        rows.windows(2).all(|w| w[0] <= w[1]),
        "the copies go back in time: {rows:?}"
    );
}

/// While held, a writer that does not wait is refused (SQLITE_BUSY) and the file does not
/// change; once the read is done the same write commits. This is what makes the held file
/// one state, and what a client waits on.
#[test]
fn a_held_database_keeps_writers_out_until_the_read_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("account.sqlite");
    sum_db(&db);
    let writer = rusqlite::Connection::open(&db).unwrap();
    writer.busy_timeout(Duration::ZERO).unwrap();
    let write = || writer.execute("UPDATE t SET v = v - 1 WHERE id = 1", []);
    let mut refused = None;
    let bytes = read_held(&db, || refused = Some(write().unwrap_err())).unwrap();
    let err = refused.unwrap();
    assert_eq!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "the held file changed");
    write().unwrap();
}

/// A held database with a damaged b-tree page is refused by the check that runs with its
/// read.
#[test]
fn a_damaged_database_is_refused_by_the_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("group-x.sqlite");
    damaged_db(&db);
    let err = read_held(&db, || ()).unwrap_err();
    assert!(
        format!("{err:#}").contains("integrity check"),
        "unexpected error: {err:#}"
    );
}

/// A WAL database's file alone is not its committed state, and its `-wal` and `-shm`
/// would need names of their own: it is refused, held or snapshotted, with the way out.
#[test]
fn a_wal_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("group-w.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    sum_db(&db);
    let at = At::of(&db).unwrap();
    let err = hold_sqlite(&at, &links(&db), SQLITE_BUSY_TIMEOUT).unwrap_err();
    assert!(format!("{err:#}").contains("is in WAL mode"), "{err:#}");
    assert_eq!(
        crate::error::classify(&err).0,
        crate::error::Kind::Environment
    );
    let snap = tmp.path().join("snap.sqlite");
    let err = sqlite_snapshot(&at, &links(&db), &snap, SQLITE_BUSY_TIMEOUT).unwrap_err();
    assert!(format!("{err:#}").contains("is in WAL mode"), "{err:#}");
    drop(c);
}
