# Shared helpers for the sitefs benchmark scripts; sourced, not run.
# Environment knobs (all optional):
#   N                    runs per measurement (median reported), default 5
#                        (DEFAULT_N, set by the script before sourcing this)
#   SITEFS_BENCH_CACHE   cache dir for wheels, tools and scratch trees
#                        (default ${XDG_CACHE_HOME:-~/.cache}/sitefs-bench)
#   WHEELS               use this directory of wheels instead of downloading
#   SITEFS               use this sitefs binary instead of `cargo build --release`
#   PYTHON               interpreter to benchmark (default: python3.11 resolved)

set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$BENCH_DIR" rev-parse --show-toplevel 2>/dev/null || dirname "$BENCH_DIR")
N=${N:-${DEFAULT_N:-5}}   # a script sets DEFAULT_N before sourcing to change it
CACHE=${SITEFS_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sitefs-bench}
RESULTS=$BENCH_DIR/results
mkdir -p "$CACHE" "$RESULTS"

# Baselines must behave as on a user's machine: cache their pycs.
unset PYTHONDONTWRITEBYTECODE PYTHONPATH PYTHONHOME PYTHONSTARTUP VIRTUAL_ENV
# ... and see only the wheels we give them.
unset PIP_FIND_LINKS UV_FIND_LINKS
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_NO_CACHE_DIR=1
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1

log() { echo "[$(date +%T)] $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# ---- numbers -------------------------------------------------------------

# Seconds since the epoch with microseconds, without forking.
now() { echo "$EPOCHREALTIME"; }
# sub B A -> B - A
sub() { awk -v a="$2" -v b="$1" 'BEGIN { printf "%.6f", b - a }'; }
# calc EXPR [DIGITS]
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2];
              else printf "%.6f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# FUSE over io_uring is off by default; sitefs uses it when it is on
# (it answers each request on the CPU that issued it). URING=0 leaves the
# switch as it is.
URING_PARAM=/sys/module/fuse/parameters/enable_uring
enable_uring() {
    if [ "${URING:-1}" = 1 ] && [ -w "$URING_PARAM" ]; then
        echo Y >"$URING_PARAM"
        log "FUSE over io_uring: on ($URING_PARAM)"
    else
        log "FUSE over io_uring: $(cat "$URING_PARAM" 2>/dev/null || echo "not in this kernel")"
    fi
}
# round_order I A B: "A B" in odd rounds, "B A" in even ones, so that
# neither side of a paired measurement always runs second.
round_order() { if (($1 % 2)); then echo "$2 $3"; else echo "$3 $2"; fi; }
# paired_ratio "A1 A2 ..." "B1 B2 ...": median of Ai / Bi.
paired_ratio() {
    local -a a b
    read -r -a a <<<"$1"
    read -r -a b <<<"$2"
    local i out=()
    for i in "${!a[@]}"; do out+=("$(calc "${a[$i]} / ${b[$i]}" 6)"); done
    calc "$(median "${out[@]}")" 2
}
minimum() { printf '%s\n' "$@" | sort -g | head -1; }
maximum() { printf '%s\n' "$@" | sort -g | tail -1; }
# spread V... -> "min–max" with the given scale factor and digits
spread() {
    local scale=$1 digits=$2; shift 2
    printf '%s–%s' "$(calc "$(minimum "$@") * $scale" "$digits")" "$(calc "$(maximum "$@") * $scale" "$digits")"
}

# TIME set by timed CMD...: wall seconds of CMD (fails the script if CMD fails).
TIME=
timed() {
    local t0 t1
    t0=$EPOCHREALTIME
    "$@"
    t1=$EPOCHREALTIME
    TIME=$(sub "$t1" "$t0")
}

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# ---- inputs --------------------------------------------------------------

resolve_python() {
    local want=${PYTHON:-python3.11}
    # python3.11 on PATH may be a pyenv shim (a script): resolve it once.
    PY=$("$want" -c 'import sys; print(sys.executable)') || die "cannot run $want"
    PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    PYFULL=$("$PY" -c 'import platform; print(platform.python_version())')
}

wheel_list() {
    local shared="$REPO/../shared/bench-wheels.txt"
    if [ -f "$shared" ]; then
        WHEEL_LIST=$(cd "$(dirname "$shared")" && pwd)/bench-wheels.txt
    else
        WHEEL_LIST=$BENCH_DIR/bench-wheels.txt
    fi
}

# WHEELS: a directory holding exactly the pinned wheel set.
fetch_wheels() {
    wheel_list
    if [ -n "${WHEELS:-}" ]; then
        WHEELS=$(cd "$WHEELS" && pwd)
    else
        WHEELS=$CACHE/wheels
        local stamp="$WHEELS/.pins.sha256" want
        want=$(sha256sum "$WHEEL_LIST" | cut -d' ' -f1)
        if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
            log "downloading the pinned wheels into $WHEELS"
            rm -rf "$WHEELS"
            mkdir -p "$WHEELS"
            "$PY" -m pip download -q --only-binary=:all: --no-deps -d "$WHEELS" -r "$WHEEL_LIST"
            echo "$want" >"$stamp"
        fi
    fi
    WHEEL_FILES=("$WHEELS"/*.whl)
    local pins
    pins=$(grep -cvE '^\s*(#|$)' "$WHEEL_LIST")
    [ "${#WHEEL_FILES[@]}" -eq "$pins" ] ||
        log "warning: $WHEELS has ${#WHEEL_FILES[@]} wheels, $WHEEL_LIST pins $pins"
}

# SITEFS: a private copy of the release binary, so that a rebuild by
# someone else during the run cannot swap it underneath us.
build_sitefs() {
    if [ -n "${SITEFS:-}" ]; then
        SITEFS=$(command -v "$SITEFS")
    else
        log "cargo build --release"
        (cd "$REPO" && cargo build --release -q)
        local target
        target=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
            "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
        mkdir -p "$CACHE/bin"
        cp -f "$target/release/sitefs" "$CACHE/bin/sitefs.new"
        mv -f "$CACHE/bin/sitefs.new" "$CACHE/bin/sitefs"
        SITEFS=$CACHE/bin/sitefs
    fi
    [ -n "${SITEFS_REV:-}" ] && return   # given with SITEFS: what that binary was built from
    SITEFS_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        SITEFS_REV="$SITEFS_REV+dirty"
    fi
}

install_uv() {
    UV=$CACHE/tools/bin/uv
    if [ ! -x "$UV" ]; then
        log "installing uv into $CACHE/tools"
        rm -rf "$CACHE/tools"
        "$PY" -m venv "$CACHE/tools"
        "$CACHE/tools/bin/pip" install -q uv
    fi
    UV_VERSION=$("$UV" --version | awk '{ print $2 }')
}

# A Markdown header describing the machine and the inputs.
env_header() {
    local title=$1
    cat <<EOT
# $title

- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); host: $(uname -n); kernel $(uname -r)
- CPU: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo) × $(nproc); RAM $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
- filesystem under the cache dir: $(df -PT "$CACHE" | awk 'NR == 2 { print $2 }')
- sitefs $SITEFS_REV; Python $PYFULL ($PY); ${#WHEEL_FILES[@]} wheels from $(basename "$WHEEL_LIST")
- N = $N runs per measurement, medians shown (min–max in brackets)
EOT
}

# ---- environments --------------------------------------------------------
# The scripts build the same kinds of environment from the wheel set; they
# share these so that every figure measures the same commands.

# ingest_store STORE: every wheel into STORE, with bytecode for PY.
ingest_store() {
    "$SITEFS" store add -q --store "$1" --python "$PY" "$WHEELS"
}

# make_env TOOL DIR [SITEFS_MOUNT_OPTS]: one venv holding the whole wheel set.
#   sitefs  `sitefs env create` from STORE (warm: ingest_store first)
#   uv      `uv venv` + `uv pip install --offline` with UV_CACHE (hard links)
#   uvc     the same with --compile-bytecode
#   pip     `python -m venv` + `pip install --no-index` (pip compiles)
make_env() {
    case $1 in
        sitefs)
            local opts=()
            [ -n "${3:-}" ] && opts=(-o "$3")
            "$SITEFS" env create -q --store "$STORE" "${opts[@]}" "$2" --python "$PY" "$WHEELS"
            ;;
        uv | uvc)
            local extra=()
            [ "$1" = uvc ] && extra=(--compile-bytecode)
            UV_CACHE_DIR=$UV_CACHE "$UV" venv -q "$2" --python "$PY" &&
                UV_CACHE_DIR=$UV_CACHE "$UV" pip install -q --python "$2/bin/python" \
                    --no-deps --offline --no-index --find-links "$WHEELS" "${extra[@]}" "${WHEEL_FILES[@]}"
            ;;
        pip)
            "$PY" -m venv "$2" &&
                "$2/bin/pip" install -q --no-index --find-links "$WHEELS" --no-deps "${WHEEL_FILES[@]}"
            ;;
        *) die "make_env: unknown tool $1" ;;
    esac
}
remove_env() { # TOOL DIR
    if [ "$1" = sitefs ]; then "$SITEFS" env rm "$2"; else rm -rf "$2"; fi
}
# Fill UV_CACHE with one untimed install, so later uv installs are warm.
warm_uv_cache() {
    make_env uv "$W/uv-warm"
    rm -rf "$W/uv-warm"
}

# ---- using an environment --------------------------------------------------
# These write scratch files under W, the calling script's work dir.

# import_run PYTHON MPLCONFIGDIR: a fresh process importing the heavy stack
# (benches/imports.py). TIME = process wall s, INPROC = s spent in the
# import statements.
import_run() {
    timed env MPLBACKEND=Agg MPLCONFIGDIR="$2" "$1" "$BENCH_DIR/imports.py" >"$W/import.out"
    INPROC=$(<"$W/import.out")
}
# duskip DIR...: bytes of the files under the DIRs, on their own
# filesystem only (so a sitefs mount inside a venv is not counted).
duskip() { du -sbx "$@" | awk '{ s += $1 } END { print s }'; }
# check_imports_from PYTHON MPLCONFIGDIR SITE: numpy must come from SITE.
check_imports_from() {
    local where
    where=$(MPLBACKEND=Agg MPLCONFIGDIR="$2" "$1" "$BENCH_DIR/where.py")
    log "$3: $(echo "$where" | tr '\n' ' ')"
    [[ $where == "$3"/* ]] || die "$1 imports numpy from the wrong place"
}
# piplist_run SITE OUT: the base interpreter's `pip list` of SITE (a sitefs
# venv has no pip of its own, so both sides use the same pip).
piplist_run() {
    timed "$PY" -m pip list --path "$1" >"$2"
}
# entrypoints_run PYTHON: importlib.metadata's scan of every dist.
entrypoints_run() {
    timed "$1" -c 'import importlib.metadata as m; m.entry_points()'
}

build_openread() {
    OPENREAD=$W/openread
    gcc -O2 -o "$OPENREAD" "$BENCH_DIR/openread.c"
}
# openread_run LIST PASSES: TIME = µs per open + read 4 KiB + close.
openread_run() {
    TIME=$("$OPENREAD" "$1" "$2")
}

# make_file_list NATIVE_SITE SITEFS_SITE: 1000 small .py files spread over
# the whole tree, the same relative paths on both sides (only files both
# have: a pip venv also holds pip and setuptools), as $W/files.native and
# $W/files.sitefs. NFILES = their count.
make_file_list() {
    "$PY" - "$1" "$2" "$W/files.rel" <<'PY'
import os, sys
root, mnt, out = sys.argv[1:]
cand = []
for d, dirs, files in os.walk(root):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(d, f)
        rel = os.path.relpath(p, root)
        if f.endswith(".py") and os.path.getsize(p) <= 4096 and os.path.isfile(os.path.join(mnt, rel)):
            cand.append(rel)
step = max(1, len(cand) // 1000)
with open(out, "w") as fh:
    fh.write("\n".join(cand[::step][:1000]) + "\n")
PY
    sed "s|^|$1/|" "$W/files.rel" >"$W/files.native"
    sed "s|^|$2/|" "$W/files.rel" >"$W/files.sitefs"
    NFILES=$(wc -l <"$W/files.rel")
}

# ---- mounts and daemons ----------------------------------------------------

# daemon_pid KEY: the daemon serving a mount whose command line names KEY
# (the mountpoint for `sitefs mount`, the venv for `sitefs env create`):
# of the matching processes (daemon and its watchdog) it is the one holding
# /dev/fuse.
daemon_pid() {
    local p
    for p in $(mount_pids "$1"); do
        if find "/proc/$p/fd" -lname /dev/fuse 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
}
# mount_pids KEY: every process (daemon, watchdog) whose command line names KEY.
mount_pids() {
    local p c
    for p in /proc/[0-9]*; do
        c=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        [[ "$c" == *sitefs*" $1 "* ]] && echo "${p#/proc/}"
    done
    return 0
}
# The transport a daemon serves its mount with.
daemon_transport() {
    if grep -qs '^sitefs-uring' /proc/"$1"/task/*/comm; then echo io_uring; else echo /dev/fuse; fi
}
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
pss_kb() { awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup"; }
# Wait (up to 5 s) for the daemon of KEY to be gone.
wait_daemon_gone() {
    local i
    for i in $(seq 50); do
        [ -z "$(daemon_pid "$1")" ] && return
        sleep 0.1
    done
    log "warning: daemon for $1 still running after umount"
}
# Mounts under W (left by this run, or by a killed earlier one).
stale_mounts() { awk -v w="$W/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo; }
umount_all() {
    local m
    for m in $(stale_mounts); do
        "$SITEFS" umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

# ---- a private work filesystem ---------------------------------------------
# workfs_setup IMAGE: a fresh ext4 on a loop device (direct I/O, so nothing
# is cached twice) mounted on $W, so that df deltas see only this benchmark
# (on the shared disk, other jobs' builds swamp them). LOOPFS=0 works in
# the cache dir itself. workfs_teardown IMAGE undoes it.
LOOP_DEV=
workfs_setup() {
    umount_all
    if mountpoint -q "$W"; then umount "$W"; fi
    rm -rf "$W"
    mkdir -p "$W"
    [ "${LOOPFS:-1}" = 1 ] || return 0
    rm -f "$1"
    truncate -s "${LOOP_SIZE:-16G}" "$1"
    mkfs.ext4 -q -F -i "${LOOP_INODE_RATIO:-65536}" -E lazy_itable_init=0,lazy_journal_init=0 "$1"
    LOOP_DEV=$(losetup -f --show --direct-io=on "$1")
    mount "$LOOP_DEV" "$W"
}
workfs_teardown() {
    if mountpoint -q "$W"; then umount "$W" || umount -l "$W"; fi
    [ -n "$LOOP_DEV" ] && losetup -d "$LOOP_DEV"
    LOOP_DEV=
    rm -f "$1"
}

# make_twin_envs PIPV OURS STORE: the wheel set installed twice, for
# comparisons: by the system pip into a `venv --without-pip` (by NAME==VER,
# so pip writes no direct_url.json, as for an index install), and by
# `sitefs env create` from a fresh STORE. Sets PINS (NAME==VER of each wheel).
make_twin_envs() {
    local w name version
    PINS=()
    for w in "${WHEEL_FILES[@]}"; do
        IFS=- read -r name version _ <<<"$(basename "$w")"
        PINS+=("$name==$version")
    done
    log "pip: venv + install of ${#PINS[@]} wheels"
    "$PY" -m venv --without-pip "$1"
    "$PY" -m pip --python "$1/bin/python" install -q --no-index --no-deps \
        --find-links "$WHEELS" "${PINS[@]}"
    log "sitefs: env create (fresh store)"
    "$SITEFS" env create -q --store "$3" "$2" --python "$PY" "$WHEELS"
}
