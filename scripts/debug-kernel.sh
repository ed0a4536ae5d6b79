#!/usr/bin/env bash
# Build (once per machine) the debug kernel of tests/kernel/test_debug_kernel.py:
# Debian's linux-source-6.1 with `make tinyconfig` + scripts/debug-kernel.config
# (qemu, IPVS with ip_vs_mh, IPv6, netns; KASAN, UBSAN, lockdep with PROVE_RCU,
# DEBUG_ATOMIC_SLEEP, kmemleak, DEBUG_OBJECTS_RCU_HEAD, DEBUG_LIST).
#
# The result is cached under $MAGLEVX_CACHE/debug-kernel/<source version>-<hash>/,
# the hash covering the config fragment, this script and the compiler, laid out like
# the unpacked Debian kernels of tests/kernel/ipvs_vm/kernels.py:
#   root/boot/vmlinuz-<release>, root/boot/config-<release>,
#   root/lib/modules/<release>/ (modules_install, depmod),
#   root/usr/src/linux-headers-<release> -> ../../../build (KDIR for M= builds),
#   kernel.json (written last: its presence means the build is complete).
# Prints the cache directory on stdout. Idempotent; concurrent runs wait on a lock.
#
# Usage: scripts/debug-kernel.sh [--print-key]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fragment="$here/debug-kernel.config"
tarball=/usr/src/linux-source-6.1.tar.xz
cache="${MAGLEVX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maglevx}/debug-kernel"
jobs="${MAGLEVX_BUILD_JOBS:-$(nproc)}"

die() { echo "debug-kernel: $*" >&2; exit 2; }

[ -f "$tarball" ] || die "$tarball not found (apt-get install linux-source-6.1)"
for tool in gcc make flex bison bc xz; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/kernel-prereqs.sh installs it)"
done
srcver="$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null)" \
    || die "linux-source-6.1 is not installed"
hash="$( (cat "$fragment" "$0"; gcc --version | head -1) | sha256sum | cut -c1-12)"
key="$srcver-$hash"
if [ "${1:-}" = "--print-key" ]; then
    echo "$key"
    exit 0
fi
out="$cache/$key"
mkdir -p "$cache"
exec 9>"$cache/$key.lock"
flock 9
if [ -f "$out/kernel.json" ]; then
    echo "$out"
    exit 0
fi

t0=$(date +%s)
src="$cache/src-$srcver/linux-source-6.1"
if [ ! -f "$cache/src-$srcver/.complete" ]; then
    echo "debug-kernel: unpacking $tarball" >&2
    rm -rf "$cache/src-$srcver"
    mkdir -p "$cache/src-$srcver"
    tar -C "$cache/src-$srcver" -xf "$tarball"
    touch "$cache/src-$srcver/.complete"
fi

rm -rf "$out"
mkdir -p "$out/build"
build="$out/build"
kmake() { make -s -C "$src" O="$build" ARCH=x86_64 "$@"; }
kmake tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment" >/dev/null
kmake olddefconfig >/dev/null
# every line of the fragment must have survived olddefconfig (a dependency that is
# off silently drops an option: a debugger we think is on would not be)
missing=""
while IFS= read -r line; do
    case "$line" in CONFIG_*) grep -qxF "$line" "$build/.config" || missing="$missing $line" ;; esac
done <"$fragment"
[ -z "$missing" ] || die "options dropped by olddefconfig:$missing"

echo "debug-kernel: building $key with $jobs jobs (a one-time cost, ~30 min on 2 cores)" >&2
kmake -j"$jobs" bzImage modules >"$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log" >&2; die "kernel build failed (log: $out/build.log)"; }
release="$(kmake kernelrelease)"
root="$out/root"
mkdir -p "$root/boot" "$root/usr/src"
cp "$build/arch/x86/boot/bzImage" "$root/boot/vmlinuz-$release"
cp "$build/.config" "$root/boot/config-$release"
kmake INSTALL_MOD_PATH="$root" modules_install >>"$out/build.log" 2>&1
ln -sfn ../../../build "$root/usr/src/linux-headers-$release"
rm -f "$root/lib/modules/$release/build" "$root/lib/modules/$release/source"
ln -s ../../../usr/src/linux-headers-$release "$root/lib/modules/$release/build"
seconds=$(( $(date +%s) - t0 ))
cat >"$out/kernel.json.tmp" <<EOF
{
 "key": "debug-6.1",
 "release": "$release",
 "package": "linux-source-6.1",
 "version": "$srcver",
 "root": "$root",
 "config_hash": "$hash",
 "build_seconds": $seconds,
 "jobs": $jobs
}
EOF
mv "$out/kernel.json.tmp" "$out/kernel.json"
echo "debug-kernel: built $release in ${seconds}s" >&2
echo "$out"
