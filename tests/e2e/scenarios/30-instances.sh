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
CURRENT=$(in_ct readlink /srv/app/current) CURRENT=${CURRENT#v}
# This is the run's one real install from nothing: later scenarios seed this tree.
[[ -n $CURRENT ]] && ct_export_version "$CURRENT"
check "https://budget.test/health answers UP through nginx" https_ok budget.test
check "login with the bootstrapped password works" login_ok 5000 Correct-Horse-1
check "list --json: active, up, enabled, pid, port 5000, system TLS" \
    jq_ct '.instances[0] | .active_state=="active" and .health=="up" and .enabled=="enabled" and .main_pid>0 and .port==5000 and .tls_source=="system"'
check "runs as actual-sync" in_ct_sh 'test "$(ps -o user= -p $(systemctl show -P MainPID actual-sync@budget.service))" = actual-sync'
check "listens on 127.0.0.1 only" in_ct_sh 'ss -ltn | grep -q "127.0.0.1:5000 " && ! ss -ltn | grep -Eq "(\*|0.0.0.0|\[::\]):5000 "'
check "data dir 0700 actual-sync, files private (UMask=0077)" in_ct_sh '
    test "$(stat -c "%a %U" /srv/budget/data)" = "700 actual-sync"
    test "$(stat -c %a /srv/budget/data/server-files/account.sqlite)" = 600'
check "drop-in sets trusted proxies and the data dir" in_ct_sh '
    grep -qx "Environment=ACTUAL_TRUSTED_PROXIES=127.0.0.1/32,::1/128" /etc/systemd/system/actual-sync@budget.service.d/50-abssctl.conf
    grep -qx "ReadWritePaths=/srv/budget/data" /etc/systemd/system/actual-sync@budget.service.d/50-abssctl.conf'
score=$(in_ct systemd-analyze security actual-sync@budget.service 2>/dev/null |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
log "systemd-analyze security actual-sync@budget.service: $score"
check "systemd-analyze security score <= 2.5 (got $score)" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.5) }'
check "create again with the same settings changes nothing" \
    in_ct_sh 'abssctl --json instance create budget --domain budget.test | jq -e ".changed==false"'

step "lifecycle: stop / start / restart / disable / enable / logs / env"
check "stop: unit inactive, vhost answers 502" in_ct_sh '
    abssctl stop budget && test "$(systemctl is-active actual-sync@budget.service)" = inactive
    test "$(curl -sk -o /dev/null -w %{http_code} --resolve budget.test:443:127.0.0.1 https://budget.test/health)" = 502'
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
    ! grep -q crash /var/lib/abssctl/registry/instances.yml /var/lib/abssctl/registry/ports.yml
    ! test -e /etc/systemd/system/actual-sync@crash.service.d
    ! test -e /srv/crash && ! test -e /etc/nginx/sites-enabled/abssctl-crash.conf
    test "$(systemctl is-active actual-sync@crash.service)" != active'
in_ct abssctl -y instance set-version budget 0.0.1 >"$CT_SHARE/setv.out" 2>&1
rc=$?
check "set-version to a crashing version exits 4 (got $rc)" test "$rc" = 4
check "... and budget is healthy again" https_ok budget.test
served=$(info_version budget.test)
check "... serving its old version $CURRENT (/info says ${served:-nothing})" test "$served" = "$CURRENT"

step "settings: set-port, set-domain, rename"
check "set-port 5077" in_ct abssctl instance set-port budget 5077
check "... serves through the vhost on the new port" https_ok budget.test
check "... registry and ports.yml follow" in_ct_sh '
    abssctl --json instance show budget | jq -e ".port==5077"
    grep -q "port: 5077" /var/lib/abssctl/registry/ports.yml && ! grep -q "port: 5000" /var/lib/abssctl/registry/ports.yml'
check "set-fqdn (alias) money.test" in_ct abssctl instance set-fqdn budget money.test
check "... money.test serves" https_ok money.test
check "... budget.test is no longer ours" in_ct_sh '! grep -rq "budget.test" /etc/nginx/sites-enabled/'
check "rename budget -> wallet" in_ct abssctl -y instance rename budget wallet
check "... wallet serves money.test" https_ok money.test
check "... old unit, drop-in and dir gone; data moved" in_ct_sh '
    ! test -e /etc/systemd/system/actual-sync@budget.service.d && ! test -e /srv/budget
    test -s /srv/wallet/data/server-files/account.sqlite
    test "$(systemctl is-enabled actual-sync@budget.service)" = disabled'
check "... the password still works (same data)" login_ok 5077 Correct-Horse-1

step "delete keeps data; --purge-data removes it"
check "delete without --yes and without a terminal is refused (exit 2)" \
    in_ct_sh 'rc=0; abssctl instance delete wallet </dev/null || rc=$?; test "$rc" = 2'
check "delete wallet" in_ct abssctl -y instance delete wallet
check "... unit inactive and disabled, vhost and registry entry gone, data kept" in_ct_sh '
    test "$(systemctl is-active actual-sync@wallet.service)" != active
    ! test -e /etc/nginx/sites-enabled/abssctl-wallet.conf
    abssctl --json instance list | jq -e ".instances==[]"
    test -s /srv/wallet/data/server-files/account.sqlite'
check "create + delete --purge-data removes the directory" in_ct_sh '
    abssctl instance create tmp1 --domain tmp1.test
    abssctl -y instance delete tmp1 --purge-data
    ! test -e /srv/tmp1'

scenario_end
