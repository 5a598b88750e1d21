#!/bin/bash
# e2e-network: host  (ct_seed_version installs Actual when this package has no cached tree)
#
# The confconsole plugin (TurnKey issue item 1) against the real abssctl on real systemd:
#   - the .deb installs /usr/lib/confconsole/plugins.d/50Actual_Budget/ with the five menu
#     entries executable and the rest 0644;
#   - tests/confconsole/run_real.py drives the installed plugin with the console double:
#     create (password on stdin), status, restart, logs, back up now, restore in place and
#     as a new instance, schedule change and off, delete with and without a backup; each
#     step is checked through abssctl --json.
#   - a real `dialog` (pythondialog, as confconsole's Console uses) in a tmux pane:
#     tests/confconsole/run_dialog.py opens the installed plugin's menu; send-keys walks New
#     instance (name, domain, the password typed twice into dialog's passwordbox) to the URL
#     screen, then Status; capture-pane is polled for each screen; abssctl --json confirms
#     the instance runs; the instance is then deleted.
# confconsole itself is not installed (not in Debian): the double, and dialog_console.py
# for the tmux walk, stand in for its console.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../lib.sh"

VERSION=26.9.0 # the version 30, 40, 50, 61 and 62 use: the seeded tree is shared
NAME=ccplugin
DOMAIN=$NAME.example.test
PLUGIN=/usr/lib/confconsole/plugins.d/50Actual_Budget

step "the plugin as the package installs it"
check_ct_sh "the entries are executable, the code and description are not" "
    for f in 10Status 20New_instance 30Manage_instance 40Versions 50Backup_schedules; do
        test \"\$(stat -c %a $PLUGIN/\$f.py)\" = 755
    done
    for f in abssctl_menus.py abssctl_flows.py abssctl_cli.py description; do
        test \"\$(stat -c %a $PLUGIN/\$f)\" = 644
    done"

step "TLS for $DOMAIN; Actual $VERSION current"
must "a self-signed system certificate for $DOMAIN" ct_system_cert "$DOMAIN"
ct_seed_version "$VERSION"
must "abssctl version switch $VERSION makes it current" in_ct abssctl -y version switch "$VERSION"

step "every menu path against the real abssctl"
rm -rf "$CT_SHARE/confconsole-tests"
cp -r "$(dirname "$0")/../../confconsole" "$CT_SHARE/confconsole-tests"
check "run_real.py: create, status, manage, restore, schedules, delete" \
    in_ct python3 /share/confconsole-tests/run_real.py --plugin-dir "$PLUGIN" --name "$NAME" \
    --domain "$DOMAIN"
check "nothing it created is left" in_ct_sh "
    abssctl --json instance list | jq -e '[.instances[].name] | index(\"$NAME\") == null and
        index(\"$NAME-copy\") == null' >/dev/null"

step "a real dialog under tmux: New instance (typed into dialog's boxes), then Status"
# run_dialog.py opens the installed plugin's menu with dialog_console.DialogConsole
# (pythondialog -> the dialog binary, as confconsole's Console) in a detached tmux pane;
# the walk types with send-keys and waits for each screen by polling capture-pane.
DNAME=ccdialog
DDOMAIN=$DNAME.example.test
DPASS=Dialog-pw-7319
TMUX_SOCK=abssctl-dialog
SCREENS=$CT_RUNDIR/dialog-screens.txt # kept with the run dir when the scenario fails
: >"$SCREENS"
ct_tmux() { in_ct tmux -L "$TMUX_SOCK" "$@"; }
# The tmux server outlives the command that starts it: close every inherited fd but
# stdio first (e.g. the e2e lock that flock passed down), so it holds nothing of the run.
ct_tmux_start() {
    in_ct bash -c 'for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec $fd>&-"
        done; exec tmux -f /dev/null -L "$1" new-session -d -x 100 -y 30 "$2"' _ "$TMUX_SOCK" \
        "cd /share/confconsole-tests && python3 run_dialog.py --plugin-dir $PLUGIN \
         --log /share/dialog-screens.jsonl; echo \$? >/share/dialog-rc"
}
# screen_wait "<text>" [seconds]: poll the pane until <text> is on it (that screen goes to
# $SCREENS); fails at once on the plugin's error box or an exception, else at the deadline,
# printing the last screen either way.
SCREEN=""
squeeze() { grep -vE '^ *(│ *)*$' || true; } # without the empty lines of a box
screen_wait() {
    local want=$1 deadline=$((SECONDS + ${2:-30}))
    while :; do
        SCREEN=$(ct_tmux capture-pane -p 2>&1) || SCREEN="(no tmux pane) $SCREEN"
        if grep -qF -- "$want" <<<"$SCREEN"; then
            printf '== the screen with "%s"\n%s\n' "$want" "$SCREEN" >>"$SCREENS"
            return 0
        fi
        if grep -qE 'Actual Budget: error|Caught exception|no tmux pane' <<<"$SCREEN" ||
            ((SECONDS >= deadline)); then
            printf '== waited for "%s" in vain; the screen:\n%s\n' "$want" "$SCREEN" >>"$SCREENS"
            printf 'waited for "%s" in vain; the screen:\n' "$want"
            squeeze <<<"$SCREEN"
            return 1
        fi
        sleep 0.2
    done
}
keys() { ct_tmux send-keys "$@"; }
type_enter() { ct_tmux send-keys -l "$1" && ct_tmux send-keys Enter; }
on_screen() { # on_screen "<text>"...: every text is on the last screen waited for
    local t
    for t in "$@"; do
        grep -qF -- "$t" <<<"$SCREEN" || {
            printf 'not on the screen: "%s"\n%s\n' "$t" "$SCREEN"
            return 1
        }
    done
}
dialog_walk() {
    in_ct rm -f /share/dialog-rc /share/dialog-screens.jsonl
    ct_tmux_start && screen_wait "Backup schedules" && on_screen "Actual budget" "<Select>" "< Back >" &&
        keys N Enter && screen_wait "Instance name" &&
        type_enter "$DNAME" && screen_wait "How will browsers reach '$DNAME'?" &&
        keys D Enter && screen_wait "Domain for '$DNAME'" &&
        type_enter "$DDOMAIN" && screen_wait "Server password for '$DNAME'" &&
        keys -l "$DPASS" && screen_wait "${DPASS//?/*}" &&
        { ! grep -qF -- "$DPASS" <<<"$SCREEN" || ! echo "the password is on the screen"; } &&
        keys Enter && screen_wait "The same password again" &&
        type_enter "$DPASS" && screen_wait "Create instance '$DNAME' on $DDOMAIN?" &&
        keys Enter && screen_wait "Instance '$DNAME' is ready" 300 &&
        on_screen "https://$DDOMAIN/" "The server password is set." &&
        keys Enter && screen_wait "Backup schedules" &&
        keys S Enter && screen_wait "Actual Budget: status" 60 &&
        on_screen "$DNAME: https://$DDOMAIN/" "active/running, health up" &&
        keys Enter && screen_wait "Backup schedules" &&
        keys Tab Enter || return 1
    # Back on the plugin's menu ends run_dialog.py; its pane, session and server go too.
    local deadline=$((SECONDS + 20))
    until in_ct test -s /share/dialog-rc; do
        ((SECONDS < deadline)) || {
            echo "run_dialog.py did not end after Back"
            return 1
        }
        sleep 0.2
    done
    local rc
    rc=$(in_ct cat /share/dialog-rc)
    [[ $rc == 0 ]] || {
        echo "run_dialog.py exited $rc"
        return 1
    }
}
# nothing_left: within 10 s, no tmux and no run_dialog.py is running in the container.
nothing_left() {
    local deadline=$((SECONDS + 10))
    while in_ct pgrep -f '^tmux|run_dialog[.]py' >/dev/null; do
        ((SECONDS < deadline)) || {
            in_ct pgrep -af '^tmux|run_dialog[.]py'
            return 1
        }
        sleep 0.2
    done
}
check "dialog: menu -> New instance (name, domain, password twice) -> the URL; Status shows it" \
    dialog_walk
# Whatever the walk did, nothing of it stays running.
ct_tmux kill-server >/dev/null 2>&1 || true
check "no tmux server and no run_dialog.py are left running" nothing_left
# The two screens the walk is about, as dialog drew them (all screens: $SCREENS).
awk '/^== /{p = /^== the screen with .*(is ready|Actual Budget: status)"/} p' "$SCREENS" |
    squeeze | sed 's/^/        | /'
check "abssctl --json instance list: $DNAME on $DDOMAIN, active/running, health up" in_ct_sh "
    abssctl --json instance list | jq -e '.instances[] | select(.name == \"$DNAME\") |
        .domain == \"$DDOMAIN\" and .active_state == \"active\" and .sub_state == \"running\"
        and .health == \"up\"' >/dev/null"
check "abssctl instance delete $DNAME --no-backup" \
    in_ct abssctl --yes instance delete "$DNAME" --no-backup
check "$DNAME is gone" in_ct_sh "
    abssctl --json instance list |
        jq -e '[.instances[].name] | index(\"$DNAME\") == null' >/dev/null"

scenario_end
