#!/usr/bin/env bash
# Host prerequisites of the kernel tests on other architectures
# (tests/kernel/test_arch_kernels.py): qemu for arm64 and s390x guests (TCG).
# Debian 12 packages; installed only as root (like kernel-prereqs.sh).
# Not installed, on purpose: the cross compilers (gcc-aarch64-linux-gnu,
# gcc-s390x-linux-gnu). Debian 12's gcc-multilib, which the -m32 builds need,
# conflicts with every cross gcc package; `PYTHONPATH=tests/kernel python3 -m ipvs_vm fetch --all`
# unpacks them into $MAGLEVX_CACHE instead (tests/kernel/ipvs_vm/toolchain.py),
# with the guests' kernels, headers and userland (private apt roots under
# $MAGLEVX_CACHE/apt, tests/kernel/ipvs_vm/apt.py).
set -euo pipefail

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "arch-prereqs: not root or no apt-get: installing nothing" >&2
    exit 0
fi

pkgs=()
command -v qemu-system-aarch64 >/dev/null || pkgs+=(qemu-system-arm)
command -v qemu-system-s390x >/dev/null || pkgs+=(qemu-system-misc)
command -v readelf >/dev/null || pkgs+=(binutils)
if [ ${#pkgs[@]} -gt 0 ]; then
    echo "arch-prereqs: installing ${pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${pkgs[@]}" >/dev/null
fi
