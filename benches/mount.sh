#!/usr/bin/env bash
# Mount benchmark: a venv whose site-packages is a sitefs mount of every
# pinned wheel vs. a plain venv where pip installed the same wheels.
# Per mode (MODES, default "cached passthrough cached/pycfile": the open
# mode, then "/pycfile" to serve pycs as files instead of links into the
# store, "/dev" for FUSE over /dev/fuse instead of io_uring):
#   (a) import time of a big stack, warm and cold page cache
#   (b) `pip list` time
#   (c) open+read+close latency of small files
#   (d) `sitefs mount` / `sitefs umount` wall time
#   (e) daemon RSS
#   (f) isatty() latency (CPython's per-open ioctl), back to back and
#       with busy gaps as between imports
# Needs root (drop_caches, FUSE passthrough, switching on FUSE over io_uring).
# Every sample pairs a native and a sitefs run (their order alternating by
# round); ratios are medians of the per-pair ratios, which this VM's drift
# (the same run moves 10-20 % within minutes) cancels out of.
# Usage: benches/mount.sh   (N=3 benches/mount.sh for a quicker run)
# Writes benches/results/mount-<date>.md and prints it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" -eq 0 ] || die "run as root: cold-cache runs write /proc/sys/vm/drop_caches"
[ -e /dev/fuse ] || die "/dev/fuse is missing"
read -r -a MODES <<<"${MODES:-cached passthrough cached/pycfile}"
PASSES=${PASSES:-5}   # timed passes over the file list per open+read run
MOUNT_N=${MOUNT_N:-$((4 * N))}   # warm mount cycles: cheap, and single mounts on this VM scatter widely

resolve_python
enable_uring
fetch_wheels
build_sitefs

W=$CACHE/work-mount
MNT=$W/sitefs-venv/lib/python$PYVER/site-packages   # set again below
# Clear mounts a killed earlier run may have left under $W.
for m in $(stale_mounts); do umount -l "$m" || true; done
cleanup() { umount_all; }
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$W"
mkdir -p "$W"

# ---- setup ---------------------------------------------------------------

log "store: ingesting ${#WHEEL_FILES[@]} wheels with bytecode for $PY"
timed ingest_store "$W/store"
INGEST_TIME=$TIME
# `store ls` shows names as written in METADATA; `manifest new` matches
# PEP 503-normalized names.
mapfile -t NAMES < <("$SITEFS" store ls --store "$W/store" | awk '{ print $1 }' |
    tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/-/g')
"$SITEFS" manifest new --store "$W/store" --python "$PY" -o "$W/env.toml" "${NAMES[@]}"
CHECK=$("$SITEFS" manifest check "$W/env.toml")
log "manifest: $CHECK"

log "native venv: python -m venv + pip install"
make_env pip "$W/native-venv"
NATIVE_SP=$W/native-venv/lib/python$PYVER/site-packages

# The sitefs venv: a venv without pip whose site-packages IS the mount.
"$PY" -m venv --without-pip "$W/sitefs-venv"
MNT=$W/sitefs-venv/lib/python$PYVER/site-packages

build_openread
ISATTY=$W/isatty
gcc -O2 -o "$ISATTY" "$BENCH_DIR/isatty.c"
NFILES=0

# ---- helpers -------------------------------------------------------------

venv_python() { case $1 in native) echo "$W/native-venv/bin/python" ;; sitefs) echo "$W/sitefs-venv/bin/python" ;; esac; }
site_dir() { case $1 in native) echo "$NATIVE_SP" ;; sitefs) echo "$MNT" ;; esac; }
side_import() { import_run "$(venv_python "$1")" "$W/mpl-$1"; }
side_piplist() { piplist_run "$(site_dir "$1")" "$W/piplist-$1.out"; }

# mode "OPEN[/pycfile][/dev]" -> mount options
mode_opts() {
    local opts="open=${1%%/*}"
    case /$1/ in */pycfile/*) opts+=",pyc=file" ;; esac
    case /$1/ in */dev/*) opts+=",uring=off" ;; esac
    echo "$opts"
}
do_mount() { "$SITEFS" mount -o "$(mode_opts "$1")" "$W/env.toml" "$MNT"; }
do_umount() { "$SITEFS" umount "$MNT"; }

# ---- measurements --------------------------------------------------------

declare -A R   # R[mode.metric.side] = space-separated samples

sample() { R[$1]+="$2 "; }

bench_mode() {
    local mode=$1 i side pid
    log "== open=$mode"
    do_mount "$mode"
    pid=$(daemon_pid "$MNT")
    [ -n "$pid" ] || die "no daemon found for $MNT"
    R[$mode.rss0]=$(proc_kb "$pid" VmRSS)
    R[$mode.transport]=$(daemon_transport "$pid")
    log "transport: ${R[$mode.transport]}"
    for side in native sitefs; do
        check_imports_from "$(venv_python "$side")" "$W/mpl-$side" "$(site_dir "$side")"
    done

    log "(a) import, warm page cache"
    for side in native sitefs; do side_import "$side"; done
    for i in $(seq "$N"); do
        for side in $(round_order "$i" native sitefs); do
            side_import "$side"
            sample "$mode.warm.$side" "$TIME"
            sample "$mode.warmin.$side" "$INPROC"
        done
    done

    log "(a) import, cold page cache (drop_caches before each run)"
    for i in $(seq "$N"); do
        for side in $(round_order "$i" native sitefs); do
            drop_caches
            side_import "$side"
            sample "$mode.cold.$side" "$TIME"
            sample "$mode.coldin.$side" "$INPROC"
        done
    done

    log "(e) daemon RSS (pid $pid)"
    R[$mode.rss]=$(proc_kb "$pid" VmRSS)
    R[$mode.hwm]=$(proc_kb "$pid" VmHWM)
    R[$mode.threads]=$(proc_kb "$pid" Threads)

    log "(b) pip list"
    for side in native sitefs; do side_piplist "$side"; done
    for i in $(seq "$N"); do
        for side in $(round_order "$i" native sitefs); do
            side_piplist "$side"
            sample "$mode.piplist.$side" "$TIME"
        done
    done
    R[$mode.piplistn.native]=$(($(wc -l <"$W/piplist-native.out") - 2))
    R[$mode.piplistn.sitefs]=$(($(wc -l <"$W/piplist-sitefs.out") - 2))

    [ -s "$W/files.rel" ] || make_file_list "$NATIVE_SP" "$MNT"
    log "(c) open+read+close x $NFILES files x $PASSES passes"
    for i in $(seq "$N"); do
        for side in $(round_order "$i" native sitefs); do
            openread_run "$W/files.$side" "$PASSES"
            sample "$mode.openread.$side" "$TIME"
        done
    done

    log "(f) isatty() round trips"
    for i in $(seq "$N"); do
        for side in $(round_order "$i" native sitefs); do
            sample "$mode.tty.$side" "$("$ISATTY" "$(head -1 "$W/files.$side")" 2000 0)"
            sample "$mode.ttygap.$side" "$("$ISATTY" "$(head -1 "$W/files.$side")" 300 2000)"
        done
    done

    do_umount
    wait_daemon_gone "$MNT"

    log "(d) $MOUNT_N mount/umount cycles, warm page cache"
    for i in $(seq "$MOUNT_N"); do
        timed do_mount "$mode"
        sample "$mode.mount" "$TIME"
        timed do_umount
        sample "$mode.umount" "$TIME"
        wait_daemon_gone "$MNT"
    done
    log "(d) $N mount/umount cycles, cold page cache"
    for i in $(seq "$N"); do
        drop_caches
        timed do_mount "$mode"
        sample "$mode.mountcold" "$TIME"
        do_umount
        wait_daemon_gone "$MNT"
    done
}

for mode in "${MODES[@]}"; do
    bench_mode "$mode"
done

# ---- report --------------------------------------------------------------

# shellcheck disable=SC2086
med() { median ${R[$1]}; }
# shellcheck disable=SC2086
spr() { spread "$2" "$3" ${R[$1]}; }
verdict() { # ok-expression
    if [ "$(awk "BEGIN { print ($1) ? 1 : 0 }")" = 1 ]; then echo "yes"; else echo "**NO**"; fi
}

declare -A SUMMARY
report_mode() {
    local m=$1 key label scale digits unit target limit nat sit ratio ok
    echo "## $m: \`-o $(mode_opts "$m")\`, transport ${R[$m.transport]}"
    echo
    echo "| metric | native venv | sitefs venv | sitefs / native | target | met |"
    echo "|---|---|---|---|---|---|"
    while IFS='|' read -r key label scale digits target limit; do
        nat=$(med "$m.$key.native")
        sit=$(med "$m.$key.sitefs")
        # shellcheck disable=SC2086
        ratio=$(paired_ratio "${R[$m.$key.sitefs]}" "${R[$m.$key.native]}")
        ok=
        if [ -n "$limit" ]; then
            ok=$(verdict "$ratio <= $limit")
            SUMMARY[$m.$key]="${ratio}x $ok"
        fi
        printf '| %s | %s (%s) | %s (%s) | %s | %s | %s |\n' "$label" \
            "$(calc "$nat * $scale" "$digits")" "$(spr "$m.$key.native" "$scale" "$digits")" \
            "$(calc "$sit * $scale" "$digits")" "$(spr "$m.$key.sitefs" "$scale" "$digits")" \
            "$ratio" "$target" "$ok"
    done <<EOT
warm|(a) import stack, warm cache: process wall, ms|1000|0|≤ 1.05x|1.05
warmin|— of which in the import statements, ms|1000|0|||
cold|(a) import stack, cold cache: process wall, ms|1000|0|≤ 1.3x|1.3
coldin|— of which in the import statements, ms|1000|0|||
piplist|(b) base \`python -m pip list --path SITE\`, ms|1000|0|||
openread|(c) open + read 4 KiB + close, µs per file|1|1|||
tty|(f) \`isatty()\` of an open file, back to back, µs|1|1|||
ttygap|(f) the same with 2 ms of busy CPU between calls, µs|1|1|||
EOT
    local mt um mc rss hwm
    mt=$(calc "$(med "$m.mount") * 1000" 1)
    um=$(calc "$(med "$m.umount") * 1000" 1)
    mc=$(calc "$(med "$m.mountcold") * 1000" 1)
    rss=$(calc "${R[$m.rss]} / 1024" 1)
    hwm=$(calc "${R[$m.hwm]} / 1024" 1)
    SUMMARY[$m.mount]="$mt ms $(verdict "$mt < 20")"
    SUMMARY[$m.rss]="$rss MiB $(verdict "$rss < 32")"
    printf '| (d) `sitefs mount` until it returns, warm cache, ms | | %s (%s) | | < 20 ms | %s |\n' \
        "$mt" "$(spr "$m.mount" 1000 1)" "$(verdict "$mt < 20")"
    printf '| (d) `sitefs mount`, cold cache (drop_caches first), ms | | %s (%s) | | | |\n' "$mc" "$(spr "$m.mountcold" 1000 1)"
    printf '| (d) `sitefs umount`, ms | | %s (%s) | | | |\n' "$um" "$(spr "$m.umount" 1000 1)"
    printf '| (e) daemon VmRSS after the import runs, MiB | | %s | | < 32 MiB | %s |\n' "$rss" "$(verdict "$rss < 32")"
    printf '| (e) — VmHWM (peak) / VmRSS right after mount, MiB | | %s / %s | | | |\n' "$hwm" "$(calc "${R[$m.rss0]} / 1024" 1)"
    echo
    echo "pip list printed ${R[$m.piplistn.native]} dists for the native venv (includes pip and setuptools), ${R[$m.piplistn.sitefs]} for the mount; daemon threads: ${R[$m.threads]}."
    echo
}

DATE=$(date +%F)
OUT=$RESULTS/mount-$DATE.md
{
    env_header "sitefs mount benchmark"
    echo "- env: ${#NAMES[@]} dists ($CHECK); store built once in $(calc "$INGEST_TIME" 1) s"
    echo "- native venv: \`python -m venv\` + \`pip install\` of the same wheels (pip compiled the pycs);"
    echo "  sitefs venv: \`python -m venv --without-pip V\` with \`sitefs mount -o open=MODE\` on \`V/lib/python$PYVER/site-packages\`"
    echo "- (a) \`V/bin/python imports.py\` (numpy, pandas, scipy.stats, django, sqlalchemy, matplotlib.pyplot [Agg], requests,"
    echo "  cryptography, pydantic, boto3, lxml.etree, PIL.Image, yaml, flask), a fresh process per run; warm: one untimed run"
    echo "  per side first; cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\` before every run; native and sitefs runs alternate"
    echo "- ratios: median over rounds of (sitefs run / native run of the same round), the order within a round alternating;"
    echo "  medians and spreads (min–max) of each side are shown beside them"
    echo "- transport: io_uring when the daemon runs its \`sitefs-uring-N\` queue threads (\`$URING_PARAM\` = $(cat "$URING_PARAM" 2>/dev/null || echo missing)), else /dev/fuse"
    echo "- (b) both sides use the base interpreter's pip: \`$PY -m pip list --path SITE\` (the sitefs venv has no pip)"
    echo "- (c) C loop over the same $NFILES small (≤ 4 KiB) .py files on each side, one warm pass then $PASSES timed passes"
    echo "- (d) $MOUNT_N warm mount/umount cycles, then $N after drop_caches; (e) /proc/PID/status of the daemon (found by the mountpoint in its cmdline)"
    echo "- (f) benches/isatty.c on the first file of (c): the ioctl CPython < 3.14 makes at every open(), one per imported"
    echo "  module; on the mount each is a round trip to the daemon (2000 calls back to back; 300 with 2 ms busy gaps)"
    echo
    for mode in "${MODES[@]}"; do report_mode "$mode"; done
    echo "## Targets"
    echo
    printf '| target |'; for mode in "${MODES[@]}"; do printf ' %s (%s) |' "$mode" "${R[$mode.transport]}"; done; echo
    printf '|---|'; for mode in "${MODES[@]}"; do printf -- '---|'; done; echo
    for t in "warm|warm import ≤ 1.05x native" "cold|cold import ≤ 1.3x native" "mount|mount < 20 ms" "rss|daemon RSS < 32 MiB"; do
        printf '| %s |' "${t#*|}"
        for mode in "${MODES[@]}"; do printf ' %s |' "${SUMMARY[$mode.${t%%|*}]}"; done
        echo
    done
} >"$OUT"
cat "$OUT"
log "wrote $OUT"
