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
# confconsole itself is not installed (not in Debian): the double stands in for its console.
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

scenario_end
