//! The pure half of transient units: the properties a sandboxed command is started with,
//! and how the unit's PropertiesChanged signals are read while it runs.

use super::TransientSpec;
use anyhow::{Context, Result};
use std::collections::HashMap;
use zbus_systemd::zbus::{OwnedVariant, Variant};

/// systemd's "unset" marker for 64-bit numbers (e.g. MemoryCurrent without accounting).
pub(super) const U64_UNSET: u64 = u64::MAX;
/// systemd's "unset" marker for a uid.
pub(super) const UID_UNSET: u32 = u32::MAX;

/// The D-Bus interfaces whose PropertiesChanged carry ActiveState and UID.
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";

fn variant<'a>(v: impl Into<Variant<'a>>) -> Result<OwnedVariant> {
    OwnedVariant::try_from(v.into()).context("encoding a D-Bus property")
}

/// The unit properties of a transient sandboxed command, as systemd's D-Bus API wants them.
/// Type=exec makes the start job fail if the binary cannot be executed; AddRef keeps the
/// unit loaded until we have read its result even with CollectMode=inactive-or-failed.
pub(super) fn transient_properties(spec: &TransientSpec) -> Result<Vec<(String, OwnedVariant)>> {
    let program = spec
        .argv
        .first()
        .ok_or_else(|| anyhow::anyhow!("transient unit {} has an empty command", spec.unit))?
        .clone();
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let writable: Vec<String> = spec
        .writable
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let exec_start = vec![(program, spec.argv.clone(), false)];
    let mut props = vec![
        (
            "Description".to_string(),
            variant(format!("abssctl: {}", spec.argv.join(" ")))?,
        ),
        ("Type".into(), variant("exec")?),
        ("ExecStart".into(), variant(exec_start)?),
        (
            "WorkingDirectory".into(),
            variant(spec.working_dir.to_string_lossy().into_owned())?,
        ),
        ("Environment".into(), variant(env)?),
        ("ProtectSystem".into(), variant("strict")?),
        ("ProtectHome".into(), variant("yes")?),
        ("PrivateTmp".into(), variant(true)?),
        ("PrivateDevices".into(), variant(true)?),
        ("NoNewPrivileges".into(), variant(true)?),
        // A build must not leave setuid files or world-writable modes behind, and every
        // process it starts dies with the unit (npm's children included).
        ("RestrictSUIDSGID".into(), variant(true)?),
        ("UMask".into(), variant(0o022u32)?),
        ("KillMode".into(), variant("control-group")?),
        ("ProtectKernelTunables".into(), variant(true)?),
        ("ProtectKernelModules".into(), variant(true)?),
        ("LockPersonality".into(), variant(true)?),
        ("ReadWritePaths".into(), variant(writable)?),
        ("RemainAfterExit".into(), variant(false)?),
        ("CollectMode".into(), variant("inactive-or-failed")?),
        ("AddRef".into(), variant(true)?),
    ];
    match &spec.user {
        // User= alone: systemd runs it with the user's primary group (a group named like
        // the user need not exist: Debian's nobody is in nogroup).
        Some(user) => props.push(("User".into(), variant(user.clone())?)),
        None => props.push(("DynamicUser".into(), variant(true)?)),
    }
    if !spec.timeout.is_zero() {
        let usec = u64::try_from(spec.timeout.as_micros()).unwrap_or(U64_UNSET - 1);
        props.push(("RuntimeMaxUSec".into(), variant(usec)?));
    }
    Ok(props)
}

/// An ActiveState from which a transient command will not come back.
pub(super) fn has_ended(active_state: &str) -> bool {
    active_state == "inactive" || active_state == "failed"
}

/// What one PropertiesChanged signal of a running unit tells us.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct UnitChange {
    /// The new ActiveState, when the signal carries it.
    pub active_state: Option<String>,
    /// ActiveState changed but its value was not sent (invalidated): read it.
    pub reread_state: bool,
    /// The uid the unit runs as, when the signal carries a set one.
    pub uid: Option<u32>,
}

/// Read a PropertiesChanged signal (`interface`, changed properties, invalidated names) of
/// a unit: ActiveState comes on the Unit interface, UID on the Service interface.
pub(super) fn unit_change(
    interface: &str,
    changed: &HashMap<&str, Variant<'_>>,
    invalidated: &[&str],
) -> Result<UnitChange> {
    let mut out = UnitChange::default();
    match interface {
        UNIT_IFACE => {
            if let Some(v) = changed.get("ActiveState") {
                let state: &str = v.downcast_ref().context("decoding ActiveState")?;
                out.active_state = Some(state.to_string());
            } else {
                out.reread_state = invalidated.contains(&"ActiveState");
            }
        }
        SERVICE_IFACE => {
            if let Some(v) = changed.get("UID") {
                let uid: u32 = v.downcast_ref().context("decoding UID")?;
                out.uid = Some(uid).filter(|u| *u != UID_UNSET);
            }
        }
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn transient_properties_sandbox_the_command() {
        let spec = TransientSpec {
            unit: "abssctl-build-x.service".into(),
            argv: vec![
                "/opt/node/bin/node".into(),
                "npm-cli.js".into(),
                "ci".into(),
            ],
            env: BTreeMap::from([("HOME".into(), "/srv/app/.staging/x".into())]),
            working_dir: "/srv/app/.staging/x".into(),
            writable: vec!["/srv/app/.staging/x".into()],
            timeout: Duration::from_secs(600),
            user: None,
        };
        let props = transient_properties(&spec).expect("props");
        let get = |k: &str| {
            props
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| format!("{:?}", **v))
                .unwrap_or_else(|| panic!("{k} missing"))
        };
        assert!(get("DynamicUser").contains("true"));
        assert!(get("ProtectSystem").contains("strict"));
        assert!(get("CollectMode").contains("inactive-or-failed"));
        assert!(get("ReadWritePaths").contains("/srv/app/.staging/x"));
        assert!(get("Environment").contains("HOME=/srv/app/.staging/x"));
        assert!(get("ExecStart").contains("npm-cli.js"));
        assert!(get("RuntimeMaxUSec").contains("600000000"));
        let sig = props
            .iter()
            .find(|(n, _)| n == "ExecStart")
            .map(|(_, v)| v.value_signature().to_string())
            .expect("ExecStart");
        assert_eq!(sig, "a(sasb)");
        assert!(get("RestrictSUIDSGID").contains("true"));
        let named = transient_properties(&TransientSpec {
            user: Some("abssctl-build".into()),
            ..spec
        })
        .expect("props");
        assert!(named.iter().all(|(n, _)| n != "DynamicUser"));
        assert!(named.iter().all(|(n, _)| n != "Group"), "primary group");
        assert!(
            named
                .iter()
                .any(|(n, v)| n == "User" && format!("{:?}", **v).contains("abssctl-build"))
        );
    }

    #[test]
    fn empty_command_is_refused() {
        let spec = TransientSpec::default();
        assert!(transient_properties(&spec).is_err());
    }

    #[test]
    fn only_inactive_and_failed_have_ended() {
        for s in ["inactive", "failed"] {
            assert!(has_ended(s), "{s}");
        }
        for s in [
            "active",
            "activating",
            "deactivating",
            "reloading",
            "maintenance",
        ] {
            assert!(!has_ended(s), "{s}");
        }
    }

    #[test]
    fn property_changes_give_state_and_uid() {
        let unit = HashMap::from([
            ("ActiveState", Variant::from("deactivating")),
            ("SubState", Variant::from("stop-sigterm")),
        ]);
        assert_eq!(
            unit_change(UNIT_IFACE, &unit, &[]).unwrap(),
            UnitChange {
                active_state: Some("deactivating".into()),
                ..UnitChange::default()
            }
        );
        let invalidated = unit_change(UNIT_IFACE, &HashMap::new(), &["ActiveState"]).unwrap();
        assert!(invalidated.reread_state && invalidated.active_state.is_none());
        let other = unit_change(UNIT_IFACE, &HashMap::new(), &["SubState"]).unwrap();
        assert_eq!(other, UnitChange::default());

        let service = HashMap::from([("UID", Variant::from(61234u32))]);
        assert_eq!(
            unit_change(SERVICE_IFACE, &service, &[]).unwrap().uid,
            Some(61234)
        );
        // The dynamic user released at stop is no uid.
        let released = HashMap::from([("UID", Variant::from(UID_UNSET))]);
        assert_eq!(
            unit_change(SERVICE_IFACE, &released, &[]).unwrap().uid,
            None
        );
        // ActiveState on another interface is not the unit's.
        let elsewhere = HashMap::from([("ActiveState", Variant::from("inactive"))]);
        assert_eq!(
            unit_change("org.example.Other", &elsewhere, &[]).unwrap(),
            UnitChange::default()
        );
        let wrong_type = HashMap::from([("ActiveState", Variant::from(3u32))]);
        assert!(unit_change(UNIT_IFACE, &wrong_type, &[]).is_err());
    }
}
