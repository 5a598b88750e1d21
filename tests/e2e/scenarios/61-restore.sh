#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual when this package has no cached tree)
#
# Backups restore (issue 9): the official client `@actual-app/api` writes budget A through
# the vhost, a backup is taken, the client writes budget B; a backup is taken while a client
# adds and syncs transactions in a loop (every sync must succeed; the pause it saw is
# logged) and restored --as mid: it holds exactly the loop's transactions #1..#k, k
# between those synced before the backup began and those begun before it ended; then
#   - `backup restore <first> --backup --yes` puts the instance back to its first moment:
#     a fresh client downloads A's transactions, B is gone from the server, and a
#     pre-restore backup of the replaced data (A and B) is in the index;
#   - `backup restore <pre-restore> --as copy --domain copy.e2e.test` serves that later
#     moment as a NEW instance beside the live one: A and B through https://copy.e2e.test/;
#   - the live instance still has only A (the copy has its own data, account and port).
# Then a fault on the real box: a flipped byte in an archive is refused before the
# instance is touched (same main pid, same data) and the index marks it corrupt.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

VERSION=26.9.0 # the version 30, 40 and 50 use: the seeded tree and the client are shared
DOMAIN=restore.e2e.test
COPY=copy.e2e.test
MID=mid.e2e.test

step "TLS and names for $DOMAIN, $COPY and $MID; Actual $VERSION current"
must "a self-signed system certificate for $DOMAIN $COPY $MID" ct_system_cert "$DOMAIN" "$COPY" "$MID"
ct_seed_version "$VERSION"
must "abssctl version switch $VERSION makes it current" in_ct abssctl -y version switch "$VERSION" --no-backup
head -c 18 /dev/urandom | base64 >"$CT_SHARE/password"
must "instance create fam --domain $DOMAIN --password-file" \
    in_ct abssctl instance create fam --domain "$DOMAIN" --password-file /share/password

step "the official client @actual-app/api $VERSION"
ct_api_clients
client() { ct_client "$@"; }
# write_budget <label>: prints "<syncId> <accountId>" of a new budget of 5 transactions
write_budget() {
    local out
    out=$(client "https://$DOMAIN/" write "$1" 2>"$CT_SHARE/client-$1.err") || { tail -20 "$CT_SHARE/client-$1.err" >&2; return 1; }
    jq -r '"\(.syncId) \(.accountId)"' <<<"$out"
}
# reads <domain> <syncId> <accountId> <label>: a fresh client downloads exactly its 5
reads() { client "https://$1/" read "$2" "$3" 5 "$4" >/dev/null 2>"$CT_SHARE/read.err"; }
# fails <command...>: the command fails (for check)
fails() { ! "$@"; }
# backup_id <reason>: the newest backup of that reason
backup_id() { in_ct abssctl backup list --json | jq -r --arg r "$1" '[.backups[] | select(.reason == $r)] | last | .id'; }

step "budget A, a backup, then budget B"
read -r A_SYNC A_ACCT < <(write_budget e2e61a) || die "the client could not write budget A"
check "a fresh client reads A" reads "$DOMAIN" "$A_SYNC" "$A_ACCT" e2e61a
must "backup create fam" in_ct abssctl backup create fam --reason manual -m "after A"
FIRST=$(backup_id manual)
read -r B_SYNC B_ACCT < <(write_budget e2e61b) || die "the client could not write budget B"
check "a fresh client reads B" reads "$DOMAIN" "$B_SYNC" "$B_ACCT" e2e61b

step "a backup while a client syncs in a loop: the pause it sees, a consistent moment"
read -r C_SYNC C_ACCT < <(write_budget e2e61c) || die "the client could not write budget C"
# A 120 MB file beside the budgets (Actual ignores it) makes the backup last about a second,
# so syncs (one every ~0.25 s) are sure to overlap it; removed again right after.
must "a 120 MB file in fam's user-files, so the backup lasts" in_ct_sh '
    head -c 120M /dev/urandom > /srv/fam/data/user-files/e2e-ballast.bin
    chown actual-fam:actual-fam /srv/fam/data/user-files/e2e-ballast.bin
    touch -d "-1 hour" /srv/fam/data/user-files/e2e-ballast.bin'
client "https://$DOMAIN/" loop "$C_SYNC" "$C_ACCT" 10 e2e61loop >"$CT_SHARE/loop.json" 2>"$CT_SHARE/loop.err" &
LOOP=$!
sleep 4
B_START=$(date +%s%3N)
must "backup create fam while the client adds and syncs one transaction after another" \
    in_ct abssctl backup create fam --reason manual -m "during the loop"
B_END=$(date +%s%3N)
DURING=$(backup_id manual)
in_ct rm /srv/fam/data/user-files/e2e-ballast.bin
wait "$LOOP" && LOOP_RC=0 || LOOP_RC=$?
check "every sync of the loop succeeded, during the backup too" test "$LOOP_RC" = 0
L=$CT_SHARE/loop.json
# syncs that overlapped the backup, and the others (epoch ms, the same clock inside and out)
jq --argjson s "$B_START" --argjson e "$B_END" '{
    during: [.syncs[] | select(.end > $s and .start < $e) | .ms],
    outside: [.syncs[] | select(.end <= $s or .start >= $e) | .ms] | sort,
    before: [.syncs[] | select(.end < $s)] | length,
    started: [.syncs[] | select(.start < $e)] | length }' "$L" >"$CT_SHARE/loop-split.json" || true
S=$CT_SHARE/loop-split.json
log "client syncs: $(jq .count "$L") in 10 s; $(jq '.during | length' "$S") overlapped the $((B_END - B_START)) ms backup, max $(jq '.during | max' "$S") ms; outside it median $(jq '.outside[(.outside | length) / 2 | floor]' "$S") ms, max $(jq '.outside | max' "$S") ms"
check "the backup ran while the client was syncing (at least one sync overlapped it)" \
    jq -e '.during | length >= 1' "$S"
check "no sync during the backup waited more than 10 s (no hold of the instance)" \
    jq -e '.during | max < 10000' "$S"
must "backup restore <during> --as mid --domain $MID" \
    in_ct abssctl backup restore "$DURING" --as mid --domain "$MID"
client "https://$MID/" notes "$C_SYNC" "$C_ACCT" >"$CT_SHARE/mid-notes.json" 2>"$CT_SHARE/notes.err" ||
    tail -5 "$CT_SHARE/notes.err" >&2
check "mid has exactly loop transactions #1..#k, k between the syncs done before the backup and those begun before its end" \
    jq -e --slurpfile s "$S" '[.notes[] | select(startswith("e2e61loop #")) | ltrimstr("e2e61loop #") | tonumber] | sort as $k |
        ($k | length) as $n | $k == [range(1; $n + 1)] and $n >= $s[0].before and $n <= $s[0].started' \
    "$CT_SHARE/mid-notes.json"
check "and C's first 5 transactions" jq -e '[.notes[] | select(startswith("e2e61c #"))] | length == 5' "$CT_SHARE/mid-notes.json"
must "mid deleted with its data" in_ct abssctl --yes instance delete mid --no-backup --purge-data

step "restore in place: back to the moment of the first backup"
check "no terminal, no --backup/--no-backup: exit 2, nothing changed" in_ct_sh \
    "rc=0; abssctl --yes backup restore $FIRST || rc=\$?; test \$rc -eq 2"
must "backup restore $FIRST --backup --yes" in_ct abssctl --yes backup restore "$FIRST" --backup
check "A is there" reads "$DOMAIN" "$A_SYNC" "$A_ACCT" e2e61a
check "B is gone: a fresh client cannot download it" fails reads "$DOMAIN" "$B_SYNC" "$B_ACCT" e2e61b
PRE=$(backup_id pre-restore)
check "a pre-restore backup of the replaced data is in the index" test -n "$PRE" -a "$PRE" != null
check "the data dir is fam's account's, 0700, no staging left" in_ct_sh '
    test "$(stat -c %U:%a /srv/fam/data)" = actual-fam:700
    test -z "$(find /srv/fam/data ! -user actual-fam)"
    ! ls -d /srv/fam/.abssctl-restore-* 2>/dev/null'

step "restore --as copy: the later moment beside the live instance"
must "backup restore $PRE --as copy --domain $COPY" in_ct abssctl backup restore "$PRE" --as copy --domain "$COPY"
check "copy serves A" reads "$COPY" "$A_SYNC" "$A_ACCT" e2e61a
check "copy serves B" reads "$COPY" "$B_SYNC" "$B_ACCT" e2e61b
check "copy has its own account and port" in_ct_sh '
    test "$(stat -c %U /srv/copy/data)" = actual-copy
    abssctl instance list --json | jq -e "[.instances[] | .port] | unique | length == 2" >/dev/null'
check "the live instance does not have B" fails reads "$DOMAIN" "$B_SYNC" "$B_ACCT" e2e61b

step "faults: a flipped byte is refused before the instance is touched"
ARCH=$(in_ct abssctl backup show "$FIRST" --json | jq -r .backup.archive_path)
must "flip one byte in the middle of $FIRST's archive" in_ct perl -e '
    open(F, "+<", $ARGV[0]) or die $!; my $n = -s F; seek(F, $n / 2, 0); read(F, my $c, 1);
    seek(F, $n / 2, 0); print F chr(ord($c) ^ 1); close(F) or die $!' "$ARCH"
PID_BEFORE=$(in_ct systemctl show -p MainPID --value actual-sync@fam.service)
check "restore of the damaged archive exits 3 naming it corrupt" in_ct_sh "
    rc=0; out=\$(abssctl --yes backup restore $FIRST --no-backup 2>&1) || rc=\$?
    echo \"\$out\" | grep -q 'is corrupt' && test \$rc -eq 3"
check "the instance was not stopped (same main pid)" test "$(in_ct systemctl show -p MainPID --value actual-sync@fam.service)" = "$PID_BEFORE"
check "A still served" reads "$DOMAIN" "$A_SYNC" "$A_ACCT" e2e61a
check "the index marks it corrupt" in_ct_sh "abssctl backup show $FIRST --json | jq -e '.backup.status == \"corrupt\"' >/dev/null"

scenario_end
