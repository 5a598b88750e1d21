# shellcheck shell=bash
# Library of the real tier: a Debian 12 (or 13) container whose PID 1 is systemd, booted
# with systemd-nspawn on a fresh overlay over a cached root filesystem.
#
# Sourced by tests/e2e/{run,up,down,exec} and by every scenario. Scenarios run on the HOST
# and act inside the container with `in_ct`, so they can also test from the outside
# (e.g. HTTPS from the host with the host network).
#
# Why nspawn + nsenter (not machinectl / systemd-run -M): the host has no systemd as PID 1
# and no machined; see docs/testing.md.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
E2E_CACHE=${E2E_CACHE:-$E2E_DIR/.cache}
E2E_RUNS=${E2E_RUNS:-$E2E_DIR/.run}
# The Debian suite of the containers booted next: bookworm (Debian 12, TurnKey 18) unless a
# scenario's `# e2e-suite: trixie` header (Debian 13, TurnKey 19) makes tests/e2e/run
# export another one. Every suite gets its own rootfs, built the first time it is needed.
E2E_SUITES=(bookworm trixie)
E2E_SUITE=${E2E_SUITE:-bookworm}
[[ " ${E2E_SUITES[*]} " == *" $E2E_SUITE "* ]] ||
    { echo "E2E_SUITE=$E2E_SUITE: one of ${E2E_SUITES[*]}" >&2; exit 2; }
# What the package Depends/Recommends on, plus the tools scenarios use, so that
# `apt-get install ./abssctl_*.deb` resolves everything from the rootfs without a mirror.
# dialog, python3-dialog (what confconsole's console runs) and tmux: the real dialog walk
# of the confconsole plugin in scenario 74.
# The same names on both suites. tzdata: in the container nspawn bind-mounts the host's
# /etc/localtime, so tzdata's postinst cannot replace it there (trixie's python3.13 depends
# on it); installed while the rootfs is built, it never has to be installed inside.
E2E_PACKAGES=(systemd systemd-sysv dbus nginx passwd tar zstd g++ make python3 procps curl
    ca-certificates openssl man-db bash-completion jq iproute2 less dialog python3-dialog tmux
    tzdata)
# Timers that fire at first boot and race the test's dpkg for its lock, and a getty that
# fights over the console.
E2E_MASK=(apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
    fstrim.timer man-db.timer console-getty.service)
CT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------- root filesystem cache

# e2e_sources <suite>: the host's apt sources (its configured mirror: no host is named
# here) for <suite>, the host's own codename replaced on the Suites lines (bookworm-updates
# becomes trixie-updates, bookworm-security trixie-security). mmdebstrap pastes a sources
# file as it is, whatever suite it is asked for, so the host's file alone would give a
# bookworm rootfs. bookworm's debian-archive-keyring (2023.3+deb12u1 and later) holds the
# trixie keys.
e2e_sources() {
    local host
    host=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [[ -n $host && -f /etc/apt/sources.list.d/debian.sources ]] ||
        die "the rootfs is built from /etc/apt/sources.list.d/debian.sources of a Debian host"
    sed "/^Suites:/s/\b$host\b/$1/g" /etc/apt/sources.list.d/debian.sources
}

# The recipe itself (this function's text and e2e_sources), the suite and the package list
# key the cache: change any of them and a new rootfs is built.
e2e_mmdebstrap() {
    local dest=$1 mask src rc=0
    mask=$(printf ' %s' "${E2E_MASK[@]}")
    # The file's name becomes the rootfs's sources file name.
    src=$(mktemp -d)/debian.sources
    e2e_sources "$E2E_SUITE" >"$src"
    mmdebstrap --variant=apt --quiet \
        --include="$(
            IFS=,
            echo "${E2E_PACKAGES[*]}"
        )" \
        --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
        --customize-hook="chroot \"\$1\" systemctl mask$mask" \
        --customize-hook='truncate -s0 "$1/etc/machine-id"' \
        --customize-hook='mkdir -p "$1/var/log/journal"' \
        --customize-hook='rm -f "$1/var/cache/apt/archives/"*.deb' \
        "$E2E_SUITE" "$dest" "$src" || rc=$?
    rm -rf "${src%/*}"
    return "$rc"
}

e2e_rootfs_key() {
    {
        declare -f e2e_mmdebstrap e2e_sources
        echo "$E2E_SUITE ${E2E_PACKAGES[*]} ${E2E_MASK[*]}"
    } | sha256sum | cut -c1-16
}

# Print the path of an unpacked, read-only base rootfs, building or unpacking it if needed.
# The .tar.zst is the durable cache (CI can cache it); the unpacked dir beside it is reused
# as the overlay's lower layer by every run on this machine.
e2e_rootfs() {
    local key tarball dir tmp
    key=$(e2e_rootfs_key)
    tarball=$E2E_CACHE/rootfs-$key.tar.zst
    dir=$E2E_CACHE/rootfs-$key
    mkdir -p "$E2E_CACHE"
    if [[ -f $dir/.complete ]]; then
        echo "$dir"
        return
    fi
    # One builder at a time (other helpers may start a run concurrently).
    exec {lockfd}>"$E2E_CACHE/.rootfs.lock"
    flock "$lockfd"
    if [[ ! -f $dir/.complete ]]; then
        local t0=$SECONDS
        if [[ ! -f $tarball ]]; then
            log "building Debian $E2E_SUITE rootfs $key (mmdebstrap, about 1 min)"
            tmp=$tarball.tmp.$$
            rm -rf "$dir"
            mkdir -p "$dir"
            e2e_mmdebstrap "$dir" >&2 || die "mmdebstrap failed"
            tar -C "$dir" --numeric-owner --xattrs -cf - . | zstd -q -T0 -3 -o "$tmp" ||
                die "packing the rootfs failed"
            mv "$tmp" "$tarball"
            log "rootfs built in $((SECONDS - t0)) s: $(du -sh "$tarball" | cut -f1) tarball"
        else
            log "unpacking cached rootfs $tarball"
            rm -rf "$dir"
            mkdir -p "$dir"
            zstd -q -d -c "$tarball" | tar -C "$dir" --numeric-owner --xattrs -xf - ||
                die "unpacking $tarball failed"
            log "rootfs unpacked in $((SECONDS - t0)) s"
        fi
        touch "$dir/.complete"
    fi
    flock -u "$lockfd"
    exec {lockfd}>&-
    echo "$dir"
}

# ---------------------------------------------------------------- container lifecycle

# ct_up <run-dir> <name> <network: host|private>
# Boots a container; writes its facts to <run-dir>/ct.env (CT_NAME, CT_PID, CT_INIT, ...)
# and exports them.
ct_up() {
    local rd=$1 name=$2 network=$3 base t0=$SECONDS
    base=$(e2e_rootfs) || exit 1
    mkdir -p "$rd"/{upper,work,merged,share}
    mount -t overlay overlay \
        -o "lowerdir=$base,upperdir=$rd/upper,workdir=$rd/work" "$rd/merged" ||
        die "overlay mount failed"
    echo "CT_MERGED=$rd/merged" >"$rd/ct.env"
    ct_prepare_rootfs "$rd/merged" "$name"

    local netopt=()
    case $network in
    host)
        # The container's nginx binds the HOST's 80/443: say so up front when something
        # (often another container kept up with --network host) already holds them.
        local busy
        busy=$(ss -Hltnp 2>/dev/null | awk '$4 ~ /:(80|443)$/' | head -3) || true
        [[ -z $busy ]] || log "warning: host ports 80/443 are in use; nginx in the container will fail:
$busy"
        ;;
    private) netopt=(--private-network) ;;
    *) die "unknown network mode '$network' (host or private)" ;;
    esac
    # setsid + stdin from /dev/null: Ctrl-C in the terminal reaches only this script, whose
    # trap then shuts the container down in order. --register=no and --keep-unit are both
    # required on a host without systemd as PID 1.
    # With --keep-unit, nspawn puts itself and the container into `supervisor` and
    # `payload` cgroups below the cgroup it starts in. Two containers started from the
    # same cgroup would share `payload` and their systemds would manage each other's
    # services, so every container starts in a cgroup of its own.
    local cg=abssctl-e2e/$name h
    for h in $(ct_cgroup_roots); do mkdir -p "$h/$cg"; done
    (
        for h in $(ct_cgroup_roots); do echo "$BASHPID" >"$h/$cg/cgroup.procs"; done
        exec setsid systemd-nspawn -D "$rd/merged" -M "$name" --register=no --keep-unit -b \
            --console=read-only --bind="$rd/share:/share" "${netopt[@]}"
    ) </dev/null >"$rd/console.log" 2>&1 &
    local nspawn=$!
    {
        echo "CT_CGROUP=$cg"
        echo "CT_NAME=$name"
        echo "CT_NSPAWN=$nspawn"
        echo "CT_RUNDIR=$rd"
        echo "CT_NETWORK=$network"
    } >>"$rd/ct.env"

    local init="" i
    for ((i = 0; i < 300; i++)); do
        init=$(pgrep -P "$nspawn" -x systemd | head -1) || true
        [[ -n $init ]] && break
        kill -0 "$nspawn" 2>/dev/null || {
            cat "$rd/console.log" >&2
            die "systemd-nspawn exited during boot"
        }
        sleep 0.1
    done
    [[ -n $init ]] || die "no systemd inside the container after 30 s"
    echo "CT_INIT=$init" >>"$rd/ct.env"
    ct_load "$rd"
    # Right after PID 1 starts, systemctl cannot connect yet and returns at once: retry
    # until it reports a final state.
    local state="" deadline=$((SECONDS + 120))
    while ((SECONDS < deadline)); do
        state=$(timeout 120 nsenter -t "$CT_INIT" -a -r -w -- env -i PATH=$CT_PATH \
            systemctl is-system-running --wait 2>/dev/null) || true
        [[ $state == running || $state == degraded ]] && break
        kill -0 "$CT_NSPAWN" 2>/dev/null || break
        sleep 0.2
    done
    case $state in
    running) ;;
    degraded)
        log "warning: container booted degraded; failed units:"
        in_ct systemctl --failed --no-legend >&2 || true
        ;;
    *) die "container did not finish booting (state: '${state:-timeout}')" ;;
    esac
    log "container $name up ($network network) in $((SECONDS - t0)) s"
}

# The cgroup hierarchies nspawn uses: the unified root on a pure cgroup2 host; on a hybrid
# host the named systemd hierarchy and the unified one.
ct_cgroup_roots() {
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
        echo /sys/fs/cgroup
        return
    fi
    local h
    for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
        [[ -d $h ]] && echo "$h"
    done
    return 0
}

# What every container gets before boot: the host's CA bundle (registry access goes
# through the machine's TLS-intercepting proxy), the host's npm registry as an ABSSCTL_*
# variable (never written into the repo), a hostname.
ct_prepare_rootfs() {
    local root=$1 name=$2 registry=""
    echo "$name" >"$root/etc/hostname"
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
        cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    fi
    local f
    for f in /usr/local/share/ca-certificates/*.crt; do
        [[ -f $f ]] && cp "$f" "$root/usr/local/share/ca-certificates/"
    done
    if command -v npm >/dev/null; then
        registry=$(npm config get registry 2>/dev/null) || registry=""
    fi
    {
        echo "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt"
        [[ -n $registry ]] && echo "ABSSCTL_NPM_REGISTRY=$registry"
    } >"$root/etc/abssctl-e2e.env"
    cat "$root/etc/abssctl-e2e.env" >>"$root/etc/environment"
}

# ct_load <run-dir>: export the facts of a running container (for exec / down / scenarios).
ct_load() {
    local rd=$1
    [[ -f $rd/ct.env ]] || die "no container state in $rd"
    set -a
    # shellcheck disable=SC1091
    . "$rd/ct.env"
    set +a
    export CT_SHARE=$rd/share
}

# ct_journal <file>: the container's whole journal, read from the host.
ct_journal() {
    journalctl -D "$CT_MERGED/var/log/journal" --no-pager -o short-monotonic >"$1" 2>&1 || true
}

# ct_down [keep]: halt the container, unmount, remove its run dir unless asked to keep it.
ct_down() {
    local keep=${1:-}
    [[ -n ${CT_RUNDIR:-} ]] || return 0
    if [[ -n ${CT_NSPAWN:-} ]] && kill -0 "$CT_NSPAWN" 2>/dev/null; then
        kill -TERM "$CT_NSPAWN" 2>/dev/null || true
        local i
        for ((i = 0; i < 150; i++)); do
            kill -0 "$CT_NSPAWN" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$CT_NSPAWN" 2>/dev/null; then
            log "warning: container $CT_NAME did not halt in 15 s; killing it"
            kill -KILL "$CT_NSPAWN" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    if [[ -n $keep ]]; then
        ct_journal "$CT_RUNDIR/journal.txt"
    fi
    if mountpoint -q "$CT_MERGED"; then
        umount "$CT_MERGED" || umount -l "$CT_MERGED" || log "warning: could not unmount $CT_MERGED"
    fi
    rm -rf "/run/systemd/nspawn/propagate/$CT_NAME"
    local h
    if [[ -n ${CT_CGROUP:-} ]]; then
        for h in $(ct_cgroup_roots); do
            [[ -d $h/$CT_CGROUP ]] && find "$h/$CT_CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null
            rmdir "$h/abssctl-e2e" 2>/dev/null || true
        done
    fi
    if [[ -n $keep ]]; then
        log "kept $CT_RUNDIR (journal: $CT_RUNDIR/journal.txt)"
    else
        rm -rf "$CT_RUNDIR"
    fi
    unset CT_RUNDIR CT_NSPAWN CT_INIT
}

# ---------------------------------------------------------------- helpers for scenarios

# in_ct <cmd...>: run a command inside the container as root (stdin, stdout, exit code
# pass through). The environment is clean plus the e2e variables (registry, CA).
in_ct() {
    local envs=()
    mapfile -t envs < <(grep -v '^#' "$CT_MERGED/etc/abssctl-e2e.env" 2>/dev/null)
    nsenter -t "$CT_INIT" -a -r -w -- env -i PATH=$CT_PATH HOME=/root LANG=C.UTF-8 \
        TERM=dumb "${envs[@]}" "$@"
}

# in_ct_sh '<shell script>': a shell snippet inside the container.
in_ct_sh() { in_ct sh -ec "$1"; }

# ct_copy_in <host-file> [name]: make a file visible inside at /share/<name>; prints that path.
ct_copy_in() {
    local name=${2:-$(basename "$1")}
    cp "$1" "$CT_SHARE/$name"
    echo "/share/$name"
}

# ---------------------------------------------------------------- shared Actual versions
#
# `abssctl version install` spends most of its 60-90 s compiling better-sqlite3. A scenario
# that needs a version installed, but does not test the install itself, seeds it instead:
# the version tree (/srv/app/vX.Y.Z plus the runtime and npm it records), exported once
# from a container where THIS package installed it for real, unpacked into the next
# container's root. Keyed by version, suite and the package under test (E2E_DEB_KEY, the
# .deb's sha256, set by tests/e2e/run): a rebuilt abssctl never gets a tree an older build
# made. At least one scenario must still install for real (30: create from nothing).

E2E_VERSIONS=$E2E_CACHE/versions

# ct_version_cache <version> [suite]: the cache file of that version for the package under
# test, built on that suite (default: the container's).
ct_version_cache() {
    echo "$E2E_VERSIONS/actual-$1-${2:-$E2E_SUITE}-${E2E_DEB_KEY:?E2E_DEB_KEY is set by tests/e2e/run}.tar.zst"
}

# The suites whose built trees the container's suite can use, its own first. A tree built
# on bookworm runs on trixie (its native modules need glibc 2.36 and bookworm's libstdc++,
# and trixie's are newer and backward compatible), so a trixie scenario reuses what the
# bookworm scenarios of the run built instead of compiling better-sqlite3 again; never the
# other way round.
e2e_tree_suites() {
    case $E2E_SUITE in
    trixie) echo trixie bookworm ;;
    *) echo "$E2E_SUITE" ;;
    esac
}

# ct_version_cache_found <version>: the first cache file of that version a suite of
# e2e_tree_suites has; fails when none has one.
ct_version_cache_found() {
    local s f
    for s in $(e2e_tree_suites); do
        f=$(ct_version_cache "$1" "$s")
        [[ -f $f ]] && { echo "$f"; return 0; }
    done
    return 1
}

# ct_export_version <version>: put the container's installed tree of <version> into the
# cache (no-op when it is there). Call it right after a real install, before the scenario
# changes anything in the tree.
ct_export_version() {
    local v=$1 f tmp paths=() rt npm
    f=$(ct_version_cache "$v")
    [[ -f $f ]] && return 0
    in_ct test -s "/srv/app/v$v/manifest.json" || die "ct_export_version: v$v is not installed"
    paths=("srv/app/v$v")
    # The runtime and npm the manifest records, when abssctl manages them (a system node
    # is part of the rootfs, not of the tree).
    rt=$(in_ct jq -r 'select(.runtime.kind=="managed") | .runtime.node' "/srv/app/v$v/manifest.json")
    npm=$(in_ct jq -r '.npm_version // empty' "/srv/app/v$v/manifest.json")
    if [[ -n $rt ]]; then
        rt=${rt#/}
        paths+=("${rt%/bin/node}")
    fi
    [[ -n $npm && -d $CT_MERGED/srv/app/runtimes/npm-v$npm ]] && paths+=("srv/app/runtimes/npm-v$npm")
    mkdir -p "$E2E_VERSIONS"
    tmp=$f.tmp.$$
    tar -C "$CT_MERGED" --numeric-owner --xattrs -cf - "${paths[@]}" | zstd -q -T0 -3 -o "$tmp" ||
        die "exporting Actual $v failed"
    mv "$tmp" "$f"
    log "cached Actual $v for later scenarios: $(du -h "$f" | cut -f1) ($f)"
    # Trees of packages built more than a day ago are of no use to anyone any more.
    find "$E2E_VERSIONS" -name 'actual-*.tar.zst' -mmin +1440 -delete 2>/dev/null || true
}

# ct_seed_version <version>: make <version> installed in the container: unpacked from the
# cache when this package already built it in this run (or an earlier one), otherwise
# installed for real and exported for the next scenario. Prints which one on stderr; fails
# when `abssctl version list` does not then report it installed.
ct_seed_version() {
    local v=$1 f t0=$SECONDS
    if f=$(ct_version_cache_found "$v"); then
        # --skip-old-files: a runtime the container already has (from another version) is
        # in use; it is the same tree, so it stays as it is.
        zstd -q -d -c "$f" | tar -C "$CT_MERGED" --numeric-owner --xattrs --skip-old-files -xpf - ||
            die "unpacking $f failed"
        touch "$f"
        log "seeded Actual $v from the cache in $((SECONDS - t0)) s ($(basename "$f"))"
    else
        in_ct abssctl version install "$v" >&2 || return 1
        log "installed Actual $v for real in $((SECONDS - t0)) s (not cached yet)"
        ct_export_version "$v"
    fi
    in_ct abssctl --json version list | in_ct jq -e --arg v "$v" \
        '[.versions[] | select(.installed) | .version] | index($v) != null' >/dev/null ||
        die "Actual $v is not listed as installed after seeding"
}

# ct_cached <name> <key-text> <dir-in-container> <command...>: a directory inside that some
# command builds (e.g. an npm install), cached by <name> and a hash of <key-text>: unpacked
# when cached, else built by running <command> inside and then cached.
ct_cached() {
    local name=$1 keytext=$2 dir=$3 key f tmp s
    shift 3
    # Reuse what a suite of e2e_tree_suites built (see there); build on this one otherwise.
    for s in $(e2e_tree_suites); do
        key=$(printf '%s\n%s' "$s" "$keytext" | sha256sum | cut -c1-16)
        f=$E2E_VERSIONS/$name-$key.tar.zst
        [[ -f $f ]] && break
    done
    if [[ ! -f $f ]]; then
        key=$(printf '%s\n%s' "$E2E_SUITE" "$keytext" | sha256sum | cut -c1-16)
        f=$E2E_VERSIONS/$name-$key.tar.zst
    fi
    mkdir -p "$E2E_VERSIONS"
    if [[ -f $f ]]; then
        zstd -q -d -c "$f" | tar -C "$CT_MERGED" --numeric-owner --xattrs -xpf - ||
            die "unpacking $f failed"
        touch "$f"
        log "$name: from the cache ($(basename "$f"))"
        return 0
    fi
    "$@" || return 1
    tmp=$f.tmp.$$
    tar -C "$CT_MERGED" --numeric-owner --xattrs -cf - "${dir#/}" | zstd -q -T0 -3 -o "$tmp" &&
        mv "$tmp" "$f" || die "caching $dir failed"
    log "$name: built and cached ($(du -h "$f" | cut -f1))"
}

E2E_FAILS=0
E2E_CHECKS=0
# check "<what it proves>" <cmd...>: run a command (on the host; wrap it with in_ct for the
# container), print ok/FAIL with the description, show the output on failure. Failures are
# counted and the scenario continues; `scenario_end` turns them into the exit code.
check() {
    local desc=$1 out rc
    shift
    E2E_CHECKS=$((E2E_CHECKS + 1))
    out=$("$@" 2>&1) && rc=0 || rc=$?
    if ((rc == 0)); then
        printf '  ok    %s\n' "$desc"
    else
        E2E_FAILS=$((E2E_FAILS + 1))
        printf '  FAIL  %s (exit %d)\n' "$desc" "$rc"
        printf '        | %s\n' "\$ $*"
        printf '%s\n' "$out" | tail -n 30 | sed 's/^/        | /'
    fi
    return 0
}

# must "<what>" <cmd...>: like check, but a failure ends the scenario (later checks
# depend on it).
must() {
    local before=$E2E_FAILS
    check "$@"
    if ((E2E_FAILS > before)); then
        scenario_end
    fi
}

# check_ct_sh "<desc>" '<shell test inside the container>'
check_ct_sh() { check "$1" in_ct sh -ec "$2"; }

step() { printf '\n-- %s\n' "$*"; }

scenario_end() {
    printf '\n%d checks, %d failed\n' "$E2E_CHECKS" "$E2E_FAILS"
    ((E2E_FAILS == 0)) && exit 0
    exit 1
}

# ---------------------------------------------------------------- the browser check

# e2e_browser_driver: a HOST directory whose node_modules holds the driver of the browser
# check (tests/e2e/browser/package.json: puppeteer-core, pinned), installed by the host's
# npm without install scripts and never with a browser download; cached in
# $E2E_CACHE/browser/ by that package.json and the host's node version. Prints its path.
e2e_browser_driver() {
    local src=$E2E_DIR/browser key dir tmp t0=$SECONDS
    key=$({
        cat "$src/package.json"
        node --version
    } | sha256sum | cut -c1-16)
    dir=$E2E_CACHE/browser/driver-$key
    if [[ -f $dir/.complete ]]; then
        log "browser driver: from the cache"
        echo "$dir"
        return 0
    fi
    tmp=$dir.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$tmp"
    cp "$src/package.json" "$tmp/"
    (cd "$tmp" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --no-package-lock \
        --ignore-scripts) >"$tmp/npm.log" 2>&1 || {
        tail -20 "$tmp/npm.log" >&2
        return 1
    }
    touch "$tmp/.complete"
    # Another run may have finished the same install meanwhile: keep the first.
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
    log "browser driver: installed and cached in $((SECONDS - t0)) s"
    echo "$dir"
}

# ct_spki <pem-file-inside>: the base64 sha256 of that certificate's public key (what
# chromium's --ignore-certificate-errors-spki-list takes).
ct_spki() {
    in_ct_sh "openssl x509 -in '$1' -pubkey -noout | openssl pkey -pubin -outform der |
        openssl dgst -sha256 -binary | base64"
}

# ct_system_cert <name>...: a self-signed certificate for these names as the machine's
# system certificate (/etc/ssl/private/cert.pem holding certificate and key, cert.key;
# 0400), the certificate in /root/e2e-ca.crt for the clients to trust, and the names on
# 127.0.0.1 in /etc/hosts.
ct_system_cert() {
    local san
    san=$(printf 'DNS:%s,' "$@")
    in_ct_sh "
    install -d -m 0700 /etc/ssl/private
    cd /etc/ssl/private
    openssl req -x509 -nodes -newkey rsa:2048 -sha256 -days 3650 -subj /CN=$1 \
        -addext subjectAltName=${san%,} -keyout cert.key -out cert.crt 2>/dev/null
    cat cert.crt cert.key > cert.pem
    chmod 0400 cert.pem cert.key
    cp cert.crt /root/e2e-ca.crt
    echo '127.0.0.1 $*' >> /etc/hosts"
}

# ct_api_clients: the official clients `@actual-app/api` of tests/e2e/client/package.json
# (one alias api-<version> per server version) in /root/client, built with the managed
# Node 22 runtime, plus client.mjs and a `node` link beside them. Their node_modules (one
# better-sqlite3 build, 60-90 s) are cached by the package.json and the runtime.
ct_api_clients() {
    local src=$E2E_DIR/client rt
    cp "$src/client.mjs" "$CT_SHARE/client.mjs"
    cp "$src/package.json" "$CT_SHARE/client-package.json"
    rt=$(in_ct_sh 'ls -d /srv/app/runtimes/node-v22* | tail -1')
    ct_cached clients "$(cat "$src/package.json") $rt" /root/client _ct_npm_install_clients
    must "the client and the runtime link in place" in_ct_sh '
        cp /share/client.mjs /root/client/ && cp /share/client-package.json /root/client/package.json
        rt=$(ls -d /srv/app/runtimes/node-v22* | tail -1)
        ln -sfn "$rt/bin/node" /root/client/node'
}
_ct_npm_install_clients() {
    in_ct_sh '
    rt=$(ls -d /srv/app/runtimes/node-v22* | tail -1)
    npmcli=$(ls -d /srv/app/runtimes/npm-v*/bin/npm-cli.js | tail -1)
    mkdir -p /root/client && cp /share/client-package.json /root/client/package.json
    cd /root/client
    ${ABSSCTL_NPM_REGISTRY:+export npm_config_registry=$ABSSCTL_NPM_REGISTRY}
    PATH=$rt/bin:$PATH npm_config_nodedir=$rt npm_config_build_from_source=true \
        "$rt/bin/node" "$npmcli" install --omit=dev --no-audit --no-fund >/root/client/npm.log 2>&1 ||
        { tail -20 /root/client/npm.log; exit 1; }'
}

# ct_client [--api VERSION] <url> <mode> args...: client.mjs (write | read, see it) as the
# client of that server version (default $VERSION), password /share/password, trusting
# /root/e2e-ca.crt.
ct_client() {
    local api=$VERSION
    if [[ $1 == --api ]]; then api=$2; shift 2; fi
    in_ct env ACTUAL_URL="$1" ACTUAL_PASSWORD_FILE=/share/password ACTUAL_API_DIR=/root/client \
        ACTUAL_API_PKG="api-$api" NODE_EXTRA_CA_CERTS=/root/e2e-ca.crt \
        /root/client/node /root/client/client.mjs "${@:2}"
}
