#!/bin/bash
# e2e-network: host  (the npm registry: versions, Node runtimes and npm come from it)
#
# Actual versions side by side on a machine with NO node at all: 26.9.0 (engines >=22) gets
# a managed Node 22 runtime from the registry; 25.6.0 (no engines) installs beside it on the
# same runtime. Each install really serves: a server started by hand from the recorded
# runtime answers /health and reports its own version in /info. The build ran sandboxed
# (a transient unit as the abssctl-build user), and a local user could not touch it: the
# build dir and the npm cache refuse an unprivileged user's writes mid-build, and what a
# compromised dependency plants (a setuid file, symlinks to root's files) is sealed harmless
# without the sealer following a link. The tree is root-owned and read-only to others; an
# instance can be restarted while a build runs (the build holds only the build lock);
# `install --set-current` takes the switch path (the follower runs the new version);
# uninstall refuses a tree a drop-in still runs and `set-version current` repairs the
# drift; an install killed midway leaves no version behind; a reinstall works offline;
# uninstall refuses the current version and frees a runtime only when nothing uses it.
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
check "staging is gone" in_ct_sh '! test -e /srv/app/.staging'
check "a second install is a no-op" in_ct_sh \
    "abssctl --json version install $NEW | jq -e '.changed==false'"

step "an instance on $NEW, for the checks during the next build"
in_ct_sh 'mkdir -p -m 0700 /etc/ssl/private
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=turnkey \
        -keyout /etc/ssl/private/cert.key -out /etc/ssl/private/cert.pem 2>/dev/null
    chmod 0400 /etc/ssl/private/cert.key /etc/ssl/private/cert.pem'
must "create lk (bound to $NEW)" in_ct abssctl instance create lk --domain lk.test --version "$NEW"
# info_of <instance>: the version its server reports in /info.
info_of() {
    in_ct_sh "p=\$(abssctl --json instance list | jq -r '.instances[] | select(.name==\"$1\") | .port')
        curl -sf http://127.0.0.1:\$p/info | jq -r .build.version"
}
check "lk serves $NEW" test "$(info_of lk)" = "$NEW"
# A victim only root may touch, for the sealer test below.
in_ct_sh 'install -m 0600 -o nobody -g nogroup /dev/null /root/victim; chmod 0711 /root
    install -d -m 0700 -o nobody -g nogroup /root/victim-dir'

step "abssctl version install $OLD beside it (no engines: system node absent -> managed 22), attacked mid-build"
in_ct_sh "setsid abssctl version install $OLD >/root/old.log 2>&1 & echo \$! >/root/old.pid"
B=/srv/app/.staging/v$OLD
must "the build got going" in_ct_sh '
    for i in $(seq 1 240); do test -d '"$B"'/node_modules && exit 0; sleep 0.5; done; exit 1'
check "the build runs as abssctl-build in a transient unit (its processes' uid)" in_ct_sh '
    test "$(systemctl show -P User abssctl-npm-build.service)" = abssctl-build
    pid=$(systemctl show -P MainPID abssctl-npm-build.service); test "$pid" -gt 0
    test "$(ps -o user:32= -p $pid)" = abssctl-build'
check "build dir and npm cache: 0700 abssctl-build, under root-owned parents" in_ct_sh "
    test \"\$(stat -c '%a %U' $B)\" = '700 abssctl-build'
    test \"\$(stat -c '%a %U' /var/cache/abssctl/npm)\" = '700 abssctl-build'
    test -z \"\$(find /srv/app/.staging /var/cache/abssctl -maxdepth 0 ! -user root)\""
check "a local user cannot write into the build dir or the npm cache (EACCES)" in_ct_sh "
    for t in $B/x $B/node_modules/x /var/cache/abssctl/npm/x; do
        out=\$(setpriv --reuid nobody --regid nogroup --clear-groups touch \$t 2>&1) && exit 1
        echo \"\$out\" | grep -q 'Permission denied' || exit 1
    done
    ! test -e $B/x"
# What a compromised dependency could do as the build user: a setuid file and links to root's files.
in_ct_sh "runuser -u abssctl-build -- sh -ec '
    cp /bin/true $B/suid; chmod 4755 $B/suid
    ln -s /root/victim $B/evil; ln -s /root/victim-dir $B/evil-dir; ln -s /srv/app $B/evil-root'"
check "while the build runs, an instance restarts (the global lock is free)" in_ct_sh '
    abssctl --lock-timeout 5 instance restart lk
    kill -0 "$(cat /root/old.pid)" && systemctl is-active -q abssctl-npm-build.service'
check "the attacked install still finishes" in_ct_sh '
    while kill -0 "$(cat /root/old.pid)" 2>/dev/null; do sleep 1; done
    grep -q "installed @actual-app/sync-server" /root/old.log'
check "the planted setuid file lost its setuid bit and is root's" in_ct_sh "
    test \"\$(stat -c '%a %U' /srv/app/v$OLD/suid)\" = '755 root'"
check "the sealer followed no link: the victims keep owner and mode" in_ct_sh "
    test \"\$(stat -c '%a %U' /root/victim)\" = '600 nobody'
    test \"\$(stat -c '%a %U' /root/victim-dir)\" = '700 nobody'
    test \"\$(stat -c '%a %U' /srv/app)\" = '755 root'
    test \"\$(stat -c %U /srv/app/v$OLD/evil)\" = root"
check "nothing world-writable or foreign under abssctl's trees; state dir 0750" in_ct_sh '
    test -z "$(find /srv/app /var/cache/abssctl /var/lib/abssctl \( -perm -o+w -o -perm -4000 -o -perm -2000 \) ! -type l | head -1)"
    test -z "$(find /srv/app ! -user root | head -1)"
    test "$(stat -c %a /var/lib/abssctl)" = 750'
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
check "the rebuilt tree is clean: nothing the attacked build planted is left" in_ct_sh "
    ! test -e /srv/app/v$OLD/suid && ! test -L /srv/app/v$OLD/evil && ! test -L /srv/app/v$OLD/evil-root"
# A clean tree built for real by this package: the later scenarios that need $OLD (70's
# legacy upgrade) unpack it instead of compiling better-sqlite3 again (80-90 s on CI).
if in_ct_sh "! test -e /srv/app/v$OLD/suid"; then ct_export_version "$OLD"; fi

step "install --set-current takes the switch path (followers move with current)"
must "switch current to $OLD" in_ct abssctl -y version switch "$OLD" --no-backup
must "create lk2 (follows current = $OLD)" in_ct abssctl instance create lk2 --domain lk2.test
check "lk2 serves $OLD" test "$(info_of lk2)" = "$OLD"
check "install --set-current with a follower and no terminal must say --backup or --no-backup" in_ct_sh "
    rc=0; abssctl -y version install $NEW --set-current 2>/dev/null || rc=\$?; test \$rc -eq 2
    test \"\$(readlink /srv/app/current)\" = v$OLD"
must "install $NEW --set-current (installed already: switches)" in_ct abssctl -y version install "$NEW" --set-current --no-backup
check "current is $NEW" in_ct_sh "test \"\$(readlink /srv/app/current)\" = v$NEW"
check "lk2 was re-rendered and restarted with current: it serves $NEW" test "$(info_of lk2)" = "$NEW"

step "a drop-in that drifted from its binding: uninstall refuses its tree, set-version current repairs it"
# The drift the old --set-current left behind: current moved, a follower's drop-in did not.
in_ct ln -sfn "v$OLD" /srv/app/current
must "create lk3 (follows current = $OLD)" in_ct abssctl instance create lk3 --domain lk3.test
in_ct ln -sfn "v$NEW" /srv/app/current
check "uninstall $OLD is refused while lk3's drop-in still runs it (exit 2), the tree stays" in_ct_sh "
    set +e; abssctl --yes version uninstall $OLD 2>/root/e; rc=\$?
    test \$rc = 2 && grep -q 'actual-sync@lk3.service.d' /root/e && test -d /srv/app/v$OLD"
must "set-version lk3 current repairs the drift" in_ct abssctl -y instance set-version lk3 current --no-backup
check "lk3 serves $NEW" test "$(info_of lk3)" = "$NEW"
for i in lk lk2 lk3; do
    must "delete $i" in_ct abssctl -y instance delete "$i" --purge-data --no-backup
done

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
