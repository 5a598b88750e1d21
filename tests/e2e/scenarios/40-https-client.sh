#!/bin/bash
# e2e-network: host  (the registry: version install and the client install need it)
#
# Instances serve users over HTTPS through their nginx vhosts: the official client
# `@actual-app/api` (same version as the server) creates a budget, adds transactions, syncs,
# and a FRESH client downloads them again through https://<domain>/, the domain resolved to
# 127.0.0.1 and the self-signed certificate (made the way TurnKey makes its own) trusted.
# A person's browser too: Debian's chromium, headless on the host (tests/e2e/browser), loads
# the web app, requires it to be cross-origin isolated (COOP/COEP), signs in, opens the
# client's budget and reads the account's balance; through a vhost that drops COOP/COEP the
# same check fails.
# Two instances on two versions serve their clients side by side; `version switch` moves
# the instance bound to `current` to the newer version (restarted, data migrated) and the
# newer client reads what the older one wrote.
# A stopped instance is answered by nginx with 503 and Retry-After (its vhost's page).
# Then the fault: an operator template that nginx rejects makes set-domain exit 4 with
# nginx's first error line, the vhost stays byte-identical, and the client still gets its
# data through the old vhost.
#
# Needs from the package: `abssctl version install`, `abssctl instance create --domain
# --password-file [--https-port]`, `abssctl instance set-domain`.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

VERSION=26.8.1 # current at first; `budget` follows it
NEWER=26.9.0   # the instance `newer` is bound to it; then `version switch` moves current
DOMAIN=budget.e2e.test
DOMAIN2=money.e2e.test
DOMAIN3=newer.e2e.test
CLIENT_SRC=$E2E_DIR/client
for v in $VERSION $NEWER; do
    grep -q "\"api-$v\": \"npm:@actual-app/api@$v\"" "$CLIENT_SRC/package.json" ||
        die "no pinned client for server $v: add the alias api-$v to tests/e2e/client/package.json"
done

step "TLS: the system certificate as TurnKey makes it (key, then cert.pem = cert + key + DH)"
must "self-signed /etc/ssl/private/cert.{pem,key} for $DOMAIN and $DOMAIN2" in_ct_sh "
    install -d -m 0700 /etc/ssl/private
    cd /etc/ssl/private
    openssl req -x509 -nodes -newkey rsa:2048 -sha256 -days 3650 -subj /CN=$DOMAIN \
        -addext subjectAltName=DNS:$DOMAIN,DNS:$DOMAIN2,DNS:$DOMAIN3 -keyout cert.key -out cert.crt 2>/dev/null
    openssl dhparam -dsaparam -out dhparams.pem 2048 2>/dev/null
    cat cert.crt cert.key dhparams.pem > cert.pem
    chmod 0400 cert.pem cert.key
    cp cert.crt /root/e2e-ca.crt
    printf '127.0.0.1 %s %s %s\n' $DOMAIN $DOMAIN2 $DOMAIN3 >> /etc/hosts"

step "Actual $VERSION current, $NEWER beside it; an instance created with a password"
# Installing is scenario 20's and 30's subject; here the trees this package built earlier
# in the run are seeded (a real install when one is not cached yet).
ct_seed_version "$VERSION"
ct_seed_version "$NEWER"
must "abssctl version switch $VERSION makes it current" in_ct abssctl -y version switch "$VERSION" --no-backup
check "current is $VERSION" in_ct_sh "test \"\$(readlink /srv/app/current)\" = v$VERSION"
head -c 18 /dev/urandom | base64 >"$CT_SHARE/password"
must "abssctl instance create budget --domain $DOMAIN --password-file" \
    in_ct abssctl instance create budget --domain "$DOMAIN" --password-file /share/password

step "the vhost: enabled by a relative symlink, never default_server, passes nginx -t"
check "sites-enabled link is relative" in_ct_sh \
    'test "$(readlink /etc/nginx/sites-enabled/abssctl-budget.conf)" = ../sites-available/abssctl-budget.conf'
check "no default_server directive" in_ct_sh \
    '! grep -v "^\s*#" /etc/nginx/sites-available/abssctl-budget.conf | grep -q default_server'
check "nginx -t passes" in_ct nginx -t

step "HTTPS through nginx"
check "GET https://$DOMAIN/health is UP" in_ct_sh \
    "curl -sS --cacert /root/e2e-ca.crt https://$DOMAIN/health | grep -q '\"status\":\"UP\"'"
check "HTTP/2 is negotiated" in_ct_sh \
    "curl -sS --http2 -o /dev/null -w '%{http_version}' --cacert /root/e2e-ca.crt https://$DOMAIN/health | grep -qx 2"
check "http:// redirects to https://" in_ct_sh \
    "curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' http://$DOMAIN/x | grep -qx '301 https://$DOMAIN/x'"
check "the server's COOP/COEP headers pass through" in_ct_sh \
    "h=\$(curl -sSI --cacert /root/e2e-ca.crt https://$DOMAIN/); echo \"\$h\" | grep -qi '^cross-origin-opener-policy: same-origin' && echo \"\$h\" | grep -qi '^cross-origin-embedder-policy: require-corp'"

step "a stopped instance: nginx answers 503 with Retry-After (clients retry), not 502"
must "abssctl stop budget" in_ct abssctl stop budget
check "https://$DOMAIN/health is 503 with Retry-After while budget is stopped" in_ct_sh "
    h=\$(curl -sS -o /dev/null -D - --cacert /root/e2e-ca.crt https://$DOMAIN/health | tr -d '\\r')
    echo \"\$h\" | head -1 | grep -q ' 503' && echo \"\$h\" | grep -qi '^retry-after: 5\$'"
must "abssctl start budget: healthy again" in_ct abssctl start budget

step "the official clients @actual-app/api $VERSION and $NEWER, installed with the managed Node runtime"
ct_api_clients
client() { ct_client "$@"; }
# info_version <domain>: the server version /info reports through the vhost
info_version() {
    in_ct curl -sS --cacert /root/e2e-ca.crt "https://$1/info" | jq -r '.build.version'
}
out=$(client "https://$DOMAIN/" write e2e40 2>"$CT_SHARE/client-write.err") || true
SYNC_ID=$(jq -r '.syncId // empty' <<<"$out" 2>/dev/null || true)
ACCOUNT_ID=$(jq -r '.accountId // empty' <<<"$out" 2>/dev/null || true)
must "client: budget created, 5 transactions added and synced via https://$DOMAIN/" \
    sh -c "test -n '$SYNC_ID' && test -n '$ACCOUNT_ID' || { tail -20 '$CT_SHARE/client-write.err'; exit 1; }"
check "fresh client downloads the 5 transactions via https://$DOMAIN/" \
    client "https://$DOMAIN/" read "$SYNC_ID" "$ACCOUNT_ID" 5 e2e40

step "a person's browser: Debian's chromium (headless, on the host) opens https://$DOMAIN/"
# The API client passes even when the vhost drops COOP/COEP; the web app does not start
# without them. Chromium reaches the container's nginx on the host's 127.0.0.1 (host
# network), the name mapped by --host-resolver-rules, the self-signed certificate accepted
# by its public-key pin alone. The expected balance is what client.mjs wrote (its output).
BUDGET_NAME=$(jq -r '.budgetName // empty' <<<"$out" 2>/dev/null || true)
BALANCE=$(jq -r '.balance // empty' <<<"$out" 2>/dev/null || true)
must "the client reported its budget's name and the balance its transactions add up to" \
    sh -c "test -n '$BUDGET_NAME' && test '$BALANCE' -eq '$BALANCE' 2>/dev/null"
BROWSER_DRIVER=$(e2e_browser_driver) || true
must "the browser driver (puppeteer-core, cached by its package.json) is on the host" \
    test -f "$BROWSER_DRIVER/node_modules/puppeteer-core/package.json"
BROWSER_SPKI=$(ct_spki /root/e2e-ca.crt)
# browser [VAR=value...] <tag> <url>: the browser check (tests/e2e/browser/browser.mjs) as
# a user of `budget` (the variables override its settings); its stage lines go to
# $CT_SHARE/<tag>.out, its screenshots and failure artifacts beside them.
browser() {
    local over=()
    while [[ $1 == *=* ]]; do over+=("$1") && shift; done
    env BROWSER_DRIVER_DIR="$BROWSER_DRIVER" BROWSER_RESOLVE="$DOMAIN=127.0.0.1" \
        BROWSER_SPKI="$BROWSER_SPKI" BROWSER_PASSWORD_FILE="$CT_SHARE/password" \
        BROWSER_BUDGET="$BUDGET_NAME" BROWSER_ACCOUNT_ID="$ACCOUNT_ID" BROWSER_BALANCE_CENTS="$BALANCE" \
        BROWSER_OUT="$CT_SHARE" BROWSER_TAG="$1" "${over[@]}" node "$E2E_DIR/browser/browser.mjs" "$2" \
        >"$CT_SHARE/$1.out" 2>&1
}
# browser_stage <tag> <stage>: that run passed that stage (else show what it printed).
browser_stage() {
    grep "^ok $2:" "$CT_SHARE/$1.out" || {
        cat "$CT_SHARE/$1.out"
        return 1
    }
}
t_browser=$SECONDS
browser browser "https://$DOMAIN/" || true
log "browser check took $((SECONDS - t_browser)) s $(grep -o "^([0-9]* requests)" "$CT_SHARE/browser.out" || true)"
check "chromium: https://$DOMAIN/ is crossOriginIsolated, SharedArrayBuffer exists" \
    browser_stage browser isolated
check "chromium: a wrong password is refused (Actual's login page)" browser_stage browser refused
check "chromium: signs in with the bootstrapped password" browser_stage browser login
check "chromium: opens the budget $BUDGET_NAME the API client made" browser_stage browser budget
check "chromium: the account shows the balance of the client's transactions ($BALANCE cents)" \
    browser_stage browser balance

step "negative control: the same app through a vhost that drops COOP/COEP fails the browser check"
# A temporary TLS server on 8444 in front of the instance's vhost, hiding the two headers
# (the most common self-hosting mistake upstream); removed again before the next step.
in_ct_sh "cat > /etc/nginx/conf.d/e2e-no-coop-coep.conf <<'CONF'
server {
    listen 8444 ssl;
    server_name $DOMAIN;
    ssl_certificate /etc/ssl/private/cert.crt;
    ssl_certificate_key /etc/ssl/private/cert.key;
    location / {
        proxy_pass https://127.0.0.1:443;
        proxy_ssl_server_name on;
        proxy_ssl_name $DOMAIN;
        proxy_set_header Host $DOMAIN;
        proxy_hide_header Cross-Origin-Opener-Policy;
        proxy_hide_header Cross-Origin-Embedder-Policy;
    }
}
CONF
nginx -t 2>/dev/null && systemctl reload nginx"
check "the control vhost serves the app (200) without COOP/COEP" in_ct_sh "
    h=\$(curl -sSI --cacert /root/e2e-ca.crt https://$DOMAIN:8444/)
    echo \"\$h\" | head -1 | grep -q ' 200' && ! echo \"\$h\" | grep -qi '^cross-origin-'"
set +e
browser browser-no-coep "https://$DOMAIN:8444/"
rc=$?
set -e
check "the browser check exits non-zero there" test "$rc" != 0
check "... because chromium reports crossOriginIsolated false" \
    grep -q '^FAIL isolated: crossOriginIsolated is false' "$CT_SHARE/browser-no-coep.out"
in_ct_sh 'rm /etc/nginx/conf.d/e2e-no-coop-coep.conf && nginx -t 2>/dev/null && systemctl reload nginx'
# The server answers 500 requests a minute per client address, and a load of the web app
# makes hundreds: when the browser left little of the window, let it end before the API
# clients (the same address) go on.
read -r rl_left rl_reset < <(in_ct curl -sSI --cacert /root/e2e-ca.crt "https://$DOMAIN/health" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="ratelimit-remaining"{r=$2} tolower($1)=="ratelimit-reset"{t=$2} END{print r+0, t+0}')
log "rate limit after the browser: $rl_left requests left, window ends in $rl_reset s"
if ((rl_left < 150)); then sleep $((rl_reset + 1)); fi

step "fault: an operator template that nginx rejects"
sed 's/proxy_http_version 1.1;/proxy_http_versoin 1.1;/' "$REPO_ROOT/templates/nginx-vhost.conf.tera" \
    >"$CT_SHARE/broken.tera"
in_ct_sh 'install -d /etc/abssctl/templates && cp /share/broken.tera /etc/abssctl/templates/nginx-vhost.conf.tera'
before=$(in_ct sha256sum /etc/nginx/sites-available/abssctl-budget.conf)
set +e
in_ct abssctl instance set-domain budget "$DOMAIN2" --yes >"$CT_SHARE/fault.out" 2>"$CT_SHARE/fault.err"
rc=$?
set -e
check "set-domain exits 4 (provider)" test "$rc" = 4
check "the error names nginx's first error line" grep -q 'unknown directive "proxy_http_versoin"' "$CT_SHARE/fault.err"
after=$(in_ct sha256sum /etc/nginx/sites-available/abssctl-budget.conf)
check "the vhost file is byte-identical" test "$after" = "$before"
check "no .new file left behind" in_ct_sh '! ls /etc/nginx/sites-available/ | grep -q "\.new$"'
check "nginx -t passes after the restore" in_ct nginx -t
check "the previous vhost still serves the client (fresh download via https://$DOMAIN/)" \
    client "https://$DOMAIN/" read "$SYNC_ID" "$ACCOUNT_ID" 5 e2e40

step "template fixed: set-domain moves the instance to $DOMAIN2"
in_ct rm -f /etc/abssctl/templates/nginx-vhost.conf.tera
check "abssctl instance set-domain budget $DOMAIN2" in_ct abssctl instance set-domain budget "$DOMAIN2" --yes
check "fresh client downloads the transactions via https://$DOMAIN2/" \
    client "https://$DOMAIN2/" read "$SYNC_ID" "$ACCOUNT_ID" 5 e2e40
# (On 443 nginx still answers an unknown name with its first TLS server when no site claims
# default_server there, as on plain Debian; TurnKey's own site does claim it. So the proof
# is the configuration and the port-80 redirect, not a TLS request.)
check "no enabled vhost names $DOMAIN any more" in_ct_sh \
    "! grep -rqs 'server_name $DOMAIN;' /etc/nginx/sites-enabled/"
check "http://$DOMAIN/ is no longer redirected by the instance's vhost" in_ct_sh \
    "test \"\$(curl -sS -o /dev/null -w '%{http_code}' http://$DOMAIN/)\" != 301"

step "a second instance on Actual $NEWER beside the first ($VERSION): both serve their own client"
must "abssctl instance create newer --domain $DOMAIN3 --version $NEWER --password-file" \
    in_ct abssctl instance create newer --domain "$DOMAIN3" --version "$NEWER" --password-file /share/password
check "https://$DOMAIN2/info reports $VERSION" test "$(info_version "$DOMAIN2")" = "$VERSION"
check "https://$DOMAIN3/info reports $NEWER" test "$(info_version "$DOMAIN3")" = "$NEWER"
out=$(client --api "$NEWER" "https://$DOMAIN3/" write e2e40n 2>"$CT_SHARE/client-write-newer.err") || true
SYNC3=$(jq -r '.syncId // empty' <<<"$out" 2>/dev/null || true)
ACCOUNT3=$(jq -r '.accountId // empty' <<<"$out" 2>/dev/null || true)
must "client $NEWER: budget created and synced via https://$DOMAIN3/" \
    sh -c "test -n '$SYNC3' && test -n '$ACCOUNT3' || { tail -20 '$CT_SHARE/client-write-newer.err'; exit 1; }"
check "fresh client $NEWER downloads its 5 transactions via https://$DOMAIN3/" \
    client --api "$NEWER" "https://$DOMAIN3/" read "$SYNC3" "$ACCOUNT3" 5 e2e40n
check "... while the $VERSION instance still serves its client via https://$DOMAIN2/" \
    client "https://$DOMAIN2/" read "$SYNC_ID" "$ACCOUNT_ID" 5 e2e40

step "version switch $NEWER: the instance bound to current follows (restarted healthy, data migrated)"
pid_before=$(in_ct systemctl show -P MainPID actual-sync@budget.service)
must "abssctl -y version switch $NEWER" in_ct abssctl -y version switch "$NEWER" --no-backup
check "current points to v$NEWER" in_ct_sh "test \"\$(readlink /srv/app/current)\" = v$NEWER"
check "budget was restarted (new main pid)" in_ct_sh \
    "test \"\$(systemctl show -P MainPID actual-sync@budget.service)\" != $pid_before"
check "https://$DOMAIN2/info now reports $NEWER" test "$(info_version "$DOMAIN2")" = "$NEWER"
check "fresh client $NEWER downloads what client $VERSION wrote, via https://$DOMAIN2/" \
    client --api "$NEWER" "https://$DOMAIN2/" read "$SYNC_ID" "$ACCOUNT_ID" 5 e2e40
check "newer (bound to $NEWER exactly) was left alone" test "$(info_version "$DOMAIN3")" = "$NEWER"

step "--https-port: a TLS listener of its own for a machine without DNS"
must "abssctl instance create lan --domain lan.e2e.test --https-port 8443" \
    in_ct abssctl instance create lan --domain lan.e2e.test --https-port 8443 --password-file /share/password
check "https://127.0.0.1:8443/health answers UP (the only server on that port)" in_ct_sh \
    "curl -sSk https://127.0.0.1:8443/health | grep -q '\"status\":\"UP\"'"

scenario_end
