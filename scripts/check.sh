#!/usr/bin/env bash
# The contributor's fast loop (about a minute or two): lint, types, and the
# suite without the kernel tests and benchmarks, on the C extension.
# The whole suite, kernels included, is scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test,plot]'
ruff check maglevx tests fuzz
ruff format --check maglevx tests fuzz
python3 -m mypy maglevx
(cd tests && python3 -m mypy.stubtest maglevx._core)
exec python3 -m pytest -m "not kernel and not bench" -q "$@"
