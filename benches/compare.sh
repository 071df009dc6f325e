#!/usr/bin/env bash
# One side-by-side comparison of sitefs with uv and pip, every figure and its
# baseline measured in the same run, on the pinned wheel set:
#   ingest      `sitefs store add` into a fresh store vs `venv` + `pip install`
#   create      `sitefs env create` (warm store) vs uv (warm cache, hard links),
#               uv --compile-bytecode, `venv` + `pip install`
#   disk        df delta per env, for each tool
#   adopt       `sitefs adopt` of the SLOW_N-1 spare pip venvs into a fresh
#               store: their own files before/after, store vs one pip venv
#   imports     the heavy stack (benches/imports.py), warm and cold page cache,
#               `pip list`, importlib.metadata.entry_points(), open latency,
#               daemon RSS: sitefs venv (per open mode) vs a pip venv
#   page cache  ENVS envs importing numpy at once: sitefs (per open mode) vs
#               ENVS pip venvs and ENVS uv venvs, page cache charged to a
#               memory cgroup (and the /proc/meminfo `Cached:` delta)
# Everything runs on a fresh ext4 on a loop device (direct I/O), so df deltas
# count only this run's files, not other jobs' writes.
# Writes benches/results/compare-<date>/ (raw.tsv, meta.env, table.md,
# plot.png) and the block between the compare markers in docs/benchmarks.md.
# Usage: sudo benches/compare.sh   (N=1 SLOW_N=1 K=2 ENVS=3 for a quick try;
# knobs and outputs: benches/README.md)
DEFAULT_N=3              # N: runs of each fast measurement
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" -eq 0 ] || die "run as root: drop_caches, a loop mount and memory cgroups need it"
[ -e /dev/fuse ] || die "/dev/fuse is missing"
SLOW_N=${SLOW_N:-3}    # runs of the slow ones (ingest, pip, uv --compile-bytecode)
K=${K:-10}             # envs per tool for the disk figure (slow tools: SLOW_N)
ENVS=${ENVS:-10}       # envs importing numpy at once for the page-cache figure
read -r -a MODES <<<"${MODES:-cached passthrough}"
PASSES=${PASSES:-5}    # passes over the file list per open-latency run
LOOPFS=${LOOPFS:-1}    # 0: work in the cache dir itself (df then sees other jobs)
README_UPDATE=${README_UPDATE:-1}

resolve_python
enable_uring
fetch_wheels
build_sitefs
install_uv
TOOLS_PY=$CACHE/tools/bin/python
if ! "$TOOLS_PY" -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib into $CACHE/tools"
    "$TOOLS_PY" -m pip install -q --no-index --find-links "$WHEELS" matplotlib ||
        "$TOOLS_PY" -m pip install -q matplotlib
fi

W=$CACHE/work-compare
OUT=$RESULTS/compare-$(date +%F)
RAW=$OUT/raw.tsv
CG_NAME=sitefs-compare-$$

# ---- work filesystem, cleanup ---------------------------------------------

cleanup() {
    set +e
    umount_all
    cgroups_remove
    workfs_teardown "$CACHE/work-compare.img"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setup_workfs() { workfs_setup "$CACHE/work-compare.img"; }
df_used() { sync; df -B1 --output=used "$W" | tail -1; }

# ---- samples ---------------------------------------------------------------

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RAW"; }   # METRIC VARIANT VALUE

# timed_env TOOL DIR [OPTS]: time one env creation and its df delta.
timed_env() {
    local before
    before=$(df_used)
    timed make_env "$@"
    record create "$1" "$TIME"
    record disk "$1" $(($(df_used) - before))
}

# ---- phases ----------------------------------------------------------------

# Store ingest vs `venv` + `pip install`, interleaved; the pip venvs are also
# pip's env-creation and disk samples (pip has no warm cache for local
# wheels), and pip-1 is the baseline venv for the import measurements.
phase_ingest() {
    local i
    for i in $(seq "$SLOW_N"); do
        rm -rf "$STORE"
        sync
        timed ingest_store "$STORE"
        record ingest sitefs "$TIME"
        log "ingest $i/$SLOW_N: sitefs $(calc "$TIME" 1) s"
        timed_env pip "$W/pip-$i"
        log "ingest $i/$SLOW_N: pip $(calc "$TIME" 1) s"
    done
}

phase_create() {
    local i tool
    warm_uv_cache
    for i in $(seq "$K"); do
        for tool in sitefs uv; do timed_env "$tool" "$W/$tool-$i"; done
    done
    for i in $(seq "$SLOW_N"); do timed_env uvc "$W/uvc-$i"; done
    log "created $K sitefs and uv envs, $SLOW_N uv --compile-bytecode envs"
    for i in $(seq "$K"); do remove_env sitefs "$W/sitefs-$i"; done
    rm -rf "$W"/uv-[0-9]* "$W"/uvc-[0-9]*
}

# `sitefs adopt` of the pip venvs beyond pip-1 (the import phases still
# need that one) into a fresh store: the venvs' own files before and after
# (du, mounts excluded), the store against one pip venv, and the time per
# venv (the first fills the cold store: ingest + bytecode). Each adopted
# venv must still import numpy from its own site-packages.
phase_adopt() {
    local i v kind store=$W/adopt-store venvs=()
    for i in $(seq 2 "$SLOW_N"); do venvs+=("$W/pip-$i"); done
    if [ ${#venvs[@]} -eq 0 ]; then
        log "adopt: skipped (SLOW_N=1 leaves no pip venv to adopt)"
        return
    fi
    record adopt_files pip "$(duskip "${venvs[@]}")"
    record adopt_store pip "$(duskip "$W/pip-1")"
    kind=adopt_first
    for v in "${venvs[@]}"; do
        sync
        timed "$SITEFS" adopt -q --store "$store" "$v"
        record "$kind" sitefs "$TIME"
        log "adopted $(basename "$v") in $(calc "$TIME" 1) s"
        kind=adopt_next
    done
    record adopt_files sitefs "$(duskip "${venvs[@]}")"
    record adopt_store sitefs "$(duskip "$store")"
    mkdir -p "$W/mpl-adopt"
    for v in "${venvs[@]}"; do
        check_imports_from "$v/bin/python" "$W/mpl-adopt" "$v/lib/python$PYVER/site-packages"
        remove_env sitefs "$v"
    done
    rm -rf "$store" "$W/mpl-adopt"
}

# pairs METRIC RUN: N rounds of `RUN pip; RUN sitefs`, recording each TIME.
pairs() {
    local i side
    for i in $(seq "$N"); do
        for side in $(round_order "$i" pip sitefs); do
            "$2" "$side"
            record "$1" "$side" "$TIME"
        done
    done
}
# The runs of phase_use, for side $1 (they see its py, site and files).
use_warm() { import_run "${py[$1]}" "$W/mpl-$1"; }
use_cold() { drop_caches && use_warm "$1"; }
use_piplist() { piplist_run "${site[$1]}" "$W/piplist-$1.out"; }
use_entrypoints() { entrypoints_run "${py[$1]}"; }
use_openread() { openread_run "${files[$1]}" "$PASSES"; }

# The import-side measurements for one open mode: a sitefs venv vs pip-1.
phase_use() {
    local mode=$1 side
    local sv=$W/use-$mode
    local -A py=([pip]=$W/pip-1/bin/python [sitefs]=$sv/bin/python)
    local -A site=([pip]=$W/pip-1/lib/python$PYVER/site-packages [sitefs]=$sv/lib/python$PYVER/site-packages)
    local -A files=([pip]=$W/files.native [sitefs]=$W/files.sitefs)
    log "== open=$mode"
    make_env sitefs "$sv" "open=$mode"
    make_file_list "${site[pip]}" "${site[sitefs]}"
    for side in pip sitefs; do
        check_imports_from "${py[$side]}" "$W/mpl-$side" "${site[$side]}"
        use_warm "$side"                     # untimed warm-ups
        openread_run "${files[$side]}" 1
    done
    pairs "import_warm.$mode" use_warm
    pairs "import_cold.$mode" use_cold
    pairs "piplist.$mode" use_piplist
    pairs "entrypoints.$mode" use_entrypoints
    pairs "openread.$mode" use_openread
    record_daemon_memory "$mode" "$sv"
    mount_cycles "$mode" "$sv" "${site[sitefs]}"
    remove_env sitefs "$sv"
    wait_daemon_gone "$sv"
    wait_daemon_gone "${site[sitefs]}"
}

# mount_cycles MODE VENV SITE: N times unmount the env and time
# `sitefs mount` of its manifest until the command returns (mount live).
mount_cycles() {
    local i
    for i in $(seq "$N"); do
        "$SITEFS" umount "$3"
        wait_daemon_gone "$2"
        wait_daemon_gone "$3"
        timed "$SITEFS" mount -o "open=$1" "$2/sitefs.toml" "$3"
        record "mount.$1" sitefs "$TIME"
    done
}

# record_daemon_memory MODE VENV: VmRSS of the daemon, PSS of daemon + watchdog.
record_daemon_memory() {
    local pid p pss=0
    pid=$(daemon_pid "$2")
    [ -n "$pid" ] || die "no daemon found for $2"
    record "rss.$1" sitefs "$(proc_kb "$pid" VmRSS)"
    for p in $(mount_pids "$2"); do pss=$((pss + $(pss_kb "$p"))); done
    record "pss.$1" sitefs "$pss"
}

# ---- page cache: ENVS envs importing numpy at once --------------------------

# A memory cgroup per scenario: what its processes (the imports and, for
# sitefs, the daemons reading the store) bring into the page cache is
# charged to it. v1 (memory controller) or v2; none: meminfo only.
CG_ROOT=
if [ -f /sys/fs/cgroup/memory/memory.stat ]; then
    CG_ROOT=/sys/fs/cgroup/memory CG_KEY=total_cache
elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    CG_ROOT=/sys/fs/cgroup CG_KEY=file
    grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
        echo +memory >/sys/fs/cgroup/cgroup.subtree_control || CG_ROOT=
fi
cgroup_cache() { [ -z "$CG_ROOT" ] && { echo 0; return; }; awk -v k="$CG_KEY" '$1 == k { print $2 }' "$1/memory.stat"; }
meminfo_cached() { awk '$1 == "Cached:" { print $2 * 1024 }' /proc/meminfo; }
cgroups_remove() {
    local cg
    for cg in "${CG_ROOT:-/nonexistent}/$CG_NAME"-*; do [ -d "$cg" ] && rmdir "$cg"; done
    return 0
}

# pc_make SCENARIO DIR: one env that can import numpy.
pc_make() {
    case $1 in
        pip) # what pip writes for numpy, as its own files (pip copies)
            "$PY" -m venv --without-pip "$2"
            cp -a "$W/pip-1/lib/python$PYVER/site-packages"/numpy* "$2/lib/python$PYVER/site-packages/"
            ;;
        uv) make_env uv "$2" ;;
        sitefs-*) make_env sitefs "$2" "open=${1#sitefs-}" ;;
    esac
}

# pc_scenario SCENARIO: ENVS envs made and used from inside one cgroup.
pc_scenario() {
    local s=$1 cg="" i run c0 m0 pids
    if [ -n "$CG_ROOT" ]; then
        cg=$CG_ROOT/$CG_NAME-$s
        mkdir "$cg"
        echo "$BASHPID" >"$cg/cgroup.procs"
    fi
    for i in $(seq "$ENVS"); do pc_make "$s" "$W/pc-$s-$i"; done
    for i in $(seq "$ENVS"); do "$W/pc-$s-$i/bin/python" -c 'import numpy'; done   # pycs, untimed
    for run in $(seq "$N"); do
        drop_caches
        c0=$(cgroup_cache "$cg")
        m0=$(meminfo_cached)
        pids=()
        for i in $(seq "$ENVS"); do
            "$W/pc-$s-$i/bin/python" -c 'import numpy' &
            pids+=($!)
        done
        for i in "${pids[@]}"; do wait "$i" || die "$s: import numpy failed"; done
        record pagecache "$s" $(($(cgroup_cache "$cg") - c0))
        record pagecache_meminfo "$s" $(($(meminfo_cached) - m0))
    done
    if [[ $s == sitefs-* ]]; then
        for i in $(seq "$ENVS"); do record_daemon_memory "${s#sitefs-}" "$W/pc-$s-$i"; done
        for i in $(seq "$ENVS"); do remove_env sitefs "$W/pc-$s-$i"; done
        for i in $(seq "$ENVS"); do wait_daemon_gone "$W/pc-$s-$i"; done
    fi
    rm -rf "$W/pc-$s"-*
}

phase_pagecache() {
    local s
    for s in pip uv "${MODES[@]/#/sitefs-}"; do
        log "page cache: $ENVS envs importing numpy at once, $s"
        (pc_scenario "$s")
    done
    cgroups_remove
}

# ---- run ---------------------------------------------------------------------

# CPU used by everyone vs by this run's processes, to say in the results
# how busy the machine was. Ours: `times` of the waited-for children (the
# daemons and our share of kernel threads count as others', a small error).
cpu_busy_s() { awk '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat; }
# After `times >FILE` in the main shell (in $(...) it would count nothing).
children_cpu_s() {
    awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } print s }' "$1"
}
CPU0=$(cpu_busy_s)
T0=$EPOCHREALTIME

setup_workfs
STORE=$W/store
UV_CACHE=$W/uv-cache
mkdir -p "$OUT"
: >"$RAW"
build_openread

log "ingest: $SLOW_N x (sitefs store add, venv + pip install)"
phase_ingest
log "env create: $K x sitefs, uv; $SLOW_N x uv --compile-bytecode"
phase_create
log "adopt: the $((SLOW_N - 1)) pip venvs beyond pip-1"
phase_adopt
for mode in "${MODES[@]}"; do phase_use "$mode"; done
phase_pagecache

WALL=$(sub "$EPOCHREALTIME" "$T0")
CPU_ALL=$(sub "$(cpu_busy_s)" "$CPU0")
times >"$W/times"
cat >"$OUT/meta.env" <<EOT
date=$(date -u '+%Y-%m-%d %H:%M UTC')
host=$(uname -n)
kernel=$(uname -r)
cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
cores=$(nproc)
ram_gib=$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
sitefs=$SITEFS_REV
python=$PYFULL
pip=$("$PY" -m pip --version | awk '{ print $2 }')
uv=$UV_VERSION
wheels=${#WHEEL_FILES[@]}
n=$N
slow_n=$SLOW_N
k=$K
envs=$ENVS
modes=${MODES[*]}
passes=$PASSES
nfiles=$NFILES
workfs=$([ "$LOOPFS" = 1 ] && echo "fresh ext4 on a loop device (direct I/O)" || df -PT "$W" | awk 'NR == 2 { print $2 }')
cgroup=$([ -n "$CG_ROOT" ] && echo "$CG_KEY in $CG_ROOT/*/memory.stat" || echo none)
wall_s=$(calc "$WALL" 0)
cpu_all_s=$(calc "$CPU_ALL" 0)
cpu_own_s=$(calc "$(children_cpu_s "$W/times")" 0)
loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)
EOT
log "measured in $(calc "$WALL" 0) s; report"
report_args=("$OUT")
[ "$README_UPDATE" = 1 ] && report_args+=(--readme "$REPO/docs/benchmarks.md")
"$TOOLS_PY" "$BENCH_DIR/compare_report.py" "${report_args[@]}"
cat "$OUT/table.md"
log "wrote $OUT"
