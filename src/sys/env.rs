//! The process environment, read in one place.

/// All ABSSCTL_* variables (config layer input).
pub fn abssctl_vars() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| k.starts_with("ABSSCTL_")).collect()
}

/// Running under CI (for the audit actor type).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}
