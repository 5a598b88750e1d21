//! `config show`: the resolved configuration with sources.
//!
//! Read-only and lock-free: it only reports what `Ctx` already resolved, so it works for any
//! user and even while another abssctl holds the locks.

use crate::domain::config::{ConfigFile, KEYS, Source, env_var};
use crate::ops::Ctx;
use serde::Serialize;

/// The `--json` contract of `config show` (docs/config.md).
#[derive(Debug, Serialize)]
pub struct ConfigView {
    pub schema_version: u32,
    pub config_file: ConfigFile,
    pub keys: Vec<KeyView>,
}

/// One key: dotted name, resolved value, where it came from, and the variable that sets it.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub key: &'static str,
    pub value: serde_json::Value,
    pub source: Source,
    pub env: String,
}

/// Every key, in the documented order, with value and source.
pub fn show(ctx: &Ctx) -> ConfigView {
    let r = &ctx.resolved;
    ConfigView {
        schema_version: crate::ops::report::JSON_SCHEMA_VERSION,
        config_file: r.file.clone(),
        keys: KEYS
            .iter()
            .map(|d| KeyView {
                key: d.key,
                value: r.value(d.key),
                source: r.sources.get(d.key).cloned().unwrap_or(Source::Default),
                env: env_var(d.key),
            })
            .collect(),
    }
}
