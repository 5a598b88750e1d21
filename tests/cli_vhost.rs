//! The nginx vhost of an instance, against the REAL nginx: golden renderings (insta), a real
//! `nginx -t` of what abssctl writes (with a self-signed certificate made the way TurnKey
//! makes its own), and the fault path: an operator template that nginx rejects must leave
//! the previous vhost byte-identical and exit with the provider category and nginx's line.
//!
//! nginx runs with its own prefix, main config, pid and error log under a temp dir, so the
//! machine's nginx is never touched. Only the reload goes to a recording stand-in for
//! systemd (the real D-Bus path is exercised in the container tier).
#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result

mod nginx_support;
use nginx_support::{Machine, RecordingSystemd, ctx, machine_with, nginx_program};

use abssctl::domain::txn::Plan;
use abssctl::domain::validate;
use abssctl::domain::vhost::{self, Http2Syntax, TlsKind, TlsSource, VhostSpec};
use abssctl::error::{Kind, classify};
use abssctl::ops::Ctx;
use abssctl::ops::vhost::{Providers, VhostRequest, plan_apply, plan_remove};
use abssctl::sys::nginx::{ConfigTest, NginxCli};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed pair the way TurnKey's first boot makes one: a key in cert.key and a
/// cert.pem holding certificate, key and DH parameters, both 0400 in a 0700 directory.
fn turnkey_cert(dir: &Path, cn: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("cert.key");
    let crt = dir.join("cert.crt");
    let dh = dir.join("dhparams.pem");
    sh(Command::new("openssl")
        .args([
            "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "3650", "-sha256",
        ])
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt));
    sh(Command::new("openssl")
        .args(["dhparam", "-dsaparam", "-out"])
        .arg(&dh)
        .arg("2048"));
    let mut pem = std::fs::read(&crt).unwrap();
    pem.extend(std::fs::read(&key).unwrap());
    pem.extend(std::fs::read(&dh).unwrap());
    std::fs::write(dir.join("cert.pem"), pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in ["cert.pem", "cert.key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A temp machine with a TurnKey-style certificate for the domain.
fn machine() -> Machine {
    machine_with(|root| turnkey_cert(&root.join("etc/ssl/private"), "budget.example.org"))
}

fn request(port: u16) -> VhostRequest {
    VhostRequest {
        name: validate::instance_name("budget").unwrap(),
        domain: validate::domain("budget.example.org").unwrap(),
        port,
        https_port: None,
        custom_tls: None,
    }
}

fn apply(
    ctx: &Ctx,
    req: &VhostRequest,
    sd: &RecordingSystemd,
    nginx: &NginxCli,
) -> anyhow::Result<()> {
    let mut plan = Plan::new();
    let prov = Providers { systemd: sd, nginx };
    plan_apply(ctx, req, prov, &mut plan)?;
    plan.run(false).map(drop)
}

fn golden_spec(
    https_port: Option<u16>,
    kind: TlsKind,
    cert: &str,
    key: &str,
    http2: Http2Syntax,
) -> String {
    let spec = VhostSpec {
        http2,
        instance: validate::instance_name("budget").unwrap(),
        domain: validate::domain("budget.example.org").unwrap(),
        upstream_port: 5000,
        https_port,
        tls: TlsSource {
            kind,
            cert: cert.into(),
            key: key.into(),
        },
    };
    vhost::render(
        &spec,
        None,
        Path::new("/etc/abssctl/templates/nginx-vhost.conf.tera"),
    )
    .unwrap()
}

#[test]
fn golden_vhost_with_the_system_certificate() {
    insta::assert_snapshot!(golden_spec(
        None,
        TlsKind::System,
        "/etc/ssl/private/cert.pem",
        "/etc/ssl/private/cert.key",
        Http2Syntax::ListenParameter
    ));
}

#[test]
fn golden_vhost_with_lets_encrypt_and_a_dedicated_https_port() {
    insta::assert_snapshot!(golden_spec(
        Some(8443),
        TlsKind::LetsEncrypt,
        "/etc/letsencrypt/live/budget.example.org/fullchain.pem",
        "/etc/letsencrypt/live/budget.example.org/privkey.pem",
        Http2Syntax::ListenParameter
    ));
}

#[test]
fn golden_vhost_for_nginx_1_25_1_and_later_uses_http2_on() {
    insta::assert_snapshot!(golden_spec(
        Some(8443),
        TlsKind::System,
        "/etc/ssl/private/cert.pem",
        "/etc/ssl/private/cert.key",
        Http2Syntax::Directive
    ));
}

#[test]
fn the_real_nginx_v_is_read_and_picks_its_http2_form() {
    let program = nginx_program();
    let v = abssctl::sys::nginx::nginx_version(&program).unwrap();
    assert!(v >= vhost::NginxVersion(1, 18, 0), "{v}");
    let m = machine();
    assert_eq!(m.nginx.http2_syntax(), Http2Syntax::for_version(v));
}

#[test]
fn rendered_vhost_passes_a_real_nginx_test_and_is_enabled_relatively() {
    let m = machine();
    let c = ctx(&m.root);
    let sd = RecordingSystemd::default();
    let mut req = request(5000);
    req.https_port = Some(8443);
    apply(&c, &req, &sd, &m.nginx).unwrap();

    let file = m.root.join("etc/nginx/sites-available/abssctl-budget.conf");
    let link = m.root.join("etc/nginx/sites-enabled/abssctl-budget.conf");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../sites-available/abssctl-budget.conf")
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!(
        "ssl_certificate {}/etc/ssl/private/cert.pem;",
        m.root.display()
    )));
    // The HTTP/2 form of this machine's nginx (1.22: the listen parameter; 1.25.1+: `http2 on`).
    match m.nginx.http2_syntax() {
        Http2Syntax::ListenParameter => assert!(text.contains("listen 8443 ssl http2;"), "{text}"),
        Http2Syntax::Directive => {
            assert!(
                text.contains("listen 8443 ssl;") && text.contains("http2 on;"),
                "{text}"
            )
        }
    }
    assert!(
        text.contains("error_page 502 504 =503 @restarting;"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(*sd.reloads.borrow(), vec!["nginx.service"]);
    // The file nginx accepted is what a fresh `nginx -t` accepts too, without a warning
    // about the HTTP/2 form (nginx 1.25.1+ warns on the listen parameter).
    let passed = m.nginx.test().unwrap();
    assert!(!passed.output.contains("[warn]"), "{}", passed.output);

    // Same request again: nothing written, nothing reloaded (idempotent).
    apply(&c, &req, &sd, &m.nginx).unwrap();
    assert_eq!(sd.reloads.borrow().len(), 1);
    assert!(leftovers(&m.root).is_empty(), "{:?}", leftovers(&m.root));

    // A change of port rewrites the file and keeps the old text as .bak-<op_id>.
    apply(&c, &request(5001), &sd, &m.nginx).unwrap();
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("127.0.0.1:5001")
    );
    assert_eq!(
        leftovers(&m.root),
        vec![format!("abssctl-budget.conf.bak-{}", c.op.op_id)]
    );
    assert_eq!(sd.reloads.borrow().len(), 2);

    // Many changes later, only the newest backups are kept (the newest is this run's).
    let mut last = c.op.op_id;
    for port in 5002..5007 {
        std::thread::sleep(Duration::from_millis(2));
        let ci = ctx(&m.root);
        apply(&ci, &request(port), &sd, &m.nginx).unwrap();
        last = ci.op.op_id;
    }
    let baks = leftovers(&m.root);
    assert_eq!(baks.len(), abssctl::sys::nginx::BACKUPS_KEPT, "{baks:?}");
    assert_eq!(
        baks.last().unwrap(),
        &format!("abssctl-budget.conf.bak-{last}")
    );
}

/// Files in sites-available other than the vhost itself and the catch-all default server
/// (added beside the first vhost on a machine without one; tested in cli_tls.rs).
fn leftovers(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("etc/nginx/sites-available"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "abssctl-budget.conf" && n != "abssctl-00-default.conf")
        .collect();
    v.sort();
    v
}

#[test]
fn broken_template_override_fails_with_nginx_line_and_restores_previous_vhost() {
    let m = machine();
    let c = ctx(&m.root);
    let sd = RecordingSystemd::default();
    apply(&c, &request(5000), &sd, &m.nginx).unwrap();
    let file = m.root.join("etc/nginx/sites-available/abssctl-budget.conf");
    let link = m.root.join("etc/nginx/sites-enabled/abssctl-budget.conf");
    let before = std::fs::read(&file).unwrap();

    // The operator edits the override: valid tera, invalid nginx.
    let tpl_dir = m.root.join("etc/abssctl/templates");
    std::fs::create_dir_all(&tpl_dir).unwrap();
    std::fs::write(
        tpl_dir.join("nginx-vhost.conf.tera"),
        vhost::EMBEDDED_TEMPLATE.replace("proxy_http_version 1.1;", "proxy_http_versoin 1.1;"),
    )
    .unwrap();
    let c2 = ctx(&m.root);
    let err = apply(&c2, &request(5002), &sd, &m.nginx).unwrap_err();
    let (kind, msg, _) = classify(&err);
    assert_eq!(kind, Kind::Provider, "{msg}");
    assert_eq!(kind.exit_code(), 4);
    assert!(
        msg.contains("[emerg] unknown directive \"proxy_http_versoin\""),
        "{msg}"
    );
    assert!(msg.contains("restored"), "{msg}");

    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "previous vhost not byte-identical"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../sites-available/abssctl-budget.conf")
    );
    assert!(leftovers(&m.root).is_empty(), "{:?}", leftovers(&m.root));
    assert_eq!(
        sd.reloads.borrow().len(),
        1,
        "a failed test must not reload"
    );
    m.nginx.test().unwrap();
}

#[test]
fn override_that_does_not_render_is_refused_before_any_change() {
    let m = machine();
    let c = ctx(&m.root);
    let sd = RecordingSystemd::default();
    let tpl_dir = m.root.join("etc/abssctl/templates");
    std::fs::create_dir_all(&tpl_dir).unwrap();
    std::fs::write(
        tpl_dir.join("nginx-vhost.conf.tera"),
        "server { {{ no_such_value }} }",
    )
    .unwrap();
    let err = apply(&c, &request(5000), &sd, &m.nginx).unwrap_err();
    assert_eq!(classify(&err).0, Kind::Validation);
    assert!(
        !m.root
            .join("etc/nginx/sites-available/abssctl-budget.conf")
            .exists()
    );
    assert!(sd.reloads.borrow().is_empty());
}

#[test]
fn lets_encrypt_live_certificate_wins_over_the_system_one() {
    let m = machine();
    let c = ctx(&m.root);
    let sd = RecordingSystemd::default();
    let live = m.root.join("etc/letsencrypt/live/budget.example.org");
    turnkey_cert(&m.root.join("le-archive"), "budget.example.org");
    std::fs::create_dir_all(&live).unwrap();
    // certbot's live/ entries are symlinks into archive/.
    std::os::unix::fs::symlink(
        m.root.join("le-archive/cert.pem"),
        live.join("fullchain.pem"),
    )
    .unwrap();
    std::os::unix::fs::symlink(m.root.join("le-archive/cert.key"), live.join("privkey.pem"))
        .unwrap();
    let mut plan = Plan::new();
    let summary = plan_apply(
        &c,
        &request(5000),
        Providers {
            systemd: &sd,
            nginx: &m.nginx,
        },
        &mut plan,
    )
    .unwrap();
    assert_eq!(summary.tls.kind, TlsKind::LetsEncrypt);
    plan.run(false).unwrap();
    let text =
        std::fs::read_to_string(m.root.join("etc/nginx/sites-available/abssctl-budget.conf"))
            .unwrap();
    assert!(
        text.contains("live/budget.example.org/fullchain.pem;"),
        "{text}"
    );
}

#[test]
fn later_failure_in_the_same_transaction_puts_the_vhost_back_and_remove_undoes() {
    let m = machine();
    let c = ctx(&m.root);
    let sd = RecordingSystemd::default();
    let prov = Providers {
        systemd: &sd,
        nginx: &m.nginx,
    };
    let file = m.root.join("etc/nginx/sites-available/abssctl-budget.conf");
    let link = m.root.join("etc/nginx/sites-enabled/abssctl-budget.conf");

    // create: vhost written, then a later step (e.g. the health check) fails.
    let mut plan = Plan::new();
    plan_apply(&c, &request(5000), prov, &mut plan).unwrap();
    plan.step("health", "wait for /health", || anyhow::bail!("unhealthy"));
    plan.run(false).unwrap_err();
    assert!(!file.exists() && std::fs::symlink_metadata(&link).is_err());
    m.nginx.test().unwrap();

    // delete: removed (kept as .bak), then a later step fails: back in place.
    apply(&c, &request(5000), &sd, &m.nginx).unwrap();
    let before = std::fs::read(&file).unwrap();
    let c2 = ctx(&m.root);
    let mut plan = Plan::new();
    plan_remove(&c2, &request(5000).name, prov, &mut plan).unwrap();
    plan.step("registry", "drop the registry entry", || {
        anyhow::bail!("disk full")
    });
    plan.run(false).unwrap_err();
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert!(std::fs::read_link(&link).is_ok());

    // delete for real.
    let mut plan = Plan::new();
    plan_remove(&c2, &request(5000).name, prov, &mut plan).unwrap();
    plan.run(false).unwrap();
    assert!(!file.exists() && std::fs::symlink_metadata(&link).is_err());
    assert_eq!(
        leftovers(&m.root),
        vec![format!("abssctl-budget.conf.bak-{}", c2.op.op_id)]
    );
    m.nginx.test().unwrap();
}
