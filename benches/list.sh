#!/bin/bash
# Benchmark (not a test): `abssctl --json instance list` with N running instances (default
# 50) in the real-systemd container (tests/e2e/up), next to `systemctl list-units
# 'actual-sync@*'` in the same run, and the list again with one instance hung.
#
# Prints, from one run: median/min/max wall time of RUNS (default 20) runs of each
# command, their ratio (target: the list <= 25 ms with 50 running), and the list with one
# instance hung, i.e. its server accepts TCP and never answers: its Node process is
# SIGSTOPped, so the kernel still completes connections from the listen backlog, the unit
# stays active/running (systemd does not act on a stopped process) and nothing answers;
# that is a server stuck in its event loop, which a python listener on the port of a
# stopped unit is not (a stopped unit is not probed at all). Target: one probe timeout
# (query.rs LIST_PROBE_TIMEOUT, 500 ms) plus the normal list time.
#
# Usage: benches/list.sh [N] [RUNS]   (root; builds the .deb unless BENCH_NO_BUILD=1 and
# target/deb has one). Profiling: BENCH_KEEP=1 leaves the container up (tests/e2e/exec
# --name bench-list; tests/e2e/down --name bench-list), BENCH_REUSE=1 measures again in
# it without setting up, BENCH_BIN=<path> measures that abssctl binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
N=${1:-50}
RUNS=${2:-20}
name=bench-list
version=26.9.0
if [[ ${BENCH_REUSE:-} == 1 && -L $E2E_RUNS/up-$name ]]; then
    # The container of an earlier BENCH_KEEP=1 run, instances and all.
    reuse=1
else
    reuse=0
    up_args=(--name "$name" --network private)
    [[ ${BENCH_NO_BUILD:-} == 1 ]] && up_args+=(--no-build)
    tests/e2e/up "${up_args[@]}" >&2
fi
[[ ${BENCH_KEEP:-} == 1 ]] || trap 'tests/e2e/down --name "$name" >&2' EXIT
ct_load "$E2E_RUNS/up-$name"
if [[ -n ${BENCH_BIN:-} ]]; then
    # Another build of abssctl to measure (e.g. a profiling build), instead of the package's.
    cp "$BENCH_BIN" "$CT_MERGED/usr/bin/abssctl"
fi
if ((!reuse)); then
    # This bench does not test the install: a cached tree of the version from any recent
    # build of the package will do (the newest), else it is installed for real (and cached).
    cached=$(ls -t "$E2E_VERSIONS"/actual-$version-$E2E_SUITE-*.tar.zst 2>/dev/null | head -1) || true
    if [[ -n $cached ]]; then
        E2E_DEB_KEY=${cached##*-}
        E2E_DEB_KEY=${E2E_DEB_KEY%.tar.zst}
    else
        E2E_DEB_KEY=$(sha256sum "$(ls -t target/deb/abssctl_*.deb | head -1)" | cut -c1-16)
    fi
    export E2E_DEB_KEY
    domains=()
    for i in $(seq "$N"); do domains+=("l$i.test"); done
    ct_system_cert "${domains[@]}" >/dev/null
    ct_seed_version "$version" >&2
    in_ct abssctl -y version switch "$version" --no-backup >/dev/null
    log "creating $N instances"
    for i in $(seq "$N"); do
        in_ct abssctl -q instance create "l$i" --domain "l$i.test" >/dev/null
    done
fi
in_ct abssctl --json instance list | in_ct jq -e --argjson n "$N" \
    '[.instances[] | select(.health == "up")] | length == $n' >/dev/null ||
    die "not all $N instances are up before measuring"

# times.py RUNS CMD...: median/min/max wall ms of RUNS runs (perf_counter around each
# subprocess, output discarded), after 2 warm-up runs.
cat >"$CT_SHARE/times.py" <<'EOF'
import os, statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
# ANY_RC=1: the exit code is part of the result (the doctor exits 4 on a red finding).
check = os.environ.get("ANY_RC") != "1"
for _ in range(2):
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=check)
t = []
for _ in range(runs):
    s = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=check)
    t.append((time.perf_counter() - s) * 1000)
print("%.1f %.1f %.1f" % (statistics.median(t), min(t), max(t)))
EOF
measure() { in_ct python3 /share/times.py "$RUNS" "$@"; }
read -r l_med l_min l_max < <(measure abssctl --json instance list)
read -r s_med s_min s_max < <(measure systemctl list-units --no-pager 'actual-sync@*')
# The doctor over the same box (every probe, app health of each instance included).
read -r d_med d_min d_max < <(in_ct env ANY_RC=1 python3 /share/times.py 5 abssctl --json doctor)
# in_ct_sh runs `sh -e`: the doctor's exit code is collected, not fatal.
healthy_doctor=$(in_ct_sh 'abssctl --json doctor || true')
d_rc=$(jq -r .rc <<<"$healthy_doctor")
d_red=$(jq -r '[.probes[] | select(.status == "red") | .id] | join(",")' <<<"$healthy_doctor")

pid=$(in_ct systemctl show -P MainPID actual-sync@l1.service)
in_ct kill -STOP "$pid"
hung_json=$(in_ct abssctl --json instance list)
read -r h_med h_min h_max < <(in_ct python3 /share/times.py 5 abssctl --json instance list)
hung_doctor=$(in_ct_sh 'abssctl --json doctor || true')
read -r hd_med hd_min hd_max < <(in_ct env ANY_RC=1 python3 /share/times.py 3 abssctl --json doctor)
in_ct kill -CONT "$pid"
h1=$(jq -r '.instances[] | select(.name == "l1") | .health' <<<"$hung_json")
hd1=$(jq -r '.probes[] | select(.id == "app.l1") | "\(.status): \(.message)"' <<<"$hung_doctor")
hd_rc=$(jq -r .rc <<<"$hung_doctor")
up=$(jq '[.instances[] | select(.health == "up")] | length' <<<"$hung_json")

printf '%s running instances, %s runs each (median / min / max, ms)\n' "$N" "$RUNS"
printf '  abssctl --json instance list           %7s %7s %7s  (target <= 25)\n' "$l_med" "$l_min" "$l_max"
printf "  systemctl list-units 'actual-sync@*'   %7s %7s %7s\n" "$s_med" "$s_min" "$s_max"
printf '  ratio list / list-units (medians)      %7s\n' "$(awk -v a="$l_med" -v b="$s_med" 'BEGIN { printf "%.1f", a / b }')"
printf '  list with l1 hung (SIGSTOP), 5 runs    %7s %7s %7s  (l1: %s; up: %s of %s)\n' \
    "$h_med" "$h_min" "$h_max" "$h1" "$up" "$N"
printf '  abssctl --json doctor, 5 runs          %7s %7s %7s  (rc %s, red: %s; target <= 2000 for 20)\n' \
    "$d_med" "$d_min" "$d_max" "$d_rc" "${d_red:-none}"
printf '  doctor with l1 hung, 3 runs            %7s %7s %7s  (rc %s; app.l1 %s)\n' \
    "$hd_med" "$hd_min" "$hd_max" "$hd_rc" "$hd1"
