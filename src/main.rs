//! The `abssctl` binary: everything lives in the library; this only maps to an exit code.

fn main() {
    // Test builds with the `failpoints` feature read FAILPOINTS from the environment
    // (docs/testing.md); the shipped build has no failpoints at all.
    #[cfg(feature = "failpoints")]
    let scenario = fail::FailScenario::setup();
    let rc = abssctl::cli::main();
    #[cfg(feature = "failpoints")]
    scenario.teardown();
    std::process::exit(rc);
}
