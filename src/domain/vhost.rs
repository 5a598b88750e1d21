//! The nginx vhost of an instance (pure): which certificate it uses, what the file says, and
//! how nginx's answer to `nginx -t` is read. The side effects (writing, testing, reloading)
//! live in `sys::nginx`; the transaction steps in `ops::vhost`.

// The server's upload caps are defined once, in `domain::instance` (they go into the unit
// environment as `ACTUAL_UPLOAD_*`); nginx's `client_max_body_size` is derived from them
// here, because a lower nginx limit would turn a valid sync into a 413 the client cannot
// explain.
use crate::domain::instance::{UPLOAD_ENCRYPTED_MB, UPLOAD_FILE_MB, UPLOAD_SYNC_MB};
use crate::domain::layout::Layout;
use crate::domain::validate::{Domain, InstanceName};
use crate::error::Failure;
use serde::Serialize;
use std::path::{Component, Path, PathBuf};

/// Room above the server's cap for multipart framing and headers, so the server (which
/// answers with a message the client understands) is the one that refuses an oversize file.
pub const BODY_SIZE_HEADROOM_MB: u32 = 10;

/// The largest of the server's upload caps.
pub const fn server_upload_cap_mb() -> u32 {
    let a = UPLOAD_SYNC_MB;
    let b = UPLOAD_ENCRYPTED_MB;
    let c = UPLOAD_FILE_MB;
    let ab = if a > b { a } else { b };
    if ab > c { ab } else { c }
}

/// nginx `client_max_body_size` in MB: always above every server cap.
pub const fn client_max_body_size_mb() -> u32 {
    server_upload_cap_mb() + BODY_SIZE_HEADROOM_MB
}

/// File name of the vhost template (embedded; an operator copy in `templates_dir` wins).
pub const TEMPLATE_NAME: &str = "nginx-vhost.conf.tera";
/// The shipped template, compiled into the binary so a missing /etc file cannot break it.
pub const EMBEDDED_TEMPLATE: &str = include_str!("../../templates/nginx-vhost.conf.tera");

/// The systemd unit of the web server (reloaded over D-Bus, never restarted).
pub const NGINX_UNIT: &str = "nginx.service";

/// Where an instance's certificate comes from, in the order they are preferred (ADR-010).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsKind {
    /// Files the operator set for this instance.
    Custom,
    /// certbot-style `<live_dir>/<domain>/{fullchain,privkey}.pem`.
    LetsEncrypt,
    /// The machine's certificate (TurnKey: self-signed at first boot, overwritten in place by
    /// its Let's Encrypt support, so a vhost pointing at it follows renewals for free).
    System,
}

impl TlsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsKind::Custom => "custom",
            TlsKind::LetsEncrypt => "lets_encrypt",
            TlsKind::System => "system",
        }
    }
}

/// A certificate/key pair and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsSource {
    pub kind: TlsKind,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The candidate sources for a domain, best first. `custom` is the instance's own pair.
pub fn tls_candidates(
    layout: &Layout,
    domain: &Domain,
    custom: Option<(&Path, &Path)>,
) -> Vec<TlsSource> {
    let mut out = Vec::with_capacity(3);
    if let Some((cert, key)) = custom {
        out.push(TlsSource {
            kind: TlsKind::Custom,
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        });
    }
    let live = layout.tls_lets_encrypt_live_dir.join(domain.as_str());
    out.push(TlsSource {
        kind: TlsKind::LetsEncrypt,
        cert: live.join("fullchain.pem"),
        key: live.join("privkey.pem"),
    });
    out.push(TlsSource {
        kind: TlsKind::System,
        cert: layout.tls_system_cert.clone(),
        key: layout.tls_system_key.clone(),
    });
    out
}

/// Pick the first candidate whose cert AND key are usable (`usable` is the fact, found by
/// `sys::tls`). A custom pair that was asked for but is unusable is an error, not a silent
/// fallback: the operator would believe their certificate is served.
pub fn select_tls(
    candidates: &[TlsSource],
    usable: impl Fn(&Path) -> bool,
) -> Result<TlsSource, Failure> {
    for c in candidates {
        let ok = usable(&c.cert) && usable(&c.key);
        if ok {
            return Ok(c.clone());
        }
        if c.kind == TlsKind::Custom {
            return Err(Failure::validation(format!(
                "the instance's certificate {} or key {} is missing or unreadable",
                c.cert.display(),
                c.key.display()
            ))
            .hint("fix the files, or set other ones for the instance"));
        }
    }
    let system = candidates.iter().find(|c| c.kind == TlsKind::System);
    Err(Failure::environment(match system {
        Some(s) => format!(
            "no usable TLS certificate: neither a Let's Encrypt certificate for the domain nor the system certificate {} with key {}",
            s.cert.display(),
            s.key.display()
        ),
        None => "no usable TLS certificate".to_string(),
    })
    .hint("create the system certificate (TurnKey: turnkey-make-ssl-cert) or set tls.system.cert/key in /etc/abssctl/config.yml"))
}

/// A version of nginx, as `nginx -v` prints it (`1.26.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct NginxVersion(pub u32, pub u32, pub u32);

impl std::fmt::Display for NginxVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The first nginx with `http2 on;`; from it on the `listen ... http2` parameter warns.
pub const HTTP2_DIRECTIVE_SINCE: NginxVersion = NginxVersion(1, 25, 1);

/// How a vhost turns HTTP/2 on. The two forms are not interchangeable: nginx 1.22 (Debian
/// 12) rejects `http2 on;`, nginx 1.26 (Debian 13) warns on every `nginx -t` about the
/// `listen` parameter. The caller says which nginx will read the file; rendering stays pure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Http2Syntax {
    /// `listen 443 ssl http2;` (nginx before 1.25.1). The default when the version is not
    /// known: every nginx abssctl can meet accepts it (a newer one only warns).
    #[default]
    ListenParameter,
    /// `listen 443 ssl;` plus `http2 on;` (nginx 1.25.1 and later).
    Directive,
}

impl Http2Syntax {
    /// The form the given nginx wants.
    pub fn for_version(v: NginxVersion) -> Self {
        if v >= HTTP2_DIRECTIVE_SINCE {
            Http2Syntax::Directive
        } else {
            Http2Syntax::ListenParameter
        }
    }
}

/// Read the version from what `nginx -v` prints (on stderr): `nginx version: nginx/1.26.3`,
/// possibly followed by ` (Debian)`. Builds that name themselves otherwise
/// (`openresty/1.21.4.1`) keep nginx's numbering in the first three numbers.
pub fn parse_nginx_version(output: &str) -> Result<NginxVersion, Failure> {
    let bad = || {
        Failure::environment(format!(
            "cannot read the nginx version from `nginx -v`: {:?}",
            output.trim()
        ))
        .hint("check that `nginx -v` prints `nginx version: nginx/<x.y.z>`")
    };
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("nginx version:"))
        .ok_or_else(bad)?;
    let (_, rest) = line.trim().split_once('/').ok_or_else(bad)?;
    let number = rest.split_whitespace().next().unwrap_or("");
    let mut parts = number.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Some(a)), Some(Some(b)), Some(Some(c))) => Ok(NginxVersion(a, b, c)),
        _ => Err(bad()),
    }
}

/// Everything one vhost file depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VhostSpec {
    pub instance: InstanceName,
    pub domain: Domain,
    /// The instance's loopback port (the server binds 127.0.0.1).
    pub upstream_port: u16,
    /// An extra TLS port of this instance alone, for machines without DNS.
    pub https_port: Option<u16>,
    pub tls: TlsSource,
    /// The HTTP/2 form the nginx that will read the file takes (found by `sys::nginx`).
    pub http2: Http2Syntax,
}

/// Characters that would end or bend an nginx directive if they appeared in a value.
fn nginx_safe(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ";{}'\"$#\\".contains(c))
}

/// Reject ports that belong to nginx's shared listeners or to nothing.
pub fn check_https_port(p: u16) -> Result<(), Failure> {
    if p == 80 || p == 443 || p == 0 {
        return Err(Failure::validation(format!(
            "--https-port {p} is not a dedicated port (80 and 443 are shared by every vhost)"
        ))
        .hint("pick a free port such as 8443"));
    }
    Ok(())
}

/// Render the vhost text from the operator's override (`Some((path, text))`) or the
/// built-in template, through the one renderer of `domain::render`. A template that does not
/// parse or render is the operator's input being wrong (exit 2); a rendered file that nginx
/// rejects is found later by `nginx -t` (exit 4).
pub fn render(
    spec: &VhostSpec,
    override_text: Option<(&Path, &str)>,
    override_path: &Path,
) -> Result<String, Failure> {
    for (what, p) in [("certificate", &spec.tls.cert), ("key", &spec.tls.key)] {
        if !p.to_str().is_some_and(nginx_safe) {
            return Err(Failure::validation(format!(
                "TLS {what} path {} cannot be written into an nginx file (spaces, quotes, ';', '$' or braces)",
                p.display()
            ))
            .hint("use a path made of letters, digits, '/', '.', '-' and '_'"));
        }
    }
    if let Some(p) = spec.https_port {
        check_https_port(p)?;
    }
    let mut ctx = tera::Context::new();
    ctx.insert("instance", spec.instance.as_str());
    ctx.insert("domain", spec.domain.as_str());
    ctx.insert("upstream_port", &spec.upstream_port);
    ctx.insert("https_port", &spec.https_port);
    ctx.insert("tls_kind", spec.tls.kind.as_str());
    ctx.insert("tls_cert", &spec.tls.cert.display().to_string());
    ctx.insert("tls_key", &spec.tls.key.display().to_string());
    ctx.insert("client_max_body_size_mb", &client_max_body_size_mb());
    ctx.insert("server_upload_cap_mb", &server_upload_cap_mb());
    ctx.insert("override_path", &override_path.display().to_string());
    ctx.insert("http2_directive", &(spec.http2 == Http2Syntax::Directive));

    crate::domain::render::render(TEMPLATE_NAME, override_text, &ctx)
}

/// The line of `nginx -t` output that says what is wrong: the first `[emerg]`, `[alert]`,
/// `[crit]` or `[error]` line, else the first non-empty line.
pub fn first_error_line(output: &str) -> String {
    let lines = || output.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| {
            ["[emerg]", "[alert]", "[crit]", "[error]"]
                .iter()
                .any(|t| l.contains(t))
        })
        .or_else(|| lines().next())
        .unwrap_or("nginx -t failed without output")
        .to_string()
}

/// A warning of a passing `nginx -t` that means this vhost is ignored: another server block
/// claims the same name on the same port, and nginx serves only the first one.
pub fn conflicting_name_warning(output: &str, domain: &Domain) -> Option<String> {
    let needle = format!("conflicting server name \"{}\"", domain.as_str());
    output
        .lines()
        .map(str::trim)
        .find(|l| l.contains(&needle))
        .map(str::to_string)
}

/// The relative target of the sites-enabled symlink (`../sites-available/<file>`), so the
/// link stays right when /etc/nginx is copied or mounted elsewhere (ADR-031).
pub fn relative_link_target(link: &Path, file: &Path) -> PathBuf {
    let from: Vec<Component> = link
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    let to: Vec<Component> = file.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c.as_os_str());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
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
        let out = "nginx: [warn] conflicting server name \"budget.example.org\" on 0.0.0.0:443, ignored\n";
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
}
