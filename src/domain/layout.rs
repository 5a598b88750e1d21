//! Every filesystem location abssctl touches, derived in ONE place from the configuration.
//! Setting `root` relocates the whole tree (tests use a temp dir), so no other module may
//! build a path from a literal.

use crate::domain::config::Config;
use std::path::{Path, PathBuf};

/// Name of the shipped systemd template unit (without `@.service`).
pub const UNIT_PREFIX: &str = "actual-sync";

/// All paths, already prefixed with the configured root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    pub config_file: PathBuf,
    pub templates_dir: PathBuf,
    pub state_dir: PathBuf,
    pub registry_dir: PathBuf,
    /// The registry: instances and port reservations in one file, replaced by one rename.
    pub registry_file: PathBuf,
    /// Schema-1 registry (instances.yml + ports.yml), read only to upconvert it.
    pub legacy_instances_file: PathBuf,
    pub legacy_ports_file: PathBuf,
    pub logs_dir: PathBuf,
    pub operations_log: PathBuf,
    pub run_dir: PathBuf,
    pub locks_dir: PathBuf,
    pub install_root: PathBuf,
    pub current_link: PathBuf,
    pub runtimes_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// The npm cache of builds: owned by the build user, 0700, under a root-owned cache dir.
    pub npm_cache_dir: PathBuf,
    /// Where releases before the build user kept the npm cache (opened to everyone during
    /// builds, so its contents are not trusted): removed by the next install.
    pub legacy_npm_cache_dir: PathBuf,
    pub staging_dir: PathBuf,
    pub instance_root: PathBuf,
    pub nginx_sites_available: PathBuf,
    pub nginx_sites_enabled: PathBuf,
    pub systemd_unit_dir: PathBuf,
    pub tls_system_cert: PathBuf,
    pub tls_system_key: PathBuf,
    pub tls_lets_encrypt_live_dir: PathBuf,
    pub backups_root: PathBuf,
    pub backups_index: PathBuf,
    /// The last update check (`version check --record`), read by `instance list`.
    pub updates_file: PathBuf,
}

/// `root` + an absolute path (a relative one is taken as relative to root too).
pub fn rooted(root: &Path, p: &Path) -> PathBuf {
    if root.as_os_str().is_empty() {
        return p.to_path_buf();
    }
    root.join(p.strip_prefix("/").unwrap_or(p))
}

impl Layout {
    /// Derive the layout. `config_file` is the file actually read (flag or default).
    pub fn new(cfg: &Config, config_file: &Path) -> Layout {
        let r = |p: &Path| rooted(&cfg.root, p);
        let state_dir = r(&cfg.state_dir);
        let registry_dir = state_dir.join("registry");
        let logs_dir = r(&cfg.logs_dir);
        let run_dir = r(&cfg.runtime_dir);
        let install_root = r(&cfg.install_root);
        Layout {
            root: cfg.root.clone(),
            config_file: config_file.to_path_buf(),
            templates_dir: r(&cfg.templates_dir),
            registry_file: registry_dir.join("registry.yml"),
            legacy_instances_file: registry_dir.join("instances.yml"),
            legacy_ports_file: registry_dir.join("ports.yml"),
            registry_dir,
            operations_log: logs_dir.join("operations.jsonl"),
            logs_dir,
            locks_dir: run_dir.join("locks"),
            run_dir,
            current_link: install_root.join("current"),
            runtimes_dir: install_root.join("runtimes"),
            npm_cache_dir: r(&cfg.cache_dir).join("npm"),
            legacy_npm_cache_dir: state_dir.join("npm-cache"),
            updates_file: state_dir.join("updates.json"),
            cache_dir: r(&cfg.cache_dir),
            staging_dir: install_root.join(".staging"),
            install_root,
            state_dir,
            instance_root: r(&cfg.instance_root),
            nginx_sites_available: r(&cfg.nginx_sites_available),
            nginx_sites_enabled: r(&cfg.nginx_sites_enabled),
            systemd_unit_dir: r(&cfg.systemd_unit_dir),
            tls_system_cert: r(&cfg.tls_system_cert),
            tls_system_key: r(&cfg.tls_system_key),
            tls_lets_encrypt_live_dir: r(&cfg.tls_lets_encrypt_live_dir),
            backups_root: r(&cfg.backups_root),
            backups_index: r(&cfg.backups_index),
        }
    }

    /// The build lock: one npm build at a time (they share the build user and its cache),
    /// held for the whole build while the global lock is taken only for the commit.
    pub fn build_lock(&self) -> PathBuf {
        self.locks_dir.join("build.lock")
    }
    /// The global lock file (taken first, always).
    pub fn global_lock(&self) -> PathBuf {
        self.locks_dir.join("global.lock")
    }
    /// The per-instance lock file (taken after the global one).
    pub fn instance_lock(&self, name: &str) -> PathBuf {
        self.locks_dir.join(format!("instance-{name}.lock"))
    }
    /// The last `abssctl doctor` report (JSON), read by `instance list`, the confconsole
    /// menu and the support bundle instead of probing again.
    pub fn doctor_report(&self) -> PathBuf {
        self.state_dir.join("doctor.json")
    }
    /// Where an installed Actual version lives.
    pub fn version_dir(&self, version: &str) -> PathBuf {
        self.install_root.join(format!("v{version}"))
    }
    /// Where a managed Node runtime lives.
    pub fn runtime_dir(&self, node_version: &str) -> PathBuf {
        self.runtimes_dir.join(format!("node-v{node_version}"))
    }
    /// Where a managed npm (the build tool shipped beside managed runtimes) lives.
    pub fn npm_dir(&self, npm_version: &str) -> PathBuf {
        self.runtimes_dir.join(format!("npm-v{npm_version}"))
    }
    /// An instance's own directory and its data directory.
    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.instance_root.join(name)
    }
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.instance_dir(name).join("data")
    }
    /// systemd unit name of an instance.
    pub fn unit_name(name: &str) -> String {
        format!("{UNIT_PREFIX}@{name}.service")
    }
    /// The drop-in directory abssctl renders an instance's settings into.
    pub fn unit_dropin_dir(&self, name: &str) -> PathBuf {
        self.systemd_unit_dir
            .join(format!("{}.d", Self::unit_name(name)))
    }
    /// nginx vhost file (sites-available) and its enabling symlink (sites-enabled).
    pub fn vhost_file(&self, name: &str) -> PathBuf {
        self.nginx_sites_available
            .join(format!("abssctl-{name}.conf"))
    }
    pub fn vhost_link(&self, name: &str) -> PathBuf {
        self.nginx_sites_enabled
            .join(format!("abssctl-{name}.conf"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_relocates_every_path() {
        let cfg = Config {
            root: "/tmp/x".into(),
            ..Config::default()
        };
        let l = Layout::new(&cfg, Path::new("/tmp/x/etc/abssctl/config.yml"));
        assert_eq!(
            l.registry_file,
            Path::new("/tmp/x/var/lib/abssctl/registry/registry.yml")
        );
        assert_eq!(
            l.global_lock(),
            Path::new("/tmp/x/run/abssctl/locks/global.lock")
        );
        assert_eq!(l.data_dir("budget"), Path::new("/tmp/x/srv/budget/data"));
        assert_eq!(
            l.updates_file,
            Path::new("/tmp/x/var/lib/abssctl/updates.json")
        );
        assert_eq!(l.version_dir("26.9.0"), Path::new("/tmp/x/srv/app/v26.9.0"));
        assert_eq!(
            l.unit_dropin_dir("budget"),
            Path::new("/tmp/x/etc/systemd/system/actual-sync@budget.service.d")
        );
    }

    #[test]
    fn empty_root_is_the_real_machine() {
        let l = Layout::new(&Config::default(), Path::new("/etc/abssctl/config.yml"));
        assert_eq!(
            l.legacy_instances_file,
            Path::new("/var/lib/abssctl/registry/instances.yml")
        );
        assert_eq!(
            l.vhost_link("a"),
            Path::new("/etc/nginx/sites-enabled/abssctl-a.conf")
        );
    }
}
