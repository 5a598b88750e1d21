#!/bin/bash
# e2e-network: host  (the npm registry: `instance create` installs Actual when none is)
#
# Instances on real systemd over D-Bus, real nginx with a TurnKey-style self-signed
# certificate, the real Actual server: from nothing to serving HTTPS in one command, every
# lifecycle command checked from the outside (systemctl, curl through the vhost, the login
# API), a crash-looping server rolled back with its journal lines in the error, and the
# hardening score of the unit.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

# https_ok <domain> [path]: GET https://<domain>/health through nginx, retried briefly
# (an nginx reload lets old workers finish first).
https_ok() {
    in_ct_sh "for i in \$(seq 1 25); do
        curl -sfk --resolve $1:443:127.0.0.1 https://$1${2:-/health} | grep -q UP && exit 0
        sleep 0.2; done; exit 1"
}
login_ok() { # <port> <password>
    in_ct_sh "curl -sf -X POST -H 'Content-Type: application/json' \
        -d '{\"loginMethod\":\"password\",\"password\":\"$2\"}' http://127.0.0.1:$1/account/login | grep -q token"
}
jq_ct() { in_ct abssctl --json instance list | jq -e "$@"; }
# info_version <domain>: the server version that /info reports through the vhost.
info_version() {
    in_ct_sh "curl -sfk --resolve $1:443:127.0.0.1 https://$1/info | jq -r .build.version"
}

step "machine: TurnKey-style system certificate, no Actual installed"
in_ct_sh 'mkdir -p -m 0700 /etc/ssl/private
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=turnkey \
        -keyout /etc/ssl/private/cert.key -out /etc/ssl/private/cert.pem 2>/dev/null
    chmod 0400 /etc/ssl/private/cert.key /etc/ssl/private/cert.pem'
check "no version installed yet" in_ct_sh '! test -e /srv/app/current'
echo 'Correct-Horse-1' >"$CT_SHARE/pw"

step "instance create from nothing: installs Actual, starts, bootstraps the password, serves HTTPS"
must "create budget --domain budget.test --password-file" \
    in_ct abssctl instance create budget --domain budget.test --password-file /share/pw
check "the newest version was installed and is current" in_ct test -L /srv/app/current
check "journalctl ABSSCTL_INSTANCE=budget lists the lines of the create, the last one too" in_ct_sh '
    journalctl --sync; journalctl -o cat ABSSCTL_INSTANCE=budget | grep -q "instance create finished"'
CURRENT=$(in_ct readlink /srv/app/current) CURRENT=${CURRENT#v}
# This is the run's one real install from nothing: later scenarios seed this tree.
[[ -n $CURRENT ]] && ct_export_version "$CURRENT"
check "https://budget.test/health answers UP through nginx" https_ok budget.test
check "login with the bootstrapped password works" login_ok 5000 Correct-Horse-1
check "list --json: active, up, enabled, pid, port 5000, system TLS" \
    jq_ct '.instances[0] | .active_state=="active" and .health=="up" and .enabled=="enabled" and .main_pid>0 and .port==5000 and .tls_source=="system"'
check "runs as its own account actual-budget (ps and /proc/MainPID/status Uid)" in_ct_sh '
    pid=$(systemctl show -P MainPID actual-sync@budget.service)
    test "$(ps -o user:32= -p $pid)" = actual-budget
    test "$(awk "/^Uid:/ { print \$2 }" /proc/$pid/status)" = "$(id -u actual-budget)"
    grep -qx "User=actual-budget" /etc/systemd/system/actual-sync@budget.service.d/50-abssctl.conf'
check "listens on 127.0.0.1 only" in_ct_sh 'ss -ltn | grep -q "127.0.0.1:5000 " && ! ss -ltn | grep -Eq "(\*|0.0.0.0|\[::\]):5000 "'
check "data dir 0700 actual-budget, instance dir root:actual-budget 0750, files private (UMask=0077)" in_ct_sh '
    test "$(stat -c "%a %U" /srv/budget/data)" = "700 actual-budget"
    test "$(stat -c "%a %U %G" /srv/budget)" = "750 root actual-budget"
    test "$(stat -c %U /srv/budget/data/server-files/account.sqlite)" = actual-budget
    test "$(stat -c %a /srv/budget/data/server-files/account.sqlite)" = 600'
check "drop-in sets trusted proxies and the data dir" in_ct_sh '
    grep -qx "Environment=ACTUAL_TRUSTED_PROXIES=127.0.0.1/32,::1/128" /etc/systemd/system/actual-sync@budget.service.d/50-abssctl.conf
    grep -qx "ReadWritePaths=/srv/budget/data" /etc/systemd/system/actual-sync@budget.service.d/50-abssctl.conf'
score=$(in_ct systemd-analyze security actual-sync@budget.service 2>/dev/null |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
log "systemd-analyze security actual-sync@budget.service: $score"
check "systemd-analyze security score <= 2.5 (got $score)" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.5) }'
check "... and no worse than before per-instance accounts: <= 1.1 (got $score)" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 1.1) }'
check "create again with the same settings changes nothing" \
    in_ct_sh 'abssctl --json instance create budget --domain budget.test | jq -e ".changed==false"'

step "bad input fails before anything changes, a build included"
check "a used domain with a version not installed: exit 2, nothing built, current unchanged" in_ct_sh "
    before=\$(readlink /srv/app/current); since=\$(date '+%Y-%m-%d %H:%M:%S')
    set +e; abssctl instance create dup --domain budget.test --version 25.6.0 2>/root/e; rc=\$?; set -e
    test \$rc = 2 && grep -q 'already used' /root/e
    ! test -e /srv/app/v25.6.0 && ! test -e /srv/app/.staging
    test \"\$(readlink /srv/app/current)\" = \"\$before\"
    ! journalctl -q --since \"\$since\" -u abssctl-npm-build.service | grep -q .
    ! abssctl --json instance list | jq -e '.instances[] | select(.name==\"dup\")'"
check "a missing password file: exit 2 before any build" in_ct_sh "
    set +e; abssctl instance create dup --domain dup.test --version 25.6.0 --password-file /nonexistent 2>/root/e; rc=\$?
    test \$rc = 2 && ! test -e /srv/app/v25.6.0 && ! test -e /srv/app/.staging"

step "one family cannot read another's data: each instance has its own account"
must "create other --domain other.test" \
    in_ct abssctl instance create other --domain other.test --password-file /share/pw
check "budget's account cannot open other's account.sqlite (EACCES), other's own can" in_ct_sh '
    f=/srv/other/data/server-files/account.sqlite; test -s $f
    ! out=$(setpriv --reuid actual-budget --regid actual-budget --clear-groups cat $f 2>&1 >/dev/null)
    echo "$out" | grep -q "Permission denied"
    ! setpriv --reuid actual-budget --regid actual-budget --clear-groups ls /srv/other/data 2>/dev/null
    setpriv --reuid actual-other --regid actual-other --clear-groups cat $f >/dev/null'
check "... nor from inside budget's running unit (its mount namespace, its uid); its own data it can" in_ct_sh '
    pid=$(systemctl show -P MainPID actual-sync@budget.service)
    as_budget="nsenter -t $pid -m -S $(id -u actual-budget) -G $(id -g actual-budget)"
    ! out=$($as_budget cat /srv/other/data/server-files/account.sqlite 2>&1 >/dev/null)
    echo "$out" | grep -q "Permission denied"
    $as_budget cat /srv/budget/data/server-files/account.sqlite >/dev/null'
check "two accounts, two uids" in_ct_sh 'test "$(id -u actual-budget)" != "$(id -u actual-other)"'
step "an instance from before per-instance accounts (shared actual-sync) moves to its own on set-port"
in_ct_sh 'systemctl stop actual-sync@other.service
    chown -R actual-sync:actual-sync /srv/other/data; chgrp actual-sync /srv/other
    sed -i "/^User=/d; /^Group=/d" /etc/systemd/system/actual-sync@other.service.d/50-abssctl.conf
    userdel actual-other; systemctl daemon-reload; systemctl start actual-sync@other.service; sleep 3'
check "the legacy instance runs as actual-sync" in_ct_sh '
    test "$(ps -o user:32= -p $(systemctl show -P MainPID actual-sync@other.service))" = actual-sync'
check "set-port other 5011 moves it" in_ct abssctl instance set-port other 5011
check "... it runs as actual-other, every data file is actual-other's, none actual-sync's" in_ct_sh '
    test "$(ps -o user:32= -p $(systemctl show -P MainPID actual-sync@other.service))" = actual-other
    test "$(stat -c "%U %G" /srv/other/data/server-files/account.sqlite)" = "actual-other actual-other"
    test "$(stat -c %G /srv/other)" = actual-other
    test -z "$(find /srv/other -user actual-sync)"'
check "... and still serves its data (login works)" login_ok 5011 Correct-Horse-1

step "lifecycle: stop / start / restart / disable / enable / logs / env"
check "stop: unit inactive, vhost answers 503 (restarting page, Retry-After), not 502" in_ct_sh '
    abssctl stop budget && test "$(systemctl is-active actual-sync@budget.service)" = inactive
    test "$(curl -sk -o /dev/null -w %{http_code} --resolve budget.test:443:127.0.0.1 https://budget.test/health)" = 503'
check "stop again is a no-op" in_ct_sh 'abssctl --json stop budget | jq -e ".changed==false"'
check "start: healthy again through HTTPS" in_ct abssctl start budget
check "... https ok" https_ok budget.test
pid1=$(in_ct systemctl show -P MainPID actual-sync@budget.service)
check "restart: a new main pid, healthy" in_ct_sh "abssctl restart budget && test \"\$(systemctl show -P MainPID actual-sync@budget.service)\" != $pid1"
check "disable / enable flip is-enabled" in_ct_sh '
    abssctl instance disable budget && test "$(systemctl is-enabled actual-sync@budget.service)" = disabled
    abssctl instance enable budget && test "$(systemctl is-enabled actual-sync@budget.service)" = enabled'
check "logs shows the server's start" in_ct_sh 'abssctl logs budget --lines 200 | grep -q "Listening on 127.0.0.1:5000"'
check "env shows ACTUAL_PORT" in_ct_sh 'abssctl instance env budget | grep -qx ACTUAL_PORT=5000'

step "a crash-looping server is reported with its journal and rolled back"
in_ct_sh 'v=$(readlink /srv/app/current); mkdir -p /srv/app/v0.0.1
    jq ".version=\"0.0.1\" | .runtime.node=\"/usr/local/bin/crashy\"" /srv/app/$v/manifest.json >/srv/app/v0.0.1/manifest.json
    printf "#!/bin/sh\necho crashy: refusing to start >&2\nexit 7\n" >/usr/local/bin/crashy; chmod 755 /usr/local/bin/crashy'
in_ct abssctl instance create crash --domain crash.test --version 0.0.1 >"$CT_SHARE/crash.out" 2>&1
rc=$?
check "create exits 4 (got $rc)" test "$rc" = 4
check "the error names the unit and carries the journal line" \
    grep -q "actual-sync@crash.service is not healthy" "$CT_SHARE/crash.out"
check "... and the server's own output" grep -q "crashy: refusing to start" "$CT_SHARE/crash.out"
check "nothing left: registry, drop-in, data dir, vhost, port" in_ct_sh '
    ! grep -q crash /var/lib/abssctl/registry/registry.yml
    ! test -e /etc/systemd/system/actual-sync@crash.service.d
    ! test -e /srv/crash && ! test -e /etc/nginx/sites-enabled/abssctl-crash.conf
    test "$(systemctl is-active actual-sync@crash.service)" != active'
check "... and no account: the rollback removed the one it made" in_ct_sh '! id actual-crash 2>/dev/null'
in_ct abssctl -y instance set-version budget 0.0.1 --no-backup >"$CT_SHARE/setv.out" 2>&1
rc=$?
check "set-version to a crashing version exits 4 (got $rc)" test "$rc" = 4
check "... and budget is healthy again" https_ok budget.test
served=$(info_version budget.test)
check "... serving its old version $CURRENT (/info says ${served:-nothing})" test "$served" = "$CURRENT"

step "settings: set-port, set-domain, rename"
check "set-port 5077" in_ct abssctl instance set-port budget 5077
check "... serves through the vhost on the new port" https_ok budget.test
check "... registry and its port reservations follow" in_ct_sh '
    abssctl --json instance show budget | jq -e ".port==5077"
    abssctl --json ports list | jq -e "any(.ports[]; .port==5077) and all(.ports[]; .port!=5000)"'
check "set-fqdn (alias) money.test" in_ct abssctl instance set-fqdn budget money.test
check "... money.test serves" https_ok money.test
check "... budget.test is no longer ours" in_ct_sh '! grep -rq "budget.test" /etc/nginx/sites-enabled/'
in_ct id -u actual-budget >"$CT_SHARE/budget.uid"
check "rename budget -> wallet" in_ct abssctl -y instance rename budget wallet --no-backup
check "... wallet serves money.test" https_ok money.test
check "... old unit, drop-in and dir gone; data moved" in_ct_sh '
    ! test -e /etc/systemd/system/actual-sync@budget.service.d && ! test -e /srv/budget
    test -s /srv/wallet/data/server-files/account.sqlite
    test "$(systemctl is-enabled actual-sync@budget.service)" = disabled'
check "... the password still works (same data)" login_ok 5077 Correct-Horse-1
check "... the account moved with it: same uid, the server runs as actual-wallet" in_ct_sh '
    test "$(id -u actual-wallet)" = "$(cat /share/budget.uid)" && ! id actual-budget 2>/dev/null
    test "$(ps -o user:32= -p $(systemctl show -P MainPID actual-sync@wallet.service))" = actual-wallet
    test "$(stat -c %U /srv/wallet/data/server-files/account.sqlite)" = actual-wallet'

step "backup of a running instance: consistent archive, index entry, verify"
check "backup create wallet while it serves" in_ct_sh '
    abssctl --json backup create wallet --message e2e >/share/backup.json
    jq -e ".size > 0 and (.id|test(\"-wallet-\"))" /share/backup.json'
check "... archive 0600 with a .sha256 that sha256sum accepts; databases and .migrate in it" in_ct_sh '
    p=$(jq -r .path /share/backup.json)
    test "$(stat -c %a "$p")" = 600
    (cd "$(dirname "$p")" && sha256sum -c "$(basename "$p").sha256")
    tar --zstd -tf "$p" >/share/backup.list
    grep -qx data/server-files/account.sqlite /share/backup.list
    grep -qx data/.migrate /share/backup.list'
check "... the instance still serves" https_ok money.test
check "backup verify passes; the index says present, with the running version" in_ct_sh '
    id=$(jq -r .id /share/backup.json)
    abssctl backup verify "$id"
    abssctl --json backup show "$id" | jq -e ".backup.status==\"present\" and .backup.instance_version!=null"'

step "delete keeps data; --purge-data removes it"
check "delete without --yes and without a terminal is refused (exit 2)" \
    in_ct_sh 'rc=0; abssctl instance delete wallet </dev/null || rc=$?; test "$rc" = 2'
check "delete wallet --backup" in_ct abssctl -y instance delete wallet --backup
check "... took a backup of it first (reason pre-delete)" in_ct_sh '
    abssctl --json backup list wallet | jq -e "any(.backups[]; .reason==\"pre-delete\")"'
check "... unit inactive and disabled, vhost and registry entry gone, data kept" in_ct_sh '
    test "$(systemctl is-active actual-sync@wallet.service)" != active
    ! test -e /etc/nginx/sites-enabled/abssctl-wallet.conf
    abssctl --json instance list | jq -e ".instances|map(.name)==[\"other\"]"
    test -s /srv/wallet/data/server-files/account.sqlite'
check "... its account is kept, locked (no password, no shell), still owning the kept data" in_ct_sh '
    test "$(passwd -S actual-wallet | cut -d" " -f2)" = L
    test "$(getent passwd actual-wallet | cut -d: -f7)" = /usr/sbin/nologin
    test "$(stat -c %U /srv/wallet/data/server-files/account.sqlite)" = actual-wallet'
check "create + delete --purge-data removes the directory" in_ct_sh '
    abssctl instance create tmp1 --domain tmp1.test
    id actual-tmp1 >/dev/null
    abssctl -y instance delete tmp1 --purge-data --no-backup
    ! test -e /srv/tmp1'
check "... and its account and group" in_ct_sh '! id actual-tmp1 2>/dev/null && ! getent group actual-tmp1'

scenario_end
