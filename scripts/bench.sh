#!/usr/bin/env bash
# Every maglevx benchmark, then BENCHMARKS.md (see tests/bench/report.py).
#
# Installs the package with its test and bench extras (builds the C
# extension), then runs the benchmarks. Extra arguments go to pytest,
# e.g. `-k bulk`. MAGLEVX_BENCH_BULK_FLOWS and MAGLEVX_BENCH_ROUNDS size
# the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
exec python3 tests/bench/report.py "$@"
