#!/usr/bin/env bash
# Host prerequisites of the i386 kernel tests (tests/kernel/test_arch_kernels.py,
# kernel "6.1-686-pae") on a Debian 12 machine, as root (or with sudo):
#   - qemu-system-i386 (package qemu-system-x86);
#   - gcc -m32 -static for the guest's flow generator (gcc-multilib);
#   - readelf (binutils), depmod/modprobe (kmod).
# The i386 kernel, busybox-static, ipvsadm and its libraries come from a private
# apt root (tests/kernel/ipvs_vm/apt.py): no dpkg --add-architecture needed.
# Idempotent and quiet when everything is there. Installs nothing unless root
# (like kernel-prereqs.sh); the tests then fail under CI=true and skip otherwise,
# naming what is missing.
set -euo pipefail

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "i386-prereqs: not root or no apt-get: installing nothing" >&2
    exit 0
fi

pkgs=()
command -v qemu-system-i386 >/dev/null || pkgs+=(qemu-system-x86)
command -v readelf >/dev/null || pkgs+=(binutils)
command -v depmod >/dev/null || [ -x /sbin/depmod ] || pkgs+=(kmod)
command -v make >/dev/null || pkgs+=(make)
if ! echo 'int main(void){return 0;}' |
    gcc -m32 -static -x c -o /dev/null - >/dev/null 2>&1; then
    pkgs+=(gcc gcc-multilib)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
    echo "i386-prereqs: installing ${pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${pkgs[@]}" >/dev/null
fi
