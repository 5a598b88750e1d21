#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual when this package has no cached tree)
#
# The package's lifecycle with a LIVE instance (issue 12 item 5):
#   - `apt install` of a higher version keeps the instance running untouched: same main
#     PID, still healthy (a package upgrade never restarts an operator's service);
#   - `apt remove` stops the instance cleanly (its template unit goes with the package)
#     and says so; its data and enablement stay;
#   - installing abssctl again starts the enabled instance again, and it serves its data;
#     a stopped (disabled) one stays stopped.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

VERSION=26.9.0 # the version 30-70 use: the seeded tree is shared
apt_ct() { in_ct env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"; }
pid() { in_ct systemctl show -p MainPID --value "actual-sync@$1.service"; }
healthy() { in_ct curl -sf "http://127.0.0.1:$1/health" | grep -q UP; }
login_ok() {
    in_ct_sh "curl -sf -X POST -H 'Content-Type: application/json' \
        -d '{\"loginMethod\":\"password\",\"password\":\"Correct-Horse-72\"}' http://127.0.0.1:$1/account/login | grep -q token"
}

step "an instance live, a second one stopped and disabled"
must "a system certificate" ct_system_cert live.e2e.test idle.e2e.test
ct_seed_version "$VERSION"
must "version switch $VERSION" in_ct abssctl -y version switch "$VERSION" --no-backup
echo Correct-Horse-72 >"$CT_SHARE/pw"
must "create live (5001) and idle (5002)" in_ct_sh '
    abssctl instance create live --domain live.e2e.test --port 5001 --password-file /share/pw
    abssctl instance create idle --domain idle.e2e.test --port 5002 --password-file /share/pw
    abssctl instance stop idle && abssctl instance disable idle'
P=$(pid live)
check "live serves (pid $P)" healthy 5001

step "apt install of a higher version: the instance is not touched"
if [[ -z ${E2E_UPGRADE_DEB:-} ]]; then
    check "an upgrade .deb was built (tests/e2e/build-deb --upgrade-too)" false
else
    check "apt-get install of the higher version succeeds" apt_ct install "$E2E_UPGRADE_DEB"
    P2=$(pid live)
    check "live: same main PID ($P, now $P2)" test "$P2" = "$P"
    check "... healthy" healthy 5001
fi

step "apt remove: the instance is stopped cleanly and the output says so"
out=$(apt_ct remove abssctl 2>&1) && rc=0 || rc=$?
check "apt-get remove succeeds" test "$rc" = 0
check "it says which instances it stopped" grep -q "stopped the instances live" <<<"$out"
check "live is stopped (not left running from a unit file that is gone)" \
    in_ct_sh '[ "$(systemctl is-active actual-sync@live.service)" != active ]'
check "its data and enablement stay" in_ct_sh '
    test -s /srv/live/data/server-files/account.sqlite
    test -L /etc/systemd/system/multi-user.target.wants/actual-sync@live.service'

step "install again: the enabled instance starts again, the disabled one stays stopped"
out=$(apt_ct install "$E2E_DEB" 2>&1) && rc=0 || rc=$?
check "apt-get install succeeds" test "$rc" = 0
check "it says which instances it started again" grep -q "started again the instances stopped when it was removed: live" <<<"$out"
check "live answers /health again" in_ct_sh 'for i in $(seq 1 100); do curl -sf http://127.0.0.1:5001/health | grep -q UP && exit 0; sleep 0.1; done; exit 1'
check "... and its password logs in (its data)" login_ok 5001
check "idle stays stopped" in_ct_sh '[ "$(systemctl is-active actual-sync@idle.service)" != active ]'
check "the marker of the removal is gone" in_ct test ! -e /var/lib/abssctl/stopped-by-remove
check "abssctl instance list sees live active" in_ct_sh \
    "abssctl --json instance list | jq -e '.instances[] | select(.name == \"live\") | .active_state == \"active\"'"

scenario_end
