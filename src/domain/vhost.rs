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
#[path = "vhost_tests.rs"]
mod tests;
