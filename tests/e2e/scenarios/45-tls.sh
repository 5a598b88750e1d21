#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual when this package has no cached tree)
#
# A plain Debian 12 box, WITHOUT TurnKey's /etc/ssl/private/cert.pem:
#   - `instance create` does not fail for want of a certificate: the vhost serves Debian's
#     snakeoil certificate when the ssl-cert package made one, else a self-signed one that
#     abssctl makes for the domain (key 0600); the result says which (`tls_fallback`);
#   - no site claims `default_server` on 443 here (Debian's `default` site listens on 80), so
#     abssctl adds its catch-all server: a TLS request for a name that is not an instance's
#     fails its handshake instead of being answered by the instance, and `nginx -t` passes;
#   - `tls install` gives the instance a real certificate (curl verifies it against the
#     domain), `tls status` and `tls verify` report it, a mismatched pair is refused with
#     exit 2 and nothing changed, `tls use-system` goes back to the fallback.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

DOMAIN=budget45.e2e.test
OTHER=other.test

step "machine: no system certificate, the names on 127.0.0.1"
in_ct_sh "rm -f /etc/ssl/private/cert.pem /etc/ssl/private/cert.key
    echo '127.0.0.1 $DOMAIN $OTHER' >> /etc/hosts"
check "Debian's default site claims the default on 80 only (or is absent)" in_ct_sh \
    '! grep -rhs "^[^#]*listen[^;]*443[^;]*default_server" /etc/nginx/sites-enabled/ /etc/nginx/conf.d/'
ct_seed_version 26.9.0
must "abssctl version switch 26.9.0" in_ct abssctl -y version switch 26.9.0 --no-backup

step "instance create without the system certificate: a fallback serves"
in_ct abssctl --json instance create budget --domain "$DOMAIN" >"$CT_SHARE/create45.json" || true
must "create budget succeeded" jq -e '.name == "budget"' "$CT_SHARE/create45.json"
fallback=$(jq -r '.vhost.tls_fallback' "$CT_SHARE/create45.json")
log "TLS fallback: $fallback"
check "the result says which fallback (snakeoil or self_signed)" \
    sh -c "test '$fallback' = snakeoil || test '$fallback' = self_signed"
if [[ $fallback == self_signed ]]; then
    check "the self-signed key is 0600 root" in_ct_sh \
        "test \"\$(stat -c '%a %U' /var/lib/abssctl/tls/self-signed/$DOMAIN/privkey.pem)\" = '600 root'"
fi
check "tls status names the fallback" in_ct_sh \
    "abssctl --json tls status | jq -e '.instances[0].fallback == \"$fallback\"'"
check "https://$DOMAIN/health is UP" in_ct_sh "for i in \$(seq 1 25); do
    curl -sfk --resolve $DOMAIN:443:127.0.0.1 https://$DOMAIN/health | grep -q UP && exit 0
    sleep 0.2; done; exit 1"

step "the catch-all default server: another name gets no TLS handshake"
check "abssctl-00-default.conf is enabled" in_ct_sh \
    'test "$(readlink /etc/nginx/sites-enabled/abssctl-00-default.conf)" = ../sites-available/abssctl-00-default.conf'
check "it rejects handshakes" in_ct grep -q 'ssl_reject_handshake on;' /etc/nginx/sites-available/abssctl-00-default.conf
check "nginx -t passes" in_ct nginx -t
check "https://$OTHER/ fails the TLS handshake (curl exit 35)" in_ct_sh "
    rc=0; curl -sk -o /dev/null --resolve $OTHER:443:127.0.0.1 https://$OTHER/ || rc=\$?
    test \$rc = 35"
check "https://127.0.0.1/ (no name) fails the handshake too" in_ct_sh "
    rc=0; curl -sk -o /dev/null https://127.0.0.1/ || rc=\$?
    test \$rc = 35"

step "tls install: a certificate for the domain, verified by curl"
in_ct_sh "cd /root && openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 90 \
    -subj /CN=$DOMAIN -addext subjectAltName=DNS:$DOMAIN -keyout d.key -out d.crt 2>/dev/null
    openssl req -x509 -nodes -newkey rsa:2048 -days 90 -subj /CN=$DOMAIN \
    -addext subjectAltName=DNS:$DOMAIN -keyout x.key -out x.crt 2>/dev/null"
before=$(in_ct sha256sum /etc/nginx/sites-available/abssctl-budget.conf)
set +e
in_ct abssctl tls install --instance budget --cert /root/d.crt --key /root/x.key --yes 2>"$CT_SHARE/mismatch.err"
rc=$?
set -e
check "a mismatched pair is refused with exit 2" test "$rc" = 2
check "... saying the key does not belong" grep -q 'does not belong' "$CT_SHARE/mismatch.err"
check "... and the vhost is unchanged" test "$(in_ct sha256sum /etc/nginx/sites-available/abssctl-budget.conf)" = "$before"
must "abssctl tls install --instance budget --cert d.crt --key d.key --yes" \
    in_ct abssctl tls install --instance budget --cert /root/d.crt --key /root/d.key --yes
check "the key is 0600 root" in_ct_sh \
    'test "$(stat -c "%a %U" /var/lib/abssctl/tls/instances/budget/privkey.pem)" = "600 root"'
check "https://$DOMAIN/health verifies against the installed certificate" in_ct_sh "for i in \$(seq 1 25); do
    curl -sf --cacert /root/d.crt --resolve $DOMAIN:443:127.0.0.1 https://$DOMAIN/health | grep -q UP && exit 0
    sleep 0.2; done; exit 1"
check "tls status: custom, expiring in about 90 days" in_ct_sh \
    "abssctl --json tls status | jq -e '.instances[0].source == \"custom\" and .instances[0].days_left >= 88'"
check "tls verify --instance budget passes" in_ct abssctl tls verify --instance budget
check "no PEM body in any output" in_ct_sh \
    '! { abssctl tls status; abssctl tls verify --instance budget; abssctl --json tls status; } | grep -q -- "-----BEGIN"'

step "tls use-system: back to the fallback"
must "abssctl tls use-system --instance budget" in_ct abssctl tls use-system --instance budget
check "tls status: system again, with the fallback" in_ct_sh \
    "abssctl --json tls status | jq -e '.instances[0].source == \"system\" and .instances[0].fallback == \"$fallback\"'"
check "https://$DOMAIN/health is UP" in_ct_sh "for i in \$(seq 1 25); do
    curl -sfk --resolve $DOMAIN:443:127.0.0.1 https://$DOMAIN/health | grep -q UP && exit 0
    sleep 0.2; done; exit 1"

scenario_end
