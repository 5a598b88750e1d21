#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual when this package has no cached tree)
#
# TurnKey integration on a real box (docs/turnkey.md): `abssctl firstboot` from an
# installed version without `current` to a healthy instance with its password, a second
# run that changes nothing, another domain refused; the shipped first-boot helper run the
# way inithooks runs it (preseeded, with a double of libinithooks: TurnKey's own is not in
# this Debian container); the shipped TKLBAM hook: `backup pre` snapshots the running
# instance, `restore post` brings back an instance whose data dir is gone, healthy.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

VERSION=26.9.0 # the version other scenarios seed: the tree is shared
DOMAIN=budget.e2e.test
OTHER=other.e2e.test

https_ok() {
    in_ct_sh "for i in \$(seq 1 25); do
        curl -sfk --resolve $1:443:127.0.0.1 https://$1/health | grep -q UP && exit 0
        sleep 0.2; done; exit 1"
}
# login_ok: POST /account/login with the password of /share/password answers a token.
login_ok() {
    in_ct_sh "curl -sf -X POST -H 'Content-Type: application/json' --data @/share/login.json \
        http://127.0.0.1:5000/account/login | grep -q token"
}

step "machine: system certificate for $DOMAIN, Actual $VERSION installed, no current"
must "a self-signed system certificate" ct_system_cert "$DOMAIN" "$OTHER"
ct_seed_version "$VERSION"
check "no current yet" in_ct_sh '! test -e /srv/app/current'
head -c 18 /dev/urandom | base64 >"$CT_SHARE/password"
printf '{"loginMethod":"password","password":"%s"}' "$(cat "$CT_SHARE/password")" >"$CT_SHARE/login.json"

step "abssctl firstboot: current, instance, password, HTTPS"
must "firstboot --domain $DOMAIN --password-file" \
    in_ct abssctl --yes firstboot --domain "$DOMAIN" --password-file /share/password
check "current points at $VERSION" in_ct_sh "test \"\$(readlink /srv/app/current)\" = v$VERSION"
check "https://$DOMAIN/health answers UP" https_ok "$DOMAIN"
check "login with the password given works" login_ok

step "idempotent: a second run changes nothing; another domain is refused"
sum() { in_ct sha256sum /var/lib/abssctl/registry/registry.yml; }
before=$(sum)
check "second run: created=false, changed=false" in_ct_sh \
    "abssctl --yes --json firstboot --domain $DOMAIN --password-file /share/password |
     jq -e '.created == false and .changed == false and .installed_version == false'"
check "registry unchanged by it" test "$before" = "$(sum)"
check "another domain: exit 2, hint set-domain" in_ct_sh "
    set +e; out=\$(abssctl firstboot --domain $OTHER --password-file /share/password 2>&1); rc=\$?
    test \$rc = 2 && echo \"\$out\" | grep -q 'abssctl instance set-domain budget'"

step "the first-boot helper as inithooks runs it (preseeded; libinithooks double)"
in_ct_sh 'mkdir -p /root/fakelib/libinithooks
    : > /root/fakelib/libinithooks/__init__.py
    printf "%s\n" "def read(k, fallback=\"\"):" "    return fallback" \
        "def write(k, v):" "    open(\"/root/cache-\" + k, \"w\").write(v)" \
        > /root/fakelib/libinithooks/inithooks_cache.py'
check "helper with APP_DOMAIN/APP_PASS: exit 0, already set up, APP_DOMAIN cached" in_ct_sh "
    out=\$(APP_DOMAIN=$DOMAIN APP_PASS=\"\$(cat /share/password)\" PYTHONPATH=/root/fakelib \
        /usr/lib/inithooks/bin/actual-budget.py)
    echo \"\$out\" | grep -q 'already set up'
    test \"\$(cat /root/cache-APP_DOMAIN)\" = $DOMAIN"
check "hook files shipped executable" in_ct_sh '
    test -x /usr/lib/inithooks/firstboot.d/40actual-budget
    test -x /usr/lib/inithooks/bin/actual-budget.py
    test -x /etc/tklbam/hooks.d/abssctl
    grep -qx /etc/tklbam/hooks.d/abssctl /var/lib/dpkg/info/abssctl.conffiles'

step "TKLBAM hook: backup pre snapshots the running instance"
check "backup pre: exit 0, says so" in_ct_sh "
    /etc/tklbam/hooks.d/abssctl backup pre | grep -q \"snapshot of 'budget' taken\""
check "a backup with reason tklbam is in the index" in_ct_sh "
    abssctl --json backup list budget | jq -e '[.backups[] | select(.reason == \"tklbam\")] | length == 1'"
check "backup inspect and restore pre do nothing, exit 0" in_ct_sh "
    test -z \"\$(/etc/tklbam/hooks.d/abssctl backup inspect)\"
    test -z \"\$(/etc/tklbam/hooks.d/abssctl restore pre)\""

step "TKLBAM hook: restore post brings back an instance whose data is gone"
must "stop budget and remove its data dir (what a restore with -/srv/*/data leaves)" in_ct_sh '
    abssctl -q instance stop budget
    rm -rf /srv/budget/data'
check "restore post: exit 0, restored from the tklbam snapshot" in_ct_sh "
    /etc/tklbam/hooks.d/abssctl restore post > /root/restore-post.out
    grep -q \"'budget' restored from backup\" /root/restore-post.out"
check "data dir back: 0700, its account" in_ct_sh '
    test "$(stat -c "%a %U" /srv/budget/data)" = "700 actual-budget"'
check "https://$DOMAIN/health answers UP again" https_ok "$DOMAIN"
check "login with the same password works again" login_ok

scenario_end
