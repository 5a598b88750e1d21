#![allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
use super::*;
use crate::domain::config::Config;
use crate::domain::validate;

fn layout() -> Layout {
    Layout::new(&Config::default(), Path::new("/etc/abssctl/config.yml"))
}

fn dom() -> Domain {
    validate::domain("budget.example.org").unwrap()
}

#[test]
fn body_size_is_above_every_server_cap() {
    assert_eq!(server_upload_cap_mb(), 50);
    assert_eq!(client_max_body_size_mb(), 60);
    for cap in [UPLOAD_SYNC_MB, UPLOAD_ENCRYPTED_MB, UPLOAD_FILE_MB] {
        assert!(client_max_body_size_mb() > cap);
    }
}

#[test]
fn tls_order_is_custom_then_lets_encrypt_then_system() {
    let l = layout();
    let c = tls_candidates(
        &l,
        &dom(),
        Some((Path::new("/c/cert"), Path::new("/c/key"))),
    );
    let kinds: Vec<_> = c.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [TlsKind::Custom, TlsKind::LetsEncrypt, TlsKind::System]
    );
    assert_eq!(
        c[1].cert,
        Path::new("/etc/letsencrypt/live/budget.example.org/fullchain.pem")
    );
    assert_eq!(c[2].key, Path::new("/etc/ssl/private/cert.key"));

    // Every file exists: custom wins.
    assert_eq!(select_tls(&c, |_| true).unwrap().kind, TlsKind::Custom);
    // No custom pair, LE cert present but its key missing: the system pair.
    let c = tls_candidates(&l, &dom(), None);
    let got = select_tls(&c, |p| !p.ends_with("privkey.pem")).unwrap();
    assert_eq!(got.kind, TlsKind::System);
    // LE complete: LE.
    assert_eq!(select_tls(&c, |_| true).unwrap().kind, TlsKind::LetsEncrypt);
}

#[test]
fn missing_custom_pair_is_an_error_not_a_fallback() {
    let c = tls_candidates(
        &layout(),
        &dom(),
        Some((Path::new("/c/cert"), Path::new("/c/key"))),
    );
    let err = select_tls(&c, |p| !p.starts_with("/c")).unwrap_err();
    assert_eq!(err.kind, crate::error::Kind::Validation);
    assert!(err.message.contains("/c/cert"), "{}", err.message);
}

#[test]
fn nothing_usable_is_an_environment_error_naming_the_system_pair() {
    let c = tls_candidates(&layout(), &dom(), None);
    let err = select_tls(&c, |_| false).unwrap_err();
    assert_eq!(err.kind, crate::error::Kind::Environment);
    assert!(
        err.message.contains("/etc/ssl/private/cert.pem"),
        "{}",
        err.message
    );
}

fn spec(https_port: Option<u16>) -> VhostSpec {
    VhostSpec {
        http2: Http2Syntax::ListenParameter,
        instance: validate::instance_name("budget").unwrap(),
        domain: dom(),
        upstream_port: 5000,
        https_port,
        tls: TlsSource {
            kind: TlsKind::System,
            cert: "/etc/ssl/private/cert.pem".into(),
            key: "/etc/ssl/private/cert.key".into(),
        },
    }
}

#[test]
fn rendered_vhost_has_the_required_directives() {
    let out = render(&spec(None), None, Path::new("/o")).unwrap();
    for want in [
        "listen 443 ssl http2;",
        "listen [::]:443 ssl http2;",
        "server_name budget.example.org;",
        "proxy_pass http://127.0.0.1:5000;",
        "client_max_body_size 60m;",
        "X-Forwarded-Proto $scheme",
        "return 301 https://$host$request_uri;",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // Directives only (comments may mention the words).
    let d = directives(&out);
    for banned in ["default_server", "proxy_hide_header", "http2 on"] {
        assert!(!d.contains(banned), "{banned} in\n{out}");
    }
    // add_header only in the 503 location: the proxied answers keep the server's headers.
    let proxied = proxied(&out);
    assert!(proxied.contains("proxy_pass"), "{proxied}");
    assert!(!directives(&proxied).contains("add_header"), "{proxied}");
    let outside = out.replace(&block(&out, "    location @restarting {"), "");
    assert!(!directives(&outside).contains("add_header"), "{outside}");
    assert!(!out.contains("listen 8443"));
    let with_port = render(&spec(Some(8443)), None, Path::new("/o")).unwrap();
    assert!(with_port.contains("listen 8443 ssl http2;"), "{with_port}");
    assert!(
        with_port.contains("listen [::]:8443 ssl http2;"),
        "{with_port}"
    );
}

/// The lines of `text` that are not comments.
fn directives(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The block that opens with the line `head`, up to its closing brace at the same indent.
fn block(text: &str, head: &str) -> String {
    let start = text
        .find(&format!("{head}\n"))
        .unwrap_or_else(|| panic!("no {head:?} in\n{text}"));
    let indent = &head[..head.len() - head.trim_start().len()];
    let close = format!("\n{indent}}}\n");
    let end = text[start..].find(&close).unwrap() + close.len();
    text[start..start + end].to_string()
}

/// The proxied `location /` of the TLS server (the port-80 server has one too).
fn proxied(text: &str) -> String {
    let at = text
        .find("    location / {\n        proxy_pass")
        .unwrap_or_else(|| panic!("no proxied location in\n{text}"));
    block(&text[at..], "    location / {")
}

#[test]
fn nginx_1_25_1_and_later_get_http2_on_instead_of_the_listen_parameter() {
    let mut s = spec(Some(8443));
    s.http2 = Http2Syntax::Directive;
    let out = render(&s, None, Path::new("/o")).unwrap();
    for want in [
        "    listen 443 ssl;\n",
        "    listen [::]:443 ssl;\n",
        "    listen 8443 ssl;\n",
        "    listen [::]:8443 ssl;\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let d = directives(&out);
    assert_eq!(d.matches("http2 on;").count(), 1, "{out}");
    assert!(!d.contains("ssl http2"), "{out}");
    // The directive belongs to the TLS server, not the port-80 redirect.
    assert!(block(&out, "server {").contains("listen 80;"));
    assert!(!block(&out, "server {").contains("http2"));
    // The 1.22 form, for contrast: no `http2 on;` at all.
    let old = render(&spec(Some(8443)), None, Path::new("/o")).unwrap();
    assert!(!directives(&old).contains("http2 on"), "{old}");
    assert_eq!(directives(&old).matches("ssl http2;").count(), 4, "{old}");
}

#[test]
fn a_down_server_is_answered_with_503_and_retry_after_by_nginx_itself() {
    let out = render(&spec(None), None, Path::new("/o")).unwrap();
    let d = directives(&out);
    // Server level, so the proxied location inherits it (it sets no error_page itself).
    assert!(
        d.contains("\n    error_page 502 504 =503 @restarting;"),
        "{out}"
    );
    assert!(!directives(&proxied(&out)).contains("error_page"));
    // nginx's own errors only: the server's 502/504 answers are not replaced.
    assert!(!d.contains("proxy_intercept_errors"), "{out}");
    // No retry of a failed request by nginx (a POST must not reach the server twice).
    assert!(proxied(&out).contains("proxy_next_upstream off;"), "{out}");
    let page = block(&out, "    location @restarting {");
    for want in [
        "default_type text/html;",
        "add_header Retry-After 5 always;",
        "add_header Cache-Control \"no-store\" always;",
        "return 503 '<!DOCTYPE html>",
        "This budget server is restarting",
        "Try again in a few seconds.",
        "</html>\n';",
    ] {
        assert!(page.contains(want), "missing {want:?} in\n{page}");
    }
    // The page is one nginx string: no quote that would end it, no `$` nginx would
    // read as a variable.
    let body_start = page.find("return 503 '").unwrap() + "return 503 '".len();
    let body = &page[body_start..page.rfind("';").unwrap()];
    assert!(!body.contains('\'') && !body.contains('$'), "{body}");
}

#[test]
fn nginx_version_is_read_from_nginx_v() {
    assert_eq!(
        parse_nginx_version("nginx version: nginx/1.22.1\n").unwrap(),
        NginxVersion(1, 22, 1)
    );
    assert_eq!(
        parse_nginx_version("nginx version: nginx/1.26.3 (Debian)\n").unwrap(),
        NginxVersion(1, 26, 3)
    );
    assert_eq!(
        parse_nginx_version("nginx version: openresty/1.21.4.1\n").unwrap(),
        NginxVersion(1, 21, 4)
    );
    for garbage in [
        "",
        "command not found",
        "nginx version: nginx/\n",
        "nginx version: nginx/1.26\n",
        "nginx version: nginx/one.two.three\n",
    ] {
        let err = parse_nginx_version(garbage).unwrap_err();
        assert_eq!(err.kind, crate::error::Kind::Environment, "{garbage:?}");
        assert!(!err.message.contains('\n'), "{}", err.message);
    }
}

#[test]
fn http2_form_switches_at_nginx_1_25_1() {
    for (v, want) in [
        (NginxVersion(1, 22, 1), Http2Syntax::ListenParameter),
        (NginxVersion(1, 25, 0), Http2Syntax::ListenParameter),
        (NginxVersion(1, 25, 1), Http2Syntax::Directive),
        (NginxVersion(1, 26, 3), Http2Syntax::Directive),
        (NginxVersion(2, 0, 0), Http2Syntax::Directive),
    ] {
        assert_eq!(Http2Syntax::for_version(v), want, "{v}");
    }
    assert_eq!(Http2Syntax::default(), Http2Syntax::ListenParameter);
}

#[test]
fn broken_override_is_a_validation_error_naming_the_file() {
    let err = render(
        &spec(None),
        Some((
            Path::new("/etc/abssctl/templates/nginx-vhost.conf.tera"),
            "server { {{ nope }",
        )),
        Path::new("/o"),
    )
    .unwrap_err();
    assert_eq!(err.kind, crate::error::Kind::Validation);
    assert!(
        err.message.contains("/etc/abssctl/templates/"),
        "{}",
        err.message
    );
    assert!(!err.message.contains('\n'));
}

#[test]
fn unsafe_paths_and_shared_ports_are_refused() {
    let mut s = spec(None);
    s.tls.cert = "/etc/ssl/my cert.pem".into();
    assert!(render(&s, None, Path::new("/o")).is_err());
    s.tls.cert = "/etc/ssl/a;b".into();
    assert!(render(&s, None, Path::new("/o")).is_err());
    assert!(check_https_port(443).is_err());
    assert!(check_https_port(8443).is_ok());
}

#[test]
fn first_error_line_picks_the_emerg_line() {
    let out = "nginx: [warn] the \"ssl\" directive is deprecated\n\
               nginx: [emerg] unknown directive \"bogus\" in /etc/nginx/sites-enabled/abssctl-a.conf:3\n\
               nginx: configuration file /etc/nginx/nginx.conf test failed\n";
    assert_eq!(
        first_error_line(out),
        "nginx: [emerg] unknown directive \"bogus\" in /etc/nginx/sites-enabled/abssctl-a.conf:3"
    );
    assert_eq!(first_error_line("\n  odd output\n"), "odd output");
    assert_eq!(first_error_line(""), "nginx -t failed without output");
}

#[test]
fn conflicting_name_is_found_for_our_domain_only() {
    let out =
        "nginx: [warn] conflicting server name \"budget.example.org\" on 0.0.0.0:443, ignored\n";
    assert!(conflicting_name_warning(out, &dom()).is_some());
    let other = validate::domain("other.example.org").unwrap();
    assert!(conflicting_name_warning(out, &other).is_none());
}

#[test]
fn link_target_is_relative() {
    assert_eq!(
        relative_link_target(
            Path::new("/etc/nginx/sites-enabled/abssctl-a.conf"),
            Path::new("/etc/nginx/sites-available/abssctl-a.conf")
        ),
        Path::new("../sites-available/abssctl-a.conf")
    );
    assert_eq!(
        relative_link_target(
            Path::new("/tmp/r/etc/nginx/sites-enabled/x.conf"),
            Path::new("/tmp/r/etc/nginx/sites-available/x.conf")
        ),
        Path::new("../sites-available/x.conf")
    );
}
