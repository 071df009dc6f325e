#!/usr/bin/env bash
# Build sitefs, fetch a few real wheels, and create a venv whose
# site-packages is a sitefs mount. Safe to re-run.
#
#   bash examples/quickstart.sh [VENV]        (default VENV: /tmp/sitefs-demo)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-/tmp/sitefs-demo}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sitefs-quickstart
# Resolve the real interpreter once: `python3` may be a pyenv shim script,
# which sitefs would have to run (slowly) on every command to ask.
PY=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')

if ! command -v fusermount3 >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
    else
        echo "quickstart: fuse3 is missing: sudo apt-get install fuse3" >&2; exit 1
    fi
fi

# FUSE over io_uring (Linux >= 6.14) answers each request on the CPU that
# issued it, which makes imports through the mount faster; it is off by
# default and only root may switch it on. sitefs uses it when it is on.
uring=/sys/module/fuse/parameters/enable_uring
if [ "$(id -u)" = 0 ] && [ -w "$uring" ]; then echo Y >"$uring"; fi

cargo build --release --quiet
SITEFS=$PWD/target/release/sitefs

# A small pinned set of real wheels (pure and compiled), plus pip so that
# `pip list` runs inside the env.
mkdir -p "$CACHE/wheels"
"$PY" -m pip download --quiet --only-binary=:all: --no-deps -d "$CACHE/wheels" \
    numpy==2.4.6 django==5.2.19 asgiref==3.13.0 sqlparse==0.6.1 \
    pytest==9.2.0 iniconfig==2.3.1 packaging==26.3 pluggy==1.7.0 pygments==2.21.0 \
    pyyaml==6.0.3 six==1.17.0 pip

if [ -e "$VENV" ]; then "$SITEFS" env rm "$VENV" 2>/dev/null || rm -rf "$VENV"; fi

echo "== sitefs env create (first run also ingests and compiles into the store)"
"$SITEFS" env create "$VENV" --python "$PY" "$CACHE/wheels"
"$SITEFS" env rm "$VENV"
echo "== again, from the warm store:"
start=$(date +%s%N)
"$SITEFS" env create -q "$VENV" --python "$PY" "$CACHE/wheels"
echo "   env create took $(( ($(date +%s%N) - start) / 1000000 )) ms"

echo "== using it"
"$VENV/bin/python" -c "import numpy, django, yaml; print('numpy', numpy.__version__, numpy.arange(10).sum(), '| django', django.__version__)"
"$VENV/bin/django-admin" --version
"$VENV/bin/python" -m pytest --version
"$VENV/bin/pip" list 2>/dev/null | head -20
(. "$VENV/bin/activate" && python -c "import sys; print('activated:', sys.prefix)")
findmnt -n -o SOURCE,TARGET,FSTYPE,OPTIONS "$VENV/lib/python"*/site-packages || grep "$VENV" /proc/mounts
du -shx "$VENV" | sed "s/^/   venv on disk (excluding the mount): /"
echo "== done: $VENV is ready; remove it with: $SITEFS env rm $VENV"
