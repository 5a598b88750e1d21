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

#[test]
fn missing_files_are_an_empty_registry() {
    let p = Path::new("/r/ports.yml");
    assert_eq!(parse_ports(p, None).unwrap(), vec![]);
    assert_eq!(parse_instances(p, None).unwrap(), vec![]);
}

#[test]
fn ports_round_trip() {
    let p = Path::new("/r/ports.yml");
    let ports = parse_ports(p, Some(PORTS)).unwrap();
    assert_eq!(ports[0].port, 5000);
    let state = State {
        instances: vec![],
        ports,
    };
    let text = state.render_ports().unwrap();
    assert_eq!(parse_ports(p, Some(&text)).unwrap(), state.ports);
    assert!(text.starts_with("schema_version: 1\n"), "{text}");
}

#[test]
fn instances_round_trip_with_optional_fields() {
    let text = "\
schema_version: 1
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
    let p = Path::new("/r/instances.yml");
    let list = parse_instances(p, Some(text)).unwrap();
    assert_eq!(
        list[0].version_binding,
        VersionBinding::Exact(semver::Version::new(26, 9, 0))
    );
    assert_eq!(list[0].tls_source, Some(TlsSource::Custom));
    assert_eq!(list[0].notes, "");
    let state = State {
        instances: list,
        ports: vec![],
    };
    assert_eq!(
        parse_instances(p, Some(&state.render_instances().unwrap())).unwrap(),
        state.instances
    );
}

#[test]
fn unknown_field_names_file_and_line() {
    let text = PORTS.replace(
        "    instance: budget\n",
        "    instance: budget\n    colour: red\n",
    );
    let err = parse_ports(Path::new("/r/ports.yml"), Some(&text)).unwrap_err();
    assert_eq!(err.kind, Kind::Validation);
    assert!(
        err.message.contains("/r/ports.yml line 5"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("line 5 column 5: unknown field `colour`"),
        "{}",
        err.message
    );
    // The position is stated once, not repeated by the YAML library's own text.
    assert_eq!(err.message.matches("line").count(), 1, "{}", err.message);
    assert!(err.hint.unwrap().contains("never rewrites"));
}

#[test]
fn bad_yaml_and_bad_binding_are_validation_errors() {
    let p = Path::new("/r/x.yml");
    for text in ["schema_version: 1\nports: [\n", "", "ports: []\n", "- 1\n"] {
        let err = parse_ports(p, Some(text)).unwrap_err();
        assert_eq!(err.kind, Kind::Validation, "{text:?}");
        assert!(err.message.contains("/r/x.yml"), "{}", err.message);
    }
    let bad = "schema_version: 1\ninstances:\n  - name: a\n    domain: a.org\n    port: 5000\n    version_binding: latest\n    data_dir: /d\n    created_at: 2026-11-26T08:00:00Z\n    last_changed: 2026-11-26T08:00:00Z\n";
    let err = parse_instances(p, Some(bad)).unwrap_err();
    assert!(err.message.contains("line 6"), "{}", err.message);
}

#[test]
fn schema_versions_newer_and_unknown() {
    let p = Path::new("/r/ports.yml");
    let err = parse_ports(p, Some("schema_version: 2\nports: []\nnew_thing: 1\n")).unwrap_err();
    assert_eq!(err.kind, Kind::Validation);
    assert!(err.message.contains("newer abssctl"), "{}", err.message);
    let err = parse_ports(p, Some("schema_version: 0\n")).unwrap_err();
    assert!(err.message.contains("line 1"), "{}", err.message);
}

#[test]
fn semantic_errors_point_at_the_entry() {
    let p = Path::new("/r/ports.yml");
    let dup = format!(
        "{PORTS}  - port: 5000\n    instance: other\n    reserved_at: 2026-11-26T08:00:00Z\n"
    );
    let err = parse_ports(p, Some(&dup)).unwrap_err();
    assert!(
        err.message.contains("line 6") && err.message.contains("twice"),
        "{}",
        err.message
    );
    let low = PORTS.replace("5000", "80");
    let err = parse_ports(p, Some(&low)).unwrap_err();
    assert!(err.message.contains("line 3"), "{}", err.message);
    let name = PORTS.replace("budget", "Bad_Name");
    assert!(parse_ports(p, Some(&name)).is_err());
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
    let mut s = State {
        instances: parse_instances(Path::new("/i"), Some(text)).unwrap(),
        ports: vec![],
    };
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
