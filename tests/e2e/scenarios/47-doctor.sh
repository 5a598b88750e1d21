#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual when this package has no cached tree)
#
# `abssctl doctor` on a real box (docs/doctor.md): a healthy instance is all green with
# exit 0; then each fault is injected for real and found by its probe id with the right
# severity and exit code: a stopped instance, its port taken by another process, a vhost
# broken by hand, a drop-in edited by hand, an expired certificate, a key that does not
# match, a key readable by others, a deleted archive, a stale lock of a dead pid, a full
# disk (a small tmpfs on the backups dir). `--fix` repairs exactly the safe ones (mode,
# lock, leftovers) and leaves the rest with their hint; a second `--fix` has nothing to do.
# The packaged abssctl-doctor.service passes on a healthy box and fails (systemctl
# --failed) on a red one, logging each finding with its priority and probe id.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

D=budget47.e2e.test
SSL=/etc/ssl/private

# doc <name> [args...]: `abssctl --json doctor ARGS`; the report in $CT_SHARE/<name>.json,
# its exit code in $CT_SHARE/<name>.rc.
doc() {
    local n=$1 rc=0
    shift
    in_ct abssctl --json doctor "$@" >"$CT_SHARE/$n.json" 2>"$CT_SHARE/$n.err" || rc=$?
    echo "$rc" >"$CT_SHARE/$n.rc"
}
# is <name> <probe id> <status>: that probe has that status in that report.
is() {
    local got
    got=$(jq -r --arg id "$2" '.probes[] | select(.id == $id) | .status' "$CT_SHARE/$1.json")
    [[ $got == "$3" ]] || {
        echo "$2 is '$got', not '$3'"
        jq -c --arg id "$2" '.probes[] | select(.id == $id)' "$CT_SHARE/$1.json"
        return 1
    }
}
# rc <name> <code>: the exit code of that run (and its rc field) is <code>.
rc() {
    local got
    got=$(cat "$CT_SHARE/$1.rc")
    [[ $got == "$2" ]] && jq -e --argjson c "$2" '.rc == $c' "$CT_SHARE/$1.json" >/dev/null || {
        echo "exit $got, not $2"
        jq -c '.probes[] | select(.status != "green")' "$CT_SHARE/$1.json"
        return 1
    }
}
# says <name> <probe id> <text>: that probe's message contains <text>.
says() {
    jq -e --arg id "$2" --arg t "$3" '.probes[] | select(.id == $id) | .message | contains($t)' \
        "$CT_SHARE/$1.json" >/dev/null || {
        jq -c --arg id "$2" '.probes[] | select(.id == $id)' "$CT_SHARE/$1.json"
        return 1
    }
}
healthy() {
    in_ct_sh "for i in \$(seq 1 50); do curl -sf http://127.0.0.1:5000/health | grep -q UP && exit 0; sleep 0.2; done; exit 1"
}

step "machine: system certificate, Actual, one instance"
ct_system_cert "$D"
ct_seed_version 26.9.0
must "abssctl version switch 26.9.0" in_ct abssctl -y version switch 26.9.0 --no-backup
must "abssctl instance create budget" in_ct abssctl instance create budget --domain "$D"
must "budget answers /health" healthy

step "a healthy box: green, exit 0"
doc healthy
check "exit 0, no red finding" rc healthy 0
check "no red at all" jq -e '.summary.red == 0' "$CT_SHARE/healthy.json"
for id in env.tools env.systemd env.runtime.26.9.0 state.registry state.drift.budget fs.perms \
    ports.budget systemd.budget nginx.config nginx.vhost.budget nginx.default_server tls.budget \
    app.budget backups.index locks.stale staging.leftover; do
    check "$id is green" is healthy "$id" green
done
check "a disk.* probe for the data and backups filesystems" \
    jq -e '[.probes[] | select(.id | startswith("disk."))] | length >= 1' "$CT_SHARE/healthy.json"
check "the report is saved in /var/lib/abssctl/doctor.json" in_ct_sh \
    'jq -e ".rc == 0 and (.probes | length) > 10" /var/lib/abssctl/doctor.json'
check "systemd-analyze verify accepts the doctor timer and service" \
    in_ct_sh 'systemd-analyze verify abssctl-doctor.timer abssctl-doctor.service 2>&1 | { ! grep -v -e "^$"; }'
check "the doctor timer is enabled and started by the package" \
    in_ct_sh '[ "$(systemctl is-enabled abssctl-doctor.timer)" = enabled ] && systemctl is-active --quiet abssctl-doctor.timer'
check "abssctl-doctor.service passes on the healthy box" in_ct systemctl start abssctl-doctor.service
t0=$SECONDS
doc timed
check "a whole run takes under 2 s here (took $((SECONDS - t0)) s)" test $((SECONDS - t0)) -le 2

step "a stopped (still enabled) instance: app and systemd red, exit 4"
must "systemctl stop actual-sync@budget" in_ct systemctl stop actual-sync@budget.service
doc stopped
check "app.budget red" is stopped app.budget red
check "systemd.budget red (enabled but inactive)" is stopped systemd.budget red
check "exit 4" rc stopped 4

step "its port taken by another process while it is stopped: ports red, naming it"
in_ct_sh 'setsid timeout 120 python3 -m http.server 5000 --bind 127.0.0.1 >/dev/null 2>&1 </dev/null & echo $! > /run/e2e-py.pid'
check "python3 listens on 5000" in_ct_sh 'for i in $(seq 1 50); do ss -ltn | grep -q "127.0.0.1:5000 " && exit 0; sleep 0.1; done; exit 1'
doc port
check "ports.budget red" is port ports.budget red
check "... naming python3" says port ports.budget python3
check "exit 4" rc port 4
in_ct_sh 'pkill -f "http.server 5000" || true'
must "budget started again" in_ct systemctl start actual-sync@budget.service
must "budget answers /health" healthy
doc back
check "app.budget green" is back app.budget green
check "ports.budget green (held by its own MainPID)" is back ports.budget green

step "a vhost broken by hand: nginx.config red (nginx -t), exit 4; no reload"
in_ct cp /etc/nginx/sites-available/abssctl-budget.conf /root/vhost.keep
in_ct_sh 'echo "this_is_not_a_directive on;" >> /etc/nginx/sites-available/abssctl-budget.conf'
doc vhost
check "nginx.config red" is vhost nginx.config red
check "exit 4" rc vhost 4
check "nginx still serves (the doctor never reloads)" in_ct_sh "curl -sfk --resolve $D:443:127.0.0.1 https://$D/health | grep -q UP"
in_ct cp /root/vhost.keep /etc/nginx/sites-available/abssctl-budget.conf
in_ct rm /etc/nginx/sites-enabled/abssctl-budget.conf
doc unlinked
check "the link removed: nginx.vhost.budget red" is unlinked nginx.vhost.budget red
check "... and state.drift.budget red" is unlinked state.drift.budget red
in_ct ln -s ../sites-available/abssctl-budget.conf /etc/nginx/sites-enabled/abssctl-budget.conf
doc relinked
check "link back: nginx.vhost.budget green" is relinked nginx.vhost.budget green

step "a drop-in edited by hand: systemd yellow, exit 0"
DROPIN=/etc/systemd/system/actual-sync@budget.service.d/50-abssctl.conf
in_ct cp "$DROPIN" /root/dropin.keep
in_ct_sh "echo '# tuned by hand' >> $DROPIN"
doc dropin
check "systemd.budget yellow" is dropin systemd.budget yellow
check "... edited by hand" says dropin systemd.budget "edited by hand"
check "exit 0 (yellow)" rc dropin 0
in_ct cp /root/dropin.keep "$DROPIN"

step "certificates: expired, a foreign key (tls red, exit 3), a key readable by others (fs red)"
in_ct_sh "cp -a $SSL/cert.pem /root/cert.pem.keep; cp -a $SSL/cert.key /root/cert.key.keep
    cd /root && openssl genpkey -algorithm ed25519 -out old.key 2>/dev/null
    openssl req -new -key old.key -subj /CN=$D -out old.csr 2>/dev/null
    printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=default\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n' > ca.cnf
    : > index.txt; echo 01 > serial
    openssl ca -batch -config ca.cnf -selfsign -keyfile old.key -in old.csr \
        -startdate 20200101000000Z -enddate 20200201000000Z -out old.crt 2>/dev/null
    cat old.crt old.key > $SSL/cert.pem; cp old.key $SSL/cert.key; chmod 0400 $SSL/cert.pem $SSL/cert.key"
doc expired
check "tls.budget red" is expired tls.budget red
check "... expired" says expired tls.budget expired
check "exit 3" rc expired 3
in_ct_sh "cd /root && openssl genpkey -algorithm ed25519 -out other.key 2>/dev/null
    cp /root/cert.pem.keep $SSL/cert.pem; cp other.key $SSL/cert.key; chmod 0400 $SSL/cert.key"
doc foreign
check "a key that does not match: tls.budget red" is foreign tls.budget red
check "exit 3" rc foreign 3
in_ct_sh "cp -a /root/cert.key.keep $SSL/cert.key"
doc certok
check "the right pair again: tls.budget green" is certok tls.budget green
in_ct chmod 0644 "$SSL/cert.key"
doc keymode
check "key mode 0644: fs.perms red" is keymode fs.perms red
check "... naming the private key" says keymode fs.perms "private key"
check "exit 3" rc keymode 3

step "a deleted archive: backups.index red, exit 2 at least"
must "abssctl backup create budget" in_ct_sh 'abssctl --json backup create budget > /root/b.json'
ARCHIVE=$(in_ct jq -r .path /root/b.json)
in_ct rm -f "$ARCHIVE"
doc archive
check "backups.index red" is archive backups.index red

step "a stale lock of a dead pid, a leftover build staging dir: yellow"
in_ct_sh 'sh -c "exit 0" & wait $!; dead=$!
    printf "{\"pid\":%s,\"command\":\"backup create\",\"since\":\"2026-01-01T00:00:00Z\"}\n" "$dead" > /run/abssctl/locks/instance-budget.lock
    mkdir -p /srv/app/.staging/build-crashed'
doc stale
check "locks.stale yellow" is stale locks.stale yellow
check "staging.leftover yellow" is stale staging.leftover yellow

step "--fix: only the safe repairs; a second --fix has nothing to do"
in_ct systemctl stop actual-sync@budget.service
in_ct_sh "echo '# tuned by hand' >> $DROPIN"
doc dry --fix --dry-run
check "--dry-run lists the key mode, the lock and the leftover" jq -e \
    '[.fixes[].probe] | (index("fs.perms") != null) and (index("locks.stale") != null) and (index("staging.leftover") != null)' \
    "$CT_SHARE/dry.json"
check "--dry-run changed nothing" in_ct_sh "test \"\$(stat -c %a $SSL/cert.key)\" = 644 && test -d /srv/app/.staging/build-crashed"
doc fix --fix --yes
check "fixes: fs.perms, locks.stale, staging.leftover and nothing else" jq -e \
    '([.fixes[].probe] | unique) == ["fs.perms", "locks.stale", "staging.leftover"] and all(.fixes[]; .error == null)' \
    "$CT_SHARE/fix.json"
check "the key is owner-only now" in_ct_sh "test \"\$(stat -c %a $SSL/cert.key)\" = 600"
check "the lock holder line is cleared" in_ct_sh 'test ! -s /run/abssctl/locks/instance-budget.lock'
check "the leftover is gone" in_ct test ! -e /srv/app/.staging/build-crashed
check "after the fix: fs.perms, locks.stale, staging.leftover green" sh -c \
    "jq -e '[.probes[] | select(.id == \"fs.perms\" or .id == \"locks.stale\" or .id == \"staging.leftover\") | .status] == [\"green\",\"green\",\"green\"]' $CT_SHARE/fix.json"
check "left alone: the instance is still stopped (app.budget red)" is fix app.budget red
check "left alone: the drop-in still edited (systemd.budget red or yellow)" sh -c \
    "jq -e '.probes[] | select(.id == \"systemd.budget\") | .status != \"green\"' $CT_SHARE/fix.json"
check "left alone: the lost archive (backups.index red, with a hint)" sh -c \
    "jq -e '.probes[] | select(.id == \"backups.index\") | .status == \"red\" and (.remediation | length > 0)' $CT_SHARE/fix.json"
check "the instance was not started by --fix" in_ct_sh '! systemctl is-active --quiet actual-sync@budget.service'
doc fix2 --fix --yes
check "a second --fix: nothing to do" jq -e '.fixes == []' "$CT_SHARE/fix2.json"

step "the doctor service on a red box: fails, findings in the journal by priority and id"
check "abssctl-doctor.service fails" in_ct_sh '! systemctl start abssctl-doctor.service'
check "... and is listed by systemctl --failed" in_ct_sh 'systemctl --failed --plain --no-legend | grep -q abssctl-doctor.service'
check "app.budget is in the journal at priority err with its fields" in_ct_sh '
    journalctl --sync
    journalctl -t abssctl -p err -o json ABSSCTL_PROBE_ID=app.budget | jq -e -s "length > 0 and (.[-1].ABSSCTL_STATUS == \"red\") and (.[-1].PRIORITY == \"3\")"'
in_ct cp /root/dropin.keep "$DROPIN"
in_ct systemctl start actual-sync@budget.service

step "a full disk: a small tmpfs on the backups dir"
in_ct_sh 'mkdir -p /root/bk && cp -a /srv/backups/. /root/bk/
    mount -t tmpfs -o size=2m tmpfs /srv/backups
    dd if=/dev/zero of=/srv/backups/fill bs=64k 2>/dev/null || true'
doc disk --only disk
check "disk./srv/backups red" is disk disk./srv/backups red
check "exit 3" rc disk 3
in_ct_sh 'umount /srv/backups'

scenario_end
