#!/bin/sh
# Benchmark (not a test): `abssctl ports list --json` with 50 reservations in a temp root.
# Prints the median wall time (ms) and the peak RSS (MiB). Targets: < 5 ms, < 10 MiB.
#
# Usage: benches/ports-list.sh [RUNS]   (default 200; needs root like the real command)
set -eu

runs="${1:-200}"
cd "$(dirname "$0")/.."

cargo build --release --quiet
bin="$(pwd)/target/release/abssctl"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
export ABSSCTL_ROOT="$root"

# 50 reservations through the real command (so the file is exactly what abssctl writes).
i=1
while [ "$i" -le 50 ]; do
    "$bin" --quiet ports reserve "bench-$i"
    i=$((i + 1))
done
count="$("$bin" ports list --json | grep -c '"port"')"
[ "$count" -eq 50 ] || { echo "expected 50 reservations, got $count" >&2; exit 1; }

if command -v hyperfine >/dev/null 2>&1; then
    json="$root/hyperfine.json"
    hyperfine --warmup 10 --runs "$runs" -N --export-json "$json" \
        "$bin ports list --json" >/dev/null
    median_ms="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.2f" % (r["median"]*1000))' "$json")"
    tool="hyperfine ($runs runs, 10 warmup)"
else
    times="$root/times"
    : >"$times"
    i=0
    while [ "$i" -lt "$runs" ]; do
        s="$(date +%s%N)"
        "$bin" ports list --json >/dev/null
        e="$(date +%s%N)"
        echo $(( (e - s) / 1000 )) >>"$times"
        i=$((i + 1))
    done
    median_ms="$(sort -n "$times" | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.2f", m/1000}')"
    tool="shell loop ($runs runs; includes fork/exec of date)"
fi

if [ -x /usr/bin/time ]; then
    rss_kb="$(/usr/bin/time -v "$bin" ports list --json 2>&1 >/dev/null | awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}')"
    rss="$(awk -v k="$rss_kb" 'BEGIN {printf "%.2f MiB (%d KiB)", k/1024, k}')"
else
    rss="unknown (install the 'time' package for /usr/bin/time)"
fi

echo "abssctl ports list --json, 50 reservations"
echo "  median wall: ${median_ms} ms   [$tool]"
echo "  peak RSS:    ${rss}"
