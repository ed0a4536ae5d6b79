#!/usr/bin/env bash
# The whole maglevx test suite, on a fresh Debian machine.
#
# Installs what the tests need (apt packages for the kernel tests and the
# clang builds, Debian's kernel images and headers into the cache, the
# package itself with its test and plot extras), then runs pytest twice:
# the whole suite on the C extension, and everything but the kernel tests and
# benchmarks on the pure-Python twin (MAGLEVX_PURE_PYTHON=1), as msgpack's CI
# runs both implementations. Extra arguments go to both runs.
#
# Most of the suite keeps one core busy, so the twin run goes alongside the
# main one (its output is printed after it), and on a machine's first run the
# debug kernel of tests/kernel/test_debug_kernel.py (~14 min of CPU) builds in
# the background; its tests run last and wait for it.
# Downloads and built kernels are cached outside the clone, under $MAGLEVX_CACHE
# (default: ~/.cache/maglevx), so that later runs on a machine are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export MAGLEVX_CACHE="${MAGLEVX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maglevx}"
mkdir -p "$MAGLEVX_CACHE"

if [ -f scripts/kernel-prereqs.sh ]; then
    MAGLEVX_DEBUG_KERNEL=later bash scripts/kernel-prereqs.sh
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test,plot]'

work="$(mktemp -d)"
cleanup() {
    local pids
    pids="$(jobs -p)"
    [ -z "$pids" ] || kill $pids 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

start=$(date +%s)
(nice -n 5 bash scripts/debug-kernel.sh) >"$work/debug-kernel.log" 2>&1 &
build=$!
# the twin: its own temporary directory, type-check and lint caches, fuzz corpus
(MAGLEVX_PURE_PYTHON=1 MAGLEVX_FUZZ_DIR="$MAGLEVX_CACHE/fuzz-twin" \
    MYPY_CACHE_DIR="$work/mypy" RUFF_CACHE_DIR="$work/ruff" \
    python3 -m pytest -m "not kernel and not bench" -p no:cacheprovider \
    --basetemp="$work/twin" --durations=5 "$@") >"$work/twin.log" 2>&1 &
twin=$!

rc=0
python3 -m pytest --durations=8 "$@" || rc=$?
twin_rc=0
wait "$twin" || twin_rc=$?
echo "== the same suite on the pure-Python twin (MAGLEVX_PURE_PYTHON=1), run alongside =="
cat "$work/twin.log"
build_rc=0
wait "$build" || build_rc=$?
if [ "$build_rc" != 0 ]; then
    echo "== scripts/debug-kernel.sh failed ($build_rc) =="
    tail -n 40 "$work/debug-kernel.log"
fi
echo "== scripts/test.sh: $(( $(date +%s) - start )) s of tests; exit statuses: main $rc, twin $twin_rc, debug kernel $build_rc =="
[ "$rc" = 0 ] && [ "$twin_rc" = 0 ] && [ "$build_rc" = 0 ]
