//! `abssctl tls ...`, the certificate fallback of a box without the system certificate, and
//! the catch-all default server. Certificates are made fresh by `openssl` in temp dirs;
//! the nginx parts run the REAL `nginx -t` with a prefix and config under a temp root (as
//! cli_vhost.rs does), only systemd's reload is a recording stand-in.
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod common;
mod nginx_support;
#[path = "tls_support/mod.rs"]
mod support;

use abssctl::domain::default_server;
use abssctl::domain::txn::Plan;
use abssctl::domain::vhost::TlsKind;
use abssctl::ops::tls::{InstallArgs, install_with, use_system_with};
use abssctl::ops::vhost::{Fallback, Providers, plan_apply};
use abssctl::sys::nginx::ConfigTest;
use common::{abssctl, registry_file, registry_with_budget, run};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::*;

// ---------------------------------------------------------------- tls verify

#[test]
fn verify_files_of_every_supported_key_type() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for kind in ["rsa", "P-256", "P-384", "ed25519"] {
        let (c, k) = pair(root, kind, kind, "budget.example.org");
        let out = abssctl(root)
            .args(["tls", "verify", "--cert", s(&c), "--key", s(&k)])
            .args(["--domain", "budget.example.org", "--json"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        no_pem(&text);
        let v = common::json_ok(&out);
        assert_eq!(v["ok"], true, "{kind}: {v}");
        assert_eq!(v["key_matches"], true);
        assert_eq!(v["covers_domain"], true);
        assert_eq!(v["certificate"]["names"][0], "budget.example.org");
        let days = v["days_left"].as_i64().unwrap();
        assert!((88..=90).contains(&days), "{days}");
    }
    let (c, k) = pair(root, "h", "P-256", "budget.example.org");
    let (code, out, _) = run(root, &["tls", "verify", "--cert", s(&c), "--key", s(&k)]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("key type: ecdsa_p256 (matches the certificate)"),
        "{out}"
    );
    no_pem(&out);
}

#[test]
fn verify_refusals_exit_2_and_unreadable_files_exit_3() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (c, _) = pair(root, "a", "P-256", "budget.example.org");
    let (_, other_key) = pair(root, "b", "P-256", "budget.example.org");
    let (big_c, big_k) = pair(root, "big", "P-521", "budget.example.org");
    let (old_c, old_k) = expired(root, "budget.example.org");
    let (oc, ok) = pair(root, "o", "rsa", "other.test");
    let (_, rsa_k) = pair(root, "r", "rsa", "budget.example.org");
    openssl(
        root,
        &[
            "pkey", "-in", "r.key", "-aes256", "-passout", "pass:x", "-out", "enc.key",
        ],
    );
    let enc = root.join("enc.key");
    for (cert, key, domain, want) in [
        (&c, &other_key, None, "does not belong to the certificate"),
        (&big_c, &big_k, None, "ECDSA P-521 keys are not supported"),
        (&old_c, &old_k, None, "expired on 2020-02-01"),
        (
            &oc,
            &ok,
            Some("budget.example.org"),
            "(other.test) do not cover budget.example.org",
        ),
        (&c, &enc, None, "the private key is encrypted"),
        (&c, &rsa_k, None, "does not belong"),
    ] {
        let mut args = vec!["tls", "verify", "--cert", s(cert), "--key", s(key)];
        if let Some(d) = domain {
            args.extend(["--domain", d]);
        }
        let (code, out, err) = run(root, &args);
        assert_eq!(code, Some(2), "{want}: {out}{err}");
        assert!(err.contains(want), "{want}: {err}");
        no_pem(&out);
        no_pem(&err);
    }
    let missing = root.join("nope.key");
    let (code, _, err) = run(
        root,
        &["tls", "verify", "--cert", s(&c), "--key", s(&missing)],
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("cannot read TLS file") && err.contains("nope.key"),
        "{err}"
    );
    let (code, _, err) = run(
        root,
        &[
            "tls",
            "verify",
            "--cert",
            s(&c),
            "--key",
            s(&other_key),
            "--chain",
            s(&missing),
        ],
    );
    assert_eq!(code, Some(3), "{err}");
}

#[test]
fn verify_an_instance_checks_what_its_vhost_serves() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    registry_with_budget(root);
    system_cert(root, "budget.example.org");
    let out = abssctl(root)
        .args(["tls", "verify", "--instance", "budget", "--json"])
        .output()
        .unwrap();
    let v = common::json_ok(&out);
    assert_eq!(v["source"], "system");
    assert_eq!(v["key_type"], "rsa");
    assert_eq!(v["covers_domain"], true);
    assert_eq!(v["instance"], "budget");
    // The same machine certificate for another name: exit 2, the reason on stderr.
    system_cert(root, "turnkey.local");
    let (code, _, err) = run(root, &["tls", "verify", "--instance", "budget"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("do not cover budget.example.org"), "{err}");
    let (code, _, err) = run(root, &["tls", "verify", "--instance", "nobody"]);
    assert_eq!(code, Some(2), "{err}");
}

// ---------------------------------------------------------------- tls install / status (CLI)

#[test]
fn install_refuses_bad_pairs_and_unconfirmed_runs_and_dry_run_plans() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    registry_with_budget(root);
    system_cert(root, "budget.example.org");
    let registry = std::fs::read(registry_file(root)).unwrap();
    let (oc, ok) = pair(root, "o", "P-256", "other.test");
    let (c, k) = pair(root, "g", "P-256", "budget.example.org");
    let tls_dir = root.join("var/lib/abssctl/tls");

    let (code, _, err) = run(
        root,
        &[
            "tls",
            "install",
            "--instance",
            "budget",
            "--cert",
            s(&oc),
            "--key",
            s(&ok),
            "--yes",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("not installing") && err.contains("do not cover"),
        "{err}"
    );
    // No terminal, no --yes: the question is answered no.
    let (code, _, err) = run(
        root,
        &[
            "tls",
            "install",
            "--instance",
            "budget",
            "--cert",
            s(&c),
            "--key",
            s(&k),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not confirmed"), "{err}");

    let out = abssctl(root)
        .args([
            "tls",
            "install",
            "--instance",
            "budget",
            "--cert",
            s(&c),
            "--key",
            s(&k),
        ])
        .args(["--dry-run", "--json"])
        .output()
        .unwrap();
    let v = common::json_ok(&out);
    assert_eq!(
        common::action_names(&v),
        ["tls_files", "registry_write", "nginx_vhost_apply"]
    );
    assert_eq!(v["source"], "custom");
    assert_eq!(v["dry_run"], true);
    assert!(
        v["cert"]
            .as_str()
            .unwrap()
            .ends_with("tls/instances/budget/fullchain.pem")
    );
    assert_eq!(std::fs::read(registry_file(root)).unwrap(), registry);
    assert!(!tls_dir.exists());
}

#[test]
fn status_shows_source_names_and_expiry_and_the_fallbacks() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    registry_with_budget(root);
    // No system certificate, no snakeoil: the self-signed fallback, not made yet.
    let v = common::json_ok(
        &abssctl(root)
            .args(["tls", "status", "--json"])
            .output()
            .unwrap(),
    );
    let i = &v["instances"][0];
    assert_eq!(i["source"], "system");
    assert_eq!(i["fallback"], "self_signed");
    assert!(
        i["error"].as_str().unwrap().contains("no certificate yet"),
        "{i}"
    );
    // Debian's snakeoil pair (ssl-cert), made for the host name as Debian does.
    std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
    std::fs::create_dir_all(root.join("etc/ssl/private")).unwrap();
    let (c, k) = pair(root, "snake", "rsa", "debian.local");
    std::fs::rename(c, root.join("etc/ssl/certs/ssl-cert-snakeoil.pem")).unwrap();
    std::fs::rename(k, root.join("etc/ssl/private/ssl-cert-snakeoil.key")).unwrap();
    let v = common::json_ok(
        &abssctl(root)
            .args(["tls", "status", "--json"])
            .output()
            .unwrap(),
    );
    let i = &v["instances"][0];
    assert_eq!(i["fallback"], "snakeoil");
    assert_eq!(i["names"][0], "debian.local");
    assert_eq!(i["covers_domain"], false);
    // The system certificate wins over both.
    system_cert(root, "budget.example.org");
    let (code, out, err) = run(root, &["tls", "status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("INSTANCE  DOMAIN"), "{out}");
    assert!(
        out.contains("budget    budget.example.org  system  budget.example.org"),
        "{out}"
    );
    assert!(out.contains(" days)"), "{out}");
    no_pem(&out);
}

#[test]
fn create_on_a_box_without_the_system_certificate_plans_a_fallback() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    common::installed_version(root, "26.9.0", "22.23.3");
    let create = |root: &Path| {
        common::json_ok(
            &abssctl(root)
                .args([
                    "instance",
                    "create",
                    "budget",
                    "--domain",
                    "budget.example.org",
                ])
                .args(["--dry-run", "--json"])
                .output()
                .unwrap(),
        )
    };
    let v = create(root);
    assert_eq!(v["vhost"]["tls_fallback"], "self_signed");
    let actions = common::action_names(&v);
    assert_eq!(
        actions[actions.len() - 2..],
        ["tls_self_signed", "nginx_vhost_apply"]
    );
    assert!(
        !root.join("var/lib/abssctl/tls").exists(),
        "a dry run made it"
    );
    std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
    std::fs::create_dir_all(root.join("etc/ssl/private")).unwrap();
    std::fs::write(root.join("etc/ssl/certs/ssl-cert-snakeoil.pem"), "c").unwrap();
    std::fs::write(root.join("etc/ssl/private/ssl-cert-snakeoil.key"), "k").unwrap();
    let v = create(root);
    assert_eq!(v["vhost"]["tls_fallback"], "snakeoil");
    assert!(
        v["vhost"]["tls"]["cert"]
            .as_str()
            .unwrap()
            .ends_with("/etc/ssl/certs/ssl-cert-snakeoil.pem")
    );
    assert!(!common::action_names(&v).contains(&"tls_self_signed".to_string()));
}

#[test]
fn golden_catch_all_files() {
    let all = default_server::needed(default_server::Claimed::default()).unwrap();
    insta::assert_snapshot!(
        "catch_all_nothing_claimed",
        default_server::render(&all, None).unwrap()
    );
    let debian = default_server::Claimed {
        http_v4: true,
        http_v6: true,
        ..Default::default()
    };
    insta::assert_snapshot!(
        "catch_all_port_80_claimed_by_debian_default",
        default_server::render(&default_server::needed(debian).unwrap(), None).unwrap()
    );
}

#[test]
fn the_catch_all_comes_with_the_first_vhost_passes_nginx_and_goes_with_its_undo() {
    let m = machine();
    let c = ctx(&m.root);
    let sd = RecordingSystemd::default();
    let link = m
        .root
        .join("etc/nginx/sites-enabled")
        .join(default_server::FILE_NAME);
    // A later step fails: the vhost and the catch-all are both taken back.
    let mut plan = Plan::new();
    plan_apply(
        &c,
        &request(),
        Providers {
            systemd: &sd,
            nginx: &m.nginx,
        },
        &mut plan,
    )
    .unwrap();
    plan.step("health", "wait for /health", || anyhow::bail!("unhealthy"));
    plan.run(false).unwrap_err();
    assert!(!catch_all(&m.root).exists() && std::fs::symlink_metadata(&link).is_err());

    let reloads = sd.reloads.borrow().len();
    apply(&c, &sd, &m.nginx).unwrap();
    let text = std::fs::read_to_string(catch_all(&m.root)).unwrap();
    assert!(
        text.contains("ssl_reject_handshake on;") && text.contains("return 444;"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../sites-available/abssctl-00-default.conf")
    );
    assert_eq!(
        sd.reloads.borrow().len(),
        reloads + 1,
        "one reload for both files"
    );
    let passed = m.nginx.test().unwrap();
    assert!(!passed.output.contains("[warn]"), "{}", passed.output);
    // Again: nothing to do.
    apply(&c, &sd, &m.nginx).unwrap();
    assert_eq!(sd.reloads.borrow().len(), reloads + 1);

    // The operator enables a site that claims the default on 443: abssctl's goes away
    // (two default servers on one port would fail nginx -t).
    enable_site(&m.root, "mine", "server {\n    listen 443 ssl default_server;\n    ssl_certificate CERT;\n    ssl_certificate_key KEY;\n}\n"
        .replace("CERT", s(&m.root.join("etc/ssl/private/cert.pem")))
        .replace("KEY", s(&m.root.join("etc/ssl/private/cert.key")))
        .as_str());
    m.nginx.test().unwrap_err();
    apply(&ctx(&m.root), &sd, &m.nginx).unwrap();
    assert!(!catch_all(&m.root).exists() && std::fs::symlink_metadata(&link).is_err());
    m.nginx.test().unwrap();
}

#[test]
fn on_turnkey_nothing_is_added_and_beside_debians_default_site_only_443() {
    let m = machine();
    let sd = RecordingSystemd::default();
    // TurnKey's own site: default_server on 80 and 443.
    enable_site(
        &m.root,
        "nodejs",
        &format!(
            "server {{\n    listen 80 default_server;\n    listen [::]:80 default_server;\n    return 301 https://$host$request_uri;\n}}\nserver {{\n    listen 443 ssl default_server;\n    listen [::]:443 ssl default_server;\n    ssl_certificate {c};\n    ssl_certificate_key {k};\n}}\n",
            c = s(&m.root.join("etc/ssl/private/cert.pem")),
            k = s(&m.root.join("etc/ssl/private/cert.key")),
        ),
    );
    apply(&ctx(&m.root), &sd, &m.nginx).unwrap();
    assert!(!catch_all(&m.root).exists());

    let m = machine();
    // Debian's default site: the default on 80 only (its TLS lines are comments).
    enable_site(
        &m.root,
        "default",
        "server {\n\tlisten 80 default_server;\n\tlisten [::]:80 default_server;\n\t# listen 443 ssl default_server;\n\troot /var/www/html;\n\tserver_name _;\n}\n",
    );
    apply(&ctx(&m.root), &sd, &m.nginx).unwrap();
    let text = std::fs::read_to_string(catch_all(&m.root)).unwrap();
    assert!(
        !text.contains("return 444;") && text.contains("listen [::]:443 ssl default_server;"),
        "{text}"
    );
    m.nginx.test().unwrap();
}

#[test]
fn without_the_system_certificate_a_self_signed_one_is_made_and_served() {
    let m = machine();
    std::fs::remove_dir_all(m.root.join("etc/ssl/private")).unwrap();
    let c = ctx(&m.root);
    let sd = RecordingSystemd::default();
    let mut plan = Plan::new();
    let summary = plan_apply(
        &c,
        &request(),
        Providers {
            systemd: &sd,
            nginx: &m.nginx,
        },
        &mut plan,
    )
    .unwrap();
    assert_eq!(summary.tls_fallback, Some(Fallback::SelfSigned));
    assert_eq!(summary.tls.kind, TlsKind::System);
    plan.run(false).unwrap();
    let dir = m
        .root
        .join("var/lib/abssctl/tls/self-signed/budget.example.org");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    assert_eq!(mode(&dir.join("cert.pem")), 0o644);
    let vhost =
        std::fs::read_to_string(m.root.join("etc/nginx/sites-available/abssctl-budget.conf"))
            .unwrap();
    assert!(
        vhost.contains(&format!("ssl_certificate {};", s(&dir.join("cert.pem")))),
        "{vhost}"
    );
    m.nginx.test().unwrap();
    // It is made once: the next write reuses it.
    let first = std::fs::read(dir.join("privkey.pem")).unwrap();
    let mut plan = Plan::new();
    plan_apply(
        &ctx(&m.root),
        &request(),
        Providers {
            systemd: &sd,
            nginx: &m.nginx,
        },
        &mut plan,
    )
    .unwrap();
    assert!(
        !plan
            .planned_actions()
            .iter()
            .any(|a| a.action == "tls_self_signed")
    );
    plan.run(false).unwrap();
    assert_eq!(std::fs::read(dir.join("privkey.pem")).unwrap(), first);
}

#[test]
fn install_then_use_system_through_the_real_nginx() {
    let m = machine();
    registry_with_budget(&m.root);
    let sd = RecordingSystemd::default();
    let prov = || Providers {
        systemd: &sd,
        nginx: &m.nginx,
    };
    let fixtures = tempfile::tempdir().unwrap();
    let (c1, k1) = pair(fixtures.path(), "one", "P-384", "budget.example.org");
    let (ca, _) = pair(fixtures.path(), "ca", "rsa", "ca.test");
    let args = |c: &Path, k: &Path, chain: Option<&Path>| InstallArgs {
        instance: "budget".into(),
        cert: c.to_path_buf(),
        key: k.to_path_buf(),
        chain: chain.map(Path::to_path_buf),
    };
    let mut c = ctx(&m.root);
    c.globals.yes = true;
    let r = install_with(&mut c, &args(&c1, &k1, Some(&ca)), prov()).unwrap();
    assert_eq!(r.source, TlsKind::Custom);
    assert!(r.changed && r.backups.is_empty());
    let dir = m.root.join("var/lib/abssctl/tls/instances/budget");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    assert_eq!(mode(&dir.join("fullchain.pem")), 0o644);
    assert_eq!(mode(&dir), 0o700);
    let full = std::fs::read_to_string(dir.join("fullchain.pem")).unwrap();
    assert_eq!(full.matches("BEGIN CERTIFICATE").count(), 2);
    let vhost_file = m.root.join("etc/nginx/sites-available/abssctl-budget.conf");
    let vhost = std::fs::read_to_string(&vhost_file).unwrap();
    assert!(
        vhost.contains(&format!(
            "ssl_certificate {};",
            s(&dir.join("fullchain.pem"))
        )),
        "{vhost}"
    );
    assert!(vhost.contains("TLS source: custom"), "{vhost}");
    let reg = std::fs::read_to_string(registry_file(&m.root)).unwrap();
    assert!(
        reg.contains("tls_source: custom") && reg.contains("fullchain.pem"),
        "{reg}"
    );
    m.nginx.test().unwrap();

    // The same files again: nothing changes.
    let mut c = ctx(&m.root);
    c.globals.yes = true;
    let again = install_with(&mut c, &args(&c1, &k1, Some(&ca)), prov()).unwrap();
    assert!(!again.changed && again.backups.is_empty(), "{again:?}");

    // A second certificate: the first one's files are kept with a timestamp.
    std::thread::sleep(Duration::from_millis(1100));
    let (c2, k2) = pair(fixtures.path(), "two", "ed25519", "budget.example.org");
    let mut c = ctx(&m.root);
    c.globals.yes = true;
    let r = install_with(&mut c, &args(&c2, &k2, None), prov()).unwrap();
    let names: Vec<String> = r
        .backups
        .iter()
        .map(|b| b.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("privkey.pem.bak-2")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("fullchain.pem.bak-2")),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read(dir.join("privkey.pem")).unwrap(),
        std::fs::read(&k2).unwrap()
    );

    // nginx rejects the result (a broken operator template): files and registry go back.
    let reg_before = std::fs::read(registry_file(&m.root)).unwrap();
    let key_before = std::fs::read(dir.join("privkey.pem")).unwrap();
    let tpl = m.root.join("etc/abssctl/templates");
    std::fs::create_dir_all(&tpl).unwrap();
    std::fs::write(
        tpl.join("nginx-vhost.conf.tera"),
        abssctl::domain::vhost::EMBEDDED_TEMPLATE
            .replace("proxy_http_version 1.1;", "proxy_http_versoin 1.1;"),
    )
    .unwrap();
    let mut c = ctx(&m.root);
    c.globals.yes = true;
    let err = install_with(&mut c, &args(&c1, &k1, None), prov()).unwrap_err();
    assert_eq!(abssctl::error::classify(&err).0.exit_code(), 4);
    assert_eq!(std::fs::read(registry_file(&m.root)).unwrap(), reg_before);
    assert_eq!(std::fs::read(dir.join("privkey.pem")).unwrap(), key_before);
    std::fs::remove_dir_all(&tpl).unwrap();

    // Back to the system certificate; the files stay for the operator.
    let mut c = ctx(&m.root);
    let r = use_system_with(&mut c, "budget", prov()).unwrap();
    assert_eq!(r.source, TlsKind::System);
    assert!(r.changed);
    let vhost = std::fs::read_to_string(&vhost_file).unwrap();
    assert!(vhost.contains("etc/ssl/private/cert.pem;"), "{vhost}");
    let reg = std::fs::read_to_string(registry_file(&m.root)).unwrap();
    assert!(
        !reg.contains("fullchain.pem") && reg.contains("tls_source: system"),
        "{reg}"
    );
    assert!(dir.join("privkey.pem").exists());
    m.nginx.test().unwrap();
    let r = use_system_with(&mut ctx(&m.root), "budget", prov()).unwrap();
    assert!(!r.changed && r.planned_actions.is_empty());
}
