//! Validation of names, domains, ports and versions (pure).
//!
//! Every value that reaches a file name, a systemd unit, an nginx vhost or the registry passes
//! through one of these functions first, so the rules live in one place and the rest of the
//! code can hold typed values (`InstanceName`, `Domain`, `Port`, `VersionSpec`) that are valid
//! by construction. Each failure is a validation [`Failure`] (exit 2) with a one-line message
//! that repeats the offending input and a hint saying what is accepted.

use crate::error::Failure;
use serde::Serialize;
use std::fmt;

/// Longest instance name. 32 keeps `actual-sync@<name>.service`, `abssctl-<name>.conf`,
/// `/srv/<name>` and the lock file name far below every OS and systemd limit, and short
/// enough to read in a table.
pub const INSTANCE_NAME_MAX: usize = 32;

/// Names an instance may not take: `/srv/<name>` shares `/srv` with the install root
/// (`/srv/app`) and the backups (`/srv/backups`); `current` is the symlink name of the active
/// version and would read ambiguously in commands; `abssctl` would collide with our own files.
pub const RESERVED_INSTANCE_NAMES: &[&str] = &["app", "backups", "current", "abssctl"];

/// Lowest and highest port an instance may listen on (no privileged ports: the services run
/// as an unprivileged user).
pub const PORT_MIN: u16 = 1024;
pub const PORT_MAX: u16 = 65535;

/// An instance name: valid as a systemd unit instance, an nginx file name component and a
/// directory name without any escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct InstanceName(String);

impl InstanceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const NAME_HINT: &str = "use 1-32 lowercase letters, digits and single hyphens, starting with a letter (e.g. 'budget' or 'family-2')";

/// Check an instance name: `[a-z][a-z0-9-]*`, no trailing or doubled hyphen, at most
/// [`INSTANCE_NAME_MAX`] characters, not reserved.
pub fn instance_name(s: &str) -> Result<InstanceName, Failure> {
    let bad = |why: &str| {
        Failure::validation(format!(
            "invalid instance name '{}': {why}",
            s.escape_default()
        ))
        .hint(NAME_HINT)
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.chars().count() > INSTANCE_NAME_MAX {
        return Err(bad(&format!("longer than {INSTANCE_NAME_MAX} characters")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let why = if c.is_ascii_uppercase() {
            format!("'{c}' is uppercase")
        } else {
            format!("character '{}' is not allowed", c.escape_default())
        };
        return Err(bad(&why));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(bad("it must start with a letter"));
    }
    if s.ends_with('-') {
        return Err(bad("it must not end with a hyphen"));
    }
    if s.contains("--") {
        return Err(bad("it must not contain '--'"));
    }
    if RESERVED_INSTANCE_NAMES.contains(&s) {
        return Err(Failure::validation(format!(
            "instance name '{s}' is reserved (it would clash with abssctl's own paths under /srv)"
        ))
        .hint(format!(
            "choose another name; reserved: {}",
            RESERVED_INSTANCE_NAMES.join(", ")
        )));
    }
    Ok(InstanceName(s.to_string()))
}

/// A domain name in its ASCII (punycode) form, as nginx `server_name` and certificates use it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const DOMAIN_HINT: &str = "give a fully qualified host name such as budget.example.org (letters, digits, hyphens; labels up to 63 characters, 253 in total; IDN allowed)";

/// Check a domain (RFC 1123 host name, at least two labels) and return its ASCII form.
/// Internationalised names are converted to punycode (UTS 46, strict rules); uppercase is
/// folded to lowercase since DNS is case-insensitive and nginx compares lowercase.
pub fn domain(s: &str) -> Result<Domain, Failure> {
    let bad = |why: &str| {
        Failure::validation(format!("invalid domain '{}': {why}", s.escape_default()))
            .hint(DOMAIN_HINT)
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.ends_with('.') {
        return Err(bad("remove the trailing dot"));
    }
    let ascii = idna::domain_to_ascii_strict(s)
        .map_err(|_| bad("not a valid host name (IDNA conversion failed)"))?;
    if ascii.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("it needs at least two labels (e.g. name.example)"));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(bad("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(bad(&format!(
                "label '{label}' is longer than 63 characters"
            )));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad(&format!(
                "label '{label}' has a character that is not allowed"
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad(&format!(
                "label '{label}' starts or ends with a hyphen"
            )));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad(
            "the last label is numeric (an IP address is not a domain)",
        ));
    }
    Ok(Domain(ascii))
}

/// A TCP port an instance may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn port_hint() -> String {
    format!("use a port from {PORT_MIN} to {PORT_MAX}")
}

/// Check a port number ([`PORT_MIN`]..=[`PORT_MAX`]); takes i64 so out-of-range input from
/// YAML or flags is reported as such rather than wrapped.
pub fn port(n: i64) -> Result<Port, Failure> {
    match u16::try_from(n) {
        Ok(p) if p >= PORT_MIN => Ok(Port(p)),
        _ => Err(
            Failure::validation(format!("port {n} is outside {PORT_MIN}-{PORT_MAX}"))
                .hint(port_hint()),
        ),
    }
}

/// Parse a port from text (flags, environment).
pub fn port_str(s: &str) -> Result<Port, Failure> {
    let n: i64 = s.trim().parse().map_err(|_| {
        Failure::validation(format!("'{}' is not a port number", s.escape_default()))
            .hint(port_hint())
    })?;
    port(n)
}

/// Which Actual version an operation refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSpec {
    /// The newest release on the registry.
    Latest,
    /// Whatever `/srv/app/current` points to.
    Current,
    /// One exact release (prereleases allowed).
    Exact(semver::Version),
}

impl fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSpec::Latest => f.write_str("latest"),
            VersionSpec::Current => f.write_str("current"),
            VersionSpec::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl Serialize for VersionSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

const VERSION_HINT: &str =
    "give an exact version X.Y.Z (e.g. 26.8.1 or 26.9.0-beta.1), 'latest' or 'current'";

/// Check a version argument: `latest`, `current`, or semver `X.Y.Z[-pre][+build]`.
pub fn version(s: &str) -> Result<VersionSpec, Failure> {
    match s {
        "latest" => return Ok(VersionSpec::Latest),
        "current" => return Ok(VersionSpec::Current),
        _ => {}
    }
    if let Some(rest) = s.strip_prefix('v')
        && semver::Version::parse(rest).is_ok()
    {
        return Err(Failure::validation(format!("invalid version '{s}'"))
            .hint(format!("drop the leading 'v': {rest}")));
    }
    semver::Version::parse(s)
        .map(VersionSpec::Exact)
        .map_err(|e| {
            Failure::validation(format!("invalid version '{}': {e}", s.escape_default()))
                .hint(VERSION_HINT)
        })
}

const NPM_NAME_HINT: &str = "use an npm package name such as @actual-app/sync-server (lowercase, at most 214 characters, optional @scope/)";

/// Check an npm package name (the registry's rules for new packages: lowercase, URL-safe,
/// at most 214 characters, optionally scoped). It ends up in URLs and on an npm command line.
pub fn npm_package_name(s: &str) -> Result<(), Failure> {
    let bad = |why: &str| {
        Failure::validation(format!(
            "invalid npm package name '{}': {why}",
            s.escape_default()
        ))
        .hint(NPM_NAME_HINT)
    };
    if s.is_empty() || s.len() > 214 {
        return Err(bad("it must be 1-214 characters"));
    }
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '_'])
            && p.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'-' | b'.' | b'_' | b'~')
            })
    };
    let ok = match s.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, name)) => part_ok(scope) && part_ok(name),
            None => false,
        },
        None => part_ok(s),
    };
    if ok {
        Ok(())
    } else {
        Err(bad(
            "only lowercase letters, digits, '-', '.', '_', '~' and one '@scope/' prefix",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Characters systemd accepts in a unit name (unit-name.h VALID_CHARS) and in an
    /// nginx/file name without quoting.
    fn unit_safe(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\')
    }

    #[test]
    fn instance_name_examples() {
        for ok in ["a", "budget", "family-2", "a1-b2-c3", &"x".repeat(32)] {
            assert_eq!(
                instance_name(ok).map(|n| n.to_string()).ok().as_deref(),
                Some(ok)
            );
        }
        for bad in [
            "",
            "Budget",
            "1abc",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a.b",
            "a b",
            "é",
            &"x".repeat(33),
        ] {
            assert!(instance_name(bad).is_err(), "{bad:?} accepted");
        }
        for r in RESERVED_INSTANCE_NAMES {
            let e = instance_name(r).unwrap_err();
            assert!(e.message.contains("reserved"), "{}", e.message);
        }
        let e = instance_name("Budget").unwrap_err();
        assert_eq!(
            e.message,
            "invalid instance name 'Budget': 'B' is uppercase"
        );
        assert!(e.hint.is_some());
    }

    #[test]
    fn domain_examples() {
        assert_eq!(
            domain("budget.example.org").unwrap().as_str(),
            "budget.example.org"
        );
        assert_eq!(
            domain("Budget.Example.ORG").unwrap().as_str(),
            "budget.example.org"
        );
        assert_eq!(
            domain("bücher.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        for bad in [
            "",
            "localhost",
            "example.com.",
            "a..b",
            "-a.example",
            "a-.example",
            "a_b.example",
            "1.2.3.4",
            "ex ample.org",
            "a.b/c",
        ] {
            assert!(domain(bad).is_err(), "{bad:?} accepted");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(domain(&long_label).is_err());
        let long_total = vec!["a".repeat(63); 4].join(".") + ".org";
        assert!(long_total.len() > 253);
        assert!(domain(&long_total).is_err());
    }

    #[test]
    fn port_examples() {
        assert_eq!(port(1024).unwrap().get(), 1024);
        assert_eq!(port(65535).unwrap().get(), 65535);
        for bad in [-1, 0, 80, 1023, 65536, i64::MAX] {
            assert!(port(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(port_str(" 5000").unwrap().get(), 5000);
        assert!(port_str("50a").is_err());
        assert_eq!(
            port(80).unwrap_err().message,
            "port 80 is outside 1024-65535"
        );
    }

    #[test]
    fn version_examples() {
        assert_eq!(version("latest").unwrap(), VersionSpec::Latest);
        assert_eq!(version("current").unwrap(), VersionSpec::Current);
        assert_eq!(version("26.8.1").unwrap().to_string(), "26.8.1");
        assert_eq!(
            version("26.9.0-beta.1").unwrap().to_string(),
            "26.9.0-beta.1"
        );
        for bad in [
            "", "26", "26.8", "26.8.1.2", "01.2.3", "Latest", "v26.8.1", "26.8.x",
        ] {
            assert!(version(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            version("v26.8.1").unwrap_err().hint.as_deref(),
            Some("drop the leading 'v': 26.8.1")
        );
    }

    #[test]
    fn npm_names() {
        for ok in ["@actual-app/sync-server", "left-pad", "a.b_c~d"] {
            assert!(npm_package_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "Caps", "@scope", "@/x", "a/b", ".hidden", "_x", "a b", "@s/x/y",
        ] {
            assert!(npm_package_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn generated_valid_names_are_accepted_and_unit_safe(
            s in "[a-z]([a-z0-9]{1,4}-?){0,5}[a-z0-9]"
        ) {
            prop_assume!(s.len() <= INSTANCE_NAME_MAX && !s.ends_with('-'));
            prop_assume!(!RESERVED_INSTANCE_NAMES.contains(&s.as_str()));
            let n = instance_name(&s).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
            let unit = crate::domain::layout::Layout::unit_name(n.as_str());
            prop_assert!(unit.len() <= 255);
            let instance = unit.split_once('@').unwrap().1.strip_suffix(".service").unwrap();
            prop_assert!(instance.chars().all(unit_safe));
            prop_assert!(!n.as_str().contains('/'));
        }

        #[test]
        fn names_with_an_invalid_char_are_rejected(
            pre in "[a-z]{0,8}", bad in "[^a-z0-9-]", post in "[a-z0-9]{0,8}"
        ) {
            let s = format!("{pre}{bad}{post}");
            prop_assert!(instance_name(&s).is_err());
        }

        #[test]
        fn any_accepted_name_obeys_the_rules(s in "\\PC{0,40}") {
            if let Ok(n) = instance_name(&s) {
                let n = n.as_str();
                prop_assert!(n.len() <= INSTANCE_NAME_MAX);
                prop_assert!(n.starts_with(|c: char| c.is_ascii_lowercase()));
                prop_assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
                prop_assert!(!n.ends_with('-') && !n.contains("--"));
            }
        }

        #[test]
        fn ports_inside_range_accepted_outside_rejected(n in any::<i64>()) {
            let ok = (1024..=65535).contains(&n);
            prop_assert_eq!(port(n).is_ok(), ok);
            if ok {
                prop_assert_eq!(i64::from(port(n).unwrap().get()), n);
                prop_assert_eq!(port_str(&n.to_string()).unwrap().get() as i64, n);
            }
        }

        #[test]
        fn ascii_domains_are_accepted_unchanged(
            labels in proptest::collection::vec("[a-z]([a-z0-9-]{0,10}[a-z0-9])?", 2..5)
        ) {
            let s = labels.join(".");
            prop_assume!(!labels.iter().any(|l| l.len() >= 4 && &l[2..4] == "--"));
            let d = domain(&s).unwrap();
            prop_assert_eq!(d.as_str(), s.as_str());
        }

        #[test]
        fn idn_domains_round_trip_through_punycode(
            label in "[a-zäöüéñçøå]{1,12}", tld in "[a-z]{2,6}"
        ) {
            let s = format!("{label}.{tld}");
            let d = domain(&s).unwrap();
            prop_assert!(d.as_str().is_ascii());
            let (back, res) = idna::domain_to_unicode(d.as_str());
            prop_assert!(res.is_ok());
            prop_assert_eq!(back, s);
            // The ASCII form is itself valid and stable.
            prop_assert_eq!(domain(d.as_str()).unwrap(), d);
        }

        #[test]
        fn semver_versions_round_trip(
            a in 0u64..1000, b in 0u64..1000, c in 0u64..1000, pre in proptest::option::of("[a-z]{1,5}\\.[1-9][0-9]{0,2}")
        ) {
            let s = match &pre { Some(p) => format!("{a}.{b}.{c}-{p}"), None => format!("{a}.{b}.{c}") };
            prop_assert_eq!(version(&s).unwrap().to_string(), s);
        }

        #[test]
        fn non_versions_are_rejected(s in "[a-zA-Z ]{1,10}") {
            prop_assume!(s != "latest" && s != "current");
            prop_assert!(version(&s).is_err());
        }
    }
}
