#!/bin/bash
# e2e-network: host  (ct_seed_version and the clients install for real when nothing is cached)
# e2e-suite: trixie
#
# Debian 13 (TurnKey 19: systemd 257, nginx 1.26) is a supported target of the same
# bookworm-built .deb: apt installs it cleanly; remove keeps the state, a reinstall finds
# it, purge removes abssctl's own files and keeps instance data. An instance on the Actual
# version the bookworm scenarios built (its native modules run on trixie's newer glibc)
# serves the official client `@actual-app/api` through HTTPS after create, restart,
# set-port, set-domain, rename and stop/start, and every `nginx -t` on the way is free of
# warnings (the vhost says `http2 on;` to nginx >= 1.25.1, not `listen ... http2`).
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

VERSION=26.9.0 # one of the versions the bookworm scenarios seed; its client is pinned
DOMAIN=budget.e2e.test
DOMAIN2=money.e2e.test
grep -q "\"api-$VERSION\"" "$E2E_DIR/client/package.json" ||
    die "no pinned client for server $VERSION in tests/e2e/client/package.json"
apt_ct() { in_ct env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@"; }
# nginx_clean: `nginx -t` passes and prints no warning (nginx prints both on stderr).
nginx_clean() {
    local out
    out=$(in_ct nginx -t 2>&1) || { echo "$out"; return 1; }
    ! grep -E '\[(warn|emerg|alert|crit|error)\]' <<<"$out"
}
# https_ok <domain>: /health through the vhost answers UP (retried across a reload).
https_ok() {
    in_ct_sh "for i in \$(seq 1 25); do
        curl -sf --cacert /root/e2e-ca.crt https://$1/health | grep -q UP && exit 0
        sleep 0.2; done; exit 1"
}
# reads <domain> <what>: a FRESH client downloads the 5 transactions via https://<domain>/.
reads() {
    check "$2: a fresh client reads the 5 transactions via https://$1/" \
        ct_client "https://$1/" read "$SYNC_ID" "$ACCOUNT_ID" 5 e2e90
}

step "Debian 13 as TurnKey 19 has it"
check "the container is Debian 13 (trixie)" in_ct grep -qx 'VERSION_CODENAME=trixie' /etc/os-release
sd=$(in_ct systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
ngx=$(in_ct nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
log "systemd $sd, nginx $ngx, $(in_ct python3 --version)"
check "systemd >= 257 (got $sd)" test "${sd:-0}" -ge 257
check "nginx >= 1.26 (got $ngx)" in_ct dpkg --compare-versions "${ngx:-0}" ge 1.26

step "the bookworm-built package installs by apt (tests/e2e/run did it)"
version=$(in_ct dpkg-query -W -f '${Version}' abssctl)
check "dpkg: abssctl $version install ok installed" \
    in_ct_sh 'test "$(dpkg-query -W -f "\${Status}" abssctl)" = "install ok installed"'
check "apt and the maintainer scripts printed no warning or error" \
    sh -c "! grep -Ei '^(W|E):|warning|error|fail' '$CT_RUNDIR/apt-install.log'"
check "abssctl --version is the package's" in_ct_sh "abssctl --version | grep -Fx 'abssctl ${version%-*}'"
check "the users, the state dir and the update-check timer are in place" in_ct_sh '
    id -u actual-sync >/dev/null && id -u abssctl-build >/dev/null
    test "$(stat -c "%a %U:%G" /var/lib/abssctl)" = "750 root:root"
    test "$(systemctl is-enabled abssctl-update-check.timer)" = enabled'
check "systemd 257 accepts the shipped units (systemd-analyze verify)" in_ct_sh '
    systemd-analyze verify actual-sync@demo.service abssctl-backup@demo.timer abssctl-backup@demo.service \
        abssctl-update-check.timer abssctl-update-check.service 2>&1 | { ! grep -v -e "instance.env" -e "^$"; }'
check "the stock nginx configuration is clean before abssctl adds anything" nginx_clean

# The confconsole plugin and the inithook helper on trixie's Python 3.13: their CPU-tier
# tests (fakes of abssctl and of TurnKey's libraries, stdlib only) run by the container's
# python3 instead of the host's 3.11, warnings as errors; in the background (they need
# nothing of the rest), their result checked at the end.
mkdir -p "$CT_SHARE/py/tests"
cp -a "$REPO_ROOT/confconsole" "$REPO_ROOT/inithooks" "$REPO_ROOT/debian" "$REPO_ROOT/Cargo.toml" "$CT_SHARE/py/"
cp -a "$REPO_ROOT/tests/confconsole" "$REPO_ROOT/tests/inithooks" "$CT_SHARE/py/tests/"
in_ct_sh 'cd /share/py && export PYTHONDONTWRITEBYTECODE=1
    python3 -c "import sys; print(sys.version); assert sys.version_info[:2] == (3, 13)"
    python3 -W error -m unittest discover -s tests/confconsole
    python3 -W error -m unittest discover -s tests/inithooks -p "test_*.py"' >"$CT_SHARE/py.out" 2>&1 &
py_pid=$!

step "remove keeps the state, a reinstall finds it"
in_ct_sh 'mkdir -p /var/lib/abssctl/registry && echo "marker: 1" > /var/lib/abssctl/registry/e2e-marker.yml'
check "apt-get remove abssctl" apt_ct remove abssctl
check "the binary is gone, config and state stay" in_ct_sh '
    ! command -v abssctl && test -f /etc/abssctl/config.yml && grep -qx "marker: 1" /var/lib/abssctl/registry/e2e-marker.yml'
check "apt-get install of the .deb again" apt_ct install "$E2E_DEB"
check "the reinstall found the state and the timer enabled" in_ct_sh '
    grep -qx "marker: 1" /var/lib/abssctl/registry/e2e-marker.yml && rm /var/lib/abssctl/registry/e2e-marker.yml
    test "$(systemctl is-enabled abssctl-update-check.timer)" = enabled'

step "an instance on Actual $VERSION (the tree built on bookworm when the run has it)"
ct_system_cert "$DOMAIN" "$DOMAIN2"
ct_seed_version "$VERSION"
must "abssctl version switch $VERSION" in_ct abssctl -y version switch "$VERSION" --no-backup
head -c 18 /dev/urandom | base64 >"$CT_SHARE/password"
must "abssctl instance create budget --domain $DOMAIN --password-file" \
    in_ct abssctl instance create budget --domain "$DOMAIN" --password-file /share/password
check "the vhost uses 'http2 on;' and no 'listen ... http2'" in_ct_sh '
    f=/etc/nginx/sites-available/abssctl-budget.conf
    grep -Eq "^\s*http2 on;" $f && ! grep -Eq "^\s*listen .*http2" $f'
check "nginx -t: no warning" nginx_clean
# The control: the nginx 1.22 form in a server of its own makes nginx_clean fail here.
in_ct_sh 'cat > /etc/nginx/conf.d/e2e-old-http2.conf <<CONF
server { listen 8445 ssl http2; server_name old.e2e.test;
    ssl_certificate /etc/ssl/private/cert.crt; ssl_certificate_key /etc/ssl/private/cert.key; }
CONF'
# old_form_warns: nginx_clean fails, and for the deprecated listen parameter.
old_form_warns() {
    local out
    out=$(nginx_clean) && { echo "nginx_clean passed: $out"; return 1; }
    grep -q 'listen \.\.\. http2.*deprecated' <<<"$out" || { echo "$out"; return 1; }
}
check "control: 'listen ... http2' makes nginx -t warn (deprecated) on nginx $ngx" old_form_warns
in_ct rm /etc/nginx/conf.d/e2e-old-http2.conf
check "HTTP/2 is negotiated through the vhost" in_ct_sh \
    "curl -sS --http2 -o /dev/null -w '%{http_version}' --cacert /root/e2e-ca.crt https://$DOMAIN/health | grep -qx 2"
score=$(in_ct systemd-analyze security actual-sync@budget.service 2>/dev/null |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
log "systemd-analyze security actual-sync@budget.service on systemd $sd: $score"
check "systemd-analyze security score <= 1.1 on systemd $sd too (got $score)" \
    awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 1.1) }'

step "the official client @actual-app/api $VERSION writes and reads through HTTPS"
ct_api_clients
out=$(ct_client "https://$DOMAIN/" write e2e90 2>"$CT_SHARE/client-write.err") || true
SYNC_ID=$(jq -r '.syncId // empty' <<<"$out" 2>/dev/null || true)
ACCOUNT_ID=$(jq -r '.accountId // empty' <<<"$out" 2>/dev/null || true)
must "client: budget created, 5 transactions added and synced via https://$DOMAIN/" \
    sh -c "test -n '$SYNC_ID' && test -n '$ACCOUNT_ID' || { tail -20 '$CT_SHARE/client-write.err'; exit 1; }"
reads "$DOMAIN" "create"

step "lifecycle and settings, each followed by the client"
pid=$(in_ct systemctl show -P MainPID actual-sync@budget.service)
check "abssctl restart budget: a new main pid" in_ct_sh \
    "abssctl restart budget && test \"\$(systemctl show -P MainPID actual-sync@budget.service)\" != $pid"
reads "$DOMAIN" "restart"
check "abssctl instance set-port budget 5077" in_ct abssctl instance set-port budget 5077
check "... listens on 5077" in_ct_sh 'ss -ltn | grep -q "127.0.0.1:5077 "'
reads "$DOMAIN" "set-port"
check "abssctl instance set-domain budget $DOMAIN2" in_ct abssctl instance set-domain budget "$DOMAIN2" --yes
check "... nginx -t: no warning" nginx_clean
reads "$DOMAIN2" "set-domain"
check "abssctl instance rename budget wallet" in_ct abssctl -y instance rename budget wallet --no-backup
check "... runs as actual-wallet, the old unit's drop-in gone" in_ct_sh '
    test "$(ps -o user:32= -p $(systemctl show -P MainPID actual-sync@wallet.service))" = actual-wallet
    ! test -e /etc/systemd/system/actual-sync@budget.service.d'
check "... nginx -t: no warning" nginx_clean
reads "$DOMAIN2" "rename"
check "abssctl stop wallet: inactive" in_ct_sh \
    'abssctl stop wallet && test "$(systemctl is-active actual-sync@wallet.service)" = inactive'
check "... nginx answers 503 meanwhile" in_ct_sh \
    "test \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert /root/e2e-ca.crt https://$DOMAIN2/health)\" = 503"
check "abssctl start wallet" in_ct abssctl start wallet
check "... healthy again" https_ok "$DOMAIN2"
reads "$DOMAIN2" "stop/start"

if in_ct abssctl doctor --help >/dev/null 2>&1; then
    step "doctor"
    check "abssctl doctor finds nothing failing on trixie" in_ct abssctl doctor
else
    log "abssctl doctor does not exist in this build: skipped"
fi

step "the confconsole plugin's and the inithook helper's tests on Python 3.13"
wait "$py_pid" && py_rc=0 || py_rc=$?
check "python3 is 3.13 and both test suites pass with -W error" sh -c "cat '$CT_SHARE/py.out'; exit $py_rc"

step "purge keeps instance data"
check "apt-get purge abssctl" apt_ct purge abssctl
check "abssctl's own files are gone" in_ct_sh '! test -e /etc/abssctl && ! test -e /var/lib/abssctl && ! test -e /var/log/abssctl'
check "the instance's data stays" in_ct test -s /srv/wallet/data/server-files/account.sqlite

scenario_end
