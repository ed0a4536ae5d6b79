#!/usr/bin/env bash
# Prerequisites of the kernel tests (tests/kernel/) on Debian 12:
#  1. apt packages, installed when running as root (nothing is installed otherwise;
#     the tests then skip naming exactly what is missing, or fail under CI=true);
#  2. Debian's kernels (the 6.1 ABI of linux-image-amd64 and the newest
#     linux-image-6.12.*+deb12-amd64) with their linux-headers, fetched with
#     apt-get download and unpacked with dpkg-deb -x into $MAGLEVX_CACHE
#     (default ~/.cache/maglevx) - never installed on the host. Cached, idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="qemu-system-x86 busybox-static ipvsadm cpio gcc libc6-dev make kmod zstd xz-utils dwarves linux-source-6.1 dkms clang binutils"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing="$missing $p"
    done
    if [ -n "$missing" ] || ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
        # A mirror index mid-sync (seen: bookworm-security's i386 list) makes
        # apt-get update exit 100 while keeping every other list: go on, and
        # let the install below fail loudly if a package really is missing.
        apt-get update -q || echo "kernel-prereqs: apt-get update reported errors; continuing" >&2
    fi
    if [ -n "$missing" ]; then
        echo "kernel-prereqs: installing$missing"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
    fi
else
    echo "kernel-prereqs: not root or no apt-get: installing nothing" >&2
fi

if command -v apt-get >/dev/null 2>&1; then
    python3 tests/kernel/run.py fetch \
        || echo "kernel-prereqs: could not fetch the kernels (the kernel tests will say why)" >&2
fi

# --- i386 kernel tests (tests/kernel/test_i386.py, issue 8) -------------------------
# dpkg's i386 architecture + apt's i386 lists, gcc-multilib, qemu-system-i386.
bash scripts/i386-prereqs.sh \
    || echo "kernel-prereqs: i386 prerequisites incomplete (the i386 tests will say why)" >&2
