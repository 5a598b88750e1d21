//! Pure facts about an instance: its unit, its rendered systemd settings, its URLs, and
//! how a started unit is judged (healthy, crash-looping, failed).

use crate::domain::layout::Layout;
use crate::error::Failure;
use std::path::{Path, PathBuf};

/// File name of the rendered drop-in inside `actual-sync@<name>.service.d/`. "50-" leaves
/// room for operator drop-ins that sort after it (and win).
pub const DROPIN_FILE: &str = "50-abssctl.conf";
/// Where the server listens: loopback only, nginx is the way in.
pub const LISTEN_HOST: &str = "127.0.0.1";
/// The server's own upload caps (its defaults, made explicit so the vhost can match them).
pub const UPLOAD_SYNC_MB: u32 = 20;
pub const UPLOAD_ENCRYPTED_MB: u32 = 50;
pub const UPLOAD_FILE_MB: u32 = 20;
/// Mode of an instance's directories: the service user only (data is private).
pub const DATA_DIR_MODE: u32 = 0o700;
/// Mode of the instance's own directory (root-owned, the service user may enter).
pub const INSTANCE_DIR_MODE: u32 = 0o750;
/// Mode of the drop-in: not secret, systemd reads it as root.
pub const DROPIN_MODE: u32 = 0o644;

/// Every instance runs as its own system account, so a compromised server (Actual does bank
/// sync and runs third-party code) cannot read another family's budgets: `actual-<name>`.
pub const USER_PREFIX: &str = "actual-";
/// Longest account name we derive: systemd refuses (or warns about) `User=` names longer
/// than 31 characters (UT_NAMESIZE - 1), while instance names may have 32.
pub const USER_NAME_MAX: usize = 31;
/// The account every instance shared before per-instance accounts (`service_user` in the
/// configuration, shipped by sysusers.d). An instance named `sync` must not get it.
pub const LEGACY_USER: &str = "actual-sync";

/// The system account (and its group, of the same name) of instance `name`.
///
/// `actual-<name>` when that fits in [`USER_NAME_MAX`] and is not the legacy shared account;
/// otherwise `actual-<first 15 characters>_<8 hex digits of SHA-256(name)>`. Instance names
/// never contain `_`, so a hashed name can never equal the plain name of another instance;
/// two long names sharing a 15-character prefix collide only on a 32-bit hash collision, and
/// the account's comment ([`user_comment`]) names its instance, which creation checks.
pub fn service_user(name: &str) -> String {
    let plain = format!("{USER_PREFIX}{name}");
    if plain.len() <= USER_NAME_MAX && plain != LEGACY_USER {
        return plain;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let head: String = name.chars().take(15).collect();
    format!("{USER_PREFIX}{head}_{}", hex::encode(&digest[..4]))
}

/// The comment (GECOS) of an instance's account: it says which instance owns it, so abssctl
/// never takes over an account of the same name that it did not make for this instance.
pub fn user_comment(name: &str) -> String {
    format!("Actual Budget instance {name} (abssctl)")
}

/// The server's entry point inside an installed version directory.
pub fn server_js(version_dir: &Path) -> PathBuf {
    version_dir.join("node_modules/@actual-app/sync-server/build/bin/actual-server.js")
}

/// Path of an instance's rendered drop-in.
pub fn dropin_path(layout: &Layout, name: &str) -> PathBuf {
    layout.unit_dropin_dir(name).join(DROPIN_FILE)
}

/// Everything the drop-in depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropinInput {
    pub name: String,
    /// The account the server runs as ([`service_user`]).
    pub user: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub version: String,
    pub version_dir: PathBuf,
    pub node: PathBuf,
}

/// A path as a unit-file value: absolute, no characters that would need quoting, and `%`
/// doubled (systemd expands `%x` specifiers in these settings).
fn unit_path(what: &str, p: &Path) -> Result<String, Failure> {
    let s = p.to_str().unwrap_or_default();
    let ok = p.is_absolute()
        && !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | ';'));
    if !ok {
        return Err(Failure::validation(format!(
            "{what} path {} cannot be written into a systemd unit (it must be absolute, \
             without spaces, quotes, backslashes or ';')",
            p.display()
        ))
        .hint("use paths made of letters, digits, '/', '.', '-' and '_' in the configuration"));
    }
    Ok(s.replace('%', "%%"))
}

/// The tera context of the drop-in template.
pub fn dropin_context(input: &DropinInput) -> Result<tera::Context, Failure> {
    let mut ctx = tera::Context::new();
    ctx.insert("name", &input.name);
    ctx.insert("user", &input.user);
    ctx.insert("port", &input.port);
    ctx.insert("hostname", LISTEN_HOST);
    ctx.insert("data_dir", &unit_path("data directory", &input.data_dir)?);
    ctx.insert("version", &input.version);
    ctx.insert("node", &unit_path("Node runtime", &input.node)?);
    ctx.insert(
        "server_js",
        &unit_path("Actual server", &server_js(&input.version_dir))?,
    );
    ctx.insert("upload_sync_mb", &UPLOAD_SYNC_MB);
    ctx.insert("upload_encrypted_mb", &UPLOAD_ENCRYPTED_MB);
    ctx.insert("upload_file_mb", &UPLOAD_FILE_MB);
    Ok(ctx)
}

/// The `Environment=` settings of a rendered drop-in, in order (for `instance env`).
pub fn env_of(dropin: &str) -> Vec<(String, String)> {
    dropin
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%%", "%")))
        .collect()
}

/// The HTTPS address users open.
pub fn url(domain: &str, https_port: Option<u16>) -> String {
    match https_port {
        Some(p) => format!("https://{domain}:{p}/"),
        None => format!("https://{domain}/"),
    }
}

/// How a unit looks while we wait for the server to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// Still starting or running: keep probing.
    Pending,
    /// systemd gave up or is restarting it after a crash: it will not become healthy
    /// by itself within a create/restart.
    Failing,
}

/// Judge a unit from its states and restart counter. `restarts_before` is NRestarts when we
/// started it: any increase means the process died and systemd restarted it.
pub fn startup(
    active_state: &str,
    sub_state: &str,
    n_restarts: u32,
    restarts_before: u32,
) -> Startup {
    let died = n_restarts > restarts_before
        || active_state == "failed"
        || sub_state == "auto-restart"
        || (active_state == "inactive" && sub_state == "dead");
    if died {
        Startup::Failing
    } else {
        Startup::Pending
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    fn input() -> DropinInput {
        DropinInput {
            name: "budget".into(),
            user: service_user("budget"),
            port: 5000,
            data_dir: "/srv/budget/data".into(),
            version: "26.9.0".into(),
            version_dir: "/srv/app/v26.9.0".into(),
            node: "/srv/app/runtimes/node-v22.23.3/bin/node".into(),
        }
    }

    #[test]
    fn dropin_renders_every_setting() {
        let ctx = dropin_context(&input()).unwrap();
        let text =
            crate::domain::render::render(crate::domain::render::INSTANCE_DROPIN, None, &ctx)
                .unwrap();
        for line in [
            "[Service]",
            "User=actual-budget",
            "Group=actual-budget",
            "Environment=ACTUAL_PORT=5000",
            "Environment=ACTUAL_HOSTNAME=127.0.0.1",
            "Environment=ACTUAL_DATA_DIR=/srv/budget/data",
            "Environment=ACTUAL_SERVER_FILES=/srv/budget/data/server-files",
            "Environment=ACTUAL_USER_FILES=/srv/budget/data/user-files",
            "Environment=ACTUAL_TRUSTED_PROXIES=127.0.0.1/32,::1/128",
            "Environment=ACTUAL_UPLOAD_SYNC_ENCRYPTED_FILE_SYNC_SIZE_LIMIT_MB=50",
            "ReadWritePaths=/srv/budget/data",
            "ExecStart=",
            "ExecStart=/srv/app/runtimes/node-v22.23.3/bin/node /srv/app/v26.9.0/node_modules/@actual-app/sync-server/build/bin/actual-server.js",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with('\n'));
        let env = env_of(&text);
        assert_eq!(env[0], ("ACTUAL_PORT".to_string(), "5000".to_string()));
        assert_eq!(env.len(), 9);
    }

    #[test]
    fn service_user_fits_systemd_and_never_collides() {
        assert_eq!(service_user("budget"), "actual-budget");
        assert_eq!(
            user_comment("budget"),
            "Actual Budget instance budget (abssctl)"
        );
        // 24 characters is the longest name that stays plain (7 + 24 = 31).
        let n24 = "a".repeat(24);
        assert_eq!(service_user(&n24), format!("actual-{n24}"));
        // Longer names (up to the 32 an instance may have) are shortened, deterministically.
        let n25 = format!("{n24}b");
        let u25 = service_user(&n25);
        assert_eq!(u25.len(), USER_NAME_MAX, "{u25}");
        assert!(u25.starts_with("actual-aaaaaaaaaaaaaaa_"), "{u25}");
        assert_eq!(u25, service_user(&n25));
        let n32 = format!("{}-2", "family-budget-of-the-smiths-x");
        let n32b = format!("{}-3", "family-budget-of-the-smiths-x");
        assert_eq!(n32.len(), 31);
        assert_ne!(service_user(&n32), service_user(&n32b));
        // The legacy shared account is never an instance's own.
        assert_ne!(service_user("sync"), LEGACY_USER);
        assert!(service_user("sync").contains('_'));
        // Every derived name is a valid systemd user name: [a-z_][a-z0-9_-]*, <= 31.
        for n in [
            "a",
            "budget",
            "sync",
            &n24,
            &n25,
            &n32,
            &"z9-".repeat(10)[..29],
        ] {
            let u = service_user(n);
            assert!(u.len() <= USER_NAME_MAX, "{u}");
            assert!(
                u.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'_'),
                "{u}"
            );
        }
    }

    #[test]
    fn unsafe_paths_are_refused_and_percent_is_escaped() {
        let mut i = input();
        i.data_dir = "/srv/my budget".into();
        assert!(dropin_context(&i).is_err());
        i.data_dir = "relative/data".into();
        assert!(dropin_context(&i).is_err());
        i.data_dir = "/srv/100%/data".into();
        let ctx = dropin_context(&i).unwrap();
        assert_eq!(
            ctx.get("data_dir").and_then(|v| v.as_str()),
            Some("/srv/100%%/data")
        );
    }

    #[test]
    fn startup_is_failing_once_the_process_died() {
        assert_eq!(startup("activating", "start", 0, 0), Startup::Pending);
        assert_eq!(startup("active", "running", 0, 0), Startup::Pending);
        assert_eq!(startup("active", "running", 1, 0), Startup::Failing);
        assert_eq!(
            startup("activating", "auto-restart", 0, 0),
            Startup::Failing
        );
        assert_eq!(startup("failed", "failed", 0, 0), Startup::Failing);
        assert_eq!(startup("inactive", "dead", 0, 0), Startup::Failing);
        assert_eq!(url("a.example", None), "https://a.example/");
        assert_eq!(url("a.example", Some(8443)), "https://a.example:8443/");
    }
}
