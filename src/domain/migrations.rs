//! Which data migrations a version of the server knows, and which ones a data directory has
//! run: the facts behind refusing a downgrade.
//!
//! Actual migrates its data one way on start and an older server refuses data that ran a
//! migration it does not have ("Missing migration file"), so "is this version older than
//! the data?" is answered by the migrations themselves, not by comparing version numbers:
//! two releases with the same migration set can replace each other freely.
//!
//! Where the names come from (measured on the published packages):
//! - up to 25.x: one file per migration in `build/migrations/<ts>-<name>.js`;
//! - 26.x: bundled chunks; the loader `build/chunks/migrations-<hash>.js` maps each
//!   `"../migrations/<ts>-<name>.js"` to its chunk, so the names are read from its text.
//! - the data: `$DATA/.migrate`, node-migrate's state (`{"lastRun", "migrations":[{"title"}]}`).

use anyhow::{Context, Result};

/// The migration titles (`<13-digit timestamp>-<name>.js`) named in a 26.x loader chunk.
pub fn from_loader_source(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split("\"../migrations/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|t| is_title(t))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Is `name` a migration file name (`<digits>-<name>.js`)?
pub fn is_title(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".js") else {
        return false;
    };
    let Some((ts, rest)) = stem.split_once('-') else {
        return false;
    };
    ts.len() >= 10 && ts.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()
}

/// The migrations a data directory ran, from the text of its `.migrate` file.
pub fn applied(migrate_json: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Record {
        title: String,
    }
    #[derive(serde::Deserialize)]
    struct StateFile {
        #[serde(rename = "lastRun", default)]
        last_run: Option<String>,
        #[serde(default)]
        migrations: Vec<Record>,
    }
    let s: StateFile = serde_json::from_str(migrate_json).context("parsing .migrate")?;
    let mut out: Vec<String> = s.migrations.into_iter().map(|r| r.title).collect();
    out.extend(s.last_run);
    out.sort();
    out.dedup();
    Ok(out)
}

/// The migrations the data ran that `known` lacks (non-empty: that version refuses it).
pub fn unknown_to(applied: &[String], known: &[String]) -> Vec<String> {
    applied
        .iter()
        .filter(|a| !known.contains(a))
        .cloned()
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    const LOADER: &str = r#"var migrationsLoaders = Object.assign({
	"../migrations/1694360000000-create-folders.js": () => import("./1694360000000-create-folders-CxYRhIH1.js"),
	"../migrations/1763873568237-server-global-prefs.js": () => import("./1763873568237-server-global-prefs-jcAahuMw.js"),
	"../migrations/1763873600000-backfill-files-owner.js": () => import("./x.js")
});"#;

    #[test]
    fn reads_the_loader_chunk() {
        assert_eq!(
            from_loader_source(LOADER),
            vec![
                "1694360000000-create-folders.js",
                "1763873568237-server-global-prefs.js",
                "1763873600000-backfill-files-owner.js"
            ]
        );
        assert!(from_loader_source("no migrations here").is_empty());
    }

    #[test]
    fn titles() {
        assert!(is_title("1719409568000-multiuser.js"));
        assert!(!is_title("multiuser.js"));
        assert!(!is_title("1719409568000-.js"));
        assert!(!is_title("1719409568000-multiuser.js.map"));
        assert!(!is_title("12-x.js"));
    }

    #[test]
    fn applied_and_unknown() {
        let m = r#"{"lastRun":"1763873600000-backfill-files-owner.js","migrations":[
            {"title":"1694360000000-create-folders.js","timestamp":1},
            {"title":"1763873600000-backfill-files-owner.js","timestamp":2}]}"#;
        let a = applied(m).unwrap();
        assert_eq!(a.len(), 2);
        let old = vec!["1694360000000-create-folders.js".to_string()];
        assert_eq!(
            unknown_to(&a, &old),
            vec!["1763873600000-backfill-files-owner.js"]
        );
        assert!(unknown_to(&a, &from_loader_source(LOADER)).is_empty());
        assert!(applied("{not json").is_err());
        assert!(applied("{}").unwrap().is_empty());
    }
}
