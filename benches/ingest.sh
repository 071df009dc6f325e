#!/usr/bin/env bash
# Ingest benchmark: put the pinned wheel set into a fresh sitefs store
# (with bytecode for the interpreter) vs. creating one venv with pip or uv.
# Usage: benches/ingest.sh   (N=3 benches/ingest.sh for a quicker run)
# Writes benches/results/ingest-<date>.md and prints it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

resolve_python
fetch_wheels
build_sitefs
install_uv
PIP_VERSION=$("$PY" -m pip --version | awk '{ print $2 }')

W=$CACHE/work-ingest
rm -rf "$W"
mkdir -p "$W"
cleanup() { rm -rf "$W"; }
trap cleanup EXIT

# What the wheels hold: compressed size, files, uncompressed size.
read -r WHEEL_BYTES ZIP_FILES ZIP_BYTES < <("$PY" - "${WHEEL_FILES[@]}" <<'PY'
import os, sys, zipfile
wb = nf = ub = 0
for w in sys.argv[1:]:
    wb += os.path.getsize(w)
    with zipfile.ZipFile(w) as z:
        for i in z.infolist():
            if not i.is_dir():
                nf += 1
                ub += i.file_size
print(wb, nf, ub)
PY
)

UV_CACHE=$W/uv-cache

declare -A T S   # T[tool] = wall times, S[tool] = sync-after times
TOOLS=(sitefs pip uv uvc)
count_files() { find "$1" -type f | wc -l; }

for i in $(seq 1 "$N"); do
    for tool in "${TOOLS[@]}"; do
        rm -rf "$W/store" "$W/pip-venv" "$W/uv-venv" "$W/uv-cache"
        sync
        case $tool in
        sitefs) timed ingest_store "$W/store" ;;
        pip) timed make_env pip "$W/pip-venv" ;;
        uv | uvc) timed make_env "$tool" "$W/uv-venv" ;;
        esac
        wall=$TIME
        timed sync
        T[$tool]+="$wall "
        S[$tool]+="$(calc "$wall + $TIME" 6) "
        log "run $i/$N $tool: ${wall}s (+ sync ${TIME}s)"
        if [ "$i" -eq 1 ]; then
            case $tool in
            sitefs)
                STORE_BYTES=$(du -sb "$W/store" | cut -f1)
                OBJ_BYTES=$(du -sb "$W/store/objects" | cut -f1)
                OBJECTS=$(count_files "$W/store/objects")
                BC_BYTES=$(du -sb "$W/store/bytecode" 2>/dev/null | cut -f1)
                PYCS=$(find "$W/store/bytecode" -name '*.pyc' 2>/dev/null | wc -l)
                DISTS_BYTES=$(du -sb "$W/store/dists" | cut -f1)
                DISTS=$(find "$W/store/dists" -mindepth 1 -maxdepth 1 -type d | wc -l)
                ;;
            pip)
                PIP_BYTES=$(du -sb "$W/pip-venv" | cut -f1)
                PIP_FILES=$(count_files "$W/pip-venv")
                PIP_PYCS=$(find "$W/pip-venv" -name '*.pyc' | wc -l)
                ;;
            uv)
                UV_BYTES=$(du -sb "$W/uv-venv" | cut -f1)
                UV_FILES=$(count_files "$W/uv-venv")
                UV_CACHE_BYTES=$(du -sb "$W/uv-cache" | cut -f1)
                ;;
            uvc)
                UVC_BYTES=$(du -sb "$W/uv-venv" | cut -f1)
                UVC_PYCS=$(find "$W/uv-venv" -name '*.pyc' | wc -l)
                ;;
            esac
        fi
    done
done

# shellcheck disable=SC2086
med() { median ${T[$1]}; }
# shellcheck disable=SC2086
meds() { median ${S[$1]}; }
SITEFS_MED=$(med sitefs)
SITEFS_SMED=$(meds sitefs)
mib() { calc "$1 / 1048576" 1; }

row() { # tool label
    local t=$1 m s
    m=$(med "$t")
    s=$(meds "$t")
    # shellcheck disable=SC2086
    printf '| %s | %s (%s) | %s | %s | %s |\n' "$2" "$(calc "$m" 2)" "$(spread 1 2 ${T[$t]})" \
        "$(calc "$m / $SITEFS_MED" 2)" "$(calc "$s" 2)" "$(calc "$s / $SITEFS_SMED" 2)"
}

DATE=$(date +%F)
OUT=$RESULTS/ingest-$DATE.md
{
    env_header "sitefs ingest benchmark"
    echo "- pip $PIP_VERSION, uv $UV_VERSION; every run starts from nothing (fresh store / venv / UV_CACHE_DIR); wheels are in the page cache"
    echo
    echo "## Wall time"
    echo
    echo "| what | wall s | ratio to sitefs | wall + \`sync\` s | ratio to sitefs |"
    echo "|---|---|---|---|---|"
    row sitefs "\`sitefs store add --python\` (verify, dedup, bytecode, syncfs)"
    row pip "\`python -m venv\` + \`pip install\` (compiles bytecode)"
    row uv "\`uv venv\` + \`uv pip install\`, cold cache, no bytecode"
    row uvc "same, \`--compile-bytecode\`"
    echo
    echo "sitefs makes the store durable itself (one \`syncfs\`); pip and uv leave"
    echo "dirty pages behind, so the second pair of columns adds a \`sync\` after each"
    echo "run (sitefs's own \`sync\` then has almost nothing left to flush)."
    echo
    echo "## Space"
    echo
    echo "| what | bytes | MiB | files |"
    echo "|---|---|---|---|"
    echo "| wheels (compressed) | $WHEEL_BYTES | $(mib "$WHEEL_BYTES") | ${#WHEEL_FILES[@]} wheels |"
    echo "| wheels unpacked (sum of zip entries) | $ZIP_BYTES | $(mib "$ZIP_BYTES") | $ZIP_FILES |"
    echo "| sitefs store, total (\`du -sb\`) | $STORE_BYTES | $(mib "$STORE_BYTES") | |"
    echo "| — objects/ | $OBJ_BYTES | $(mib "$OBJ_BYTES") | $OBJECTS objects |"
    echo "| — bytecode/ (cpython-${PYVER/./}) | ${BC_BYTES:-0} | $(mib "${BC_BYTES:-0}") | $PYCS pycs |"
    echo "| — dists/ (indexes) | $DISTS_BYTES | $(mib "$DISTS_BYTES") | $DISTS dists |"
    echo "| pip venv (\`du -sb\`, includes pip/setuptools and pycs) | $PIP_BYTES | $(mib "$PIP_BYTES") | $PIP_FILES ($PIP_PYCS pycs) |"
    echo "| uv venv, no bytecode (hard links into its cache, counted in full here) | $UV_BYTES | $(mib "$UV_BYTES") | $UV_FILES |"
    echo "| uv cache after a cold install | $UV_CACHE_BYTES | $(mib "$UV_CACHE_BYTES") | |"
    echo "| uv venv, \`--compile-bytecode\` | $UVC_BYTES | $(mib "$UVC_BYTES") | $UVC_PYCS pycs |"
    echo
    echo "- dedup: $ZIP_FILES files in the wheels -> $OBJECTS objects (ratio $(calc "$ZIP_FILES / $OBJECTS" 2)); objects/ is $(calc "100 * $OBJ_BYTES / $ZIP_BYTES" 1)% of the unpacked bytes"
    echo "- whole store (objects + bytecode + indexes) = $(calc "$STORE_BYTES / $ZIP_BYTES" 2)x the unpacked size, $(calc "$STORE_BYTES / $PIP_BYTES" 2)x one pip venv"
} >"$OUT"
cat "$OUT"
log "wrote $OUT"
