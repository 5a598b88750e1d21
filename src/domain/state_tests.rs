#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
use super::*;
use crate::error::Kind;
use std::collections::HashSet;

/// A fake probe: these ports are "in use", by a known process.
struct Busy(HashSet<u16>);

impl PortProbe for Busy {
    fn in_use(&self, port: u16) -> bool {
        self.0.contains(&port)
    }
    fn holder(&self, port: u16) -> Option<String> {
        self.in_use(port).then(|| "pid 7 (nginx)".to_string())
    }
}

fn free() -> Busy {
    Busy(HashSet::new())
}

fn now() -> OffsetDateTime {
    time::macros::datetime!(2026-11-26 08:00:00 UTC)
}

const PORTS: &str = "\
schema_version: 1
ports:
  - port: 5000
    instance: budget
    reserved_at: 2026-11-26T08:00:00Z
";

/// A registry.yml: one instance (also recording port 5000) and its reservation.
const REGISTRY: &str = "\
schema_version: 2
instances:
  - name: budget
    domain: budget.example.org
    port: 5000
    version_binding: current
    data_dir: /srv/budget/data
    created_at: 2026-11-26T08:00:00Z
    last_changed: 2026-11-26T08:00:00Z
ports:
  - port: 5000
    instance: budget
    reserved_at: 2026-11-26T08:00:00Z
";

#[test]
fn missing_legacy_files_are_an_empty_registry() {
    let p = Path::new("/r/ports.yml");
    assert_eq!(parse_ports(p, None).unwrap(), vec![]);
    assert_eq!(parse_instances(p, None).unwrap(), vec![]);
    assert_eq!(
        upconvert_v1((p, None), (p, None)).unwrap(),
        State::default()
    );
}

#[test]
fn registry_round_trip() {
    let p = Path::new("/r/registry.yml");
    let state = parse_registry(p, REGISTRY).unwrap();
    assert_eq!((state.instances[0].port, state.ports[0].port), (5000, 5000));
    let text = state.render().unwrap();
    assert_eq!(parse_registry(p, &text).unwrap(), state);
    assert!(text.starts_with("schema_version: 2\n"), "{text}");
}

#[test]
fn the_legacy_pair_upconverts_to_the_same_state() {
    let legacy_instances = REGISTRY
        .replace("schema_version: 2", "schema_version: 1")
        .split("ports:\n")
        .next()
        .unwrap()
        .to_string();
    let upconverted = upconvert_v1(
        (Path::new("/r/instances.yml"), Some(&legacy_instances)),
        (Path::new("/r/ports.yml"), Some(PORTS)),
    )
    .unwrap();
    assert_eq!(
        upconverted,
        parse_registry(Path::new("/r/registry.yml"), REGISTRY).unwrap()
    );
    // A broken half is named, not skipped.
    let err = upconvert_v1(
        (Path::new("/r/instances.yml"), Some(&legacy_instances)),
        (
            Path::new("/r/ports.yml"),
            Some("schema_version: 1\nports: [\n"),
        ),
    )
    .unwrap_err();
    assert!(err.message.contains("/r/ports.yml"), "{}", err.message);
}

#[test]
fn instances_round_trip_with_optional_fields() {
    let text = "\
schema_version: 2
instances:
  - name: budget
    domain: budget.example.org
    port: 5000
    version_binding: 26.9.0
    data_dir: /srv/budget/data
    created_at: 2026-11-26T08:00:00Z
    last_changed: 2026-11-26T09:00:00Z
    tls_source: custom
    tls_cert: /etc/ssl/b.pem
    tls_key: /etc/ssl/b.key
    https_port: 8443
";
    let p = Path::new("/r/registry.yml");
    let state = parse_registry(p, text).unwrap();
    let list = &state.instances;
    assert_eq!(
        list[0].version_binding,
        VersionBinding::Exact(semver::Version::new(26, 9, 0))
    );
    assert_eq!(list[0].tls_source, Some(TlsSource::Custom));
    assert_eq!(list[0].notes, "");
    assert!(state.ports.is_empty());
    assert_eq!(parse_registry(p, &state.render().unwrap()).unwrap(), state);
}

#[test]
fn unknown_field_names_file_and_line() {
    let text = REGISTRY.replace(
        "    instance: budget\n",
        "    instance: budget\n    colour: red\n",
    );
    let err = parse_registry(Path::new("/r/registry.yml"), &text).unwrap_err();
    assert_eq!(err.kind, Kind::Validation);
    assert!(
        err.message
            .contains("/r/registry.yml line 13 column 5: unknown field `colour`"),
        "{}",
        err.message
    );
    // The position is stated once, not repeated by the YAML library's own text.
    assert_eq!(err.message.matches("line").count(), 1, "{}", err.message);
    assert!(err.hint.unwrap().contains("never rewrites"));
    // The same in a legacy file.
    let text = PORTS.replace(
        "    instance: budget\n",
        "    instance: budget\n    colour: red\n",
    );
    let err = parse_ports(Path::new("/r/ports.yml"), Some(&text)).unwrap_err();
    assert!(
        err.message.contains("/r/ports.yml line 5 column 5"),
        "{}",
        err.message
    );
}

#[test]
fn bad_yaml_and_bad_binding_are_validation_errors() {
    let p = Path::new("/r/x.yml");
    for text in ["schema_version: 2\nports: [\n", "", "ports: []\n", "- 1\n"] {
        let err = parse_registry(p, text).unwrap_err();
        assert_eq!(err.kind, Kind::Validation, "{text:?}");
        assert!(err.message.contains("/r/x.yml"), "{}", err.message);
    }
    let bad = "schema_version: 2\ninstances:\n  - name: a\n    domain: a.org\n    port: 5000\n    version_binding: latest\n    data_dir: /d\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n";
    let err = parse_registry(p, bad).unwrap_err();
    assert!(err.message.contains("line 6"), "{}", err.message);
}

#[test]
fn schema_versions_newer_older_and_unknown() {
    let p = Path::new("/r/registry.yml");
    let err = parse_registry(p, "schema_version: 3\nports: []\nnew_thing: 1\n").unwrap_err();
    assert_eq!(err.kind, Kind::Validation);
    assert!(err.message.contains("newer abssctl"), "{}", err.message);
    // Schema 1 was never a registry.yml, and a legacy file never had schema 2.
    let err = parse_registry(p, "schema_version: 1\nports: []\n").unwrap_err();
    assert!(err.message.contains("line 1"), "{}", err.message);
    assert!(!err.message.contains("newer"), "{}", err.message);
    let err = parse_ports(Path::new("/r/ports.yml"), Some("schema_version: 2\n")).unwrap_err();
    assert!(
        err.message.contains("ever written for this file"),
        "{}",
        err.message
    );
    let err = parse_registry(p, "schema_version: 0\n").unwrap_err();
    assert!(err.message.contains("line 1"), "{}", err.message);
}

#[test]
fn semantic_errors_point_at_the_entry_in_its_section() {
    let p = Path::new("/r/registry.yml");
    let dup = format!(
        "{REGISTRY}  - port: 5000\n    instance: other\n    reserved_at: 2026-11-26T08:00:00Z\n"
    );
    let err = parse_registry(p, &dup).unwrap_err();
    // Line 14, not line 11: the instance's own `port: 5000` (line 5) is in another section.
    assert!(
        err.message.contains("line 14") && err.message.contains("twice"),
        "{}",
        err.message
    );
    let low = REGISTRY.replace("  - port: 5000", "  - port: 80");
    let err = parse_registry(p, &low).unwrap_err();
    assert!(err.message.contains("line 11"), "{}", err.message);
    let name = REGISTRY.replace("instance: budget", "instance: Bad_Name");
    assert!(parse_registry(p, &name).is_err());
    let dup = REGISTRY.replace(
        "ports:\n",
        "  - name: budget\n    domain: b.org\n    port: 5001\n    version_binding: current\n    data_dir: /d\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\nports:\n",
    );
    let err = parse_registry(p, &dup).unwrap_err();
    assert!(
        err.message.contains("line 10") && err.message.contains("listed twice"),
        "{}",
        err.message
    );
}

#[test]
fn allocation_is_sequential_and_skips_reserved_and_busy_ports() {
    let mut s = State::default();
    let probe = Busy([5001, 5003].into());
    let mut got = vec![];
    for name in ["a", "b", "c"] {
        match s.reserve(name, None, 5000, &probe, now()).unwrap() {
            Reserved::New(r) => got.push(r.port),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, vec![5000, 5002, 5004]);
    // Idempotent for an instance that already holds a port.
    assert_eq!(
        s.reserve("b", None, 5000, &probe, now()).unwrap(),
        Reserved::Existing(s.ports[1].clone())
    );
    assert_eq!(s.ports.len(), 3);
}

#[test]
fn allocation_skips_ports_recorded_by_instances_and_starts_at_1024() {
    let text = "schema_version: 1\ninstances:\n  - name: a\n    domain: a.org\n    port: 5000\n    version_binding: current\n    data_dir: /d\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n    https_port: 5001\n";
    let mut s = parse_registry(Path::new("/i"), &text.replace("version: 1", "version: 2")).unwrap();
    let Reserved::New(r) = s.reserve("b", None, 5000, &free(), now()).unwrap() else {
        panic!()
    };
    assert_eq!(r.port, 5002);
    assert_eq!(next_free_port(&BTreeSet::new(), 80, &free()).unwrap(), 1024);
}

#[test]
fn exhausted_range_is_an_environment_error() {
    let claimed: BTreeSet<u16> = (65530..=65535).collect();
    let err = next_free_port(&claimed, 65530, &free()).unwrap_err();
    assert_eq!(err.kind, Kind::Environment);
}

#[test]
fn explicit_port_conflicts() {
    let mut s = State {
        instances: vec![],
        ports: parse_ports(Path::new("/p"), Some(PORTS)).unwrap(),
    };
    let err = s
        .reserve("x", Some(5000), 5000, &free(), now())
        .unwrap_err();
    assert_eq!(err.kind, Kind::Validation);
    assert!(err.message.contains("budget"));
    let err = s
        .reserve("x", Some(5005), 5000, &Busy([5005].into()), now())
        .unwrap_err();
    assert_eq!(err.kind, Kind::Environment);
    assert!(err.message.contains("pid 7 (nginx)"), "{}", err.message);
    assert_eq!(
        s.reserve("x", Some(80), 5000, &free(), now())
            .unwrap_err()
            .kind,
        Kind::Validation
    );
    // A second, dedicated port for the same instance is allowed.
    assert!(matches!(
        s.reserve("budget", Some(5443), 5000, &free(), now())
            .unwrap(),
        Reserved::New(_)
    ));
    assert_eq!(s.ports_of("budget").len(), 2);
}

#[test]
fn release_drops_all_reservations_of_an_instance() {
    let mut s = State {
        instances: vec![],
        ports: parse_ports(Path::new("/p"), Some(PORTS)).unwrap(),
    };
    s.reserve("budget", Some(5443), 5000, &free(), now())
        .unwrap();
    assert_eq!(s.release("budget").unwrap().len(), 2);
    assert!(s.ports.is_empty());
    assert_eq!(s.release("budget").unwrap_err().kind, Kind::Validation);
}
