# Shared helpers for the sitefs benchmark scripts; sourced, not run.
# Environment knobs (all optional):
#   N                    runs per measurement (median reported), default 5
#   SITEFS_BENCH_CACHE   cache dir for wheels, tools and scratch trees
#                        (default ${XDG_CACHE_HOME:-~/.cache}/sitefs-bench)
#   WHEELS               use this directory of wheels instead of downloading
#   SITEFS               use this sitefs binary instead of `cargo build --release`
#   PYTHON               interpreter to benchmark (default: python3.11 resolved)

set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$BENCH_DIR" rev-parse --show-toplevel 2>/dev/null || dirname "$BENCH_DIR")
N=${N:-5}
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
