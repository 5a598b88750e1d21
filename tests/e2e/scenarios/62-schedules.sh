#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual when this package has no cached tree)
#
# Scheduled backups (issue 9 item 4) on real systemd:
#   - a new instance gets the configured default schedule: the registry says daily with
#     7/4/6, abssctl-backup@<name>.timer is enabled and active, its drop-in says daily;
#   - `backup schedule` with another calendar re-arms the running timer (its next run is
#     at the new time) and `--list` shows it;
#   - the timer's service, started as the timer starts it, makes a backup with reason
#     `scheduled` in the index and prunes by the schedule's retention (keep 2 -> 2 left);
#   - a failing run (a bad setting in a test drop-in) leaves the service in
#     `systemctl --failed`, one line at priority err in the journal, and `--list` says
#     failed; the next good run succeeds again;
#   - rename moves the timer to the new name; `--off` stops and disables it (idempotent);
#     delete removes it: no abssctl-backup unit or drop-in is left.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

VERSION=26.9.0 # the version 30, 40, 50 and 61 use: the seeded tree is shared
DOMAIN=sched.e2e.test

step "TLS for $DOMAIN; Actual $VERSION current; instance fam"
must "a self-signed system certificate for $DOMAIN" ct_system_cert "$DOMAIN"
ct_seed_version "$VERSION"
must "abssctl version switch $VERSION makes it current" in_ct abssctl -y version switch "$VERSION"
must "instance create fam --domain $DOMAIN" in_ct abssctl instance create fam --domain "$DOMAIN"

# row <instance>: its row of `backup schedule --list --json`
row() { in_ct abssctl --json backup schedule --list "$1" | jq -c '.schedules[0]'; }

step "the default schedule of a new instance"
check "the registry has daily, keep 7 daily / 4 weekly / 6 monthly" in_ct_sh "
    abssctl --json backup schedule --list fam | jq -e '.schedules[0].schedule |
        .on_calendar == \"daily\" and .randomized_delay == \"1h\" and .keep_daily == 7 and
        .keep_weekly == 4 and .keep_monthly == 6' >/dev/null"
check "abssctl-backup@fam.timer is enabled and active" in_ct_sh '
    test "$(systemctl is-enabled abssctl-backup@fam.timer)" = enabled
    test "$(systemctl is-active abssctl-backup@fam.timer)" = active'
check "its drop-in resets the template's calendar and sets daily" in_ct_sh '
    d=/etc/systemd/system/abssctl-backup@fam.timer.d/50-abssctl.conf
    grep -qx "OnCalendar=" $d && grep -qx "OnCalendar=daily" $d && grep -qx "RandomizedDelaySec=1h" $d
    test "$(stat -c %a $d)" = 644'
check "--list shows a next run and no run yet" in_ct_sh "
    abssctl --json backup schedule --list fam | jq -e '.schedules[0] |
        (.next_run | type == \"string\") and .last_result == \"never\" and
        .status.unit_file_state == \"enabled\"' >/dev/null"

step "backup schedule: another calendar, keep the last 2"
must "backup schedule fam --on-calendar '*-*-* 03:17' --randomized-delay 0 --keep 2 (other rules off)" \
    in_ct abssctl backup schedule fam --on-calendar '*-*-* 03:17' --randomized-delay 0 \
    --keep 2 --keep-daily 0 --keep-weekly 0 --keep-monthly 0
check "the running timer is re-armed: systemd's calendar and next run are 03:17" in_ct_sh "
    systemctl show -p TimersCalendar --value abssctl-backup@fam.timer | grep -q '03:17:00'
    abssctl --json backup schedule --list fam | jq -e '.schedules[0].next_run | test(\"T03:17:00\")' >/dev/null"
check "the same schedule again changes nothing" in_ct_sh "
    abssctl --json backup schedule fam --on-calendar '*-*-* 03:17' | jq -e '.changed == false' >/dev/null"
check "a calendar systemd refuses is exit 2, the timer unchanged" in_ct_sh "
    rc=0; abssctl backup schedule fam --on-calendar 'every tuesday' 2>/dev/null || rc=\$?
    test \$rc -eq 2
    systemctl show -p TimersCalendar --value abssctl-backup@fam.timer | grep -q '03:17:00'"

step "the timer's service: a backup with reason scheduled, then the schedule's prune"
for n in 1 2 3; do
    must "systemctl start abssctl-backup@fam.service (run $n)" in_ct systemctl start abssctl-backup@fam.service
done
check "the index has scheduled backups of fam, 2 after the prune (keep 2)" in_ct_sh "
    abssctl --json backup list fam | jq -e '[.backups[] | select(.reason == \"scheduled\")] | length == 2' >/dev/null"
check "they verify" in_ct_sh 'abssctl backup verify --all >/dev/null'
check "--list: last result success, the newest scheduled backup named" in_ct_sh "
    abssctl --json backup schedule --list fam | jq -e '.schedules[0] |
        .last_result == \"success\" and (.last_scheduled_backup | type == \"string\")' >/dev/null"
check "the run was niced and idle-scheduled as the unit says" in_ct_sh '
    test "$(systemctl show -p Nice --value abssctl-backup@fam.service)" = 19
    test "$(systemctl show -p IOSchedulingClass --value abssctl-backup@fam.service)" = 3'

step "a failing scheduled run is visible"
must "a test drop-in gives the service a bad setting" in_ct_sh '
    mkdir -p /run/systemd/system/abssctl-backup@fam.service.d
    printf "[Service]\nEnvironment=ABSSCTL_BACKUPS_COMPRESSION_LEVEL=99\n" \
        > /run/systemd/system/abssctl-backup@fam.service.d/e2e-fail.conf
    systemctl daemon-reload'
T_FAIL=$(in_ct date '+%Y-%m-%d %H:%M:%S')
check "systemctl start fails" in_ct_sh '! systemctl start abssctl-backup@fam.service'
check "the service is in systemctl --failed" in_ct_sh '
    systemctl --failed --plain --no-legend | grep -q "^abssctl-backup@fam.service"'
check "the journal has one line at priority err naming the instance" in_ct_sh "
    for i in \$(seq 1 20); do
        journalctl -q -p err --since '$T_FAIL' -u abssctl-backup@fam.service |
            grep -q 'scheduled backup of instance fam failed' && exit 0
        sleep 0.25
    done; exit 1"
check "--list says failed" in_ct_sh "
    abssctl --json backup schedule --list fam | jq -e '.schedules[0].last_result | startswith(\"failed\")' >/dev/null"
must "the test drop-in removed" in_ct_sh '
    rm -r /run/systemd/system/abssctl-backup@fam.service.d
    systemctl daemon-reload'
check "the next run succeeds and clears the failed state" in_ct_sh '
    systemctl start abssctl-backup@fam.service
    ! systemctl --failed --plain --no-legend | grep -q abssctl-backup'

step "rename, --off, delete: the timer follows the instance"
must "instance rename fam fam2" in_ct abssctl --yes instance rename fam fam2 --no-backup
check "abssctl-backup@fam.timer is gone, @fam2 is enabled and active with the same calendar" in_ct_sh '
    test "$(systemctl is-active abssctl-backup@fam.timer)" != active
    test "$(systemctl is-enabled abssctl-backup@fam.timer 2>/dev/null)" != enabled
    test ! -e /etc/systemd/system/abssctl-backup@fam.timer.d
    test "$(systemctl is-enabled abssctl-backup@fam2.timer)" = enabled
    test "$(systemctl is-active abssctl-backup@fam2.timer)" = active
    systemctl show -p TimersCalendar --value abssctl-backup@fam2.timer | grep -q 03:17:00'
must "backup schedule fam2 --off" in_ct abssctl backup schedule fam2 --off
check "the timer is stopped and disabled, its drop-in gone, the registry has no schedule" in_ct_sh "
    test \"\$(systemctl is-active abssctl-backup@fam2.timer)\" != active
    test \"\$(systemctl is-enabled abssctl-backup@fam2.timer 2>/dev/null)\" != enabled
    test ! -e /etc/systemd/system/abssctl-backup@fam2.timer.d
    abssctl --json backup schedule --list fam2 | jq -e '.schedules[0].schedule == null' >/dev/null"
check "--off again changes nothing" in_ct_sh "
    abssctl --json backup schedule fam2 --off | jq -e '.changed == false' >/dev/null"
must "backup schedule fam2 (the configured default again)" in_ct abssctl backup schedule fam2
must "instance delete fam2" in_ct abssctl --yes instance delete fam2 --no-backup
check "no abssctl-backup unit, link or drop-in is left" in_ct_sh '
    test -z "$(systemctl list-units --all --plain --no-legend "abssctl-backup@*.timer")"
    ! ls -d /etc/systemd/system/abssctl-backup@* /etc/systemd/system/timers.target.wants/abssctl-backup@* 2>/dev/null'
check "its backups stay in the index" in_ct_sh "
    abssctl --json backup list fam | jq -e '.backups | length >= 2' >/dev/null"

scenario_end
