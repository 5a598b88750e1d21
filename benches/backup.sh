#!/bin/bash
# Benchmark (not a test): `abssctl backup create` of an instance holding ~500 MB (real
# SQLite databases plus blobs, in a temp root) against `tar -cf - <data> | zstd -3 -T0`
# on the same data, one run each, page cache warm for both (one untimed read first).
# Prints wall seconds, the ratio (target <= 1.10) and abssctl's peak RSS (target <= 64 MiB).
#
# Usage: [BENCH_BIN=path] benches/backup.sh [MB]   (default 500; needs root like the real command, python3,
# zstd and GNU time)
set -euo pipefail
mb=${1:-500}
cd "$(dirname "$0")/.."
# BENCH_BIN: a release binary already built (else this tree's is built now).
bin=${BENCH_BIN:-}
if [[ -z $bin ]]; then
    cargo build --release --quiet
    bin="$(pwd)/target/release/abssctl"
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
export ABSSCTL_ROOT=$root

mkdir -p "$root/var/lib/abssctl/registry"
cat >"$root/var/lib/abssctl/registry/registry.yml" <<'YML'
schema_version: 2
instances:
  - name: bench
    domain: bench.example.org
    port: 5000
    version_binding: current
    data_dir: /srv/bench/data
    created_at: 2026-11-26T08:00:00Z
    last_changed: 2026-11-26T08:00:00Z
    notes: ""
ports:
  - port: 5000
    instance: bench
    reserved_at: 2026-11-26T08:00:00Z
YML
data=$root/srv/bench/data
# A budget-like data set: messages tables (text, timestamps, hex ids: compressible like
# Actual's CRDT log) in account + group databases (60%), blobs half random (encrypted
# budgets) half repetitive (40%).
python3 - "$data" "$mb" <<'PY'
import os, sqlite3, sys, random
data, mb = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{data}/server-files", exist_ok=True)
os.makedirs(f"{data}/user-files", exist_ok=True)
open(f"{data}/.migrate", "w").write('{"1":true}\n')
rnd = random.Random(7)
def db(path, megabytes):
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE messages_binary(timestamp TEXT, is_encrypted INT, content BLOB)")
    row = 0
    while os.path.getsize(path) < megabytes * 1_000_000 if os.path.exists(path) else True:
        rows = []
        for _ in range(2000):
            row += 1
            ts = f"2026-{rnd.randint(1,12):02}-{rnd.randint(1,28):02}T10:{row%60:02}:00.000Z-{row:04x}-{rnd.getrandbits(64):016x}"
            content = (f"transactions|amount|{rnd.randint(-99999,99999)}|notes|shop {row%97}|" * 4).encode() + os.urandom(16)
            rows.append((ts, 0, content))
        c.executemany("INSERT INTO messages_binary VALUES (?,?,?)", rows)
        c.commit()
    c.close()
db(f"{data}/server-files/account.sqlite", max(1, mb // 50))
for g in range(3):
    db(f"{data}/user-files/group-{g}.sqlite", mb * 58 // 300)
blobs = 20
for b in range(blobs):
    size = mb * 400_000 // blobs
    with open(f"{data}/user-files/file-{b}.blob", "wb") as f:
        f.write(os.urandom(size) if b % 2 == 0 else (b"budget-file-chunk " * (size // 18 + 1))[:size])
past = 1_700_000_000
for dirpath, _, names in os.walk(data):
    for n in names:
        os.utime(os.path.join(dirpath, n), (past, past))
PY
bytes=$(du -sb "$data" | cut -f1)
echo "data: $((bytes / 1000000)) MB in $(find "$data" -type f | wc -l) files"
tar -cf - -C "$data" . >/dev/null # warm the page cache for both

t0=$(date +%s.%N)
tar -cf - -C "$data" . | zstd -3 -T0 -q -o "$root/ref.tar.zst"
t1=$(date +%s.%N)
/usr/bin/time -f '%e %M %U %S' -o "$root/time" "$bin" --quiet backup create bench >/dev/null
read -r a_wall a_rss a_user a_sys <"$root/time"
ref=$(echo "$t1 - $t0" | bc -l)
arch=$(ls "$root"/srv/backups/bench/*.tar.zst)
printf 'tar | zstd -3 -T0: %.2f s, %d MB\n' "$ref" "$(($(stat -c %s "$root/ref.tar.zst") / 1000000))"
printf 'abssctl backup create: %.2f s (CPU %.2f s), %d MB, peak RSS %.1f MiB\n' "$a_wall" \
    "$(echo "$a_user + $a_sys" | bc -l)" "$(($(stat -c %s "$arch") / 1000000))" "$(echo "$a_rss / 1024" | bc -l)"
printf 'ratio: %.2f (target <= 1.10)\n' "$(echo "$a_wall / $ref" | bc -l)"
"$bin" --quiet backup verify --all >/dev/null && echo "verify: ok"
