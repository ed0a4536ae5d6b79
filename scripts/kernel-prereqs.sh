#!/usr/bin/env bash
# Prerequisites of the kernel tests (tests/kernel/) on Debian 12:
#  1. apt packages, installed when running as root (nothing is installed otherwise;
#     the tests then skip naming exactly what is missing, or fail under CI=true);
#  2. Debian's kernels with their linux-headers (bookworm's 6.1 and 6.12, bullseye's
#     5.10, trixie's 6.12, bookworm's i386, arm64 and s390x 6.1; ABIs picked from the
#     package lists at run time) and the guests' userland, fetched with apt-get
#     download (other releases/architectures through private apt roots under
#     $MAGLEVX_CACHE/apt) and unpacked with dpkg-deb -x into $MAGLEVX_CACHE
#     (default ~/.cache/maglevx) - never installed on the host. Cached, idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="qemu-system-x86 busybox-static ipvsadm nftables cpio gcc libc6-dev make kmod zstd xz-utils dwarves linux-source-6.1 dkms clang binutils"

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

# --- other kernels and architectures (tests/kernel/test_arch_kernels.py) ------------
# gcc-multilib and qemu-system-i386; qemu-system-arm/-misc. (The arm64/s390x cross
# compilers conflict with gcc-multilib: `python3 -m ipvs_vm fetch --all` unpacks them.)
bash scripts/i386-prereqs.sh \
    || echo "kernel-prereqs: i386 prerequisites incomplete (the tests will say why)" >&2
bash scripts/arch-prereqs.sh \
    || echo "kernel-prereqs: arm64/s390x prerequisites incomplete (the tests will say why)" >&2

if command -v apt-get >/dev/null 2>&1; then
    PYTHONPATH=tests/kernel python3 -m ipvs_vm fetch --all \
        || echo "kernel-prereqs: could not fetch every kernel (the kernel tests will say why)" >&2
fi

# --- debug kernel and Debian package (tests/kernel/test_debug_kernel.py, test_deb.py;
# issue 15): build tools, dh-dkms, lintian, and the cached KASAN/lockdep kernel.
bash scripts/debug-prereqs.sh \
    || echo "kernel-prereqs: debug-kernel prerequisites incomplete (the tests will say why)" >&2
