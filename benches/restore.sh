#!/bin/bash
# Benchmark (not a test): `abssctl backup restore` in place, in the real-systemd container
# (tests/e2e/up), of an instance holding ~MB of data (70% text-like, 30% random: budgets'
# SQLite pages compress, receipts and attachments do not), against
# `zstd -d < archive | tar -xf -` of the same archive in the same container, page cache
# warm for both (one untimed read first). Three rounds, medians compared. Prints the extraction time restore
# reports (checksum + no-trust extraction + chown, instance still serving), the baseline,
# their ratio (target <= 1.10), and how long the instance did not serve (stop, swap,
# start, health gate).
#
# Usage: benches/restore.sh [MB]   (default 500; root; builds the .deb unless
# BENCH_NO_BUILD=1 and target/deb has one; the container is removed at the end)
set -euo pipefail
mb=${1:-500}
cd "$(dirname "$0")/.."
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
name=bench-restore
version=26.9.0
up_args=(--name "$name" --network host)
[[ ${BENCH_NO_BUILD:-} == 1 ]] && up_args+=(--no-build)
tests/e2e/up "${up_args[@]}" >&2
trap 'tests/e2e/down --name "$name" >&2' EXIT
ct_load "$E2E_RUNS/up-$name"
# The key of the shared version trees (as tests/e2e/run sets it): this package's own.
E2E_DEB_KEY=$(sha256sum "$(ls -t target/deb/abssctl_*.deb | head -1)" | cut -c1-16)
export E2E_DEB_KEY
in_ct_sh 'install -d -m 0700 /etc/ssl/private && cd /etc/ssl/private &&
    openssl req -x509 -nodes -newkey rsa:2048 -days 30 -subj /CN=bench.test \
        -keyout cert.key -out cert.crt 2>/dev/null && cat cert.crt cert.key > cert.pem &&
    chmod 0400 cert.pem cert.key'
ct_seed_version "$version" >&2
in_ct abssctl -y version switch "$version" >/dev/null
in_ct abssctl instance create bench --domain bench.test >/dev/null
text=$((mb * 7 / 10)) rand=$((mb - mb * 7 / 10))
in_ct_sh "
    d=/srv/bench/data/user-files
    install -d -o actual-bench -g actual-bench -m 0700 \$d
    i=0; while [ \$i -lt 10 ]; do
        seq -f 'transaction %08g payee Grocer amount -1234 category food note weekly shop' 1 100000000 |
            head -c \$(( $text * 1024 * 1024 / 10 )) > \$d/text-\$i.blob
        i=\$((i + 1))
    done
    head -c ${rand}M /dev/urandom > \$d/random.blob
    chown -R actual-bench:actual-bench \$d
    touch -d '-1 hour' \$d/*"
in_ct abssctl --json backup create bench >/tmp/bench-restore-create.json
archive=$(jq -r .path /tmp/bench-restore-create.json)
in_ct cat "$archive" >/dev/null
# Three rounds, restore and baseline alternating (the machine is shared: one pair can land
# on a busy second); the medians are compared.
id=$(jq -r .id /tmp/bench-restore-create.json)
extracts=() bases=() downs=() synced=()
for round in 1 2 3; do
    in_ct abssctl --json --yes backup restore "$id" --no-backup >/tmp/bench-restore.json
    extracts+=("$(jq .extract_ms /tmp/bench-restore.json)")
    downs+=("$(jq .downtime_ms /tmp/bench-restore.json)")
    # Timed inside the container, as restore times itself.
    bases+=("$(in_ct_sh "rm -rf /srv/bench-x && mkdir /srv/bench-x && t0=\$(date +%s%N) &&
        zstd -q -d < $archive | tar -xf - -C /srv/bench-x && echo \$(( (\$(date +%s%N) - t0) / 1000000 ))")")
    in_ct rm -rf /srv/bench-x
    # The same, made durable as restore makes its staging (one syncfs at the end).
    synced+=("$(in_ct_sh "rm -rf /srv/bench-x && mkdir /srv/bench-x && t0=\$(date +%s%N) &&
        zstd -q -d < $archive | tar -xf - -C /srv/bench-x && sync -f /srv/bench-x &&
        echo \$(( (\$(date +%s%N) - t0) / 1000000 ))")")
    in_ct rm -rf /srv/bench-x
    echo "round $round: extract ${extracts[-1]} ms, baseline ${bases[-1]} ms (+sync ${synced[-1]} ms), not serving ${downs[-1]} ms" >&2
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
extract=$(median "${extracts[@]}") base_ms=$(median "${bases[@]}")
r=/tmp/bench-restore.json
printf 'data:        %s MB in %s files (archive %s MB)\n' \
    "$(($(jq .data_bytes $r) / 1000000))" "$(jq .files $r)" "$(($(jq .size /tmp/bench-restore-create.json) / 1000000))"
printf 'restore:     extract %s ms median of %s (instance serving); not serving %s ms median\n' \
    "$extract" "${extracts[*]}" "$(median "${downs[@]}")"
printf 'baseline:    zstd -d | tar -x %s ms median of %s\n' "$base_ms" "${bases[*]}"
printf '             ... && sync -f (durable, as restore): %s ms median of %s\n' "$(median "${synced[@]}")" "${synced[*]}"
printf 'ratio:       %s (target <= 1.10)\n' "$(awk -v a="$extract" -v b="$base_ms" 'BEGIN { printf "%.2f", a / b }')"
