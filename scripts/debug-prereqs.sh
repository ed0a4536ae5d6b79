#!/usr/bin/env bash
# Prerequisites of tests/kernel/test_debug_kernel.py and tests/kernel/test_deb.py
# (issue 15), called by scripts/kernel-prereqs.sh:
#  1. apt packages to build a kernel (flex, bison, bc, libelf-dev for objtool) and
#     a dh-dkms Debian package (debhelper, dh-dkms, lintian), when root;
#  2. the debug kernel itself (scripts/debug-kernel.sh): built once per machine and
#     cached in $MAGLEVX_CACHE/debug-kernel, so only the first run pays for it.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="flex bison bc libelf-dev xz-utils dpkg-dev debhelper dh-dkms lintian dkms linux-source-6.1"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "debug-prereqs: installing$missing"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
            || { apt-get update -q || true
                 DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; }
    fi
else
    echo "debug-prereqs: not root or no apt-get: installing nothing" >&2
fi

if [ "${MAGLEVX_DEBUG_KERNEL:-}" = later ]; then
    # scripts/test.sh builds it in the background, next to the tests
    echo "debug-prereqs: the debug kernel is built later (scripts/test.sh)"
    exit 0
fi
start=$(date +%s)
if bash scripts/debug-kernel.sh >/dev/null; then
    echo "debug-prereqs: debug kernel ready ($(( $(date +%s) - start )) s)"
else
    echo "debug-prereqs: the debug kernel did not build (test_debug_kernel.py will say why)" >&2
    exit 1
fi
