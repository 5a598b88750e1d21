#!/bin/bash
# Scenario: package lifecycle (issue #3 item 4).
# The package is installed by tests/e2e/run with `apt-get install /share/abssctl_*.deb`
# before this script runs. Then: what the install put in place; a reinstall (maintainer
# scripts are idempotent); an upgrade to a higher version keeps state and the operator's
# edited config; remove; purge removes abssctl's own files but keeps instance data.
# e2e-network: private
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

apt_ct() { in_ct env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"; }
# mode_owner <path> <expected "mode user:group">
mode_owner() { [[ $(in_ct stat -c '%a %U:%G' "$1") == "$2" ]] || { in_ct stat -c '%a %U:%G %n' "$1"; return 1; }; }
version=$(in_ct dpkg-query -W -f '${Version}' abssctl)

step "install ($version)"
check "abssctl --version prints the package's upstream version" \
    in_ct_sh "abssctl --version | grep -Fx 'abssctl ${version%-*}'"
check "man -w abssctl finds the man page" in_ct_sh 'man -w abssctl | grep -q /usr/share/man/man1/abssctl.1.gz'
check "man page renders" in_ct_sh 'MANWIDTH=80 man abssctl 2>/dev/null | grep -q "abssctl"'
check "bash completion present and loads" \
    in_ct bash -c '. /usr/share/bash-completion/completions/abssctl && complete -p abssctl'
check "zsh completion present" in_ct test -s /usr/share/zsh/vendor-completions/_abssctl
check "fish completion present" in_ct test -s /usr/share/fish/vendor_completions.d/abssctl.fish
check "id actual-sync: a system user with its own group" \
    in_ct_sh 'uid=$(id -u actual-sync) && [ "$uid" -lt 1000 ] && [ "$(id -gn actual-sync)" = actual-sync ]'
check "actual-sync has no login shell and no home" \
    in_ct_sh 'getent passwd actual-sync | grep -Eq ":/nonexistent:/usr/sbin/nologin$"'
for d in /var/lib/abssctl /var/log/abssctl /run/abssctl /run/abssctl/locks; do
    check "$d is root:root 0750" mode_owner "$d" "750 root:root"
done
check "id abssctl-build: the system user npm builds run as, no login, no home" \
    in_ct_sh 'uid=$(id -u abssctl-build) && [ "$uid" -lt 1000 ] && getent passwd abssctl-build | grep -Eq ":/nonexistent:/usr/sbin/nologin$"'
check "/var/cache/abssctl is root:root 0755" mode_owner /var/cache/abssctl "755 root:root"
check "/var/cache/abssctl/npm is the build user's alone (0700)" mode_owner /var/cache/abssctl/npm "700 abssctl-build:abssctl-build"
check "/etc/abssctl/config.yml is a root-owned 0644 conffile" \
    in_ct_sh '[ "$(stat -c "%a %U" /etc/abssctl/config.yml)" = "644 root" ] && dpkg-query -W -f "\${Conffiles}" abssctl | grep -q " /etc/abssctl/config.yml "'
check "systemctl cat actual-sync@.service shows the shipped template" \
    in_ct_sh 'systemctl cat actual-sync@.service | grep -q "^User=actual-sync"'
check "the template is known to systemd but not enabled or started" \
    in_ct_sh '[ "$(systemctl is-enabled actual-sync@demo.service 2>/dev/null)" = disabled ] && [ -z "$(systemctl list-units --no-legend "actual-sync@*")" ]'
check "systemd-analyze verify accepts an instance of the template" \
    in_ct_sh 'systemd-analyze verify actual-sync@demo.service 2>&1 | { ! grep -v -e "instance.env" -e "^$"; }'
check "systemd-analyze verify accepts an instance of the backup timer and its service" \
    in_ct_sh 'systemd-analyze verify abssctl-backup@demo.timer abssctl-backup@demo.service 2>&1 | { ! grep -v -e "^$"; }'
check "the backup timer template is not enabled or started by the package" \
    in_ct_sh '[ "$(systemctl is-enabled abssctl-backup@demo.timer 2>/dev/null)" = disabled ] && [ -z "$(systemctl list-units --no-legend "abssctl-backup@*")" ]'
check "systemd-analyze verify accepts the update-check timer and its service" \
    in_ct_sh 'systemd-analyze verify abssctl-update-check.timer abssctl-update-check.service 2>&1 | { ! grep -v -e "^$"; }'
check "the update-check timer is enabled and started by the package" \
    in_ct_sh '[ "$(systemctl is-enabled abssctl-update-check.timer)" = enabled ] && systemctl is-active --quiet abssctl-update-check.timer'
check "abssctl config show works as root" in_ct abssctl config show
check "abssctl config show works as an unprivileged user" in_ct runuser -u nobody -- abssctl config show
check "abssctl config show --json is JSON for an unprivileged user" \
    in_ct_sh 'runuser -u nobody -- abssctl --json config show | jq -e . >/dev/null'
check "abssctl's tmpfiles and sysusers are in the right places" \
    in_ct test -s /usr/lib/tmpfiles.d/abssctl.conf -a -s /usr/lib/sysusers.d/abssctl.conf

step "reinstall (maintainer scripts are idempotent)"
check "apt-get install --reinstall succeeds" apt_ct install --reinstall "$E2E_DEB"
check "still exactly one actual-sync user" in_ct_sh '[ "$(getent passwd | grep -c "^actual-sync:")" = 1 ]'
# An operator's disable holds through the package's scripts; enabled again for what follows.
must "the update-check timer disabled by the operator" in_ct systemctl disable --now abssctl-update-check.timer
check "apt-get install --reinstall succeeds with the timer disabled" apt_ct install --reinstall "$E2E_DEB"
check "the reinstall kept the operator's disable of the update-check timer" \
    in_ct_sh '[ "$(systemctl is-enabled abssctl-update-check.timer)" = disabled ] && ! systemctl is-active --quiet abssctl-update-check.timer'
must "the update-check timer enabled again" in_ct systemctl enable --now abssctl-update-check.timer

step "upgrade"
if [[ -z ${E2E_UPGRADE_DEB:-} ]]; then
    check "an upgrade .deb was built (tests/e2e/build-deb --upgrade-too)" false
else
    # The operator's edit, state abssctl keeps, a log line, and an instance's data.
    in_ct_sh 'printf "\n# operator edit\nlock_timeout: 45\n" >> /etc/abssctl/config.yml'
    in_ct_sh 'mkdir -p /var/lib/abssctl/registry && echo "marker: 1" > /var/lib/abssctl/registry/e2e-marker.yml'
    in_ct_sh 'echo "{\"e2e\":1}" >> /var/log/abssctl/operations.jsonl'
    in_ct_sh 'mkdir -p /srv/demo/data && echo budget > /srv/demo/data/planted.sqlite && chown -R actual-sync:actual-sync /srv/demo'
    cfg_before=$(in_ct sha256sum /etc/abssctl/config.yml)
    check "apt-get install of the higher version succeeds" apt_ct install "$E2E_UPGRADE_DEB"
    up_version=$(in_ct dpkg-query -W -f '${Version}' abssctl)
    check "dpkg now has the higher version ($up_version > $version)" \
        in_ct dpkg --compare-versions "$up_version" gt "$version"
    check "the operator's edited config.yml is unchanged" \
        in_ct_sh "echo '$cfg_before' | sha256sum -c --quiet"
    check "state under /var/lib/abssctl survived" in_ct grep -qx "marker: 1" /var/lib/abssctl/registry/e2e-marker.yml
    check "the operations log survived" in_ct grep -q e2e /var/log/abssctl/operations.jsonl
    check "state dirs still root:root 0750" mode_owner /var/lib/abssctl "750 root:root"
fi

step "remove"
# An instance's backup timer as `backup schedule` leaves it: enabled and waiting.
must "a backup timer enabled and started" in_ct systemctl enable --now abssctl-backup@demo.timer
check "apt-get remove succeeds" apt_ct remove abssctl
check "remove stopped the backup timer (prerm)" \
    in_ct_sh '[ "$(systemctl is-active abssctl-backup@demo.timer)" != active ]'
check "remove stopped the update-check timer (prerm)" \
    in_ct_sh '[ "$(systemctl is-active abssctl-update-check.timer)" != active ]'
check "the binary is gone" in_ct_sh '! command -v abssctl'
check "the template unit is gone and systemd forgot it" \
    in_ct_sh '[ ! -e /usr/lib/systemd/system/actual-sync@.service ] && ! systemctl cat actual-sync@.service >/dev/null 2>&1'
check "config and state stay after remove (only purge deletes them)" \
    in_ct test -f /etc/abssctl/config.yml -a -d /var/lib/abssctl

step "purge"
in_ct_sh 'mkdir -p /srv/backups && echo b > /srv/backups/e2e.tar.zst'
purge_out=$(apt_ct purge abssctl 2>&1) && purge_rc=0 || purge_rc=$?
check "apt-get purge succeeds" test "$purge_rc" = 0
for d in /etc/abssctl /var/lib/abssctl /var/cache/abssctl /var/log/abssctl /run/abssctl; do
    check "$d is gone" in_ct test ! -e "$d"
done
check "purge removed the backup timers' enablement links" \
    in_ct_sh '! ls /etc/systemd/system/timers.target.wants/abssctl-backup@* 2>/dev/null'
check "purge removed the update-check timer's enablement link" \
    in_ct test ! -e /etc/systemd/system/timers.target.wants/abssctl-update-check.timer
check "the planted /srv/demo/data file is still there" in_ct grep -qx budget /srv/demo/data/planted.sqlite
check "backups under /srv/backups are still there" in_ct test -f /srv/backups/e2e.tar.zst
check "purge says where instance data and backups remain" \
    grep -q -e "/srv/demo" <<<"$purge_out"
check "dpkg knows nothing of abssctl any more" in_ct_sh '! dpkg-query -W -f "\${Status}" abssctl 2>/dev/null | grep -q installed'

scenario_end
