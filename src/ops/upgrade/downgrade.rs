//! The downgrade refusal: a version that lacks a migration the data already ran would
//! refuse the data ("Missing migration file"), so binding it is refused before anything
//! changes, with the way back that works: a snapshot from before the upgrade.

use crate::domain::layout::Layout;
use crate::domain::migrations;
use crate::error::Failure;
use crate::sys;
use anyhow::Result;
use std::path::Path;

/// The migrations an installed version directory ships (`None`: its layout is unknown).
pub fn known(version_dir: &Path) -> Result<Option<Vec<String>>> {
    let build = version_dir.join("node_modules/@actual-app/sync-server/build");
    if let Some(names) = sys::fs::list_names(&build.join("migrations"))? {
        return Ok(Some(
            names
                .into_iter()
                .filter(|n| migrations::is_title(n))
                .collect(),
        ));
    }
    let Some(chunks) = sys::fs::list_names(&build.join("chunks"))? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    let mut found = false;
    for c in chunks
        .iter()
        .filter(|c| c.starts_with("migrations-") && c.ends_with(".js"))
    {
        if let Some(text) = sys::fs::read_optional(&build.join("chunks").join(c))? {
            found = true;
            out.extend(migrations::from_loader_source(&text));
        }
    }
    out.sort();
    out.dedup();
    Ok((found && !out.is_empty()).then_some(out))
}

/// The migrations the data of `name` ran (empty: it never started).
pub fn applied(layout: &Layout, name: &str) -> Result<Vec<String>> {
    let path = layout.data_dir(name).join(".migrate");
    match sys::fs::read_optional(&path)? {
        None => Ok(Vec::new()),
        Some(text) => migrations::applied(&text).map_err(|e| {
            Failure::environment(format!("cannot read {}: {e:#}", path.display()))
                .hint("the instance's migration state is damaged; restore a backup: abssctl backup list")
                .into()
        }),
    }
}

/// Refuse to run the data of `name` on `version` (installed in `version_dir`) when the
/// data ran migrations that version does not have.
pub fn check(layout: &Layout, name: &str, version: &str, version_dir: &Path) -> Result<()> {
    let applied = applied(layout, name)?;
    if applied.is_empty() {
        return Ok(());
    }
    let Some(known) = known(version_dir)? else {
        // A tree whose migrations cannot be read: the server itself will say if it
        // refuses the data, and the upgrade's health gate rolls it back.
        tracing::warn!(
            "cannot tell which migrations Actual {version} has; relying on the health gate"
        );
        return Ok(());
    };
    let unknown = migrations::unknown_to(&applied, &known);
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Failure::validation(format!(
        "the data of '{name}' was migrated beyond Actual {version} (it ran {}), so that version would refuse it",
        unknown.join(", ")
    ))
    .hint(format!(
        "go back with the data from before the upgrade: abssctl instance rollback {name}"
    ))
    .into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    fn tree(dir: &Path, files: &[(&str, &str)]) {
        for (rel, text) in files {
            let p = dir
                .join("node_modules/@actual-app/sync-server/build")
                .join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    #[test]
    fn reads_both_layouts() {
        let d = tempfile::tempdir().unwrap();
        let old = d.path().join("v25");
        tree(
            &old,
            &[
                ("migrations/1694360000000-create-folders.js", ""),
                ("migrations/1719409568000-multiuser.js", ""),
                ("migrations/README.md", ""),
            ],
        );
        assert_eq!(
            known(&old).unwrap().unwrap(),
            vec![
                "1694360000000-create-folders.js",
                "1719409568000-multiuser.js"
            ]
        );
        let new = d.path().join("v26");
        tree(
            &new,
            &[(
                "chunks/migrations-Ck4ojuhP.js",
                r#"{"../migrations/1694360000000-create-folders.js": () => 1,
                   "../migrations/1763873600000-backfill-files-owner.js": () => 2}"#,
            )],
        );
        assert_eq!(known(&new).unwrap().unwrap().len(), 2);
        assert_eq!(known(&d.path().join("none")).unwrap(), None);
    }
}
