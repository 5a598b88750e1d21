#!/usr/bin/env bash
# tklbam/hooks.d/abssctl against fakes of abssctl, systemctl and nginx first on PATH: for
# each (op, state) pair TKLBAM calls it with, the commands it runs and its exit code.
# CPU tier, no root needed. Run: tests/tklbam/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HOOK=$PWD/tklbam/hooks.d/abssctl

pass=0
fail=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$1"; }
not_ok() {
    fail=$((fail + 1))
    printf 'FAIL %s\n' "$1"
    printf '  output:\n'
    sed 's/^/    /' "$W/out"
    printf '  calls:\n'
    sed 's/^/    /' "$W/calls"
}

# A fresh world: fake tools, an instance list, backup lists, data dirs.
setup() {
    W=$(mktemp -d)
    mkdir -p "$W/bin"
    : >"$W/calls"
    cat >"$W/bin/abssctl" <<'EOF'
#!/usr/bin/env bash
echo "abssctl $*" >>"$FAKE/calls"
case "$*" in
"--json instance list")
    [ -e "$FAKE/list-fails" ] && { echo "error: registry broken" >&2; exit 2; }
    cat "$FAKE/instances.json" ;;
"--json backup list "*) cat "$FAKE/backups-${4}.json" 2>/dev/null || echo '{"backups": []}' ;;
"--yes --quiet backup create "*) [ ! -e "$FAKE/create-fails-$5" ] || { echo "error: snapshot failed" >&2; exit 3; } ;;
"--yes --quiet backup restore "*) [ ! -e "$FAKE/restore-fails" ] || exit 4 ;;
"--yes --quiet instance restart "*) [ ! -e "$FAKE/restart-fails-$5" ] || exit 4 ;;
esac
exit 0
EOF
    for t in systemctl nginx; do
        cat >"$W/bin/$t" <<EOF
#!/bin/sh
echo "$t \$*" >>"\$FAKE/calls"
case "\$*" in "-q is-enabled abssctl-backup@a.timer") exit 0 ;; "-q is-enabled"*) exit 1 ;; esac
exit 0
EOF
    done
    chmod +x "$W/bin/"*
    mkdir -p "$W/srv/a/data" "$W/srv/b/data" "$W/srv/c/data"
    echo db >"$W/srv/a/data/account.sqlite"
    echo db >"$W/srv/c/data/account.sqlite"
    # a: running and enabled; b: stopped, enabled, its data dir empty; c: stopped, disabled.
    cat >"$W/instances.json" <<EOF
{"schema_version": 1, "instances": [
 {"name": "a", "active_state": "active", "enabled": "enabled", "data_dir": "$W/srv/a/data"},
 {"name": "b", "active_state": "inactive", "enabled": "enabled", "data_dir": "$W/srv/b/data"},
 {"name": "c", "active_state": "inactive", "enabled": "disabled", "data_dir": "$W/srv/c/data"}
]}
EOF
    cat >"$W/backups-b.json" <<'EOF'
{"schema_version": 1, "backups": [
 {"id": "20261201-030000-b-aaaa", "reason": "tklbam", "status": "present", "created_at": "2026-12-01T03:00:00Z"},
 {"id": "20261202-030000-b-bbbb", "reason": "tklbam", "status": "present", "created_at": "2026-12-02T03:00:00Z"},
 {"id": "20261202-040000-b-cccc", "reason": "manual", "status": "present", "created_at": "2026-12-02T04:00:00Z"},
 {"id": "20261203-030000-b-dddd", "reason": "tklbam", "status": "missing", "created_at": "2026-12-03T03:00:00Z"}
]}
EOF
}

# run_hook ARGS...: the hook with the fakes first on PATH; sets $rc.
run_hook() {
    set +e
    FAKE=$W PATH="$W/bin:$PATH" "$HOOK" "$@" >"$W/out" 2>&1
    rc=$?
    set -e
}

called() { grep -qxF -- "$1" "$W/calls"; }
said() { grep -qF -- "$1" "$W/out"; }

check() { # check NAME CONDITION...
    local name=$1
    shift
    if "$@"; then ok "$name"; else not_ok "$name"; fi
}

# --- backup pre ---------------------------------------------------------------------
setup
run_hook backup pre
check "backup pre: every instance snapshotted, exit 0" eval '[ $rc = 0 ] &&
    called "abssctl --yes --quiet backup create a --reason tklbam" &&
    called "abssctl --yes --quiet backup create b --reason tklbam" &&
    called "abssctl --yes --quiet backup create c --reason tklbam" &&
    said "snapshot of '\''a'\'' taken"'
rm -rf "$W"

setup
touch "$W/create-fails-b"
run_hook backup pre
check "backup pre: a stopped instance's failed snapshot warns, exit 0" eval '[ $rc = 0 ] &&
    said "warning: no snapshot of '\''b'\'' (stopped)" &&
    called "abssctl --yes --quiet backup create c --reason tklbam"'
rm -rf "$W"

setup
touch "$W/create-fails-a"
run_hook backup pre
check "backup pre: a running instance's failed snapshot aborts TKLBAM (exit 1), the others still taken" eval '[ $rc = 1 ] &&
    said "ERROR: the snapshot of running '\''a'\''" &&
    called "abssctl --yes --quiet backup create b --reason tklbam"'
rm -rf "$W"

setup
sed -i 's/"active_state": "inactive", "enabled": "disabled"/"active_state": null, "enabled": null/' "$W/instances.json"
touch "$W/create-fails-c"
run_hook backup pre
check "backup pre: an instance of unknown state counts as running (exit 1)" eval '[ $rc = 1 ] && said "running '\''c'\'' (unknown)"'
rm -rf "$W"

setup
touch "$W/list-fails"
run_hook backup pre
check "backup pre: no instance list aborts (exit 1) and says why" eval '[ $rc = 1 ] && said "could not list the instances" &&
    ! grep -q "backup create" "$W/calls"'
rm -rf "$W"

setup
echo '{"schema_version": 1, "instances": []}' >"$W/instances.json"
run_hook backup pre
check "backup pre: no instances, exit 0" eval '[ $rc = 0 ] && said "no instances"'
rm -rf "$W"

setup
set +e
ABSSCTL=$W/no-such-abssctl FAKE=$W PATH="$W/bin:$PATH" "$HOOK" backup pre >"$W/out" 2>&1
rc=$?
set -e
check "backup pre: abssctl not installed, exit 0" eval '[ $rc = 0 ] && said "not installed" && [ ! -s "$W/calls" ]'
rm -rf "$W"

# --- restore post -------------------------------------------------------------------
setup
run_hook restore post
check "restore post: reload, reconcile, empty instance restored from its newest present tklbam snapshot" eval '[ $rc = 0 ] &&
    called "systemctl daemon-reload" &&
    called "abssctl --yes --quiet backup reconcile --all" &&
    called "abssctl --yes --quiet backup restore 20261202-030000-b-bbbb --no-backup" &&
    [ "$(grep -c "backup restore" "$W/calls")" = 1 ] &&
    said "'\''b'\'' restored from backup 20261202-030000-b-bbbb"'
check "restore post: nginx tested then reloaded" eval 'called "nginx -t -q" && called "systemctl reload nginx" &&
    [ "$(grep -n "nginx -t" "$W/calls" | cut -d: -f1)" -lt "$(grep -n "reload nginx" "$W/calls" | cut -d: -f1)" ]'
check "restore post: enabled instances restarted, the restored one and the disabled one not" eval '
    called "abssctl --yes --quiet instance restart a" &&
    ! grep -q "instance restart b" "$W/calls" && ! grep -q "instance restart c" "$W/calls" &&
    said "'\''c'\'' left as it is (disabled at boot)"'
check "restore post: enabled backup timers started" eval 'called "systemctl start abssctl-backup@a.timer" &&
    ! called "systemctl start abssctl-backup@b.timer"'
rm -rf "$W"

setup
rm -rf "$W/srv/b"
sed -i 's/"reason": "tklbam"/"reason": "scheduled"/' "$W/backups-b.json"
run_hook restore post
check "restore post: a missing data dir is made, no tklbam snapshot -> the newest present one" eval '[ $rc = 0 ] &&
    [ -d "$W/srv/b/data" ] && [ "$(stat -c %a "$W/srv/b/data")" = 700 ] &&
    called "abssctl --yes --quiet backup restore 20261202-040000-b-cccc --no-backup"'
rm -rf "$W"

setup
touch "$W/restore-fails" "$W/restart-fails-a"
run_hook restore post
check "restore post: failed restore and restart are warnings, exit 0" eval '[ $rc = 0 ] &&
    said "warning: restoring '\''b'\''" && said "warning: '\''a'\'' did not restart healthy" &&
    ! grep -q "instance restart b" "$W/calls" && said "'\''b'\'' not started: its data is missing"'
rm -rf "$W"

setup
echo '{"backups": []}' >"$W/backups-b.json"
run_hook restore post
check "restore post: no backup for an empty instance is said, exit 0" eval '[ $rc = 0 ] &&
    said "'\''b'\'' has no data and no backup" && ! grep -q "backup restore" "$W/calls" &&
    ! grep -q "instance restart b" "$W/calls"'
rm -rf "$W"

setup
touch "$W/list-fails"
run_hook restore post
check "restore post: no instance list is a warning, exit 0" eval '[ $rc = 0 ] && said "could not list the instances"'
rm -rf "$W"

setup
set +e
ABSSCTL=$W/no-such-abssctl FAKE=$W PATH="$W/bin:$PATH" "$HOOK" restore post >"$W/out" 2>&1
rc=$?
set -e
check "restore post: abssctl not installed says what to run, exit 0" eval '[ $rc = 0 ] && said "restore post" && [ ! -s "$W/calls" ]'
rm -rf "$W"

# --- every other pair: nothing ------------------------------------------------------
for pair in "backup inspect" "backup post" "restore pre" "restore inspect" "" "bogus pre"; do
    setup
    # shellcheck disable=SC2086 # the pair is two words on purpose
    run_hook $pair
    check "'$pair': nothing done, exit 0" eval '[ $rc = 0 ] && [ ! -s "$W/calls" ] && [ ! -s "$W/out" ]'
    rm -rf "$W"
done

printf '\ntklbam hook: %d passed, %d failed\n' "$pass" "$fail"
[ "$fail" = 0 ]
