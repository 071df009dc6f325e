#!/usr/bin/env bash
# Adoption benchmark (issue 6): K pip-made venvs of the pinned wheel set,
# each turned into a sitefs env by `sitefs adopt`, into one fresh store.
# Reports disk before and after (df deltas on a private loop filesystem,
# and du -x of the venvs, which does not descend into the mounts), the store against one unpacked env,
# and the time per adoption (first: a cold store; the rest: warm).
# Usage: sudo benches/adopt.sh      (K=10 by default; K=3 for a quick run)
# Writes benches/results/adopt-<date>.md and prints it.
DEFAULT_N=1
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
K=${K:-10}

resolve_python
fetch_wheels
build_sitefs

W=$CACHE/work-adopt
STORE=$W/store
[ "$(id -u)" -eq 0 ] || die "run as root: the work filesystem is a loop mount"
cleanup() {
    set +e
    for v in "$W"/pip-*; do
        [ -e "$v/sitefs.toml" ] && "$SITEFS" env umount "$v" 2>/dev/null
    done
    workfs_teardown "$CACHE/work-adopt.img"
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# 10 pip venvs hold ~400k files: more inodes than the default ratio gives.
LOOP_INODE_RATIO=${LOOP_INODE_RATIO:-16384} workfs_setup "$CACHE/work-adopt.img"

used() { sync; df -B1 --output=used "$W" | tail -1; }

base=$(used)
log "making $K pip venvs (python -m venv + pip install --no-index, ~1 min each)"
for i in $(seq "$K"); do make_env pip "$W/pip-$i"; done
with_venvs=$(used)
venvs_before=$(duskip "$W"/pip-*)
one_env=$(duskip "$W/pip-1")

times=()
for i in $(seq "$K"); do
    sync
    timed "$SITEFS" adopt -q --store "$STORE" "$W/pip-$i"
    times+=("$TIME")
    log "adopted pip-$i in $(calc "$TIME" 2) s"
done
after=$(used)
venvs_after=$(duskip "$W"/pip-*)
store=$(du -sb "$STORE" | awk '{ print $1 }')

# Every adopted env must still import the heavy set from its own mount.
mkdir -p "$W/mpl"
for i in $(seq "$K"); do
    check_imports_from "$W/pip-$i/bin/python" "$W/mpl" "$W/pip-$i/lib/python$PYVER/site-packages"
done

mib() { calc "$1 / 1048576" 1; }
pct() { calc "100 * $1 / $2" 3; }
rest=("${times[@]:1}")
RESULT=$RESULTS/adopt-$(date +%F).md
{
    env_header "sitefs adopt of $K pip-made venvs (${#WHEEL_FILES[@]} wheels each)"
    echo
    echo "| measurement | before adoption | after adoption | after / before |"
    echo "|---|---|---|---|"
    echo "| the $K venvs' own files (du -sbx, mounts excluded) | $(mib "$venvs_before") MiB | $(mib "$venvs_after") MiB | $(pct "$venvs_after" "$venvs_before") % |"
    echo "| disk used by venvs + store (df delta) | $(mib $((with_venvs - base))) MiB | $(mib $((after - base))) MiB | $(pct $((after - base)) $((with_venvs - base))) % |"
    echo "| the store vs one unpacked pip venv | $(mib "$one_env") MiB | $(mib "$store") MiB | $(pct "$store" "$one_env") % |"
    echo
    echo "| adoption | seconds |"
    echo "|---|---|"
    echo "| first venv (cold store: ingest + bytecode) | $(calc "${times[0]}" 2) |"
    if [ ${#rest[@]} -gt 0 ]; then
        echo "| each further venv, median (min–max $(spread 1 2 "${rest[@]}")) | $(calc "$(median "${rest[@]}")" 2) |"
    fi
} | tee "$RESULT"
log "wrote $RESULT"
