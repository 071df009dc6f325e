#!/usr/bin/env bash
# Differential check on the real pinned wheel set: a venv populated by pip
# against a sitefs env made from the same wheels.
#
#   pip:    python -m venv --without-pip P/venv
#           python -m pip --python P/venv/bin/python install --no-index --no-deps
#                --find-links WHEELDIR NAME==VERSION...
#   sitefs: sitefs env create S/venv --python PY --store (fresh) WHEELDIR
#
# (`--without-pip` because sitefs writes that venv; pip installs by name
# from --find-links, as sitefs reads a directory of wheels, so neither
# writes direct_url.json.) Then compares the two trees (every path below
# the venv, site-packages through the mount: type, mode, bytes, symlink
# targets, each venv's own path replaced) and what pip and
# importlib.metadata report: `pip list`, `pip freeze --all`,
# `pip show -f -v` of every dist, `pip check`, and an importlib.metadata
# dump (benches/difftree.py meta). Differences that are by design are
# listed with their reason in benches/difftree.py (EXPECTED) and counted;
# anything else is printed and makes the script exit 1.
# Usage: sudo benches/differential.sh   (root: the FUSE mount)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

resolve_python
fetch_wheels
build_sitefs

W=$CACHE/work-differential
# Same venv basename and path length on both sides: activate scripts
# name the venv, and RECORD sizes of scripts embed its path.
PIPV=$W/pip/venv
OURS=$W/sfs/venv
OUT=$W/out
cleanup() {
    [ -e "$OURS/sitefs.toml" ] && "$SITEFS" env rm "$OURS" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
cleanup
mkdir -p "$W/pip" "$W/sfs" "$OUT"

make_twin_envs "$PIPV" "$OURS" "$W/store"

FAILED=()
log "comparing the trees"
"$PY" "$BENCH_DIR/difftree.py" tree "$PIPV" "$OURS" | tee "$OUT/tree.txt" ||
    FAILED+=(tree)

# what LABEL CMD...: CMD's output for each venv (@VENV@ for its path,
# `{}` in CMD for its python), compared line by line.
what() {
    local label=$1 venv side
    shift
    for side in pip sfs; do
        venv=$PIPV
        [ $side = sfs ] && venv=$OURS
        "${@//\{\}/$venv/bin/python}" 2>&1 | sed "s|$venv|@VENV@|g" >"$OUT/$label.$side" ||
            echo "($label failed for $side)" >>"$OUT/$label.$side"
    done
    echo "== $label"
    "$PY" "$BENCH_DIR/difftree.py" text "$OUT/$label.pip" "$OUT/$label.sfs" || FAILED+=("$label")
}
NAMES=("${PINS[@]%%==*}")
what "pip list" "$PY" -m pip --python {} list
what "pip freeze" "$PY" -m pip --python {} freeze --all
what "pip show" "$PY" -m pip --python {} show -f -v "${NAMES[@]}"
what "pip check" "$PY" -m pip --python {} check
what "importlib.metadata" {} "$BENCH_DIR/difftree.py" meta

echo
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "UNEXPECTED DIFFERENCES in: ${FAILED[*]} (sitefs $SITEFS_REV, ${#WHEEL_FILES[@]} wheels)"
    exit 1
fi
echo "no unexpected differences (sitefs $SITEFS_REV, ${#WHEEL_FILES[@]} wheels, pip $("$PY" -m pip --version | awk '{ print $2 }'))"
