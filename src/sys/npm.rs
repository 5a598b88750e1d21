//! The npm registry over HTTPS (reqwest + rustls with the system CA store, so a TLS proxy
//! whose CA is installed system-wide works), the machine's npm settings, and npm tarballs.
//!
//! The registry URL is never built in: it comes from the `npm_registry` config key, or
//! (`auto`) from what the machine's npm uses, so abssctl goes where the operator's npm goes.

use crate::domain::versions::{self, Packument};
use crate::error::{self, Failure};
use anyhow::{Context, Result};
use sha2::{Digest, Sha512};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Hint shown whenever the registry cannot be reached.
pub const OFFLINE_HINT: &str = "check the network/proxy settings; an installed version can be rebuilt without the registry: abssctl version reinstall <X.Y.Z>";

/// The machine's npm settings that matter for reaching the registry (from `npm config`,
/// when an npm is installed) and the environment's proxy variables.
#[derive(Debug, Clone, Default)]
pub struct MachineNpm {
    pub registry: Option<String>,
    pub cafile: Option<PathBuf>,
    pub https_proxy: Option<String>,
    pub proxy: Option<String>,
    pub noproxy: Option<String>,
}

fn env_nonempty(keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// Read the machine's npm configuration, as npm would resolve it, WITHOUT running npm as
/// root (an admin tool must not execute npm's code, or a global npmrc's `${...}`-driven
/// settings, with root's rights just to learn a URL): the environment first, then the
/// caller's ~/.npmrc, then the global and built-in npmrc files, read as data. Only when
/// none of them names a registry is npm asked for its built-in default, as `nobody`.
/// Absence of npm is normal (containers, fresh appliances) and yields only the rest.
pub fn machine_npm() -> MachineNpm {
    let mut m = MachineNpm {
        registry: env_nonempty(&["npm_config_registry", "NPM_CONFIG_REGISTRY"]),
        cafile: env_nonempty(&["npm_config_cafile", "NPM_CONFIG_CAFILE"]).map(PathBuf::from),
        https_proxy: env_nonempty(&["npm_config_https_proxy", "HTTPS_PROXY", "https_proxy"]),
        proxy: env_nonempty(&["npm_config_proxy", "HTTP_PROXY", "http_proxy"]),
        noproxy: env_nonempty(&["npm_config_noproxy", "NO_PROXY", "no_proxy"]),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(f) = env_nonempty(&["npm_config_userconfig", "NPM_CONFIG_USERCONFIG"]) {
        files.push(f.into());
    } else if let Some(home) = std::env::var_os("HOME") {
        files.push(Path::new(&home).join(".npmrc"));
    }
    if let Some(f) = env_nonempty(&["npm_config_globalconfig", "NPM_CONFIG_GLOBALCONFIG"]) {
        files.push(f.into());
    }
    // Global npmrc of Debian's npm and of a /usr/local node (TurnKey), then the built-in
    // npmrc files those npms ship.
    for f in [
        "/etc/npmrc",
        "/usr/local/etc/npmrc",
        "/usr/share/nodejs/npm/npmrc",
        "/usr/lib/node_modules/npm/npmrc",
        "/usr/local/lib/node_modules/npm/npmrc",
    ] {
        files.push(f.into());
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let got = parse_npmrc(&text, &|k| std::env::var(k).ok());
        m.registry = m.registry.or(got.registry);
        m.cafile = m.cafile.or(got.cafile);
        m.https_proxy = m.https_proxy.or(got.https_proxy);
        m.proxy = m.proxy.or(got.proxy);
        m.noproxy = m.noproxy.or(got.noproxy);
    }
    if m.registry.is_none() {
        m.registry = npm_default_registry();
    }
    m
}

/// npm's built-in registry, from `npm config get registry` run as `nobody` with no home
/// (so no npmrc of root's is read and nothing of npm's runs as root); `None` without npm.
fn npm_default_registry() -> Option<String> {
    let npm = crate::sys::build::which("npm")?;
    let mut c = if crate::sys::privilege::is_root() {
        let nobody = nix::unistd::User::from_name("nobody").ok()??;
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &nobody.uid.as_raw().to_string(),
            "--regid",
            &nobody.gid.as_raw().to_string(),
            "--clear-groups",
            "--",
        ]);
        c.arg(&npm);
        c
    } else {
        Command::new(&npm)
    };
    let out = c
        .args(["config", "get", "registry"])
        .env_clear()
        .env("PATH", crate::sys::build::BUILD_PATH)
        .env("HOME", "/nonexistent")
        .env("npm_config_update_notifier", "false")
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && url.starts_with("http")).then_some(url)
}

/// The settings of one npmrc text (ini: `key = value`, `#`/`;` comments, `${VAR}`
/// expanded from `env` as npm does; a setting whose variable is unset is skipped).
pub fn parse_npmrc(text: &str, env: &dyn Fn(&str) -> Option<String>) -> MachineNpm {
    let mut m = MachineNpm::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, mut v) = (k.trim(), v.trim());
        if v.len() >= 2
            && (v.starts_with('"') && v.ends_with('"') || v.starts_with('\'') && v.ends_with('\''))
        {
            v = &v[1..v.len() - 1];
        }
        let Some(v) = expand_env(v, env).filter(|v| !v.is_empty()) else {
            continue;
        };
        let slot = match k {
            "registry" => &mut m.registry,
            "https-proxy" | "https_proxy" => &mut m.https_proxy,
            "proxy" => &mut m.proxy,
            "noproxy" => &mut m.noproxy,
            "cafile" => {
                m.cafile.get_or_insert(PathBuf::from(v));
                continue;
            }
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    m
}

fn expand_env(v: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find('}')?;
        out.push_str(&env(&after[..j])?);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The registry URL (with a trailing slash) from the `npm_registry` config value.
pub fn resolve_registry(configured: &str, machine: &MachineNpm) -> Result<String> {
    let url = if configured == "auto" || configured.is_empty() {
        machine.registry.clone().ok_or_else(|| {
            Failure::environment("cannot tell which npm registry to use: no npm is configured on this machine")
                .hint("set npm_registry in /etc/abssctl/config.yml (or ABSSCTL_NPM_REGISTRY) to the registry URL")
        })?
    } else {
        configured.to_string()
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(error::validation(format!(
            "npm registry '{}' is not an http(s) URL",
            url.escape_default()
        )));
    }
    Ok(if url.ends_with('/') {
        url
    } else {
        format!("{url}/")
    })
}

/// The system CA bundle that node needs to be told about (node ignores the system store;
/// rustls here uses it). Honours SSL_CERT_FILE, then the Debian location.
pub fn system_ca_bundle() -> Option<PathBuf> {
    if let Some(f) = env_nonempty(&["SSL_CERT_FILE"]) {
        return Some(PathBuf::from(f));
    }
    env_nonempty(&["NODE_EXTRA_CA_CERTS"])
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt")))
        .filter(|p| p.is_file())
}

/// An HTTPS client for one registry.
#[derive(Debug)]
pub struct Registry {
    pub base: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

fn unreachable(base: &str, e: &reqwest::Error) -> anyhow::Error {
    Failure::environment(format!("the npm registry {base} is unreachable: {e}"))
        .hint(OFFLINE_HINT)
        .into()
}

impl Registry {
    /// Build the client: ring as the TLS provider (installed once per process), the
    /// platform verifier (system CA store), proxies from the environment (reqwest reads
    /// HTTPS_PROXY/NO_PROXY itself).
    pub fn new(base: &str) -> Result<Registry> {
        // Err means a provider is installed already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("abssctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| {
                Failure::environment(format!(
                    "cannot set up HTTPS to the registry ({e:#}): is the system CA store there and readable?"
                ))
                .hint("apt-get install ca-certificates (or set SSL_CERT_FILE to a readable CA bundle)")
            })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime for HTTP")?;
        Ok(Registry {
            base: base.to_string(),
            client,
            rt,
        })
    }

    /// The packument of a package (abbreviated form: what installs need).
    pub fn packument(&self, name: &str) -> Result<Packument> {
        let url = format!("{}{}", self.base, name.replace('/', "%2f"));
        let text = self.rt.block_on(async {
            let resp = self
                .client
                .get(&url)
                .header(
                    "Accept",
                    "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8",
                )
                .send()
                .await
                .map_err(|e| unreachable(&self.base, &e))?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Err(error::validation(format!(
                    "package {name} does not exist on the registry {}",
                    self.base
                )));
            }
            if !resp.status().is_success() {
                return Err(Failure::environment(format!(
                    "the npm registry answered {} for {name}",
                    resp.status()
                ))
                .hint(OFFLINE_HINT)
                .into());
            }
            resp.text().await.map_err(|e| unreachable(&self.base, &e))
        })?;
        versions::parse_packument(&text).with_context(|| format!("reading the packument of {name}"))
    }

    /// Download a tarball to `dest`, checking its sha512 against the SRI `integrity` while
    /// streaming; a mismatch removes the file and is an environment failure (tampering or a
    /// broken proxy, never accepted). `progress` gets (done, total) bytes.
    pub fn download(
        &self,
        url: &str,
        integrity: &str,
        dest: &Path,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<()> {
        let want = versions::sri_sha512(integrity)
            .with_context(|| format!("{url} has no sha512 integrity ({integrity})"))?;
        let result = self.rt.block_on(async {
            let mut resp = self
                .client
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| unreachable(&self.base, &e))?;
            let total = resp.content_length();
            let mut file = std::fs::File::create(dest)
                .with_context(|| format!("creating {}", dest.display()))?;
            let mut hasher = Sha512::new();
            let mut done = 0u64;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| unreachable(&self.base, &e))?
            {
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .with_context(|| format!("writing {}", dest.display()))?;
                done += chunk.len() as u64;
                progress(done, total);
            }
            file.sync_all()
                .with_context(|| format!("writing {}", dest.display()))?;
            let got = hasher.finalize();
            if got.as_slice() != want.as_slice() {
                return Err(Failure::environment(format!(
                    "{url} failed its integrity check: expected {integrity}, got {}",
                    versions::sri_from_sha512(&got)
                ))
                .hint("a proxy or mirror altered the file; try again or check the registry")
                .into());
            }
            Ok(())
        });
        if result.is_err() {
            crate::sys::fs::remove_file_if_exists(dest)?;
        }
        result
    }
}

/// Unpack an npm tarball (`package/...` entries) into `dest`, dropping the first path
/// component. Entries that would escape `dest` (absolute, `..`) or links are refused.
pub fn unpack_tarball(tgz: &Path, dest: &Path) -> Result<()> {
    let f = std::fs::File::open(tgz).with_context(|| format!("opening {}", tgz.display()))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.set_preserve_permissions(true);
    crate::sys::fs::create_dir_all_mode(dest, 0o755)?;
    let what = || format!("unpacking {}", tgz.display());
    for entry in ar.entries().with_context(what)? {
        let mut entry = entry.with_context(what)?;
        let path = entry.path().with_context(what)?.into_owned();
        let mut comps = path.components();
        comps.next();
        let rel: PathBuf = comps.collect();
        if rel.as_os_str().is_empty() {
            continue;
        }
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            anyhow::bail!(
                "{} contains an unsafe path {}",
                tgz.display(),
                path.display()
            );
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            if kind.is_symlink() || kind.is_hard_link() {
                anyhow::bail!(
                    "{} contains a link {}, refused",
                    tgz.display(),
                    path.display()
                );
            }
            continue;
        }
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            crate::sys::fs::create_dir_all_mode(parent, 0o755)?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("unpacking {} to {}", path.display(), target.display()))?;
    }
    Ok(())
}

/// Environment for running npm against the registry: the machine's CA and proxy settings,
/// and nothing from the caller's ~/.npmrc (`userconfig` points at abssctl's own file).
pub fn npm_env(
    registry: &str,
    machine: &MachineNpm,
    userconfig: &Path,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("npm_config_registry".into(), registry.to_string());
    env.insert(
        "NPM_CONFIG_USERCONFIG".into(),
        userconfig.to_string_lossy().into_owned(),
    );
    env.insert("npm_config_update_notifier".into(), "false".into());
    env.insert("npm_config_fund".into(), "false".into());
    env.insert("npm_config_audit".into(), "false".into());
    if let Some(ca) = &machine.cafile {
        env.insert(
            "npm_config_cafile".into(),
            ca.to_string_lossy().into_owned(),
        );
    }
    if let Some(ca) = system_ca_bundle().or_else(|| machine.cafile.clone()) {
        env.insert(
            "NODE_EXTRA_CA_CERTS".into(),
            ca.to_string_lossy().into_owned(),
        );
    }
    for (k, v) in [
        ("npm_config_https_proxy", &machine.https_proxy),
        ("npm_config_proxy", &machine.proxy),
        ("npm_config_noproxy", &machine.noproxy),
    ] {
        if let Some(v) = v {
            env.insert(k.into(), v.clone());
        }
    }
    env
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registry_resolution() {
        let none = MachineNpm::default();
        let err = resolve_registry("auto", &none).unwrap_err();
        assert_eq!(error::classify(&err).0, error::Kind::Environment);
        let m = MachineNpm {
            registry: Some("https://r.example/npm".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_registry("auto", &m).unwrap(),
            "https://r.example/npm/"
        );
        assert_eq!(
            resolve_registry("http://mirror.example/", &none).unwrap(),
            "http://mirror.example/"
        );
        let err = resolve_registry("ftp://x", &none).unwrap_err();
        assert_eq!(error::classify(&err).0, error::Kind::Validation);
    }

    #[test]
    fn tarball_unpack_strips_package_and_refuses_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let tgz = tmp.path().join("a.tgz");
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            std::fs::File::create(&tgz).unwrap(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, "package/bin/node", &b"abc"[..])
            .unwrap();
        b.into_inner().unwrap().finish().unwrap();
        let out = tmp.path().join("out");
        unpack_tarball(&tgz, &out).unwrap();
        assert_eq!(std::fs::read(out.join("bin/node")).unwrap(), b"abc");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("bin/node"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o100, 0o100);

        let bad = tmp.path().join("bad.tgz");
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            std::fs::File::create(&bad).unwrap(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_cksum();
        // tar::Builder refuses `..` in append_data paths, so write the name raw.
        h.as_old_mut().name[..17].copy_from_slice(b"package/../../evi");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
        assert!(unpack_tarball(&bad, &tmp.path().join("out2")).is_err());
        assert!(!tmp.path().join("evi").exists());
    }

    #[test]
    fn npmrc_is_read_as_data() {
        let env = |k: &str| (k == "TOKEN_HOST").then(|| "mirror.example".to_string());
        let m = parse_npmrc(
            "; comment\n# another\nregistry = \"https://${TOKEN_HOST}/npm/\"\n\
             @scope:registry=https://other.example/\nhttps-proxy=http://p:3128\n\
             proxy=${UNSET}\ncafile=/etc/ca.pem\nregistry=https://second.example/\n",
            &env,
        );
        assert_eq!(m.registry.as_deref(), Some("https://mirror.example/npm/"));
        assert_eq!(m.https_proxy.as_deref(), Some("http://p:3128"));
        assert_eq!(m.proxy, None);
        assert_eq!(m.cafile, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn npm_env_uses_own_userconfig_and_machine_ca() {
        let m = MachineNpm {
            cafile: Some("/etc/ca.pem".into()),
            https_proxy: Some("http://proxy:3128".into()),
            ..Default::default()
        };
        let env = npm_env("https://r.example/", &m, Path::new("/x/npmrc"));
        assert_eq!(env["NPM_CONFIG_USERCONFIG"], "/x/npmrc");
        assert_eq!(env["npm_config_cafile"], "/etc/ca.pem");
        assert_eq!(env["npm_config_https_proxy"], "http://proxy:3128");
        assert_eq!(env["npm_config_registry"], "https://r.example/");
    }
}
