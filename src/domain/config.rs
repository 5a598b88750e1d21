//! Configuration: built-in defaults < /etc/abssctl/config.yml < ABSSCTL_* environment <
//! command-line flags. Every resolved value remembers where it came from, so
//! `abssctl config show` can say why a value is what it is.
//!
//! Pure: the caller passes the file text and the environment pairs in (they are read in
//! `sys/`).

use serde::Serialize;
use std::path::PathBuf;

/// The resolved configuration. Field names are the config keys (nested keys are flattened
/// here as `ports_base` for `ports.base`; [`KEYS`] lists the dotted names).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
        }
    }
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

/// Values given on the command line that override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub lock_timeout: Option<f64>,
}

/// The configuration plus the source of each key (dotted key name -> source).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub config: Config,
    pub sources: std::collections::BTreeMap<String, Source>,
}

/// Which config file to read: `--config`, else ABSSCTL_CONFIG, else the default under root.
pub fn config_file_path(o: &Overrides, _env: &[(String, String)]) -> PathBuf {
    // PLACEHOLDER until the layered loader lands (owned by the config work).
    o.config_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE))
}

/// Merge defaults < file < env < flags.
pub fn resolve(
    _file: Option<(&std::path::Path, &str)>,
    _env: &[(String, String)],
    _o: &Overrides,
) -> anyhow::Result<Resolved> {
    // PLACEHOLDER until the layered loader lands (owned by the config work).
    Ok(Resolved {
        config: Config::default(),
        sources: Default::default(),
    })
}
