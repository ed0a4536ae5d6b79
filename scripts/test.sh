#!/usr/bin/env bash
# The whole maglevx test suite, on a fresh Debian machine.
#
# Installs what the tests need (apt packages for the kernel tests, Debian's
# kernel images and headers into the cache, the package itself with its test
# extras), then runs pytest. Extra arguments go to pytest.
# Downloads are cached under $MAGLEVX_CACHE (default: .cache/maglevx).
set -euo pipefail
cd "$(dirname "$0")/.."
export MAGLEVX_CACHE="${MAGLEVX_CACHE:-$PWD/.cache/maglevx}"
mkdir -p "$MAGLEVX_CACHE"

if [ -f scripts/kernel-prereqs.sh ]; then
    bash scripts/kernel-prereqs.sh
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec python3 -m pytest --durations=8 "$@"
