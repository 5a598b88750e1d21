//! The process environment, read in one place.

/// All ABSSCTL_* variables (config layer input; `domain::config` decides what each means
/// and refuses unknown ones). Read with `vars_os` because `std::env::vars` panics when ANY
/// variable, even an unrelated one, is not UTF-8; an ABSSCTL_* value that is not UTF-8 is
/// converted lossily and then fails or shows up in validation like any other bad value.
pub fn abssctl_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with("ABSSCTL_")
                .then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Running under CI (for the audit actor type).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}
