//! Shared by the CLI test files: the real binary with a clean environment, relocated into a
//! temp root (ABSSCTL_ROOT), so a test never touches the machine's own abssctl tree.

use assert_cmd::Command;
use std::path::Path;

/// `abssctl` with only PATH and ABSSCTL_ROOT set.
pub fn abssctl(root: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("abssctl"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ABSSCTL_ROOT", root);
    c
}
