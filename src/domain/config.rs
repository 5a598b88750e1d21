//! Configuration: built-in defaults < /etc/abssctl/config.yml < ABSSCTL_* environment <
//! command-line flags. Every resolved value remembers where it came from, so
//! `abssctl config show` can say why a value is what it is.
//!
//! Pure: the caller passes the file text and the environment pairs in (they are read in
//! `sys/`). The rules for each key (type, accepted values) live in [`check`]; the YAML tree
//! with line numbers in [`yaml`]. docs/config.md is the operator's description of all this.

mod check;
mod yaml;

use crate::domain::layout::rooted;
use crate::error::Failure;
use check::Type;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The resolved configuration. Field names are the config keys (nested keys are flattened
/// here as `ports_base` for `ports.base`; [`KEYS`] lists the dotted names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Prefix prepended to every absolute path (empty: the real machine). Tests and
    /// staging use it to relocate the whole tree.
    pub root: PathBuf,
    pub npm_package_name: String,
    /// npm registry URL, or `auto`: whatever the machine's npm is configured to use.
    pub npm_registry: String,
    /// Node runtime policy: `auto`, `system`, or an absolute path to a node binary.
    pub runtime: String,
    pub install_root: PathBuf,
    pub instance_root: PathBuf,
    pub state_dir: PathBuf,
    /// Caches abssctl can rebuild (the npm cache of builds).
    pub cache_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub service_user: String,
    pub default_version: String,
    /// Seconds to wait for a lock before giving up.
    pub lock_timeout: f64,
    pub ports_base: u16,
    pub ports_strategy: String,
    pub reverse_proxy: String,
    pub nginx_sites_available: PathBuf,
    pub nginx_sites_enabled: PathBuf,
    pub systemd_unit_dir: PathBuf,
    pub tls_enabled: bool,
    pub tls_system_cert: PathBuf,
    pub tls_system_key: PathBuf,
    pub tls_lets_encrypt_live_dir: PathBuf,
    pub backups_root: PathBuf,
    pub backups_index: PathBuf,
    pub backups_compression_algorithm: String,
    pub backups_compression_level: i32,
    /// New instances get a backup timer (`backup schedule` changes one, `--off` stops it).
    pub backups_schedule_enabled: bool,
    pub backups_schedule_on_calendar: String,
    pub backups_schedule_randomized_delay: String,
    /// The retention a new schedule starts with (0: that rule is not used).
    pub backups_retention_keep_daily: u32,
    pub backups_retention_keep_weekly: u32,
    pub backups_retention_keep_monthly: u32,
    /// Seconds an upgraded (or rolled back) server has to pass the health gate.
    pub upgrades_health_timeout: u64,
    /// When abssctl-update-check.timer runs (a drop-in written by `version check --record`).
    pub upgrades_check_on_calendar: String,
    /// The update-check timer also upgrades every instance (rolling) when one is behind.
    pub upgrades_auto_upgrade: bool,
}

/// Default location of the operator's configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/abssctl/config.yml";

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::new(),
            npm_package_name: "@actual-app/sync-server".into(),
            npm_registry: "auto".into(),
            runtime: "auto".into(),
            install_root: "/srv/app".into(),
            instance_root: "/srv".into(),
            state_dir: "/var/lib/abssctl".into(),
            cache_dir: "/var/cache/abssctl".into(),
            logs_dir: "/var/log/abssctl".into(),
            runtime_dir: "/run/abssctl".into(),
            templates_dir: "/etc/abssctl/templates".into(),
            service_user: "actual-sync".into(),
            default_version: "current".into(),
            lock_timeout: 30.0,
            ports_base: 5000,
            ports_strategy: "sequential".into(),
            reverse_proxy: "nginx".into(),
            nginx_sites_available: "/etc/nginx/sites-available".into(),
            nginx_sites_enabled: "/etc/nginx/sites-enabled".into(),
            systemd_unit_dir: "/etc/systemd/system".into(),
            tls_enabled: true,
            tls_system_cert: "/etc/ssl/private/cert.pem".into(),
            tls_system_key: "/etc/ssl/private/cert.key".into(),
            tls_lets_encrypt_live_dir: "/etc/letsencrypt/live".into(),
            backups_root: "/srv/backups".into(),
            backups_index: "/srv/backups/backups.json".into(),
            backups_compression_algorithm: "auto".into(),
            backups_compression_level: 3,
            backups_schedule_enabled: true,
            backups_schedule_on_calendar: "daily".into(),
            backups_schedule_randomized_delay: "1h".into(),
            backups_retention_keep_daily: 7,
            backups_retention_keep_weekly: 4,
            backups_retention_keep_monthly: 6,
            upgrades_health_timeout: 60,
            upgrades_check_on_calendar: "weekly".into(),
            upgrades_auto_upgrade: false,
        }
    }
}

/// One configuration key: its dotted name (the YAML nesting) and the type its value must
/// have. What each key is for is documented in docs/config.md and debian/config.yml.
#[derive(Debug, Clone, Copy)]
pub struct KeyDef {
    pub key: &'static str,
    pub ty: Type,
}

const fn k(key: &'static str, ty: Type) -> KeyDef {
    KeyDef { key, ty }
}

/// Every key, in the order `config show` lists them. The `Config` field of a key is its
/// dotted name with `.` replaced by `_` (a unit test keeps the two in step).
pub const KEYS: &[KeyDef] = &[
    k("root", Type::Root),
    k("npm_package_name", Type::Str),
    k("npm_registry", Type::Str),
    k("runtime", Type::Str),
    k("default_version", Type::Str),
    k("install_root", Type::Path),
    k("instance_root", Type::Path),
    k("state_dir", Type::Path),
    k("cache_dir", Type::Path),
    k("logs_dir", Type::Path),
    k("runtime_dir", Type::Path),
    k("templates_dir", Type::Path),
    k("service_user", Type::Str),
    k("lock_timeout", Type::Number),
    k("ports.base", Type::Int),
    k("ports.strategy", Type::Str),
    k("reverse_proxy", Type::Str),
    k("nginx.sites_available", Type::Path),
    k("nginx.sites_enabled", Type::Path),
    k("systemd.unit_dir", Type::Path),
    k("tls.enabled", Type::Bool),
    k("tls.system.cert", Type::Path),
    k("tls.system.key", Type::Path),
    k("tls.lets_encrypt.live_dir", Type::Path),
    k("backups.root", Type::Path),
    k("backups.index", Type::Path),
    k("backups.compression.algorithm", Type::Str),
    k("backups.compression.level", Type::Int),
    k("backups.schedule.enabled", Type::Bool),
    k("backups.schedule.on_calendar", Type::Str),
    k("backups.schedule.randomized_delay", Type::Str),
    k("backups.retention.keep_daily", Type::Int),
    k("backups.retention.keep_weekly", Type::Int),
    k("backups.retention.keep_monthly", Type::Int),
    k("upgrades.health_timeout", Type::Int),
    k("upgrades.check_on_calendar", Type::Str),
    k("upgrades.auto_upgrade", Type::Bool),
];

/// ABSSCTL_* variables that are not config keys and are read elsewhere (clap, logging, the
/// config file locator). Any other ABSSCTL_* variable that is not a key is rejected: a
/// misspelt override silently ignored is worse than a refusal.
pub const NON_CONFIG_VARS: &[&str] = &["ABSSCTL_ASSUME_YES", "ABSSCTL_LOG", "ABSSCTL_CONFIG"];

/// The environment variable that sets a key: `ports.base` -> `ABSSCTL_PORTS_BASE`.
pub fn env_var(key: &str) -> String {
    format!("ABSSCTL_{}", key.replace('.', "_").to_ascii_uppercase())
}

fn field(key: &str) -> String {
    key.replace('.', "_")
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Default,
    File { path: PathBuf, line: usize },
    Env { var: String },
    Flag { flag: String },
}

impl Source {
    /// Where, in words, for error messages and the human table.
    pub fn describe(&self) -> String {
        match self {
            Source::Default => "default".into(),
            Source::File { path, line } => format!("{}:{line}", path.display()),
            Source::Env { var } => format!("env {var}"),
            Source::Flag { flag } => format!("flag {flag}"),
        }
    }
    /// The prefix of an error about a value from this source.
    fn at(&self) -> String {
        match self {
            Source::Env { var } => format!("environment variable {var}"),
            other => other.describe(),
        }
    }
}

/// Values given on the command line that override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub lock_timeout: Option<f64>,
}

/// The config file that was looked for, why that one, and whether it existed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// flag (`--config`), env (ABSSCTL_CONFIG, or ABSSCTL_ROOT relocating the default), default.
    pub source: Source,
    pub loaded: bool,
    /// Why the file could not be used (only for the commands that run on the defaults
    /// when it is broken: `doctor` reports it, `support-bundle` still gathers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The configuration plus the source of each key (dotted key name -> source).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub config: Config,
    pub sources: BTreeMap<String, Source>,
    pub file: ConfigFile,
}

impl Resolved {
    /// The value of a key as JSON (paths as strings), for `config show`.
    pub fn value(&self, key: &str) -> serde_json::Value {
        serde_json::to_value(&self.config)
            .ok()
            .and_then(|v| v.get(field(key)).cloned())
            .unwrap_or_default()
    }
}

fn env_get<'a>(env: &'a [(String, String)], var: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, v)| k == var && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// Which config file to read and why: `--config`, else ABSSCTL_CONFIG, else the default
/// file under ABSSCTL_ROOT when that is set (so a relocated tree carries its own config),
/// else /etc/abssctl/config.yml.
pub fn locate_config_file(o: &Overrides, env: &[(String, String)]) -> (PathBuf, Source) {
    if let Some(p) = &o.config_file {
        return (
            p.clone(),
            Source::Flag {
                flag: "--config".into(),
            },
        );
    }
    if let Some(p) = env_get(env, "ABSSCTL_CONFIG") {
        return (
            p.into(),
            Source::Env {
                var: "ABSSCTL_CONFIG".into(),
            },
        );
    }
    if let Some(root) = env_get(env, &env_var("root")) {
        let path = rooted(Path::new(root), Path::new(DEFAULT_CONFIG_FILE));
        return (
            path,
            Source::Env {
                var: env_var("root"),
            },
        );
    }
    (DEFAULT_CONFIG_FILE.into(), Source::Default)
}

/// Which config file to read (see [`locate_config_file`]).
pub fn config_file_path(o: &Overrides, env: &[(String, String)]) -> PathBuf {
    locate_config_file(o, env).0
}

/// Merge defaults < file < env < flags, checking every value. `file` is the path and text
/// of the config file when it exists. Any bad input is a validation failure (exit 2) that
/// names where the value came from (file:line, variable, flag) and the key.
pub fn resolve(
    file: Option<(&Path, &str)>,
    env: &[(String, String)],
    o: &Overrides,
) -> anyhow::Result<Resolved> {
    let (located, located_source) = locate_config_file(o, env);
    let explicit = matches!(&located_source, Source::Flag { .. })
        || matches!(&located_source, Source::Env { var } if var == "ABSSCTL_CONFIG");
    if file.is_none() && explicit {
        return Err(Failure::validation(format!(
            "config file {} (from {}) does not exist",
            located.display(),
            located_source.describe()
        ))
        .hint("give the path of an existing file, or drop the option to use the default")
        .into());
    }

    let mut values: BTreeMap<&'static str, (serde_json::Value, Source)> = BTreeMap::new();
    let defaults = serde_json::to_value(Config::default())?;
    for def in KEYS {
        let v = defaults.get(field(def.key)).cloned().unwrap_or_default();
        values.insert(def.key, (v, Source::Default));
    }

    if let Some((path, text)) = file {
        for (def, line, v) in check::file_values(path, text)? {
            let source = Source::File {
                path: path.to_path_buf(),
                line,
            };
            values.insert(def.key, (v, source));
        }
    }

    let mut env_sorted: Vec<&(String, String)> = env.iter().collect();
    env_sorted.sort();
    for (var, raw) in env_sorted {
        if NON_CONFIG_VARS.contains(&var.as_str()) {
            continue;
        }
        let Some(def) = KEYS.iter().find(|d| env_var(d.key) == *var) else {
            return Err(check::unknown_env(var).into());
        };
        let source = Source::Env { var: var.clone() };
        let v = check::from_text(def, raw).map_err(|f| locate(f, &source, def.key))?;
        values.insert(def.key, (v, source));
    }

    if let Some(t) = o.lock_timeout {
        let source = Source::Flag {
            flag: "--lock-timeout".into(),
        };
        let def = KEYS.iter().find(|d| d.key == "lock_timeout");
        let v = def
            .ok_or_else(|| anyhow::anyhow!("lock_timeout missing from KEYS"))
            .and_then(|d| Ok(check::from_text(d, &t.to_string())?))
            .map_err(|e| locate_any(e, &source, "lock_timeout"))?;
        values.insert("lock_timeout", (v, source));
    }

    for (key, (v, source)) in &values {
        check::value(key, v).map_err(|f| locate(f, source, key))?;
    }
    check::cross(&values).map_err(|(f, key)| {
        let source = values
            .get(key)
            .map(|(_, s)| s.clone())
            .unwrap_or(Source::Default);
        locate(f, &source, key)
    })?;

    let mut map = serde_json::Map::new();
    let mut sources = BTreeMap::new();
    for (key, (v, source)) in values {
        map.insert(field(key), v);
        sources.insert(key.to_string(), source);
    }
    let config: Config = serde_json::from_value(serde_json::Value::Object(map))?;
    Ok(Resolved {
        config,
        sources,
        file: ConfigFile {
            path: file.map_or(located, |(p, _)| p.to_path_buf()),
            source: located_source,
            loaded: file.is_some(),
            error: None,
        },
    })
}

/// Prefix a value failure with where the value came from and its key.
fn locate(f: Failure, source: &Source, key: &str) -> Failure {
    let mut out = Failure::validation(format!("{}: {key}: {}", source.at(), f.message));
    out.hint = f.hint;
    out
}

fn locate_any(e: anyhow::Error, source: &Source, key: &str) -> anyhow::Error {
    match e.downcast::<Failure>() {
        Ok(f) => locate(f, source, key).into(),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests;
