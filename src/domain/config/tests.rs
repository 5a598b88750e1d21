//! Unit tests of the config layers (the CLI behaviour is in tests/cli_config.rs).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

use super::*;
use crate::error::{Kind, classify};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const FILE: &str = "/etc/abssctl/config.yml";

fn from_file(text: &str) -> anyhow::Result<Resolved> {
    resolve(Some((Path::new(FILE), text)), &[], &Overrides::default())
}

/// The message and hint of a validation failure (panics on success or another kind).
fn invalid(r: anyhow::Result<Resolved>) -> (String, String) {
    let err = r.unwrap_err();
    let (kind, msg, hint) = classify(&err);
    assert_eq!(kind, Kind::Validation, "{msg}");
    (msg, hint.unwrap_or_default())
}

#[test]
fn keys_and_config_fields_are_the_same_set() {
    let fields = serde_json::to_value(Config::default()).unwrap();
    let mut fields: Vec<String> = fields.as_object().unwrap().keys().cloned().collect();
    let mut keys: Vec<String> = KEYS.iter().map(|d| field(d.key)).collect();
    fields.sort();
    keys.sort();
    assert_eq!(fields, keys);
}

#[test]
fn defaults_resolve_with_default_sources() {
    let r = resolve(None, &[], &Overrides::default()).unwrap();
    assert_eq!(r.config, Config::default());
    assert_eq!(r.sources.len(), KEYS.len());
    assert!(r.sources.values().all(|s| *s == Source::Default));
    assert_eq!(r.file.path, Path::new(DEFAULT_CONFIG_FILE));
    assert!(!r.file.loaded);
    assert_eq!(r.value("ports.base"), serde_json::json!(5000));
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let text = "lock_timeout: 5\nports:\n  base: 7000\n  strategy: sequential\n";
    let e = env(&[("ABSSCTL_LOCK_TIMEOUT", "6")]);
    let o = Overrides {
        lock_timeout: Some(7.5),
        ..Default::default()
    };
    let r = resolve(Some((Path::new(FILE), text)), &e, &o).unwrap();
    assert_eq!(r.config.lock_timeout, 7.5);
    assert_eq!(
        r.sources["lock_timeout"],
        Source::Flag {
            flag: "--lock-timeout".into()
        }
    );
    assert_eq!(r.config.ports_base, 7000);
    assert_eq!(
        r.sources["ports.base"],
        Source::File {
            path: FILE.into(),
            line: 3
        }
    );
    assert_eq!(
        r.sources["ports.strategy"],
        Source::File {
            path: FILE.into(),
            line: 4
        }
    );
    assert_eq!(r.sources["runtime"], Source::Default);

    let r = resolve(Some((Path::new(FILE), text)), &e, &Overrides::default()).unwrap();
    assert_eq!(r.config.lock_timeout, 6.0);
    assert_eq!(
        r.sources["lock_timeout"],
        Source::Env {
            var: "ABSSCTL_LOCK_TIMEOUT".into()
        }
    );
    let r = from_file(text).unwrap();
    assert_eq!(r.config.lock_timeout, 5.0);
    assert_eq!(
        r.sources["lock_timeout"],
        Source::File {
            path: FILE.into(),
            line: 1
        }
    );
}

#[test]
fn env_names_map_to_nested_keys() {
    assert_eq!(env_var("ports.base"), "ABSSCTL_PORTS_BASE");
    assert_eq!(env_var("tls.system.cert"), "ABSSCTL_TLS_SYSTEM_CERT");
    let e = env(&[
        ("ABSSCTL_PORTS_BASE", "6000"),
        ("ABSSCTL_TLS_ENABLED", "no"),
        ("ABSSCTL_TLS_SYSTEM_CERT", "/x/cert.pem"),
        ("ABSSCTL_BACKUPS_COMPRESSION_LEVEL", "9"),
        ("ABSSCTL_NPM_REGISTRY", "https://registry.invalid/"),
        ("ABSSCTL_ASSUME_YES", "1"),
        ("ABSSCTL_LOG", "debug"),
    ]);
    let r = resolve(None, &e, &Overrides::default()).unwrap();
    assert_eq!(r.config.ports_base, 6000);
    assert!(!r.config.tls_enabled);
    assert_eq!(r.config.tls_system_cert, Path::new("/x/cert.pem"));
    assert_eq!(r.config.backups_compression_level, 9);
    assert_eq!(
        r.sources["ports.base"],
        Source::Env {
            var: "ABSSCTL_PORTS_BASE".into()
        }
    );
}

#[test]
fn config_file_location() {
    let o = Overrides::default();
    assert_eq!(config_file_path(&o, &[]), Path::new(DEFAULT_CONFIG_FILE));
    let e = env(&[("ABSSCTL_ROOT", "/tmp/t")]);
    let (p, s) = locate_config_file(&o, &e);
    assert_eq!(p, Path::new("/tmp/t/etc/abssctl/config.yml"));
    assert_eq!(
        s,
        Source::Env {
            var: "ABSSCTL_ROOT".into()
        }
    );
    let e = env(&[("ABSSCTL_ROOT", "/tmp/t"), ("ABSSCTL_CONFIG", "/c.yml")]);
    assert_eq!(config_file_path(&o, &e), Path::new("/c.yml"));
    let o = Overrides {
        config_file: Some("/f.yml".into()),
        ..Default::default()
    };
    assert_eq!(config_file_path(&o, &e), Path::new("/f.yml"));
    // An explicit file that is missing is an error; the default one may be absent.
    let (msg, _) = invalid(resolve(None, &e, &o));
    assert_eq!(
        msg,
        "config file /f.yml (from flag --config) does not exist"
    );
    assert!(
        resolve(
            None,
            &env(&[("ABSSCTL_ROOT", "/tmp/t")]),
            &Overrides::default()
        )
        .is_ok()
    );
}

#[test]
fn unknown_keys_name_file_line_and_suggest() {
    let (msg, hint) = invalid(from_file("runtime: auto\n\nprots:\n  base: 6000\n"));
    assert_eq!(
        msg,
        "/etc/abssctl/config.yml:3: unknown key 'prots' (did you mean 'ports'?)"
    );
    assert!(hint.contains("config show"), "{hint}");
    let (msg, _) = invalid(from_file("ports:\n  bsae: 6000\n"));
    assert_eq!(
        msg,
        "/etc/abssctl/config.yml:2: unknown key 'ports.bsae' (did you mean 'ports.base'?)"
    );
    let (msg, _) = invalid(from_file("base: 6000\n"));
    assert_eq!(
        msg,
        "/etc/abssctl/config.yml:1: unknown key 'base' (did you mean 'ports.base'?)"
    );
    let (msg, _) = invalid(from_file("zzzzzzzzzz: 1\n"));
    assert_eq!(msg, "/etc/abssctl/config.yml:1: unknown key 'zzzzzzzzzz'");
    let (msg, hint) = invalid(from_file("ports.base: 6000\n"));
    assert!(
        msg.starts_with("/etc/abssctl/config.yml:1: unknown key 'ports.base'"),
        "{msg}"
    );
    assert!(hint.contains("nested"), "{hint}");
}

#[test]
fn wrong_types_name_file_line_and_key() {
    let (msg, hint) = invalid(from_file("# c\nports:\n  base: \"6000\"\n"));
    assert_eq!(
        msg,
        "/etc/abssctl/config.yml:3: ports.base: must be an integer, got the string '6000'"
    );
    assert_eq!(hint, "for example the default: ports.base: 5000");
    let (msg, _) = invalid(from_file("tls:\n  enabled: 1\n"));
    assert_eq!(
        msg,
        "/etc/abssctl/config.yml:2: tls.enabled: must be true or false, got the integer 1"
    );
    let (msg, _) = invalid(from_file("state_dir: [a]\n"));
    assert_eq!(
        msg,
        "/etc/abssctl/config.yml:1: state_dir: must be an absolute path, got a list"
    );
    let (msg, _) = invalid(from_file("ports: 5000\n"));
    assert_eq!(
        msg,
        "/etc/abssctl/config.yml:1: 'ports' must be a mapping, got the integer 5000"
    );
    let (msg, _) = invalid(from_file("runtime:\n"));
    assert_eq!(
        msg,
        "/etc/abssctl/config.yml:1: runtime: must be a string, got an empty value"
    );
    let (msg, _) = invalid(from_file("- a\n- b\n"));
    assert!(
        msg.starts_with("/etc/abssctl/config.yml:1: the file must be a mapping"),
        "{msg}"
    );
    let (msg, _) = invalid(from_file("ports:\n  base: [\n"));
    assert!(msg.starts_with("/etc/abssctl/config.yml:"), "{msg}");
    assert!(msg.contains("not valid YAML"), "{msg}");
}

#[test]
fn invalid_values_are_rejected() {
    let cases: &[(&str, &str)] = &[
        (
            "ports:\n  base: 80\n",
            "ports.base: port 80 is outside 1024-65535",
        ),
        (
            "ports:\n  base: 65500\n",
            "ports.base: 65500 leaves fewer than 100 ports",
        ),
        (
            "ports:\n  strategy: random\n",
            "ports.strategy: 'random' is not one of sequential",
        ),
        (
            "state_dir: var/lib\n",
            "state_dir: 'var/lib' is not an absolute path",
        ),
        (
            "state_dir: /var/../etc\n",
            "state_dir: '/var/../etc' contains '..'",
        ),
        (
            "runtime: node\n",
            "runtime: 'node' is not auto, system or an absolute path",
        ),
        (
            "lock_timeout: -1\n",
            "lock_timeout: -1.0 seconds is not between 0 and 86400",
        ),
        (
            "npm_package_name: Foo\n",
            "npm_package_name: invalid npm package name 'Foo'",
        ),
        (
            "npm_registry: ftp://x\n",
            "npm_registry: 'ftp://x' is not 'auto' or an http(s) URL",
        ),
        (
            "npm_registry: https://\n",
            "npm_registry: 'https://' is not 'auto'",
        ),
        (
            "default_version: v1\n",
            "default_version: invalid version 'v1'",
        ),
        (
            "service_user: Root\n",
            "service_user: 'Root' is not a valid user name",
        ),
        (
            "reverse_proxy: apache\n",
            "reverse_proxy: 'apache' is not one of nginx",
        ),
        (
            "backups:\n  compression:\n    level: 0\n",
            "backups.compression.level: 0 is not",
        ),
        (
            "backups:\n  compression:\n    algorithm: gzip\n    level: 12\n",
            "backups.compression.level: 12 is above 9",
        ),
        (
            "root: relative\n",
            "root: 'relative' is not an absolute path",
        ),
        (
            "upgrades:\n  check_on_calendar: \"\"\n",
            "upgrades.check_on_calendar: '' is not a calendar expression",
        ),
        (
            "upgrades:\n  auto_upgrade: yes please\n",
            "upgrades.auto_upgrade: must be true or false",
        ),
    ];
    for (text, want) in cases {
        let (msg, hint) = invalid(from_file(text));
        assert!(
            msg.starts_with(FILE) && msg.contains(want),
            "{text:?}: {msg}"
        );
        assert!(!hint.is_empty(), "{text:?}: no hint");
    }
    // Good non-default values pass.
    let ok = "runtime: /usr/local/bin/node\nnpm_registry: http://127.0.0.1:4873/\ndefault_version: 26.8.1\nlock_timeout: 0\nroot: \"\"\n";
    let r = from_file(ok).unwrap();
    assert_eq!(r.config.runtime, "/usr/local/bin/node");
    assert_eq!(r.config.lock_timeout, 0.0);
}

#[test]
fn bad_environment_names_the_variable() {
    let (msg, _) = invalid(resolve(
        None,
        &env(&[("ABSSCTL_PORTS_BASE", "lots")]),
        &Overrides::default(),
    ));
    assert_eq!(
        msg,
        "environment variable ABSSCTL_PORTS_BASE: ports.base: must be an integer, got 'lots'"
    );
    let (msg, _) = invalid(resolve(
        None,
        &env(&[("ABSSCTL_PORTS_BASE", "99")]),
        &Overrides::default(),
    ));
    assert!(
        msg.starts_with("environment variable ABSSCTL_PORTS_BASE: ports.base: port 99"),
        "{msg}"
    );
    let (msg, hint) = invalid(resolve(
        None,
        &env(&[("ABSSCTL_PORT_BASE", "6000")]),
        &Overrides::default(),
    ));
    assert_eq!(
        msg,
        "unknown environment variable ABSSCTL_PORT_BASE (did you mean ABSSCTL_PORTS_BASE?)"
    );
    assert!(hint.contains("ABSSCTL_PORTS_BASE"), "{hint}");
    let o = Overrides {
        lock_timeout: Some(-2.0),
        ..Default::default()
    };
    let (msg, _) = invalid(resolve(None, &[], &o));
    assert_eq!(
        msg,
        "flag --lock-timeout: lock_timeout: -2.0 seconds is not between 0 and 86400"
    );
}

/// The shipped debian/config.yml: as shipped it parses to the defaults; with every key
/// uncommented it still resolves to the defaults, and every key is in it.
#[test]
fn shipped_config_file_is_complete_and_matches_defaults() {
    let shipped = include_str!("../../../debian/config.yml");
    let r = from_file(shipped).unwrap();
    assert_eq!(r.config, Config::default());
    assert!(r.sources.values().all(|s| *s == Source::Default));

    // Uncomment lines of the form "#<indent>key: value" / "#<indent>section:".
    let uncommented: String = shipped
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.trim_start().split_once(':').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest.to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let r = from_file(&uncommented).unwrap();
    assert_eq!(r.config, Config::default());
    for def in KEYS {
        assert!(
            matches!(r.sources[def.key], Source::File { .. }),
            "{} is not in debian/config.yml",
            def.key
        );
    }
}

#[test]
fn every_key_has_its_own_variable() {
    let mut vars: Vec<String> = KEYS.iter().map(|d| env_var(d.key)).collect();
    vars.extend(NON_CONFIG_VARS.iter().map(|s| s.to_string()));
    let n = vars.len();
    vars.sort();
    vars.dedup();
    assert_eq!(vars.len(), n, "two keys share a variable");
}

proptest::proptest! {
    #[test]
    fn ports_base_from_env_is_accepted_exactly_in_range(n in -10_000i64..80_000) {
        let e = env(&[("ABSSCTL_PORTS_BASE", &n.to_string())]);
        let r = resolve(None, &e, &Overrides::default());
        let ok = (1024..=65435).contains(&n);
        proptest::prop_assert_eq!(r.is_ok(), ok);
        if let Ok(r) = r {
            proptest::prop_assert_eq!(i64::from(r.config.ports_base), n);
        }
    }

    #[test]
    fn any_file_text_resolves_or_fails_as_validation(text in "[a-z_:. \\n\\-#\"0-9\\[\\]{}]{0,80}") {
        // Whatever an operator types, the outcome is a config or an exit-2 error, never a
        // panic or an internal error.
        if let Err(e) = from_file(&text) {
            proptest::prop_assert_eq!(classify(&e).0, Kind::Validation);
        }
    }
}
