#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual for real when this package has no cached tree)
#
# Rollbacks on the real machine (issue 8 item 7): a failpoints build of abssctl
# (`cargo build --features failpoints`, its own target dir, never the packaged binary) is put
# beside the shipped one as /usr/local/sbin/abssctl-fp. For every step k of instance create,
# set-port, set-domain, set-version, version switch, rename, delete and backup restore (the steps taken
# from the command's own `--dry-run --json` plan, so the matrix grows with the code), the
# command is made to fail right after step k applied (FAILPOINTS=txn-after-step-<k>=return:
# step k's own undo runs too) against real systemd, nginx and Actual servers, and:
#   - it exits 1 with the failpoint's error;
#   - the box is as it was: registry, unit drop-ins and enablement links (the instances'
#     and their backup timers'), vhost files and links, instance dirs (paths, modes, owners, sizes, sha256), `current`, the actual-*
#     accounts and groups, each unit's is-active / is-enabled (snapshot below);
#   - every instance that served before serves again (GET /health on its port and through
#     its vhost);
#   - the operations log got one record: rc 1, the same planned_actions as the dry run,
#     rolled_back true, effects_kept = the irreversible steps among 1..k, changed = whether
#     any are kept; and when one is kept, the box shows exactly that effect.
# What a command may legitimately change is not compared: logs, the journal, nginx's and
# the servers' runtime files.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

VERSION=26.9.0 # the version 30 and 40 use, so the seeded tree is shared
# A second version for set-version and version switch: $VERSION's tree hard-linked under
# another number (no second install; what these commands change is the link, the drop-ins
# and the processes, not the server code).
ALIAS=0.0.2
NAMES="alpha beta gamma delta" # every instance a case may touch (the snapshot covers them)
CASES=0
T_MATRIX=$SECONDS

step "a failpoints build of abssctl beside the shipped one"
# The debug target dir: tests/run-all has just built the same feature set there for
# tests/cli_failpoints.rs, so only the binary links (a separate target dir recompiled every
# dependency, minutes on a CI machine). It is copied out at once; the packaged binary is
# target/release's, checked by build-deb to have no failpoints.
t=$SECONDS
out=$(cd "$REPO_ROOT" && cargo build --locked --features failpoints --bin abssctl \
    --message-format short 2>&1) || {
    echo "$out" | tail -n 30 >&2
    die "cargo build --features failpoints failed"
}
FP_BIN=$REPO_ROOT/target/abssctl-failpoints
cp "$REPO_ROOT/target/debug/abssctl" "$FP_BIN"
log "failpoints build in $((SECONDS - t)) s"
must "installed as /usr/local/sbin/abssctl-fp" \
    in_ct install -m 0755 "$(ct_copy_in "$FP_BIN" abssctl-fp)" /usr/local/sbin/abssctl-fp
check "the shipped /usr/bin/abssctl contains no failpoint, the test build does" in_ct_sh '
    ! grep -qa -e txn-after-step- -e FAILPOINTS /usr/bin/abssctl
    grep -qa txn-after-step- /usr/local/sbin/abssctl-fp && grep -qa FAILPOINTS /usr/local/sbin/abssctl-fp'
check "the shipped binary ignores FAILPOINTS (reserve and release succeed)" in_ct_sh '
    FAILPOINTS=txn-after-step-1=return abssctl ports reserve fp-probe --port 6999
    FAILPOINTS=txn-after-step-1=return abssctl ports release fp-probe'

step "machine: system certificate, Actual $VERSION current, $ALIAS beside it, instances alpha and beta"
in_ct_sh 'mkdir -p -m 0700 /etc/ssl/private
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=turnkey \
        -keyout /etc/ssl/private/cert.key -out /etc/ssl/private/cert.pem 2>/dev/null
    chmod 0400 /etc/ssl/private/cert.key /etc/ssl/private/cert.pem'
ct_seed_version "$VERSION" || die "could not seed Actual $VERSION"
must "version switch $VERSION" in_ct abssctl -y version switch "$VERSION" --no-backup
# Its own package.json too (a new file, not the hard link): /info reads the version from
# it, and the health gate of set-version and switch checks that the new version answers.
must "v$ALIAS: a hard-linked copy of v$VERSION with its own manifest and package.json" in_ct_sh "
    cp -al /srv/app/v$VERSION /srv/app/v$ALIAS && rm /srv/app/v$ALIAS/manifest.json
    jq '.version=\"$ALIAS\"' /srv/app/v$VERSION/manifest.json >/srv/app/v$ALIAS/manifest.json
    pj=node_modules/@actual-app/sync-server/package.json
    rm /srv/app/v$ALIAS/\$pj
    jq '.version=\"$ALIAS\"' /srv/app/v$VERSION/\$pj >/srv/app/v$ALIAS/\$pj
    abssctl --json version list | jq -e '[.versions[] | select(.installed) | .version] | index(\"$ALIAS\") != null'"
echo 'Correct-Horse-1' >"$CT_SHARE/pw"
must "create alpha (alpha.test, port 5000)" \
    in_ct abssctl instance create alpha --domain alpha.test --port 5000 --password-file /share/pw
must "create beta (beta.test, port 5001)" \
    in_ct abssctl instance create beta --domain beta.test --port 5001 --password-file /share/pw

# The snapshot: what a rolled-back command must leave as it found it (run inside).
cat >"$CT_SHARE/snap.sh" <<'EOF'
#!/bin/sh
# snap.sh <instance names...>
set -e
cd /
paths=var/lib/abssctl/registry
for p in etc/systemd/system/actual-sync@* etc/systemd/system/*.wants/actual-sync@* \
    etc/systemd/system/abssctl-backup@* etc/systemd/system/*.wants/abssctl-backup@* \
    etc/nginx/sites-available/abssctl-* etc/nginx/sites-enabled/abssctl-* srv/app/current; do
    if [ -e "$p" ] || [ -L "$p" ]; then paths="$paths $p"; fi
done
for n in "$@"; do
    if [ -e "srv/$n" ]; then paths="$paths srv/$n"; fi
done
# (No size for directories: ext4 never shrinks one, so a file made and removed again shows.)
# shellcheck disable=SC2086
{
    find $paths -type d -printf '%p %M %u %g dir\n'
    find $paths ! -type d -printf '%p %M %u %g %s %l\n'
} | sort
# shellcheck disable=SC2086
find $paths -type f -print0 | sort -z | xargs -0 -r sha256sum
for db in passwd group shadow; do getent "$db" | grep '^actual-' | sort; done
for n in "$@"; do
    echo "actual-sync@$n: $(systemctl is-active "actual-sync@$n.service") $(systemctl is-enabled "actual-sync@$n.service" 2>&1)"
    echo "abssctl-backup@$n: $(systemctl is-active "abssctl-backup@$n.timer") $(systemctl is-enabled "abssctl-backup@$n.timer" 2>&1)"
done
EOF
snap() { in_ct sh /share/snap.sh $NAMES; }
# serving "<port> <domain>"...: each instance answers /health on its port and via its vhost.
serving() {
    local pd port domain
    for pd in "$@"; do
        read -r port domain <<<"$pd"
        in_ct curl -sf "http://127.0.0.1:$port/health" | grep -q UP ||
            { echo "127.0.0.1:$port/health does not answer UP"; return 1; }
        in_ct_sh "for i in \$(seq 1 25); do
            curl -sfk --resolve $domain:443:127.0.0.1 https://$domain/health | grep -q UP && exit 0
            sleep 0.2; done; exit 1" || { echo "https://$domain/health does not answer UP"; return 1; }
    done
}
ops_lines() { in_ct_sh 'wc -l </var/log/abssctl/operations.jsonl'; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# fp_case <k> <args...>: fail the command after step k; everything the header lists.
# Reads PLAN (the dry run's steps), BEFORE (the snapshot file) and SERVING.
fp_case() {
    local k=$1 rc n0 n1 kept rec ok=0
    shift
    n0=$(ops_lines)
    in_ct env "FAILPOINTS=txn-after-step-$k=return" abssctl-fp -y "$@" >"$WORK/out" 2>&1 && rc=0 || rc=$?
    if [[ $rc != 1 ]] || ! grep -q "failpoint txn-after-step-$k" "$WORK/out"; then
        echo "exit $rc, not 1 from the failpoint:"
        cat "$WORK/out"
        ok=1
    fi
    n1=$(ops_lines)
    if ((n1 != n0 + 1)); then
        echo "the operations log got $((n1 - n0)) records, not 1"
        ok=1
    fi
    rec=$(in_ct tail -n 1 /var/log/abssctl/operations.jsonl)
    # The irreversible steps that ran. None of these cases has one (the purge of delete
    # --purge-data, the last step, is a case of its own below).
    kept=$(jq -c --argjson k "$k" '[.[:$k][] | select(.irreversible) | .action]' <<<"$PLAN")
    if [[ $kept != "[]" ]]; then
        echo "steps 1..$k include irreversible ones ($kept): this matrix has no check of them"
        ok=1
    fi
    if ! jq -e --argjson plan "$PLAN" \
        '.rc == 1 and .result.rolled_back == true and .result.effects_kept == []
         and .result.changed == false and [.planned_actions[].action] == [$plan[].action]' \
        <<<"$rec" >/dev/null; then
        echo "the record does not tell it (expected rc 1, rolled back, changed false, nothing kept, the dry run's plan):"
        jq -c '{rc, result, planned: [.planned_actions[].action]}' <<<"$rec"
        ok=1
    fi
    snap >"$WORK/after"
    if ! diff -u "$BEFORE" "$WORK/after"; then
        echo "the box is not as it was (diff above)"
        ok=1
    fi
    if ((${#SERVING[@]})) && ! serving "${SERVING[@]}"; then ok=1; fi
    return $ok
}

# matrix <label> <args...>: fp_case at every step of the command's dry-run plan (or the
# first UPTO of them). SERVING: the instances that must serve after every rollback.
matrix() {
    local label=$1 n k upto t0=$SECONDS
    shift
    PLAN=$(in_ct abssctl --json --dry-run "$@" |
        jq -c '[.planned_actions[] | {action, irreversible: (.irreversible // false)}]') || PLAN='[]'
    n=$(jq length <<<"$PLAN")
    upto=${UPTO:-$n}
    step "$label: $n steps ($(jq -r '[.[].action] | join(", ")' <<<"$PLAN"))"
    must "$label: the dry run plans steps" test "$n" -ge 1
    BEFORE=$WORK/before
    snap >"$BEFORE"
    for ((k = 1; k <= upto; k++)); do
        check "$label: fail after step $k/$n ($(jq -r ".[$((k - 1))].action" <<<"$PLAN")): exit 1, box as before, serving, record rolled back" \
            fp_case "$k" "$@"
    done
    CASES=$((CASES + upto))
    log "$label: $upto cases in $((SECONDS - t0)) s"
}

SERVING=("5000 alpha.test" "5001 beta.test")
matrix "instance create gamma" instance create gamma --domain gamma.test --port 5002 --password-file /share/pw
matrix "instance set-port alpha 5070" instance set-port alpha 5070
# backup restore in place: every step (stop, swap, drop-in, start) undone back to alpha's
# own data, byte for byte (the snapshot hashes srv/alpha), and alpha serving it again.
must "a backup of alpha to restore" in_ct abssctl backup create alpha
RESTORE_ID=$(in_ct abssctl --json backup list alpha | jq -r '.backups[-1].id')
matrix "backup restore $RESTORE_ID (alpha, in place)" backup restore "$RESTORE_ID" --no-backup
matrix "instance set-domain alpha" instance set-domain alpha alpha2.test
# --no-backup: the backup these four offer is not part of their transaction (it is made
# before, under its own locks), so the dry-run plan and the failpoint steps stay theirs.
matrix "instance set-version alpha $ALIAS" instance set-version alpha "$ALIAS" --no-backup

step "set-version alpha $ALIAS failed after its gate, and the rollback fails too (the swap back)"
# The upgrade's data copy cannot be swapped back: the error says the rollback is incomplete
# and names what stayed, the record says so, the copy (the data from before) is kept and
# named, and alpha is started again on its old binding (nothing silently lost).
n0=$(ops_lines)
in_ct env "FAILPOINTS=txn-after-unit_start=return;upgrade-swap-back=return" abssctl-fp -y \
    --json instance set-version alpha "$ALIAS" >"$WORK/out" 2>"$WORK/err" && rc=0 || rc=$?
CASES=$((CASES + 1))
log "result: $(jq -c '.instances[0] | {status, rollback, error}' "$WORK/out" 2>/dev/null)"
check "exit 1 (got $rc), status rollback-incomplete, the undo of the copy named, the copy kept" sh -c "test $rc = 1 && jq -e '
    .ok == false and .instances[0].status == \"rollback-incomplete\" and .instances[0].kept_copy != null
    and (.instances[0].rollback | test(\"rollback incomplete.*copy the data\"))' '$WORK/out'"
KEPT=$(in_ct_sh 'ls -d /srv/alpha/.abssctl-upgrade-* 2>/dev/null' || true)
check "the copy of alpha's data is kept ($KEPT), with its .migrate" in_ct test -s "$KEPT/data/.migrate"
check "stderr says the rollback did not finish and names the copy" sh -c \
    "grep -q 'rollback incomplete' '$WORK/err' && grep -qF '$KEPT' '$WORK/err'"
n1=$(ops_lines)
check "one record ($n0 -> $n1): rc 1, not rolled back, data_copy kept, changed" test "$n1" = $((n0 + 1))
check "... its fields" in_ct_sh "tail -n 1 /var/log/abssctl/operations.jsonl | jq -e '.rc == 1 and .result.rolled_back == false and (.result.effects_kept | index(\"data_copy\") != null) and .result.changed'"
check "alpha serves again on its old binding" serving "5000 alpha.test"
check "... bound as before (current)" in_ct_sh "abssctl --json instance show alpha | jq -e '.version_binding == \"current\"'"
must "the operator removes the kept copy after looking at it" in_ct_sh 'rm -rf /srv/alpha/.abssctl-upgrade-*'
matrix "version switch $ALIAS (alpha and beta follow)" version switch "$ALIAS" --no-backup
matrix "instance rename beta delta" instance rename beta delta --no-backup
matrix "instance delete alpha" instance delete alpha --no-backup
# --purge-data: every step before the purge (the last one, irreversible) rolls back in full.
SERVING=("5000 alpha.test" "5001 beta.test")
DEL=(instance delete beta --purge-data --no-backup)
n=$(jq length <<<"$(in_ct abssctl --json --dry-run "${DEL[@]}" | jq -c .planned_actions)")
UPTO=$((n - 1)) matrix "instance delete beta --purge-data" "${DEL[@]}"

step "instance delete beta --purge-data, failed after the purge: the record names what stayed"
check "the purge is the last step and the only irreversible one" \
    jq -e '(.[-1] | .action == "purge_data" and .irreversible) and ([.[] | select(.irreversible)] | length == 1)' <<<"$PLAN"
n0=$(ops_lines)
in_ct env "FAILPOINTS=txn-after-step-$n=return" abssctl-fp -y "${DEL[@]}" >"$WORK/out" 2>&1 && rc=0 || rc=$?
CASES=$((CASES + 1))
check "exit 1 from the failpoint (got $rc)" grep -q "failpoint txn-after-step-$n" "$WORK/out"
check "one record" test "$(ops_lines)" = $((n0 + 1))
REC=$(in_ct tail -n 1 /var/log/abssctl/operations.jsonl)
log "its record: $(jq -c '{rc, result}' <<<"$REC")"
check "the record: rc 1, changed, purge_data kept, the dry run's plan" jq -e --argjson plan "$PLAN" \
    '.rc == 1 and .result.changed and (.result.effects_kept | index("purge_data") != null)
     and [.planned_actions[].action] == [$plan[].action]' <<<"$REC"
check "... and purge_data is real: /srv/beta is gone" in_ct_sh '! test -e /srv/beta'
snap >"$WORK/after"
check "the snapshot sees it (so it can fail the cases above)" \
    sh -c "! diff -q '$BEFORE' '$WORK/after' >/dev/null && diff '$BEFORE' '$WORK/after' | grep -q '^< srv/beta/data '"
check "rolled_back is true exactly when nothing but the purge is kept" jq -e \
    '.result.rolled_back == (.result.effects_kept == ["purge_data"])' <<<"$REC"
# Every step the record does not name as kept was undone: the registry entry, the vhost,
# the drop-in and enablement, the account; and the unit runs again unless unit_stop is named.
check "what is not named kept is back: registry entry, drop-in, vhost, enablement, account" in_ct_sh '
    grep -q "name: beta" /var/lib/abssctl/registry/registry.yml
    test -s /etc/systemd/system/actual-sync@beta.service.d/50-abssctl.conf
    test -e /etc/nginx/sites-enabled/abssctl-beta.conf
    test "$(systemctl is-enabled actual-sync@beta.service)" = enabled
    id actual-beta >/dev/null'
active=$(in_ct systemctl is-active actual-sync@beta.service)
check "the unit is not running (its data is gone) exactly when unit_stop is named kept (is-active: $active)" \
    jq -e --arg a "$active" '(.result.effects_kept | index("unit_stop") != null) == ($a != "active")' <<<"$REC"
check "alpha still serves" serving "5000 alpha.test"
log "rollback matrix: $CASES cases; $((SECONDS - T_MATRIX)) s with the build and setup"

scenario_end
