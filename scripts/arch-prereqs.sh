#!/usr/bin/env bash
# Host prerequisites of the kernel tests on other architectures
# (tests/kernel/test_arch_kernels.py): arm64 and s390x guests under qemu (TCG),
# and the cross compilers that build kmod/ and the guests' static flow
# generator. Debian 12 packages; installed only as root (like kernel-prereqs.sh).
# The guests' kernels, headers and userland are never installed: they come from
# private apt roots under $MAGLEVX_CACHE/apt (tests/kernel/ipvs_vm/apt.py),
# fetched by `python3 tests/kernel/run.py fetch --all`.
set -euo pipefail

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "arch-prereqs: not root or no apt-get: installing nothing" >&2
    exit 0
fi

pkgs=()
command -v qemu-system-aarch64 >/dev/null || pkgs+=(qemu-system-arm)
command -v qemu-system-s390x >/dev/null || pkgs+=(qemu-system-misc)
for cc in aarch64 s390x; do
    command -v "$cc-linux-gnu-gcc-12" >/dev/null || pkgs+=("gcc-$cc-linux-gnu")
done
[ -e /usr/aarch64-linux-gnu/lib/libc.a ] || pkgs+=(libc6-dev-arm64-cross)
[ -e /usr/s390x-linux-gnu/lib/libc.a ] || pkgs+=(libc6-dev-s390x-cross)
command -v readelf >/dev/null || pkgs+=(binutils)
if [ ${#pkgs[@]} -gt 0 ]; then
    echo "arch-prereqs: installing ${pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${pkgs[@]}" >/dev/null
fi
