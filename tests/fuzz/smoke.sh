#!/usr/bin/env bash
# Fuzz smoke run: build the fuzz targets and run each for a short while
# (FUZZ_SECONDS, default 20) from the committed seeds. Needs a nightly
# toolchain (or RUSTC_BOOTSTRAP=1) and cargo-fuzz. Exits non-zero on the
# first crash; the crashing input is left in tests/fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-20}
toolchain=${FUZZ_TOOLCHAIN:-+nightly}
targets=(wheel_bytes wheel_parts manifest requirements pylock)
cargo $toolchain fuzz build --fuzz-dir . 2>&1 | tail -n 3
bin_dir=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    cp seeds/"$t"/* "corpus/$t/"
    echo "== $t (${secs}s)"
    nice "$bin_dir/$t" "corpus/$t" -timeout=10 -rss_limit_mb=2048 \
        -max_total_time="$secs" -artifact_prefix="artifacts/$t/" 2>&1 |
        grep -E '^(#[0-9]+[[:space:]]+DONE|==[0-9]+==|SUMMARY|thread .* panicked)' || true
    if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
        echo "FAIL: $t left $(ls artifacts/$t)"; exit 1
    fi
done
echo "fuzz smoke: all ${#targets[@]} targets ran ${secs}s without a crash"
