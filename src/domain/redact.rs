//! Redaction of the support bundle's text (pure): what may leave the box when an operator
//! sends the bundle for help. Fail closed: a rule that is unsure redacts (a lost hostname
//! costs a question; a leaked password costs a family's budget).
//!
//! What is removed (docs/support-bundle.md keeps the same list for operators):
//! - PEM private key blocks of any type (`-----BEGIN … PRIVATE KEY-----` up to its END, or
//!   to the end of the text when the END is missing), also inside JSON strings;
//! - values of secret-named keys (password, passwd, passphrase, secret, token, session,
//!   cookie, credential, api key, private key) as `"key": value`, `key=value`,
//!   `key: value` and `--key value` / `--key=value` (also as a JSON argument list);
//! - phrases `password is X` / `token was X`;
//! - HTTP credentials: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`,
//!   `X-Actual-Token`, `X-Api-Key` header values, `Bearer`/`Basic` credentials, and the
//!   user:password part of URLs;
//! - in systemd units: every `Environment=` value except [`ENV_ALLOWLIST`] (the names stay),
//!   and `SetCredential=` values;
//! - UUIDv4s, which is what an Actual session token is: each distinct one becomes
//!   `[uuid-N]`, the same N everywhere in one bundle, so lines can still be correlated.
//!   abssctl's own op ids are UUIDv7 and are kept.

use regex::{Captures, Regex};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// What replaces a redacted value.
pub const MARK: &str = "[REDACTED]";

/// `Environment=` variables whose values are kept: what abssctl renders itself (ports,
/// paths, limits, the trusted proxies) and a few that never carry a secret. Everything
/// else (ACTUAL_*PASSWORD*, OpenID client secrets, anything an operator added) loses its
/// value and keeps its name.
pub const ENV_ALLOWLIST: &[&str] = &[
    "ACTUAL_PORT",
    "ACTUAL_HOSTNAME",
    "ACTUAL_DATA_DIR",
    "ACTUAL_SERVER_FILES",
    "ACTUAL_USER_FILES",
    "ACTUAL_TRUSTED_PROXIES",
    "ACTUAL_UPLOAD_FILE_SYNC_SIZE_LIMIT_MB",
    "ACTUAL_UPLOAD_SYNC_ENCRYPTED_FILE_SYNC_SIZE_LIMIT_MB",
    "ACTUAL_UPLOAD_FILE_SIZE_LIMIT_MB",
    "ACTUAL_LOGIN_METHOD",
    "NODE_ENV",
    "TZ",
];

/// How a text is laid out (decides the few format-only rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The config file, the registry.
    Yaml,
    /// JSON documents and JSON lines (operations log, manifests, doctor report).
    Json,
    /// systemd units and drop-ins (the `Environment=` rule).
    Systemd,
    /// nginx configuration (`proxy_set_header` credentials).
    Nginx,
    /// Journal lines and other free text.
    Text,
}

/// How many values of each kind were removed (kind -> count).
pub type Tally = BTreeMap<String, usize>;

/// The redactor of one bundle: it remembers the UUID pseudonyms, so a token seen in two
/// files gets the same `[uuid-N]` in both.
#[derive(Debug, Default)]
pub struct Redactor {
    uuids: BTreeMap<String, usize>,
}

/// A key name that names a secret (matched inside a longer name too:
/// `ACTUAL_BOOTSTRAP_PASSWORD`, `sessionToken`, `client_secret`).
const NAME: &str = r"[A-Za-z0-9_.-]*(?i:password|passwd|passphrase|secret|token|session|cookie|credential|api[_-]?key|private[_-]?key)[A-Za-z0-9_.-]*";

fn re(s: &str) -> Regex {
    // The patterns are constants of this file; the unit tests compile every one.
    Regex::new(s).unwrap_or_else(|e| panic!("bad redaction pattern {s}: {e}"))
}

static PEM: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\z)",
    )
});
static URL_USERINFO: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"));
static HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(proxy-authorization|authorization|set-cookie|cookie|x-actual-token|x-api-key)(\\?"?[ \t]*[:=][ \t]*\\?"?)([^\r\n"\\]+)"#,
    )
});
static NGINX_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b((?:proxy_set_header|add_header|more_set_headers)\s+(?:proxy-authorization|authorization|set-cookie|cookie|x-actual-token|x-api-key)\s+)([^;\r\n]+)",
    )
});
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(bearer|basic)([ \t]+)([A-Za-z0-9._~+/=-]{6,})"));
static FLAG: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"(--{NAME})(=|[ \t]+)("[^"]*"|'[^']*'|[^\s"'\\]+)"#
    ))
});
/// A flag and its value as two items of a JSON argument list: `"--token","abc"`; the value
/// runs to its closing quote, whatever it holds.
static FLAG_ARG: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"(--{NAME})(\\?"[ \t]*,[ \t]*\\?")((?:[^"\\]|\\[^"])+)"#
    ))
});
static JSON_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"("{NAME}"\s*:\s*)("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*)"#
    ))
});
static ESCAPED_JSON_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"(\\"{NAME}\\"[ \t]*:[ \t]*)(\\"(?:[^"\\]|\\[^"])*?\\"|-?[0-9][0-9.eE+-]*)"#
    ))
});
static ASSIGN: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"\b({NAME})([ \t]*=[ \t]*)("[^"]*"|'[^']*'|[^\s"']+)"#
    ))
});
static YAML_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"(?m)^([ \t]*(?:-[ \t]+)?(?:#[ \t]*)?"?{NAME}"?[ \t]*:)([ \t]+)(\S[^\r\n]*)$"#
    ))
});
static COLON_OR_PHRASE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"\b({NAME})([ \t]*:[ \t]*|[ \t]+(?i:is|was|set to)[ \t]+)([^\s"']+)"#
    ))
});
static ENV_LINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^([ \t]*Environment[ \t]*=[ \t]*)([^\r\n]*)$"));
static SET_CREDENTIAL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?m)^([ \t]*SetCredential(?:Encrypted)?[ \t]*=[ \t]*[^:\r\n]+:)([^\r\n]+)$")
});
static UUID_V4: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b")
});

/// The kind a secret-named key counts as in the tally.
fn kind_of(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if n.contains("pass") {
        "password"
    } else if n.contains("token") {
        "token"
    } else if n.contains("session") || n.contains("cookie") {
        "session id"
    } else {
        "secret"
    }
}

/// Already redacted (by an earlier rule): left alone and not counted twice.
/// (The operations log's own `<redacted>` included.) A value that merely starts with `[`
/// is not: `password=[x]` is a password.
fn done(value: &str) -> bool {
    value.contains("[REDACTED") || value.contains("<redacted>")
}

fn count(t: &mut Tally, kind: &str) {
    *t.entry(kind.to_string()).or_default() += 1;
}

/// Replace group 3 (the value) of every match whose value is not redacted yet; group 1 is
/// the key, group 2 the separator. The value's quoting is kept, so JSON stays JSON.
fn values(text: &str, re: &Regex, t: &mut Tally, kind: Option<&str>) -> String {
    re.replace_all(text, |c: &Captures| {
        let (key, sep, val) = (&c[1], &c[2], &c[3]);
        if done(val) {
            return c[0].to_string();
        }
        count(t, kind.unwrap_or_else(|| kind_of(key)));
        format!("{key}{sep}{}", quoted_mark(val))
    })
    .into_owned()
}

/// [`MARK`] in the quotes the value had (`"x"` -> `"[REDACTED]"`, `\"x\"` likewise).
fn quoted_mark(val: &str) -> String {
    for q in ["\\\"", "\"", "'"] {
        if val.len() >= 2 * q.len() && val.starts_with(q) && val.ends_with(q) {
            return format!("{q}{MARK}{q}");
        }
    }
    MARK.to_string()
}

/// A two-group rule: group 1 (the key and separator) is kept, group 2 (the value) is
/// redacted as `kind` (`None`: by the key's name). `json`: the mark replaces a JSON value,
/// so it is written as a string in the quoting of the key (`"…"` or `\"…\"`).
fn tail(text: &str, re: &Regex, t: &mut Tally, kind: Option<&str>, json: bool) -> String {
    re.replace_all(text, |c: &Captures| {
        if done(&c[2]) {
            return c[0].to_string();
        }
        count(t, kind.unwrap_or_else(|| kind_of(&c[1])));
        let mark = match (json, c[1].starts_with('\\')) {
            (false, _) => MARK.to_string(),
            (true, false) => format!("\"{MARK}\""),
            (true, true) => format!("\\\"{MARK}\\\""),
        };
        format!("{}{mark}", &c[1])
    })
    .into_owned()
}

/// One `Environment=` line's assignments (systemd's quoting: words, "…" or '…'), each
/// value redacted unless its name is allow-listed.
fn environment(assignments: &str, t: &mut Tally) -> String {
    let mut out = Vec::new();
    let mut rest = assignments.trim();
    while !rest.is_empty() {
        let (word, quote, next) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => match rest[1..].find(q) {
                Some(end) => (&rest[1..=end], Some(q), &rest[end + 2..]),
                None => (&rest[1..], Some(q), ""),
            },
            _ => match rest.find(char::is_whitespace) {
                Some(end) => (&rest[..end], None, &rest[end..]),
                None => (rest, None, ""),
            },
        };
        let kept = match word.split_once('=') {
            Some((name, _)) if ENV_ALLOWLIST.contains(&name) => word.to_string(),
            Some((name, v)) if done(v) => format!("{name}={v}"),
            Some((name, _)) => {
                count(t, "environment value");
                format!("{name}={MARK}")
            }
            // Not an assignment (systemd ignores it): a bare word could still be a value.
            None => {
                count(t, "environment value");
                MARK.to_string()
            }
        };
        out.push(match quote {
            Some(q) => format!("{q}{kept}{q}"),
            None => kept,
        });
        rest = next.trim_start();
    }
    out.join(" ")
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// The text without its secrets, and what was removed.
    pub fn redact(&mut self, text: &str, format: Format) -> (String, Tally) {
        let mut t = Tally::new();
        let mut s = PEM
            .replace_all(text, |_: &Captures| {
                count(&mut t, "private key");
                "[REDACTED private key]".to_string()
            })
            .into_owned();
        if format == Format::Systemd {
            s = ENV_LINE
                .replace_all(&s, |c: &Captures| {
                    format!("{}{}", &c[1], environment(&c[2], &mut t))
                })
                .into_owned();
            s = tail(&s, &SET_CREDENTIAL, &mut t, Some("secret"), false);
        }
        if format == Format::Nginx {
            s = tail(&s, &NGINX_HEADER, &mut t, Some("credential header"), false);
        }
        s = URL_USERINFO
            .replace_all(&s, |c: &Captures| {
                count(&mut t, "url credentials");
                format!("{}{MARK}@", &c[1])
            })
            .into_owned();
        s = values(&s, &HEADER, &mut t, Some("credential header"));
        s = values(&s, &BEARER, &mut t, Some("token"));
        s = values(&s, &FLAG, &mut t, None);
        s = values(&s, &FLAG_ARG, &mut t, None);
        s = tail(&s, &JSON_PAIR, &mut t, None, true);
        s = tail(&s, &ESCAPED_JSON_PAIR, &mut t, None, true);
        s = values(&s, &ASSIGN, &mut t, None);
        // Anchored at a line's start (a YAML key, a `# key: value` comment): the whole rest
        // of the line, so a value with spaces goes too.
        s = values(&s, &YAML_LINE, &mut t, None);
        s = values(&s, &COLON_OR_PHRASE, &mut t, None);
        s = UUID_V4
            .replace_all(&s, |c: &Captures| {
                count(&mut t, "uuid (possible session token)");
                let next = self.uuids.len() + 1;
                let n = *self.uuids.entry(c[0].to_ascii_lowercase()).or_insert(next);
                format!("[uuid-{n}]")
            })
            .into_owned();
        (s, t)
    }
}

/// Does this text hold a private key anywhere (then its blocks are redacted)?
pub fn holds_private_key(text: &str) -> bool {
    PEM.is_match(text)
}

/// Is this text a key file: its first PEM block (after blank lines and `#` comments) is a
/// private key? A redacted bundle leaves such a file out whole, not even redacted: its
/// name and size say nothing a helper needs, and no rule can miss what is not there.
pub fn is_key_file(text: &str) -> bool {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    first.is_some_and(|l| l.starts_with("-----BEGIN ") && l.contains("PRIVATE KEY"))
}

/// Total of a tally.
pub fn total(t: &Tally) -> usize {
    t.values().sum()
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
