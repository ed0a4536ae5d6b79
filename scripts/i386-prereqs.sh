#!/usr/bin/env bash
# Host prerequisites of the i386 kernel tests (tests/kernel/test_i386.py) on a
# Debian 12 machine, as root (or with sudo):
#   - dpkg's i386 architecture and apt's i386 lists, so that `apt-get download`
#     can fetch Debian's i386 kernel, busybox-static, ipvsadm and its libraries
#     (they are only unpacked into the cache, never installed on the host);
#   - qemu-system-i386 (package qemu-system-x86);
#   - gcc -m32 -static for the guest's flow generator (gcc-multilib);
#   - readelf (binutils), depmod/modprobe (kmod).
# Idempotent and quiet when everything is there. Installs nothing unless root
# (like kernel-prereqs.sh). Exits non-zero when something could not be provided;
# the tests then fail under CI=true and skip otherwise, naming what is missing.
set -euo pipefail

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "i386-prereqs: not root or no apt-get: installing nothing" >&2
    exit 0
fi

i386_lists_present() {
    # (no `| grep -q`: under pipefail grep's early exit makes apt-cache fail)
    [[ "$(apt-cache policy libc6:i386 2>/dev/null)" == *"Candidate: "[0-9]* ]]
}

if [[ " $(dpkg --print-foreign-architectures | tr '\n' ' ') " != *" i386 "* ]]; then
    dpkg --add-architecture i386
fi
if ! i386_lists_present; then
    # One index of the security archive can be mid-sync (apt then exits 100 but
    # keeps the other lists); what matters is that the i386 lists are there.
    apt-get update -q >/dev/null || true
    if ! i386_lists_present; then
        echo "i386-prereqs: apt has no i386 package lists after apt-get update" >&2
        exit 1
    fi
fi

pkgs=()
command -v qemu-system-i386 >/dev/null || pkgs+=(qemu-system-x86)
command -v readelf >/dev/null || pkgs+=(binutils)
command -v depmod >/dev/null || [ -x /sbin/depmod ] || pkgs+=(kmod)
command -v make >/dev/null || pkgs+=(make)
# (a bare libc6-dev-i386 links a trivial program but lacks the asm/ headers
# flowgen's <sys/socket.h> needs: gcc-multilib brings them)
if ! echo 'int main(void){return 0;}' |
    gcc -m32 -static -x c -o /dev/null - >/dev/null 2>&1 ||
    ! echo '#include <sys/socket.h>' | gcc -m32 -E -x c - >/dev/null 2>&1; then
    pkgs+=(gcc gcc-multilib)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
    echo "i386-prereqs: installing ${pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${pkgs[@]}" >/dev/null
fi
