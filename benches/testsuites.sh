#!/usr/bin/env bash
# Real packages' own test suites through a sitefs mount: the pinned wheel
# set (which has pytest, hypothesis and their dependencies) goes into a
# pip venv and into a sitefs env, the same pytest command runs in each,
# and the outcome counts (passed, failed, skipped, xfailed, xpassed,
# errors) and the ids of failing tests must be equal.
#
# The suites are the ones the wheels ship (numpy, scipy and pandas keep
# their tests in the package; matplotlib's need baseline images its wheel
# leaves out), each a fixed module list that runs in a few minutes on 2
# cores (ALL_SUITES below; `SUITES="numpy pandas"` picks by label). Each run: `VENV/bin/python -m pytest --pyargs MODULES
# -q -rfE -p no:cacheprovider` in a fresh empty directory, with
# MPLBACKEND=Agg and a per-run MPLCONFIGDIR, HOME and hypothesis profile.
# Usage: sudo benches/testsuites.sh   (root: the FUSE mount)
# Writes benches/results/testsuites-<date>.md and prints it; exits 1 on a
# mismatch. The pytest logs stay in $CACHE/testsuites-logs/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# label|pytest arguments (module names for --pyargs, then options)
ALL_SUITES=(
    "numpy|numpy.linalg numpy.lib"
    "scipy|scipy.fft scipy.io scipy.cluster scipy.ndimage scipy.integrate scipy.constants"
    "pandas|pandas.tests.tslibs pandas.tests.dtypes pandas.tests.libs pandas.tests.tools pandas.tests.reshape pandas.tests.window pandas.tests.scalar"
)
PICK=${SUITES:-}

resolve_python
fetch_wheels
build_sitefs

W=$CACHE/work-testsuites
PIPV=$W/pip/venv
OURS=$W/sfs/venv
cleanup() {
    [ -e "$OURS/sitefs.toml" ] && "$SITEFS" env rm "$OURS" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
cleanup
# pytest logs stay after the run, for reading; the next run replaces them.
LOGS=$CACHE/testsuites-logs
rm -rf "$LOGS"
mkdir -p "$W/pip" "$W/sfs" "$LOGS"

make_twin_envs "$PIPV" "$OURS" "$W/store"
PYTEST_VERSION=$("$OURS/bin/python" -m pytest --version 2>&1 | awk '{ print $2 }')

# Each venv must test its own copy: the packages (and pytest) import from
# its site-packages, and the sitefs one is the mount.
for venv in "$PIPV" "$OURS"; do
    sp=$venv/lib/python$PYVER/site-packages
    got=$("$venv/bin/python" -c 'import os, numpy, scipy, pandas, pytest
print(*{os.path.dirname(os.path.dirname(m.__file__)) for m in (numpy, scipy, pandas, pytest)})')
    [ "$got" = "$sp" ] || die "$venv imports from $got, not $sp"
done
mountpoint -q "$OURS/lib/python$PYVER/site-packages" || die "$OURS is not mounted"

# run_suite SIDE LABEL MODULES...: runs pytest, leaves its log in
# $LOGS/LABEL.SIDE and sets COUNTS ("passed failed skipped xfailed
# xpassed errors") and SECS.
run_suite() {
    local side=$1 label=$2 venv=$PIPV
    shift 2
    [ "$side" = sitefs ] && venv=$OURS
    local dir=$W/run-$label-$side logf=$LOGS/$label.$side
    rm -rf "$dir"
    mkdir -p "$dir/home" "$dir/mpl"
    log "$label ($side): pytest --pyargs $*"
    local t0=$EPOCHREALTIME
    (cd "$dir" && HOME=$dir/home MPLBACKEND=Agg MPLCONFIGDIR=$dir/mpl \
        timeout 1800 nice "$venv/bin/python" -m pytest -q -rfE -p no:cacheprovider \
        --pyargs "$@" >"$logf" 2>&1) || true
    SECS=$(sub "$EPOCHREALTIME" "$t0")
    # The last summary line, e.g. "12 failed, 3400 passed, 20 skipped in 61.2s".
    local summary
    summary=$(grep -E '^(=+ )?[0-9]+ [a-z]+.* in [0-9.]+s' "$logf" | tail -1 || true)
    COUNTS=""
    for kind in passed failed skipped xfailed xpassed error; do
        COUNTS+="$(grep -oE "[0-9]+ ${kind}s?\b" <<<"$summary" | awk '{ s += $1 } END { print s + 0 }' || true) "
    done
    { grep -E '^(FAILED|ERROR) ' "$logf" || true; } | sed -E 's/ - .*//' | sort >"$logf.failures"
    [ -n "$summary" ] || COUNTS="no summary (see $logf)"
}

RESULT=$RESULTS/testsuites-$(date +%F).md
ROWS=()
MISMATCH=()
for suite in "${ALL_SUITES[@]}"; do
    label=${suite%%|*}
    read -r -a args <<<"${suite#*|}"
    if [ -n "$PICK" ] && ! grep -qw "$label" <<<"$PICK"; then continue; fi
    run_suite pip "$label" "${args[@]}"
    pip_counts=$COUNTS pip_secs=$SECS
    run_suite sitefs "$label" "${args[@]}"
    ours_counts=$COUNTS ours_secs=$SECS
    verdict=same
    if [ "$pip_counts" != "$ours_counts" ] ||
        ! cmp -s "$LOGS/$label.pip.failures" "$LOGS/$label.sitefs.failures"; then
        verdict="**DIFFERENT**"
        MISMATCH+=("$label")
        diff "$LOGS/$label.pip.failures" "$LOGS/$label.sitefs.failures" | sed 's/^/    /' >&2 || true
    fi
    row() { # SIDE COUNTS SECS VERDICT
        read -r p f s xf xp e <<<"$2"
        echo "| $label | $1 | $p | $f | $s | $xf | $xp | $e | $(calc "$3" 0) | $4 |"
    }
    ROWS+=("$(row pip "$pip_counts" "$pip_secs" "")" "$(row sitefs "$ours_counts" "$ours_secs" "$verdict")")
    log "$label: pip [$pip_counts] sitefs [$ours_counts] $verdict"
done

{
    env_header "Real test suites in a pip venv and through a sitefs mount" | grep -v '^- N = '
    echo "- pytest $PYTEST_VERSION, \`python -m pytest -q -rfE -p no:cacheprovider --pyargs MODULES\`, one run per side (N unused)"
    echo
    echo "| suite | venv | passed | failed | skipped | xfailed | xpassed | errors | seconds (one run) | counts and failing ids |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    for suite in "${ALL_SUITES[@]}"; do
        label=${suite%%|*}
        [ -n "$PICK" ] && ! grep -qw "$label" <<<"$PICK" && continue
        echo "- $label: \`${suite#*|}\`"
    done
    echo
    if [ ${#MISMATCH[@]} -eq 0 ]; then
        echo "Same counts and the same failing test ids in every suite."
    else
        echo "Mismatch in: ${MISMATCH[*]} (pytest logs in $LOGS)"
    fi
} | tee "$RESULT"
[ ${#MISMATCH[@]} -eq 0 ]
