#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual when this package has no cached tree)
#
# Backup faults on the real box (issue 9, "Bad input and faults"), with an instance holding
# a 160 MB blob so that creating and restoring take long enough to be interrupted:
#   - disk full during create (a 16 MB tmpfs as --out-dir): exit 3 saying so, no archive
#     or partial file left, no index entry;
#   - `kill -9` of a create while its archive is being written: the index stays valid JSON
#     without an entry for it, the instance keeps serving, `backup reconcile` removes the
#     partial file, the next create succeeds and verifies;
#   - `kill -9` of an in-place restore while it extracts: the instance keeps serving with
#     the same main pid and its data unchanged; the next restore sweeps the leftover
#     staging dir and succeeds, with nothing left behind.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

VERSION=26.9.0 # the version 30, 40, 50, 61 and 62 use: the seeded tree is shared
DOMAIN=faults.e2e.test
BLOB=/srv/fam/data/user-files/e2e-big.blob

step "TLS for $DOMAIN; Actual $VERSION current; instance fam with a 160 MB blob"
must "a self-signed system certificate for $DOMAIN" ct_system_cert "$DOMAIN"
ct_seed_version "$VERSION"
must "abssctl version switch $VERSION makes it current" in_ct abssctl -y version switch "$VERSION"
must "instance create fam --domain $DOMAIN" in_ct abssctl instance create fam --domain "$DOMAIN"
must "a 160 MB blob in fam's user-files, owned by its account" in_ct_sh "
    install -d -o actual-fam -g actual-fam -m 0700 /srv/fam/data/user-files
    head -c 160M /dev/urandom > $BLOB
    chown actual-fam:actual-fam $BLOB && chmod 0600 $BLOB
    touch -d '-1 hour' $BLOB"
BLOB_SUM=$(in_ct sha256sum "$BLOB" | cut -d' ' -f1)
entries() { in_ct_sh 'if [ -f /srv/backups/backups.json ]; then jq ".backups | length" /srv/backups/backups.json; else echo 0; fi'; }
serving() { in_ct curl -sf http://127.0.0.1:5000/health | grep -q UP; }

step "disk full during create"
must "a 16 MB tmpfs at /mnt/small" in_ct_sh 'mkdir -p /mnt/small && mount -t tmpfs -o size=16m tmpfs /mnt/small'
N0=$(entries)
check "backup create --out-dir /mnt/small: exit 3, the message says the disk is full" in_ct_sh '
    rc=0; out=$(abssctl backup create fam --out-dir /mnt/small 2>&1) || rc=$?
    echo "$out"; test $rc -eq 3
    echo "$out" | grep -qi "no space left"'
check "no archive and no partial file left on it" in_ct_sh 'test -z "$(find /mnt/small -type f)"'
check "no index entry was added" test "$(entries)" = "$N0"
check "the instance serves" serving

step "kill -9 during create"
check "a create killed while it writes its archive" in_ct_sh '
    abssctl backup create fam >/dev/null 2>&1 & pid=$!
    for i in $(seq 1 500); do
        if ls /srv/backups/fam/.abssctl-*.partial >/dev/null 2>&1; then
            kill -9 $pid; wait $pid 2>/dev/null || true; exit 0
        fi
        sleep 0.02
    done
    echo "no partial archive appeared"; exit 1'
check "the index is valid JSON with no entry for it" in_ct_sh "
    jq -e . /srv/backups/backups.json >/dev/null 2>&1 || test ! -e /srv/backups/backups.json
    test \"\$(if [ -f /srv/backups/backups.json ]; then jq '.backups | length' /srv/backups/backups.json; else echo 0; fi)\" = $N0"
check "the partial archive is there (the evidence of the kill)" in_ct_sh 'ls /srv/backups/fam/.abssctl-*.partial'
check "the instance serves" serving
check "backup reconcile --instance fam removes the leftover and adds nothing" in_ct_sh "
    abssctl --json backup reconcile --instance fam | jq -e '(.removed | length) >= 1 and (.added | length) == 0' >/dev/null
    ! ls /srv/backups/fam/.abssctl-* 2>/dev/null"
must "the next create succeeds" in_ct abssctl backup create fam -m "after the kill"
GOOD=$(in_ct abssctl --json backup list fam | jq -r '.backups | last | .id')
check "and verifies" in_ct abssctl backup verify "$GOOD"

step "kill -9 during an in-place restore"
PID_BEFORE=$(in_ct systemctl show -p MainPID --value actual-sync@fam.service)
check "a restore killed while it extracts" in_ct_sh "
    abssctl --yes backup restore $GOOD --no-backup >/dev/null 2>&1 & pid=\$!
    for i in \$(seq 1 500); do
        if ls -d /srv/fam/.abssctl-restore-* >/dev/null 2>&1; then
            kill -9 \$pid; wait \$pid 2>/dev/null || true; exit 0
        fi
        sleep 0.02
    done
    echo 'no staging dir appeared'; exit 1"
check "the instance was not stopped (same main pid) and serves" in_ct_sh "
    test \"\$(systemctl show -p MainPID --value actual-sync@fam.service)\" = $PID_BEFORE
    curl -sf http://127.0.0.1:5000/health | grep -q UP"
check "its data is unchanged" in_ct_sh "echo '$BLOB_SUM  $BLOB' | sha256sum -c --quiet"
check "the staging dir was left behind (the evidence of the kill)" in_ct_sh 'ls -d /srv/fam/.abssctl-restore-*'
must "the next restore succeeds" in_ct_sh "abssctl --json --yes backup restore $GOOD --no-backup > /root/restore.json"
check "its result says how long it extracted and how long fam did not serve" in_ct_sh "
    jq -e '.extract_ms > 0 and .downtime_ms > 0 and .downtime_ms < .duration_ms and
        .extract_ms < .duration_ms' /root/restore.json"
log "restore of $(in_ct jq -r '.data_bytes' /root/restore.json) bytes: extract $(in_ct jq -r .extract_ms /root/restore.json) ms, not serving $(in_ct jq -r .downtime_ms /root/restore.json) ms, total $(in_ct jq -r .duration_ms /root/restore.json) ms"
check "it swept the leftover: no staging dir, the blob is the backup's" in_ct_sh "
    ! ls -d /srv/fam/.abssctl-restore-* 2>/dev/null
    echo '$BLOB_SUM  $BLOB' | sha256sum -c --quiet
    test \"\$(stat -c %U $BLOB)\" = actual-fam"
check "the instance serves" serving

scenario_end
