#!/usr/bin/env bash
# Environment-creation benchmark: `sitefs env create` from a warm store vs
# `uv venv && uv pip install --offline` with a warm cache (hard links, no
# bytecode), uv with --compile-bytecode, and `python -m venv && pip install
# --no-index`, all from the pinned wheel set. Reports wall time (median of
# N) and disk per env (df delta over K envs, which counts hard links and
# pycs honestly).
# Usage: benches/env.sh   (N=10 K=10 by default; N=3 K=5 for a quick run)
# Writes benches/results/env-<date>.md and prints it.
DEFAULT_N=10
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
K=${K:-10}

resolve_python
fetch_wheels
build_sitefs
install_uv

W=$CACHE/work-env
STORE=$W/store
cleanup() {
    for v in "$W"/sitefs-*; do [ -e "$v/sitefs.toml" ] && "$SITEFS" env rm "$v" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT
cleanup
mkdir -p "$W"

UV_CACHE=$W/uv-cache
log "warming: store ingest and uv cache"
ingest_store "$STORE"
warm_uv_cache

read -r -a TOOLS <<<"${TOOLS:-sitefs uv uvc pip}"   # e.g. TOOLS="sitefs uv" for a quick A/B
declare -A T D
for tool in "${TOOLS[@]}"; do
    runs=$N
    [ "$tool" = pip ] && runs=$(( N < 3 ? N : 3 ))   # 20+ s each
    times=()
    for i in $(seq "$runs"); do
        sync
        timed make_env "$tool" "$W/$tool-$i"
        times+=("$TIME")
        remove_env "$tool" "$W/$tool-$i"
    done
    T[$tool]=$(median "${times[@]}")
    log "$tool: median $(calc "${T[$tool]} * 1000" 1) ms over $runs runs"

    # Disk per env: K envs side by side, measured as the drop in free space.
    k=$K
    [ "$tool" = pip ] && k=$(( K < 3 ? K : 3 ))
    sync
    before=$(df -B1 --output=used "$W" | tail -1)
    for i in $(seq "$k"); do make_env "$tool" "$W/$tool-disk-$i"; done
    sync
    after=$(df -B1 --output=used "$W" | tail -1)
    D[$tool]=$(( (after - before) / k ))
    for i in $(seq "$k"); do remove_env "$tool" "$W/$tool-disk-$i"; done
    log "$tool: $(( D[$tool] / 1024 )) KiB per env over $k envs"
done

ms() { calc "$1 * 1000" 1; }
ratio() { calc "$1 / $2" 1; }
RESULT=$RESULTS/env-$(date +%F).md
{
    env_header "sitefs env create vs uv and pip ($(wc -w <<<"${WHEEL_FILES[*]}") wheels)"
    echo "- medians of $N runs (pip: up to 3); disk is the df delta over $K envs (pip: up to 3), divided by the count"
    echo
    echo "| tool | create (ms) | ratio to sitefs | disk per env (KiB) | ratio to sitefs |"
    echo "|---|---|---|---|---|"
    for tool in "${TOOLS[@]}"; do
        name=$tool
        case $tool in
            sitefs) name="\`sitefs env create\` (warm store, with bytecode)" ;;
            uv) name="\`uv venv\` + \`uv pip install --offline\` (warm cache, hard links, no bytecode)" ;;
            uvc) name="same, \`--compile-bytecode\`" ;;
            pip) name="\`python -m venv\` + \`pip install --no-index\` (compiles)" ;;
        esac
        echo "| $name | $(ms "${T[$tool]}") | $(ratio "${T[$tool]}" "${T[sitefs]}")x | $(( D[$tool] / 1024 )) | $(calc "${D[$tool]} / (${D[sitefs]} > 0 ? ${D[sitefs]} : 1)" 1)x |"
    done
    echo
    echo "Targets: sitefs under 50 ms and at least 8x faster than uv with hard links; under 256 KiB per env."
} | tee "$RESULT"
