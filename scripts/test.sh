#!/usr/bin/env bash
# The whole maglevx test suite, on a fresh Debian machine.
#
# Installs what the tests need (apt packages for the kernel tests and the
# clang builds, Debian's kernel images and headers into the cache, the
# package itself with its test and plot extras), then runs pytest twice:
# the whole suite on the C extension, then everything but the kernel tests
# and benchmarks on the pure-Python twin (MAGLEVX_PURE_PYTHON=1), as
# msgpack's CI runs both implementations. Extra arguments go to both runs.
# Downloads and built kernels are cached outside the clone, under $MAGLEVX_CACHE
# (default: ~/.cache/maglevx), so that later runs on a machine are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export MAGLEVX_CACHE="${MAGLEVX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maglevx}"
mkdir -p "$MAGLEVX_CACHE"

if [ -f scripts/kernel-prereqs.sh ]; then
    bash scripts/kernel-prereqs.sh
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test,plot]'
python3 -m pytest --durations=8 "$@"
echo "== the same suite on the pure-Python twin (MAGLEVX_PURE_PYTHON=1) =="
MAGLEVX_PURE_PYTHON=1 python3 -m pytest -m "not kernel and not bench" \
    -p no:cacheprovider --durations=5 "$@"
