#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual when this package has no cached tree)
#
# Safe upgrades (issue 10) on the real box, with real servers, real migrations and the
# official client:
#   - fam1 and fam2 on 26.8.1 hold budgets written by @actual-app/api 26.8.1; legacy runs
#     25.6.0 (older migrations) with a server password;
#   - a target whose server entry point is broken (it crash-loops): `upgrade fam1 fam2`
#     stops at fam1, which is back on 26.8.1 with its data, automatically (exit 4, the
#     result names both outcomes), and fam2, after it in the rolling order, was never
#     touched (same main PID, same binding);
#   - a target that starts and MIGRATES the data, then fails the gate (/info reports
#     another version): legacy is back on 25.6.0, which would refuse migrated data, so
#     this proves the data came back too (no migration of the new version in .migrate,
#     the password still logs in);
#   - `upgrade --all --rolling --to 26.9.0`: every instance upgraded (legacy across the
#     25 -> 26 migrations), /info says 26.9.0, a 26.9.0 client reads every transaction, the
#     password logs in on the migrated account; a client polling through the vhost saw
#     503 (Retry-After), never 502, while each restarted;
#   - `instance set-version legacy 25.6.0` is refused (its data ran newer migrations);
#   - `instance rollback fam1` goes back to 26.8.1 and its pre-upgrade data.
# Figures logged: per-instance downtime (stop to healthy), start to gate, time to an
# automatic rollback, what the polling client saw.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

OLD=26.8.1    # the version the families start on (40 seeds it too)
VERSION=26.9.0 # the target, and the client ct_client uses by default (30-62 share it)
ANCIENT=25.6.0 # older migrations (20 seeds it; here on the same managed Node 22)
BROKEN=27.0.0 # 26.9.0's tree with a server entry point that throws: it crash-loops
LIAR=27.0.1   # 26.9.0's tree that says it is 26.9.0 in /info: migrates, then fails the gate
D1=fam1.e2e.test
D2=fam2.e2e.test
D3=legacy.e2e.test
PW=Correct-Horse-70

step "TLS for $D1 $D2 $D3; Actual $OLD (current), $VERSION and $ANCIENT seeded"
must "a self-signed system certificate" ct_system_cert "$D1" "$D2" "$D3"
ct_seed_version "$OLD"
ct_seed_version "$VERSION"
ct_seed_version "$ANCIENT"
must "version switch $OLD makes it current" in_ct abssctl -y version switch "$OLD" --no-backup
# alias <version> <package.json version> [broken]: 26.9.0's tree hard-linked under another
# number, its manifest and package.json new files (the hard links of 26.9.0 untouched).
alias_version() {
    in_ct_sh "
    cp -al /srv/app/v$VERSION /srv/app/v$1 && rm /srv/app/v$1/manifest.json
    jq '.version=\"$1\"' /srv/app/v$VERSION/manifest.json >/srv/app/v$1/manifest.json
    pj=node_modules/@actual-app/sync-server/package.json
    rm /srv/app/v$1/\$pj
    jq '.version=\"$2\"' /srv/app/v$VERSION/\$pj >/srv/app/v$1/\$pj
    if [ '${3:-}' = broken ]; then
        js=node_modules/@actual-app/sync-server/build/bin/actual-server.js
        rm /srv/app/v$1/\$js
        echo 'throw new Error(\"e2e: a broken build\");' >/srv/app/v$1/\$js
    fi"
}
must "v$BROKEN: a build whose server throws at start" alias_version "$BROKEN" "$BROKEN" broken
must "v$LIAR: a build that reports $VERSION in /info" alias_version "$LIAR" "$VERSION"
echo "$PW" >"$CT_SHARE/password"
must "create fam1 and fam2 on $OLD, legacy on $ANCIENT (password set)" in_ct_sh "
    abssctl instance create fam1 --domain $D1 --port 5001 --version $OLD --password-file /share/password
    abssctl instance create fam2 --domain $D2 --port 5002 --version $OLD --password-file /share/password
    abssctl instance create legacy --domain $D3 --port 5003 --version $ANCIENT --password-file /share/password"

step "budgets written by the official client @actual-app/api $OLD"
ct_api_clients
client() { ct_client "$@"; }
write_budget() { # <domain> <label>: "<syncId> <accountId>"
    local out
    out=$(client --api "$OLD" "https://$1/" write "$2" 2>"$CT_SHARE/client-$2.err") ||
        { tail -20 "$CT_SHARE/client-$2.err" >&2; return 1; }
    jq -r '"\(.syncId) \(.accountId)"' <<<"$out"
}
reads() { # <api> <domain> <syncId> <accountId> <label>: a fresh client downloads all 5
    client --api "$1" "https://$2/" read "$3" "$4" 5 "$5" >/dev/null 2>"$CT_SHARE/read.err" ||
        { tail -5 "$CT_SHARE/read.err"; return 1; }
}
read -r S1 A1 < <(write_budget "$D1" e2e70a) || die "the client could not write fam1's budget"
read -r S2 A2 < <(write_budget "$D2" e2e70b) || die "the client could not write fam2's budget"
info() { in_ct_sh "curl -sf --cacert /root/e2e-ca.crt https://$1/info | jq -r .build.version"; }
login_ok() { # <port>
    in_ct_sh "curl -sf -X POST -H 'Content-Type: application/json' \
        -d '{\"loginMethod\":\"password\",\"password\":\"$PW\"}' http://127.0.0.1:$1/account/login | grep -q token"
}
pid() { in_ct systemctl show -p MainPID --value "actual-sync@$1.service"; }
binding() { in_ct abssctl --json instance show "$1" | jq -r .version_binding; }
serves_version() { # <domain> <version>: /info through the vhost reports it
    local got
    got=$(info "$1") && [[ $got == "$2" ]] || { echo "/info of $1 says '${got:-nothing}'"; return 1; }
}
bound_to() { # <instance> <binding>
    local got
    got=$(binding "$1") && [[ $got == "$2" ]] || { echo "$1 is bound to '$got'"; return 1; }
}
untouched() { # <instance> <pid> <binding>: same main PID, same binding
    [[ $(pid "$1") == "$2" ]] || { echo "main PID $(pid "$1"), was $2"; return 1; }
    bound_to "$1" "$3"
}
record_rolled_back() { # the operations log's newest record of `upgrade`: rc 4, rolled back
    in_ct_sh "grep '\"command\":\"upgrade\"' /var/log/abssctl/operations.jsonl | tail -n 1" |
        jq -e '.rc == 4 and .result.rolled_back == true and .result.effects_kept == []'
}
no_copy_left() { in_ct_sh "! ls -d /srv/$1/.abssctl-upgrade-* 2>/dev/null"; }
check "legacy: $ANCIENT serves and its password logs in" serves_version $D3 $ANCIENT
check "... login works" login_ok 5003

# poll_start <domain> / poll_stop <domain>: a client GETting /health through the vhost
# every 50 ms, its answers (epoch ms, status, Retry-After) logged; poll_stop ends it (the
# loop inside stops itself at a marker file, or after 5 minutes: a killed host process
# would leave its nsenter behind) and prints the tally.
poll_start() {
    rm -f "$CT_SHARE/poll.stop"
    in_ct sh -c "end=\$((\$(date +%s) + 300)); while [ ! -e /share/poll.stop ] && [ \$(date +%s) -lt \$end ]; do
        printf '%s %s\n' \$(date +%s%3N) \"\$(curl -s -o /dev/null -D - --cacert /root/e2e-ca.crt \
            -w '%{http_code}' https://$1/health | tr -d '\r' | awk 'tolower(\$1)==\"retry-after:\"{r=\$2} /^[0-9]+\$/{c=\$0} END{print c\" \"(r==\"\"?\"-\":r)}')\"
        sleep 0.05; done" >"$CT_SHARE/poll-$1.log" 2>/dev/null &
    POLL=$!
}
poll_stop() {
    touch "$CT_SHARE/poll.stop"
    wait "$POLL" 2>/dev/null || true
    awk '{n[$2]++} END {for (c in n) printf "%s:%d ", c, n[c]; print ""}' "$CT_SHARE/poll-$1.log"
}

step "a broken target (crash loop): upgrade fam1 fam2 --to $BROKEN stops at fam1 and rolls it back"
P2=$(pid fam2)
poll_start "$D1"
in_ct abssctl --json -y upgrade fam1 fam2 --to "$BROKEN" >"$CT_SHARE/broken.json" 2>"$CT_SHARE/broken.err" && rc=0 || rc=$?
log "client on $D1 saw: $(poll_stop "$D1")"
R=$CT_SHARE/broken.json
log "result: $(jq -c '[.instances[] | {instance, status, downtime_ms, rollback_ms, error}]' "$R" 2>/dev/null)"
check "exit 4 (got $rc), the error names fam1 and the rollback" sh -c \
    "test $rc = 4 && grep -q \"upgrade of 'fam1'\" '$CT_SHARE/broken.err' && grep -q 'rolled back' '$CT_SHARE/broken.err'"
check "the result: fam1 rolled-back (why: it exited), fam2 not-attempted" jq -e \
    '.ok == false and .instances[0].status == "rolled-back" and (.instances[0].error | test("exited|not healthy"))
     and .instances[0].rollback == "rolled back" and .instances[1].status == "not-attempted"' "$R"
check "fam1 serves $OLD again (/info)" serves_version $D1 $OLD
check "fam1's binding is $OLD again" bound_to fam1 $OLD
check "a fresh $OLD client reads fam1's 5 transactions" reads "$OLD" "$D1" "$S1" "$A1" e2e70a
check "fam2 was never touched: same main PID, same binding" untouched fam2 "$P2" "$OLD"
check "... still serving $OLD" serves_version "$D2" "$OLD"
check "fam1's pre-upgrade snapshot is in the index" in_ct_sh \
    "abssctl --json backup list fam1 | jq -e '[.backups[] | select(.reason == \"pre-upgrade\")] | length == 1'"
check "no copy of fam1's data is left behind" no_copy_left fam1
check "the operations log: rc 4, rolled back, nothing kept" record_rolled_back
check "the unit is not left failed or crash-looping" in_ct_sh \
    'test "$(systemctl is-active actual-sync@fam1.service)" = active && ! systemctl --failed | grep -q actual-sync@fam1'
check "the vhost answered 503 with Retry-After, never 502, during it" sh -c \
    "! awk '\$2==502' '$CT_SHARE/poll-$D1.log' | grep -q . && awk '\$2==503 && \$3!=\"-\"' '$CT_SHARE/poll-$D1.log' | grep -q ."

step "a target that migrates the data, then fails the gate: legacy back on $ANCIENT with its own data"
in_ct abssctl --json -y upgrade legacy --to "$LIAR" >"$CT_SHARE/liar.json" 2>"$CT_SHARE/liar.err" && rc=0 || rc=$?
R=$CT_SHARE/liar.json
log "result: $(jq -c '[.instances[] | {instance, status, downtime_ms, rollback_ms, error}]' "$R" 2>/dev/null)"
check "exit 4 (got $rc); the gate saw /info report $VERSION, not $LIAR" sh -c \
    "test $rc = 4 && jq -e '.instances[0].status == \"rolled-back\" and (.instances[0].error | test(\"runs Actual $VERSION, not $LIAR\"))' '$R'"
check "legacy serves $ANCIENT again" serves_version $D3 $ANCIENT
check "its data is the pre-upgrade data: no migration of 26.x in .migrate" in_ct_sh \
    "! grep -q 1763873600000 /srv/legacy/data/.migrate"
check "its password logs in" login_ok 5003
check "no copy of legacy's data is left behind" no_copy_left legacy

step "upgrade --all --rolling --to $VERSION: every instance, one after the other"
poll_start "$D1"
in_ct abssctl --json -y upgrade --all --rolling --to "$VERSION" >"$CT_SHARE/up.json" 2>"$CT_SHARE/up.err" && rc=0 || rc=$?
log "client on $D1 saw: $(poll_stop "$D1")"
R=$CT_SHARE/up.json
log "figures: $(jq -c '[.instances[] | {instance, from, downtime_ms, healthy_after_ms}]' "$R" 2>/dev/null)"
check "exit 0 (got $rc: $(tail -n 2 "$CT_SHARE/up.err" | tr '\n' ' '))" test "$rc" = 0
check "the result: fam1, fam2, legacy upgraded from $OLD $OLD $ANCIENT" jq -e --arg o "$OLD" --arg a "$ANCIENT" \
    '.ok and ([.instances[] | .instance] == ["fam1","fam2","legacy"]) and all(.instances[]; .status == "upgraded")
     and ([.instances[] | .from] == [$o, $o, $a]) and all(.instances[]; .snapshot != null)' "$R"
for d in $D1 $D2 $D3; do
    check "https://$d/info says $VERSION" serves_version $d $VERSION
done
check "a fresh $VERSION client reads fam1's 5 transactions" reads "$VERSION" "$D1" "$S1" "$A1" e2e70a
check "a fresh $VERSION client reads fam2's 5 transactions" reads "$VERSION" "$D2" "$S2" "$A2" e2e70b
check "legacy's data migrated (a 26.x migration in .migrate)" in_ct grep -q 1763873600000 /srv/legacy/data/.migrate
check "legacy's password logs in on the migrated account" login_ok 5003
check "no copies left, no unit failed" in_ct_sh \
    "! ls -d /srv/*/.abssctl-upgrade-* 2>/dev/null && ! systemctl --failed | grep -q actual-sync@"
check "the client on $D1 saw 503 with Retry-After, never 502" sh -c \
    "! awk '\$2==502' '$CT_SHARE/poll-$D1.log' | grep -q . && awk '\$2==503 && \$3!=\"-\"' '$CT_SHARE/poll-$D1.log' | grep -q ."

step "downgrade refused; rollback on demand"
in_ct abssctl -y instance set-version legacy "$ANCIENT" >/dev/null 2>"$CT_SHARE/down.err" && rc=0 || rc=$?
check "set-version legacy $ANCIENT: exit 2 (got $rc), names the migration and the way back" sh -c \
    "test $rc = 2 && grep -q 'migrated beyond Actual $ANCIENT' '$CT_SHARE/down.err' && grep -q 'abssctl instance rollback legacy' '$CT_SHARE/down.err'"
check "... and legacy still serves $VERSION" serves_version $D3 $VERSION
must "instance rollback fam1 (the newest pre-upgrade snapshot)" in_ct abssctl -y instance rollback fam1 --no-backup
check "fam1 serves $OLD again" serves_version $D1 $OLD
check "fam1 is bound to $OLD" bound_to fam1 $OLD
check "a fresh $OLD client reads fam1's 5 transactions" reads "$OLD" "$D1" "$S1" "$A1" e2e70a

scenario_end
