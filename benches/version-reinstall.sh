#!/bin/bash
# Benchmark (not a test): wall time of `abssctl version reinstall V` (a second install of a
# cached version: npm ci --offline in the sandbox + verify + seal + swap) against a plain
# `npm ci --offline --omit=dev` of the same lockfile with the same node, npm, cache and
# build settings; plus the size on disk per version, runtime, npm and cache.
#
# Usage (root; V already installed under ABSSCTL_ROOT, e.g. by `abssctl version install`):
#   ABSSCTL_ROOT=/tmp/r benches/version-reinstall.sh 26.9.0 [abssctl-binary]
set -euo pipefail
V=${1:?version}
BIN=${2:-$(dirname "$0")/../target/debug/abssctl}
ROOT=${ABSSCTL_ROOT:-}
APP=$ROOT/srv/app
CACHE=$ROOT/var/lib/abssctl/npm-cache
M=$APP/v$V/manifest.json
NODE=$(jq -r .runtime.node "$M")
NPM_CLI=$APP/runtimes/npm-v$(jq -r .npm_version "$M")/bin/npm-cli.js
NODEDIR=$(dirname "$(dirname "$NODE")")
[[ $(jq -r .runtime.kind "$M") == managed ]] || NODEDIR=$(dirname "$(dirname "$(readlink -f "$NODE")")")

now() { date +%s.%N; }

t0=$(now)
"$BIN" version reinstall "$V" >/dev/null
t1=$(now)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$APP/v$V/package.json" "$APP/v$V/package-lock.json" "$work/"
npmrc=$work/npmrc
: >"$npmrc"
t2=$(now)
(cd "$work" && env -i PATH="$(dirname "$NODE"):/usr/bin:/bin" HOME="$work" \
    NPM_CONFIG_USERCONFIG="$npmrc" npm_config_cache="$CACHE" npm_config_nodedir="$NODEDIR" \
    npm_config_build_from_source=true "$NODE" "$NPM_CLI" ci --offline --omit=dev --no-audit \
    --no-fund >/dev/null 2>&1)
t3=$(now)

awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {
    r = b - a; n = d - c
    printf "abssctl version reinstall: %.1f s\nplain npm ci --offline:    %.1f s\nratio:                     %.2f\n", r, n, r / n }'
mb() { du -sb "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }
echo "version v$V:   $(mb "$APP/v$V")"
echo "runtime:        $(mb "$NODEDIR") ($NODEDIR)"
echo "npm:            $(mb "$(dirname "$(dirname "$NPM_CLI")")")"
echo "npm cache:      $(mb "$CACHE")"
