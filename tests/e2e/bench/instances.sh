#!/bin/bash
# Benchmark (not a test): instance timings in a running container of the real tier with
# abssctl installed and an Actual version current (e.g. after `tests/e2e/run --keep 30`).
#
#   tests/e2e/bench/instances.sh <run-dir-of-the-container> [N=50]
#
# Prints: (1) time from `instance create` to the first healthy HTTPS answer through nginx,
# 5 runs and their median; (2) wall time and max RSS of `abssctl instance list --json` with
# N instances, next to `systemctl list-units` and `systemctl show` over the same units,
# measured in the same run (GNU time on the host: apt install time). The N instances are created for real (then stopped, except 3,
# to keep memory in bounds: list reads the same properties for stopped units).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
ct_load "$1"
N=${2:-50}

in_ct test -L /srv/app/current || die "no current Actual version in the container"
in_ct_sh 'test -s /etc/ssl/private/cert.pem' || die "no system certificate (run scenario 30 first)"

step "create -> first healthy HTTPS response (5 runs)"
times=()
for i in 1 2 3 4 5; do
    t=$(in_ct_sh "
        s=\$(date +%s%N)
        abssctl -q instance create bench$i --domain bench$i.test >/dev/null
        until curl -sfk --resolve bench$i.test:443:127.0.0.1 https://bench$i.test/health | grep -q UP; do sleep 0.02; done
        e=\$(date +%s%N); echo \$(( (e - s) / 1000000 ))")
    times+=("$t")
    echo "  run $i: ${t} ms"
    in_ct abssctl -q -y instance delete "bench$i" --purge-data --no-backup >/dev/null
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "  median: ${median} ms"

step "list with $N instances"
for i in $(seq 1 "$N"); do
    in_ct abssctl -q instance create "l$i" --domain "l$i.test" >/dev/null
    ((i <= 3)) || in_ct abssctl -q stop "l$i" >/dev/null
done
units=$(for i in $(seq 1 "$N"); do printf 'actual-sync@l%s.service ' "$i"; done)
measure() { # <label> <cmd...>: best of 5 wall ms, max RSS kB of that run
    local label=$1 best=999999 rss=0 out
    shift
    for _ in 1 2 3 4 5; do
        # GNU time on the host around nsenter: %M is the largest descendant's peak RSS
        # (the measured command; nsenter itself stays ~1 MB).
        out=$(/usr/bin/time -f '%e %M' nsenter -t "$CT_INIT" -a -r -w -- \
            env -i PATH=$CT_PATH "$@" 2>&1 >/dev/null | tail -1)
        local ms rs
        ms=$(awk '{printf "%d", $1*1000}' <<<"$out")
        rs=$(awk '{print $2}' <<<"$out")
        ((ms < best)) && best=$ms && rss=$rs
    done
    printf '  %-58s %6d ms  %7d kB\n' "$label" "$best" "$rss"
}
measure "abssctl --json instance list ($N instances)" abssctl --json instance list
measure "systemctl list-units --all 'actual-sync@*'" systemctl list-units --all --no-pager 'actual-sync@*'
# shellcheck disable=SC2086
measure "systemctl show -p (5 properties) <$N units>" systemctl show -p ActiveState,SubState,MainPID,NRestarts,MemoryCurrent $units
for i in $(seq 1 "$N"); do in_ct abssctl -q -y instance delete "l$i" --purge-data --no-backup >/dev/null; done
