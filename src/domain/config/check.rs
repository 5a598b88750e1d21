//! The rules for each config key: how a raw value (a YAML node or an environment string)
//! becomes a typed value, and which values are accepted. Failures here carry no location;
//! the caller prefixes file:line, variable or flag.

use super::yaml::{self, Entry, Node};
use super::{KEYS, KeyDef, NON_CONFIG_VARS, Source, env_var, locate};
use crate::domain::validate;
use crate::error::Failure;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

/// The type of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// The relocation prefix: an absolute path, or empty for the real machine.
    Root,
    /// An absolute path.
    Path,
    Str,
    Int,
    /// An integer or a decimal number.
    Number,
    Bool,
}

impl Type {
    fn expected(self) -> &'static str {
        match self {
            Type::Root | Type::Path => "an absolute path",
            Type::Str => "a string",
            Type::Int => "an integer",
            Type::Number => "a number",
            Type::Bool => "true or false",
        }
    }
}

/// Ports left above `ports.base` for allocation: a base at the very top of the range would
/// make the first reservation fail, so it is refused when the config is read.
pub const PORTS_ROOM: u16 = 100;

fn default_of(def: &KeyDef) -> String {
    let d = serde_json::to_value(super::Config::default()).unwrap_or_default();
    match d.get(super::field(def.key)) {
        Some(Json::String(s)) if s.is_empty() => "\"\"".into(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn type_error(def: &KeyDef, got: String) -> Failure {
    Failure::validation(format!("must be {}, got {got}", def.ty.expected())).hint(format!(
        "for example the default: {}: {}",
        def.key,
        default_of(def)
    ))
}

fn number(f: f64, def: &KeyDef, got: impl FnOnce() -> String) -> Result<Json, Failure> {
    serde_json::Number::from_f64(f)
        .map(Json::Number)
        .ok_or_else(|| type_error(def, got()))
}

/// A YAML node -> the typed value of `def`, or a type error.
fn from_node(def: &KeyDef, node: &Node) -> Result<Json, Failure> {
    match (def.ty, node) {
        (Type::Root | Type::Path | Type::Str, Node::Str(s)) => Ok(Json::String(s.clone())),
        (Type::Int, Node::Int(i)) => i64::try_from(*i)
            .map(Json::from)
            .map_err(|_| type_error(def, node.describe())),
        (Type::Number, Node::Int(i)) => number(*i as f64, def, || node.describe()),
        (Type::Number, Node::Float(f)) => number(*f, def, || node.describe()),
        (Type::Bool, Node::Bool(b)) => Ok(Json::Bool(*b)),
        _ => Err(type_error(def, node.describe())),
    }
}

/// An environment (or flag) string -> the typed value of `def`, or a type error.
pub(super) fn from_text(def: &KeyDef, s: &str) -> Result<Json, Failure> {
    let got = || format!("'{}'", s.escape_default());
    match def.ty {
        Type::Root | Type::Path | Type::Str => Ok(Json::String(s.to_string())),
        Type::Int => s
            .trim()
            .parse::<i64>()
            .map(Json::from)
            .map_err(|_| type_error(def, got())),
        Type::Number => match s.trim().parse::<f64>() {
            Ok(f) => number(f, def, got),
            Err(_) => Err(type_error(def, got())),
        },
        Type::Bool => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Json::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Json::Bool(false)),
            _ => Err(type_error(def, got())),
        },
    }
}

fn file_error(path: &Path, line: usize, msg: String, hint: impl Into<String>) -> Failure {
    Failure::validation(format!("{}:{line}: {msg}", path.display())).hint(hint)
}

/// Read the config file into (key, line, value) triples, rejecting syntax errors, unknown
/// keys and wrong types with the file, line and key.
pub(super) fn file_values(
    path: &Path,
    text: &str,
) -> Result<Vec<(&'static KeyDef, usize, Json)>, Failure> {
    let root = yaml::parse(text).map_err(|(line, msg)| {
        let hint = if msg.starts_with("duplicate key") {
            "keep only one entry for the key"
        } else if msg.starts_with("more than one YAML document") {
            "keep a single document: remove the second '---' and what follows, or merge them"
        } else {
            "fix the syntax on that line (indent nested keys with spaces, no tabs)"
        };
        file_error(path, line, format!("not valid YAML: {msg}"), hint)
    })?;
    let mut out = Vec::new();
    match &root {
        Node::Map(entries) => walk(path, "", entries, &mut out)?,
        Node::Null => {}
        other => {
            return Err(file_error(
                path,
                1,
                format!(
                    "the file must be a mapping of config keys, got {}",
                    other.describe()
                ),
                "see docs/config.md for the file format",
            ));
        }
    }
    Ok(out)
}

fn is_section(full: &str) -> bool {
    KEYS.iter().any(|d| {
        d.key
            .strip_prefix(full)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Every dotted name that may appear in the file: keys and sections.
fn known_names() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for d in KEYS {
        let parts: Vec<&str> = d.key.split('.').collect();
        for n in 1..=parts.len() {
            let name = parts[..n].join(".");
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

fn walk(
    path: &Path,
    prefix: &str,
    entries: &[Entry],
    out: &mut Vec<(&'static KeyDef, usize, Json)>,
) -> Result<(), Failure> {
    for e in entries {
        let full = if prefix.is_empty() {
            e.key.clone()
        } else {
            format!("{prefix}.{}", e.key)
        };
        if e.key.contains('.') {
            return Err(file_error(
                path,
                e.line,
                format!("unknown key '{full}' (dotted names are not keys in the file)"),
                "write nested keys as YAML mappings: 'ports:' on one line, then '  base: 6000'",
            ));
        }
        if let Some(def) = KEYS.iter().find(|d| d.key == full) {
            let source = Source::File {
                path: path.to_path_buf(),
                line: e.line,
            };
            let v = from_node(def, &e.value).map_err(|f| locate(f, &source, def.key))?;
            out.push((def, e.line, v));
        } else if is_section(&full) {
            match &e.value {
                Node::Map(children) => walk(path, &full, children, out)?,
                // `ports:` with every child commented out.
                Node::Null => {}
                other => {
                    let children: Vec<String> = KEYS
                        .iter()
                        .filter_map(|d| d.key.strip_prefix(&format!("{full}.")))
                        .map(|s| s.split('.').next().unwrap_or(s).to_string())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    return Err(file_error(
                        path,
                        e.line,
                        format!("'{full}' must be a mapping, got {}", other.describe()),
                        format!("put its keys under it, indented: {}", children.join(", ")),
                    ));
                }
            }
        } else {
            let names = known_names();
            let mean = suggest(&full, names.iter().map(String::as_str))
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            return Err(file_error(
                path,
                e.line,
                format!("unknown key '{full}'{mean}"),
                "fix or remove the key; 'abssctl config show' and docs/config.md list every key",
            ));
        }
    }
    Ok(())
}

/// An ABSSCTL_* variable that is neither a key nor a known non-config variable.
pub(super) fn unknown_env(var: &str) -> Failure {
    let names: Vec<String> = KEYS
        .iter()
        .map(|d| env_var(d.key))
        .chain(NON_CONFIG_VARS.iter().map(|s| s.to_string()))
        .collect();
    let mean = suggest(var, names.iter().map(String::as_str))
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default();
    Failure::validation(format!("unknown environment variable {var}{mean}")).hint(
        "unset it or fix its name; each config key has one variable, e.g. ports.base <-> ABSSCTL_PORTS_BASE (docs/config.md)",
    )
}

/// The closest known name, if it is close enough to be a plausible typo; else a known name
/// whose last part is the same (a key put in the wrong section).
fn suggest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let best = candidates
        .clone()
        .map(|c| (distance(wrong, c), c))
        .min_by_key(|(d, _)| *d);
    if let Some((d, c)) = best
        && (d <= 2 || d * 3 <= wrong.chars().count())
    {
        return Some(c);
    }
    let leaf = wrong
        .rsplit(['.', '_'])
        .next()
        .unwrap_or(wrong)
        .to_ascii_lowercase();
    candidates.into_iter().find(|c| {
        c.rsplit(['.', '_'])
            .next()
            .unwrap_or(c)
            .to_ascii_lowercase()
            == leaf
    })
}

/// Levenshtein distance (names are short; the quadratic table is fine).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn one_of(s: &str, allowed: &[&str]) -> Result<(), Failure> {
    if allowed.contains(&s) {
        return Ok(());
    }
    Err(Failure::validation(format!(
        "'{}' is not one of {}",
        s.escape_default(),
        allowed.join(", ")
    ))
    .hint(format!("use one of: {}", allowed.join(", "))))
}

fn absolute(s: &str) -> Result<(), Failure> {
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err(Failure::validation(format!(
            "'{}' is not an absolute path",
            s.escape_default()
        ))
        .hint("give a path starting with '/'"));
    }
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(
            Failure::validation(format!("'{}' contains '..'", s.escape_default()))
                .hint("give the path without '..' components"),
        );
    }
    Ok(())
}

/// Check one value against its key's rules.
pub(super) fn value(key: &str, v: &Json) -> Result<(), Failure> {
    let ty = KEYS.iter().find(|d| d.key == key).map(|d| d.ty);
    let s = v.as_str().unwrap_or_default();
    match (key, ty) {
        ("root", _) if s.is_empty() => Ok(()),
        (_, Some(Type::Root | Type::Path)) => absolute(s),
        ("npm_package_name", _) => validate::npm_package_name(s),
        ("npm_registry", _) => registry(s),
        ("runtime", _) if s == "auto" || s == "system" => Ok(()),
        ("runtime", _) => absolute(s).map_err(|f| {
            Failure::validation(format!(
                "'{}' is not auto, system or an absolute path",
                s.escape_default()
            ))
            .hint(
                f.hint.unwrap_or_default()
                    + "; or use 'auto' (abssctl provisions Node) or 'system'",
            )
        }),
        ("default_version", _) => validate::version(s).map(|_| ()),
        ("service_user", _) => user_name(s),
        ("lock_timeout", _) => match v.as_f64() {
            Some(t) if (0.0..=86_400.0).contains(&t) => Ok(()),
            _ => Err(
                Failure::validation(format!("{v} seconds is not between 0 and 86400"))
                    .hint("give the seconds to wait for a lock, e.g. 30 (0 = do not wait)"),
            ),
        },
        ("ports.base", _) => {
            let n = v.as_i64().unwrap_or(-1);
            let port = validate::port(n)?;
            if port.get() > validate::PORT_MAX - PORTS_ROOM {
                return Err(Failure::validation(format!(
                    "{n} leaves fewer than {PORTS_ROOM} ports above it for instances"
                ))
                .hint(format!(
                    "use a base from {} to {}",
                    validate::PORT_MIN,
                    validate::PORT_MAX - PORTS_ROOM
                )));
            }
            Ok(())
        }
        ("ports.strategy", _) => one_of(s, &["sequential"]),
        ("reverse_proxy", _) => one_of(s, &["nginx"]),
        ("backups.compression.algorithm", _) => one_of(s, &["auto", "zstd", "gzip", "none"]),
        ("backups.compression.level", _) => match v.as_i64() {
            Some(1..=19) => Ok(()),
            _ => Err(
                Failure::validation(format!("{v} is not a compression level 1-19"))
                    .hint("use 1-19 for zstd (1-9 for gzip); the default is 3"),
            ),
        },
        ("backups.schedule.on_calendar" | "upgrades.check_on_calendar", _) => {
            crate::domain::schedule::check_calendar_text(s)
        }
        ("backups.schedule.randomized_delay", _) => crate::domain::schedule::check_delay(s),
        (k, _) if k.starts_with("backups.retention.") => match v.as_i64() {
            Some(n) if (0..=i64::from(crate::domain::schedule::COUNT_MAX)).contains(&n) => Ok(()),
            _ => Err(
                Failure::validation(format!("{v} is not a count from 0 to 10000"))
                    .hint("give how many backups that rule keeps (0: the rule is not used)"),
            ),
        },
        ("upgrades.health_timeout", _) => match v.as_i64() {
            Some(5..=3600) => Ok(()),
            _ => Err(
                Failure::validation(format!("{v} is not a number of seconds from 5 to 3600")).hint(
                    "how long an upgraded server may take to pass its health gate (default 60)",
                ),
            ),
        },
        _ => Ok(()),
    }
}

/// Rules between keys; the error names the key to change.
pub(super) fn cross(
    values: &BTreeMap<&'static str, (Json, Source)>,
) -> Result<(), (Failure, &'static str)> {
    let alg = values
        .get("backups.compression.algorithm")
        .and_then(|(v, _)| v.as_str());
    let level = values
        .get("backups.compression.level")
        .and_then(|(v, _)| v.as_i64());
    if let (Some("gzip"), Some(l)) = (alg, level)
        && l > 9
    {
        return Err((
            Failure::validation(format!("{l} is above 9, the highest gzip level"))
                .hint("use a level from 1 to 9 with gzip, or the zstd algorithm"),
            "backups.compression.level",
        ));
    }
    Ok(())
}

/// `auto` (ask the machine's npm at run time) or an http(s) URL with a host.
fn registry(s: &str) -> Result<(), Failure> {
    if s == "auto" {
        return Ok(());
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        Some(h) if !h.is_empty() && !s.contains(char::is_whitespace) => Ok(()),
        _ => Err(Failure::validation(format!("'{}' is not 'auto' or an http(s) URL", s.escape_default()))
            .hint("use 'auto' (what the machine's npm is configured with) or a URL starting with https://")),
    }
}

/// A Linux user name as useradd accepts it by default.
fn user_name(s: &str) -> Result<(), Failure> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Failure::validation(format!("'{}' is not a valid user name", s.escape_default()))
            .hint("use lowercase letters, digits, '_' and '-', starting with a letter (default actual-sync)"))
    }
}
