#!/usr/bin/env bash
# The whole maglevx test suite, on a fresh Debian machine.
#
# Installs what the tests need (apt packages for the kernel tests, Debian's
# kernel images and headers into the cache, the package itself with its test
# extras), then runs pytest. Extra arguments go to pytest.
# Downloads and built kernels are cached outside the clone, under $MAGLEVX_CACHE
# (default: ~/.cache/maglevx), so that later runs on a machine are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export MAGLEVX_CACHE="${MAGLEVX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maglevx}"
mkdir -p "$MAGLEVX_CACHE"

if [ -f scripts/kernel-prereqs.sh ]; then
    bash scripts/kernel-prereqs.sh
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec python3 -m pytest --durations=8 "$@"
