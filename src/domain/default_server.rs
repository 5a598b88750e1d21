//! The catch-all server abssctl adds when nothing on the machine claims nginx's default
//! server on 443 (pure: reading what the enabled sites say, and the file's text).
//!
//! Without a default server on 443, nginx answers a TLS request for an unknown name with
//! the first TLS server it loaded: an instance would answer for names that are not its own
//! (another family's domain pointed at the box, a scanner by IP). The catch-all claims the
//! default and refuses the TLS handshake (`ssl_reject_handshake on`, nginx >= 1.19.4), so
//! it needs no certificate of its own. TurnKey's own site already claims the default on 80
//! and 443: there, nothing is added.

use crate::error::Failure;
use std::path::Path;

/// The file in sites-available (and its link in sites-enabled). `00` sorts it first, which
/// does not matter to nginx (`default_server` does) but reads as "the machine's default".
pub const FILE_NAME: &str = "abssctl-00-default.conf";
/// Its template (embedded; an operator copy in `templates_dir` wins).
pub const TEMPLATE_NAME: &str = "nginx-default.conf.tera";
pub const EMBEDDED_TEMPLATE: &str = include_str!("../../templates/nginx-default.conf.tera");

/// Which default servers the enabled configuration claims already, per port and family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Claimed {
    pub http_v4: bool,
    pub http_v6: bool,
    pub https_v4: bool,
    pub https_v6: bool,
}

impl Claimed {
    /// Merge what another file claims.
    pub fn or(self, o: Claimed) -> Claimed {
        Claimed {
            http_v4: self.http_v4 || o.http_v4,
            http_v6: self.http_v6 || o.http_v6,
            https_v4: self.https_v4 || o.https_v4,
            https_v6: self.https_v6 || o.https_v6,
        }
    }
}

/// The text without `#` comments (to the end of the line; a `#` inside quotes stays).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (None, '#') => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                _ => {}
            }
            out.push(c);
        }
        out.push('\n');
    }
    out
}

/// Port and family of a `listen` address: `443`, `*:443`, `0.0.0.0:443`, `[::]:443`,
/// `127.0.0.1` (port 80), `unix:/path` (none).
fn listen_address(addr: &str) -> Option<(u16, bool)> {
    if addr.starts_with("unix:") {
        return None;
    }
    if let Some(rest) = addr.strip_prefix('[') {
        let (_, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 80,
        };
        return Some((port, true));
    }
    if let Ok(p) = addr.parse::<u16>() {
        return Some((p, false));
    }
    match addr.rsplit_once(':') {
        Some((_, p)) => Some((p.parse().ok()?, false)),
        None => Some((80, false)),
    }
}

/// What one nginx file claims: every `listen` directive on port 80 or 443 with
/// `default_server` (or its old spelling `default`), comments ignored. QUIC listeners are
/// UDP and do not count.
pub fn claims(text: &str) -> Claimed {
    let mut c = Claimed::default();
    let text = strip_comments(text);
    for stmt in text.split([';', '{', '}']) {
        let mut words = stmt.split_whitespace();
        if words.next() != Some("listen") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let params: Vec<&str> = words.collect();
        if params.contains(&"quic")
            || !params
                .iter()
                .any(|p| *p == "default_server" || *p == "default")
        {
            continue;
        }
        match listen_address(addr) {
            Some((80, false)) => c.http_v4 = true,
            Some((80, true)) => c.http_v6 = true,
            Some((443, false)) => c.https_v4 = true,
            Some((443, true)) => c.https_v6 = true,
            _ => {}
        }
    }
    c
}

/// What the catch-all must listen on, or None when the machine has a default on 443 of its
/// own (TurnKey): then abssctl adds nothing. On 80 only what nobody claims (plain Debian's
/// `default` site claims 80: two default servers on one port fail `nginx -t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub listen_80: Vec<&'static str>,
    pub listen_443: Vec<&'static str>,
}

pub fn needed(c: Claimed) -> Option<Needed> {
    if c.https_v4 || c.https_v6 {
        return None;
    }
    let mut listen_80 = Vec::new();
    if !c.http_v4 {
        listen_80.push("80");
    }
    if !c.http_v6 {
        listen_80.push("[::]:80");
    }
    Some(Needed {
        listen_80,
        listen_443: vec!["443", "[::]:443"],
    })
}

/// The catch-all file's text (operator override `Some((path, text))` or the built-in one).
pub fn render(n: &Needed, override_text: Option<(&Path, &str)>) -> Result<String, Failure> {
    let mut ctx = tera::Context::new();
    ctx.insert("listen_80", &n.listen_80);
    ctx.insert("listen_443", &n.listen_443);
    crate::domain::render::render(TEMPLATE_NAME, override_text, &ctx)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    /// TurnKey's sites-available/nodejs, as the appliance ships it (abridged).
    const TURNKEY: &str = "server {\n    listen 80 default_server;\n    listen [::]:80 default_server;\n    include snippets/ssl-redirect.conf;\n}\nserver {\n    listen 443 ssl default_server;\n    listen [::]:443 ssl default_server;\n    include snippets/ssl.conf;\n    location / { proxy_pass http://127.0.0.1:8000; }\n}\n";
    /// Debian's sites-available/default (abridged; the SSL lines are commented out).
    const DEBIAN: &str = "server {\n\tlisten 80 default_server;\n\tlisten [::]:80 default_server;\n\t# SSL configuration\n\t#\n\t# listen 443 ssl default_server;\n\t# listen [::]:443 ssl default_server;\n\troot /var/www/html;\n\tserver_name _;\n}\n";

    #[test]
    fn turnkey_claims_both_ports_so_nothing_is_added() {
        let c = claims(TURNKEY);
        assert_eq!(
            c,
            Claimed {
                http_v4: true,
                http_v6: true,
                https_v4: true,
                https_v6: true
            }
        );
        assert_eq!(needed(c), None);
    }

    #[test]
    fn debian_default_site_claims_80_only_and_its_comments_do_not_count() {
        let c = claims(DEBIAN);
        assert!(
            c.http_v4 && c.http_v6 && !c.https_v4 && !c.https_v6,
            "{c:?}"
        );
        let n = needed(c).unwrap();
        assert!(n.listen_80.is_empty());
        assert_eq!(n.listen_443, ["443", "[::]:443"]);
        assert_eq!(
            needed(Claimed::default()).unwrap().listen_80,
            ["80", "[::]:80"]
        );
    }

    #[test]
    fn listen_forms() {
        for (text, want) in [
            (
                "listen *:443 ssl default_server;",
                Claimed {
                    https_v4: true,
                    ..Default::default()
                },
            ),
            (
                "listen 0.0.0.0:443 default ssl;",
                Claimed {
                    https_v4: true,
                    ..Default::default()
                },
            ),
            (
                "listen [::1]:443 ssl default_server;",
                Claimed {
                    https_v6: true,
                    ..Default::default()
                },
            ),
            (
                "listen 127.0.0.1 default_server;",
                Claimed {
                    http_v4: true,
                    ..Default::default()
                },
            ),
            ("listen 443 ssl; # default_server", Claimed::default()),
            ("listen 443 quic default_server;", Claimed::default()),
            ("listen 8443 ssl default_server;", Claimed::default()),
            (
                "listen unix:/run/x.sock default_server;",
                Claimed::default(),
            ),
            (
                "server_name default_server; listen 443 ssl;",
                Claimed::default(),
            ),
            (
                "server{listen 443 ssl\n   default_server;}",
                Claimed {
                    https_v4: true,
                    ..Default::default()
                },
            ),
            (
                "return 200 '# listen 443 default_server;'; listen 80;",
                Claimed::default(),
            ),
        ] {
            assert_eq!(claims(text), want, "{text}");
        }
        let merged =
            claims("listen 80 default_server;").or(claims("listen [::]:443 ssl default_server;"));
        assert!(merged.http_v4 && merged.https_v6 && !merged.https_v4);
    }

    #[test]
    fn rendered_file_claims_what_it_was_asked_to_and_rejects_handshakes() {
        let text = render(&needed(Claimed::default()).unwrap(), None).unwrap();
        assert_eq!(
            claims(&text),
            Claimed {
                http_v4: true,
                http_v6: true,
                https_v4: true,
                https_v6: true
            }
        );
        assert!(text.contains("ssl_reject_handshake on;"), "{text}");
        assert!(text.contains("return 444;"), "{text}");
        let only_443 = render(&needed(claims(DEBIAN)).unwrap(), None).unwrap();
        assert!(!only_443.contains("return 444;"), "{only_443}");
        assert_eq!(
            claims(&only_443),
            Claimed {
                https_v4: true,
                https_v6: true,
                ..Default::default()
            }
        );
    }
}
