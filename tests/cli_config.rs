//! `abssctl config show` and the config layers, on the real binary with ABSSCTL_ROOT pointing
//! at a temp dir (so the config file is <root>/etc/abssctl/config.yml).

mod common;
use assert_cmd::Command;
use common::abssctl;
use predicates::prelude::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn write_config(root: &Path, text: &str) -> PathBuf {
    let p = root.join("etc/abssctl/config.yml");
    std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
    std::fs::write(&p, text).expect("write config");
    p
}

/// Run `config show --json` and return the parsed output (asserting success).
fn show_json(cmd: &mut Command) -> Value {
    let out = cmd.args(["config", "show", "--json"]).assert().success();
    serde_json::from_slice(&out.get_output().stdout).expect("stdout is JSON")
}

fn key<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["keys"]
        .as_array()
        .expect("keys is a list")
        .iter()
        .find(|k| k["key"] == name)
        .unwrap_or_else(|| panic!("key {name} missing in {v}"))
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(
                    p.strip_prefix(base)
                        .expect("under base")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn env_port_base_is_shown_with_env_source() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let v = show_json(abssctl(tmp.path()).env("ABSSCTL_PORTS_BASE", "6000"));
    assert_eq!(v["schema_version"], 1);
    let k = key(&v, "ports.base");
    assert_eq!(k["value"], 6000);
    assert_eq!(
        k["source"],
        json!({"kind": "env", "var": "ABSSCTL_PORTS_BASE"})
    );
    assert_eq!(k["env"], "ABSSCTL_PORTS_BASE");
    assert_eq!(
        key(&v, "ports.strategy")["source"],
        json!({"kind": "default"})
    );
    let file = &v["config_file"];
    assert_eq!(
        file["path"],
        tmp.path()
            .join("etc/abssctl/config.yml")
            .display()
            .to_string()
    );
    assert_eq!(file["loaded"], false);
    assert_eq!(
        file["source"],
        json!({"kind": "env", "var": "ABSSCTL_ROOT"})
    );
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(37));
}

#[test]
fn human_output_is_a_table_with_sources() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_config(tmp.path(), "ports:\n  strategy: sequential\n");
    let out = abssctl(tmp.path())
        .env("ABSSCTL_PORTS_BASE", "6000")
        .args(["config", "show"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("KEY "), "{text}");
    let line = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{k} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no row for {k} in {text}"))
    };
    assert_eq!(line("ports.base"), "ports.base 6000 env ABSSCTL_PORTS_BASE");
    let file = tmp.path().join("etc/abssctl/config.yml");
    assert_eq!(
        line("ports.strategy"),
        format!("ports.strategy sequential {}:2", file.display())
    );
    assert_eq!(line("runtime"), "runtime auto default");
}

#[test]
fn misspelt_key_exits_2_naming_key_and_line_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write_config(
        tmp.path(),
        "# my settings\nruntime: auto\nprots:\n  base: 6000\n",
    );
    let before = tree(tmp.path());
    abssctl(tmp.path())
        .args(["config", "show"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "error: {}:3: unknown key 'prots' (did you mean 'ports'?)\nhint: ",
            file.display()
        )));
    // Any command refuses to run on a bad config, and nothing is written.
    abssctl(tmp.path()).args(["ports", "list"]).assert().code(2);
    assert_eq!(tree(tmp.path()), before);

    let out = abssctl(tmp.path())
        .args(["config", "show", "--json"])
        .assert()
        .code(2);
    let v: Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON error");
    assert_eq!(v["error"]["exit_code"], 2);
    assert_eq!(v["error"]["kind"], "validation");
}

#[test]
fn wrong_type_exits_2_with_file_line_and_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write_config(tmp.path(), "ports:\n  base: lots\n");
    abssctl(tmp.path())
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "error: {}:2: ports.base: must be an integer, got the string 'lots'",
            file.display()
        )));
    write_config(tmp.path(), "tls:\n  enabled: yes please\n");
    abssctl(tmp.path())
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            ":2: tls.enabled: must be true or false",
        ));
    write_config(tmp.path(), "lock_timeout: 5\nports:\n  base: 80\n");
    abssctl(tmp.path())
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            ":3: ports.base: port 80 is outside 1024-65535",
        ));
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write_config(tmp.path(), "lock_timeout: 5\nports:\n  base: 7000\n");
    let file = file.display().to_string();

    let v = show_json(&mut abssctl(tmp.path()));
    assert_eq!(key(&v, "lock_timeout")["value"], 5.0);
    assert_eq!(
        key(&v, "lock_timeout")["source"],
        json!({"kind": "file", "path": file, "line": 1})
    );
    assert_eq!(
        key(&v, "ports.base")["source"],
        json!({"kind": "file", "path": file, "line": 3})
    );
    assert_eq!(key(&v, "runtime")["source"], json!({"kind": "default"}));
    assert_eq!(v["config_file"]["loaded"], true);

    let v = show_json(abssctl(tmp.path()).env("ABSSCTL_LOCK_TIMEOUT", "6"));
    assert_eq!(key(&v, "lock_timeout")["value"], 6.0);
    assert_eq!(
        key(&v, "lock_timeout")["source"],
        json!({"kind": "env", "var": "ABSSCTL_LOCK_TIMEOUT"})
    );

    let v = show_json(
        abssctl(tmp.path())
            .env("ABSSCTL_LOCK_TIMEOUT", "6")
            .args(["--lock-timeout", "7"]),
    );
    assert_eq!(key(&v, "lock_timeout")["value"], 7.0);
    assert_eq!(
        key(&v, "lock_timeout")["source"],
        json!({"kind": "flag", "flag": "--lock-timeout"})
    );
    assert_eq!(key(&v, "ports.base")["value"], 7000);
}

#[test]
fn bad_or_unknown_environment_exits_2_naming_the_variable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    abssctl(tmp.path())
        .env("ABSSCTL_PORTS_BASE", "six thousand")
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: environment variable ABSSCTL_PORTS_BASE: ports.base: must be an integer",
        ));
    abssctl(tmp.path())
        .env("ABSSCTL_PORT_BASE", "6000")
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: unknown environment variable ABSSCTL_PORT_BASE (did you mean ABSSCTL_PORTS_BASE?)",
        ));
    abssctl(tmp.path())
        .args(["--lock-timeout=-1", "config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "flag --lock-timeout: lock_timeout:",
        ));
}

#[test]
fn explicit_config_file_wins_and_must_exist() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_config(tmp.path(), "ports:\n  base: 7000\n");
    let other = tmp.path().join("other.yml");
    std::fs::write(&other, "\n\nports:\n  base: 8000\n").expect("write");
    let v = show_json(abssctl(tmp.path()).arg("--config").arg(&other));
    assert_eq!(key(&v, "ports.base")["value"], 8000);
    assert_eq!(key(&v, "ports.base")["source"]["line"], 4);
    assert_eq!(
        v["config_file"]["source"],
        json!({"kind": "flag", "flag": "--config"})
    );
    let v = show_json(abssctl(tmp.path()).env("ABSSCTL_CONFIG", &other));
    assert_eq!(key(&v, "ports.base")["value"], 8000);

    abssctl(tmp.path())
        .arg("--config")
        .arg(tmp.path().join("missing.yml"))
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "missing.yml (from flag --config) does not exist",
        ));
}

#[test]
fn shipped_default_config_parses_to_defaults() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/config.yml"))
            .expect("debian/config.yml");
    write_config(tmp.path(), &shipped);
    // Without the harness's offline registry, every key but the root is the shipped default
    // (config show reads no registry).
    let v = show_json(abssctl(tmp.path()).env_remove("ABSSCTL_NPM_REGISTRY"));
    assert_eq!(v["config_file"]["loaded"], true);
    for k in v["keys"].as_array().expect("list") {
        let want = if k["key"] == "root" { "env" } else { "default" };
        assert_eq!(k["source"]["kind"], want, "{k}");
    }
}

/// An unrelated variable that is not UTF-8 must not crash the environment reader.
#[test]
fn non_utf8_environment_is_tolerated() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let v = show_json(abssctl(tmp.path()).env("SOME_OTHER_VAR", odd));
    assert_eq!(key(&v, "ports.base")["value"], 5000);
}

/// Read-only: works as an unprivileged user (as root the test drops to nobody).
#[test]
fn config_show_works_unprivileged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_config(tmp.path(), "ports:\n  base: 7000\n");
    let is_root = nix::unistd::geteuid().is_root();
    let mut cmd = if is_root {
        use std::os::unix::fs::PermissionsExt;
        for d in [
            tmp.path().to_path_buf(),
            tmp.path().join("etc"),
            tmp.path().join("etc/abssctl"),
        ] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Command::from_std(common::as_nobody(tmp.path()))
    } else {
        abssctl(tmp.path())
    };
    let v = show_json(&mut cmd);
    assert_eq!(key(&v, "ports.base")["value"], 7000);
    // Nothing was created by the read-only command (no log as an unprivileged user).
    assert_eq!(tree(tmp.path()), ["etc/abssctl/config.yml"]);
}
