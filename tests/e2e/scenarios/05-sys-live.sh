#!/bin/bash
# e2e-network: private
#
# The crate's own live tests: the unit tests marked #[ignore] because they need a real
# systemd on the system bus (src/sys/*: transient units, jobs, unit status, ...). Nothing
# else runs them: the test binary is built on the host (`cargo test --no-run --lib`, the
# same profile `tests/run-all` has just built), copied in through the share dir and run
# with --ignored as root inside this container, against its systemd as PID 1. A live test
# is added by marking it `#[ignore = "needs systemd on the system bus (real tier)"]`.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

step "build the unit-test binary on the host"
out=$(cd "$REPO_ROOT" && cargo test --locked --no-run --lib 2>&1) || {
    echo "$out" | tail -20
    die "cargo test --no-run --lib failed"
}
bin=$(sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))$/\1/p' <<<"$out" | tail -1)
[[ $bin == /* ]] || bin=$REPO_ROOT/$bin
must "the lib's test binary exists ($bin)" test -x "$bin"
ct_copy_in "$bin" abssctl-lib-tests >/dev/null

step "the #[ignore]d live tests, against the container's systemd over D-Bus"
in_ct env DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket RUST_BACKTRACE=1 \
    /share/abssctl-lib-tests --ignored --test-threads=1 >"$CT_SHARE/live.out" 2>&1
rc=$?
sed 's/^/    /' "$CT_SHARE/live.out" | grep -E '^    (test |test result|failures|---- )' || true
check "every live test passed (exit $rc)" test "$rc" = 0
passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$CT_SHARE/live.out")
check "at least one live test ran (ran: ${passed:-none})" test "${passed:-0}" -ge 1
check "real_systemd_transient_and_jobs is among them" \
    grep -q '^test sys::systemd::tests::real_systemd_transient_and_jobs \.\.\. ok$' "$CT_SHARE/live.out"
check "real_systemd_cancels_a_start_that_outlives_its_timeout is among them" \
    grep -q '^test sys::systemd::tests::real_systemd_cancels_a_start_that_outlives_its_timeout \.\.\. ok$' "$CT_SHARE/live.out"
check "real_systemd_private_reads_are_the_bus_reads is among them" \
    grep -q '^test sys::systemd::tests::real_systemd_private_reads_are_the_bus_reads \.\.\. ok$' "$CT_SHARE/live.out"
check "the slow test unit was cleaned up" \
    in_ct test ! -e /run/systemd/system/abssctl-test-slow.service

scenario_end
