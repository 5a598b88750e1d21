#!/bin/bash
# Benchmark (not a test): how long abssctl takes to bring an instance to "healthy",
# against the server's own start, in the real-systemd container (tests/e2e/up):
#   bare     the instance's own ExecStart (same node, same server, same environment, as
#            its account) on a copy of its data and another port, from exec to the first
#            GET /health 200 (curl every 10 ms);
#   restart  `abssctl instance restart` wall time, and the healthy_after_ms it reports;
#   create   `abssctl instance create` of a new instance: healthy_after_ms (start to
#            healthy) and the whole command's wall time;
#   upgrade  `abssctl instance set-version` between two versions (the upgrade path:
#            stop, snapshot, copy, start, gate on /info and the accounts): downtime_ms.
# Five rounds each, medians; prints the ratios to bare (target: restart and create
# healthy_after within 1.2x of bare).
#
# Usage: benches/start.sh   (root; builds the .deb unless BENCH_NO_BUILD=1 and target/deb
# has one; the container is removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
name=bench-start
version=26.9.0
alias=0.0.3
rounds=5
up_args=(--name "$name" --network host)
[[ ${BENCH_NO_BUILD:-} == 1 ]] && up_args+=(--no-build)
tests/e2e/up "${up_args[@]}" >&2
trap 'tests/e2e/down --name "$name" >&2' EXIT
ct_load "$E2E_RUNS/up-$name"
E2E_DEB_KEY=$(sha256sum "$(ls -t target/deb/abssctl_*.deb | head -1)" | cut -c1-16)
export E2E_DEB_KEY
ct_system_cert bench.test b1.test b2.test b3.test b4.test b5.test >/dev/null
ct_seed_version "$version" >&2
in_ct abssctl -y version switch "$version" --no-backup >/dev/null
# A second version to move between: the same tree under another number, its own
# package.json (so /info reports it and the gate passes).
in_ct_sh "cp -al /srv/app/v$version /srv/app/v$alias && rm /srv/app/v$alias/manifest.json
    jq '.version=\"$alias\"' /srv/app/v$version/manifest.json >/srv/app/v$alias/manifest.json
    pj=node_modules/@actual-app/sync-server/package.json; rm /srv/app/v$alias/\$pj
    jq '.version=\"$alias\"' /srv/app/v$version/\$pj >/srv/app/v$alias/\$pj"
in_ct abssctl instance create bench --domain bench.test --port 5100 >/dev/null
median() { printf '%s\n' "$@" | sort -n | sed -n "$(((${#} + 1) / 2))p"; }
now_ms() { in_ct date +%s%3N; }

# bare: the drop-in's ExecStart and Environment, run by hand as actual-bench on port 5199.
in_ct_sh '
    d=/etc/systemd/system/actual-sync@bench.service.d/50-abssctl.conf
    grep "^ExecStart=." "$d" | tail -1 | cut -d= -f2- > /root/bare-cmd
    abssctl instance env bench | grep -v -e "^ACTUAL_PORT=" -e "^ACTUAL_DATA_DIR=" \
        -e "^ACTUAL_SERVER_FILES=" -e "^ACTUAL_USER_FILES=" > /root/bare-env'
bare=()
for i in $(seq "$rounds"); do
    bare+=("$(in_ct_sh '
        rm -rf /srv/bare && cp -a /srv/bench/data /srv/bare
        t0=$(date +%s%N)
        env $(cat /root/bare-env) ACTUAL_PORT=5199 ACTUAL_DATA_DIR=/srv/bare \
            setpriv --reuid=actual-bench --regid=actual-bench --clear-groups $(cat /root/bare-cmd) \
            >/dev/null 2>&1 &
        p=$!
        until curl -sf http://127.0.0.1:5199/health >/dev/null 2>&1; do sleep 0.01; done
        echo $(( ($(date +%s%N) - t0) / 1000000 ))
        kill $p; wait $p 2>/dev/null || true')")
done
restart=() restart_wall=()
for i in $(seq "$rounds"); do
    t0=$(now_ms)
    in_ct abssctl --json instance restart bench >/tmp/bench-start.json
    restart_wall+=($(($(now_ms) - t0)))
    restart+=("$(jq .healthy_after_ms /tmp/bench-start.json)")
done
create=() create_wall=()
for i in $(seq "$rounds"); do
    t0=$(now_ms)
    in_ct abssctl --json instance create "b$i" --domain "b$i.test" >/tmp/bench-start.json
    create_wall+=($(($(now_ms) - t0)))
    create+=("$(jq .healthy_after_ms /tmp/bench-start.json)")
done
upgrade=() gate=()
to=$alias
for i in $(seq "$rounds"); do
    in_ct abssctl --json -y instance set-version bench "$to" >/tmp/bench-start.json
    upgrade+=("$(jq '.instances[0].downtime_ms' /tmp/bench-start.json)")
    gate+=("$(jq '.instances[0].healthy_after_ms' /tmp/bench-start.json)")
    if [[ $to == "$alias" ]]; then to=$version; else to=$alias; fi
done
b=$(median "${bare[@]}")
ratio() { awk -v a="$1" -v b="$b" 'BEGIN { printf "%.2f", a / b }'; }
printf 'bare start -> /health 200:      %5s ms median of %s\n' "$b" "${bare[*]}"
printf 'restart (healthy_after_ms):     %5s ms median of %s  ratio %s (target <= 1.20)\n' \
    "$(median "${restart[@]}")" "${restart[*]}" "$(ratio "$(median "${restart[@]}")")"
printf 'restart (wall, whole command):  %5s ms median of %s  ratio %s\n' \
    "$(median "${restart_wall[@]}")" "${restart_wall[*]}" "$(ratio "$(median "${restart_wall[@]}")")"
printf 'create (healthy_after_ms):      %5s ms median of %s  ratio %s (target <= 1.20)\n' \
    "$(median "${create[@]}")" "${create[*]}" "$(ratio "$(median "${create[@]}")")"
printf 'create (wall, whole command):   %5s ms median of %s  ratio %s\n' \
    "$(median "${create_wall[@]}")" "${create_wall[*]}" "$(ratio "$(median "${create_wall[@]}")")"
printf 'set-version downtime (upgrade): %5s ms median of %s (start to gate %s ms; target <= 3000)\n' \
    "$(median "${upgrade[@]}")" "${upgrade[*]}" "$(median "${gate[@]}")"
