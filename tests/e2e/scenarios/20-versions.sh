#!/bin/bash
# e2e-network: host  (the npm registry: versions, Node runtimes and npm come from it)
#
# Actual versions side by side on a machine with NO node at all: 26.9.0 (engines >=22) gets
# a managed Node 22 runtime from the registry; 25.6.0 (no engines) installs beside it on the
# same runtime. Each install really serves: a server started by hand from the recorded
# runtime answers /health and reports its own version in /info. The build ran sandboxed
# (transient unit, DynamicUser), the tree is root-owned and read-only to others; an install
# killed midway leaves no version behind; a reinstall works offline; uninstall refuses the
# current version and frees a runtime only when nothing uses it.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

NEW=26.9.0
OLD=25.6.0
KILLED=26.8.1

step "starting point: no node in the container"
check "no node on PATH" in_ct_sh '! command -v node'

step "abssctl version install $NEW (needs Node >= 22: a managed runtime is provisioned)"
must "install $NEW --set-current" in_ct abssctl version install "$NEW" --set-current
in_ct abssctl --json version list >"$CT_SHARE/list1.json"
RT=$(jq -r --arg v "$NEW" '.versions[] | select(.version==$v) | .runtime.node' "$CT_SHARE/list1.json")
check "$NEW runs on a managed Node 22.x" jq -e --arg v "$NEW" \
    '.versions[] | select(.version==$v) | .runtime.kind=="managed" and (.runtime.version|startswith("22."))' \
    "$CT_SHARE/list1.json"
check "the runtime has its headers for node-gyp" in_ct test -f "$(dirname "$(dirname "$RT")")/include/node/node_version.h"
check "$NEW is current" in_ct_sh "test \"\$(readlink /srv/app/current)\" = v$NEW"
check "tree root-owned, not writable by others" in_ct_sh "
    test \"\$(stat -c %U /srv/app/v$NEW)\" = root
    test -z \"\$(find /srv/app/v$NEW \\( -perm -o+w -o ! -user root \\) ! -type l | head -1)\""
check "manifest records integrity, runtime and lockfile hash" in_ct_sh "
    jq -e '.integrity|startswith(\"sha512-\")' /srv/app/v$NEW/manifest.json
    test \"\$(jq -r .lockfile_sha256 /srv/app/v$NEW/manifest.json)\" = \"\$(sha256sum /srv/app/v$NEW/package-lock.json | cut -d' ' -f1)\""
check "the build ran as a transient unit, not as root (journal)" in_ct_sh \
    'journalctl -q -u abssctl-npm-build.service | grep -q .'
check "staging is gone" in_ct_sh '! test -e /srv/app/.staging'
check "a second install is a no-op" in_ct_sh \
    "abssctl --json version install $NEW | jq -e '.changed==false'"

step "abssctl version install $OLD beside it (no engines: system node absent -> managed 22)"
must "install $OLD" in_ct abssctl version install "$OLD"
in_ct abssctl --json version list >"$CT_SHARE/list2.json"
check "list marks both installed with their runtimes" jq -e --arg a "$NEW" --arg b "$OLD" '
    [.versions[] | select(.installed and .runtime.kind=="managed") | .version] as $i
    | ($i|index($a)) != null and ($i|index($b)) != null' "$CT_SHARE/list2.json"
check "one runtime shared by both" jq -e '[.versions[] | select(.installed) | .runtime.node] | unique | length == 1' \
    "$CT_SHARE/list2.json"

step "a server started from each install answers with its own version"
serve() { # version port
    local v=$1 port=$2
    in_ct_sh "
        node=\$(jq -r .runtime.node /srv/app/v$v/manifest.json)
        d=\$(mktemp -d); mkdir \$d/data; chown -R nobody \$d; chmod 755 \$d
        setpriv --reuid nobody --regid nogroup --clear-groups env ACTUAL_DATA_DIR=\$d/data \
            ACTUAL_PORT=$port ACTUAL_HOSTNAME=127.0.0.1 \
            \$node /srv/app/v$v/node_modules/@actual-app/sync-server/build/bin/actual-server.js \
            >\$d/log 2>&1 &
        pid=\$!
        for i in \$(seq 1 60); do curl -sf http://127.0.0.1:$port/health >/dev/null && break; sleep 0.5; done
        curl -sf http://127.0.0.1:$port/health | jq -e '.status==\"UP\"' >/dev/null
        curl -sf http://127.0.0.1:$port/info | jq -e --arg v $v '.build.version==\$v' >/dev/null
        rc=\$?; kill \$pid; exit \$rc"
}
check "$NEW: /health UP and /info says $NEW" serve "$NEW" 5931
check "$OLD: /health UP and /info says $OLD" serve "$OLD" 5932

step "an install killed midway leaves no version"
in_ct_sh "setsid abssctl version install $KILLED >/root/killed.log 2>&1 & echo \$! >/root/killed.pid"
check "the build got going" in_ct_sh '
    for i in $(seq 1 240); do test -d /srv/app/.staging/v'"$KILLED"'/node_modules && exit 0; sleep 0.5; done; exit 1'
in_ct_sh 'kill -9 "$(cat /root/killed.pid)"; sleep 1'
check "no $KILLED version dir" in_ct_sh "! test -e /srv/app/v$KILLED"
check "$KILLED not listed" in_ct_sh \
    "abssctl --json version list | jq -e --arg v $KILLED '[.versions[].version] | index(\$v) == null'"

step "offline reinstall from the lockfile and the npm cache (also clears the killed staging)"
check "reinstall $OLD with the registry unreachable" in_ct_sh \
    "ABSSCTL_NPM_REGISTRY=http://127.0.0.1:9/ abssctl version reinstall $OLD"
check "leftover build unit stopped and staging removed" in_ct_sh \
    '! systemctl is-active -q abssctl-npm-build.service && ! test -e /srv/app/.staging'
check "$OLD still serves after the rebuild" serve "$OLD" 5933

step "faults"
check "registry unreachable: exit 3 with the offline hint" in_ct_sh "
    set +e; ABSSCTL_NPM_REGISTRY=http://127.0.0.1:9/ abssctl version install $KILLED 2>/root/e; rc=\$?
    test \$rc = 3 && grep -q 'version reinstall' /root/e"
check "unknown version: exit 2 listing the nearest" in_ct_sh "
    set +e; abssctl version install 26.9.7 2>/root/e; rc=\$?; test \$rc = 2 && grep -q $NEW /root/e"

step "uninstall"
check "the current version is refused (exit 2)" in_ct_sh "
    set +e; abssctl --yes version uninstall $NEW 2>/root/e; test \$? = 2 && grep -q current /root/e"
check "uninstall $OLD removes it" in_ct_sh "abssctl --yes version uninstall $OLD && ! test -e /srv/app/v$OLD"
check "the runtime stays: $NEW still uses it" in_ct test -x "$RT"
must "switch back needs an installed version" in_ct_sh \
    "set +e; abssctl version switch $OLD 2>/dev/null; test \$? = 2"

scenario_end
