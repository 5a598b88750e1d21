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
        let directives: String = out
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for banned in [
            "default_server",
            "proxy_hide_header",
            "add_header",
            "http2 on",
        ] {
            assert!(!directives.contains(banned), "{banned} in\n{out}");
        }
        assert!(!out.contains("listen 8443"));
        let with_port = render(&spec(Some(8443)), None, Path::new("/o")).unwrap();
        assert!(with_port.contains("listen 8443 ssl http2;"), "{with_port}");
        assert!(
            with_port.contains("listen [::]:8443 ssl http2;"),
            "{with_port}"
        );
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
