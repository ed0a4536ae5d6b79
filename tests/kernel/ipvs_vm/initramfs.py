"""The guest's initramfs: busybox, ipvsadm (+ its libraries and loader), the ip_vs
module closure, our static flow generator, and an /init that runs a job.

The guest userland is the architecture's own (:mod:`.userland`): the host's
binaries for amd64, Debian's packages of the guest architecture otherwise. The base
image depends only on the kernel and that userland, so it is built once and cached;
each boot appends a small second cpio archive carrying the job (the kernel unpacks
concatenated newc archives in order, later files win).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
from pathlib import Path

from . import userland
from .apt import tmp_name
from .common import cache_dir
from .kernels import Kernel
from .userland import FLOWGEN_SRC, build_flowgen

__all__ = ["FLOWGEN_SRC", "INIT", "NETSETUP", "Cpio", "base_image", "build_flowgen"]

# Loaded in this order (each with its dependencies, as modprobe --show-depends says).
# ip_vs_mh last, so an out-of-tree replacement can take its place. nf_tables lets
# the guest's nft set packet marks for fwmark services (its route chain, meta mark,
# sets and dynset are built into nf_tables.ko on Debian's 6.1 and 6.12).
BASE_MODULES = ("nf_tables", "ip_vs", "ip_vs_mh")
# Kernels without it as a module (the small debug kernel has no nf_tables;
# only the fwmark scenarios, which mark with nft, need it) boot without it.
OPTIONAL_MODULES = frozenset({"nf_tables"})


class Cpio:
    """Minimal writer for the "newc" cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1000
        self.dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        self.ino += 1
        nameb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08X}"
            for v in (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nameb), 0)
        )
        self.buf.write(hdr.encode() + nameb)
        self.buf.write(b"\0" * (-(110 + len(nameb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def mkdir(self, name: str) -> None:
        name = name.strip("/")
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.dirs:
                self.dirs.add(d)
                self._entry(d, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        if "/" in name:
            self.mkdir(name.rsplit("/", 1)[0])
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        if "/" in name:
            self.mkdir(name.rsplit("/", 1)[0])
        self._entry(name, 0o120777, target.encode())

    def bytes(self) -> bytes:
        trailer = Cpio()
        trailer._entry("TRAILER!!!", 0)
        out = self.buf.getvalue() + trailer.buf.getvalue()
        # pad to 512 bytes so another archive can follow
        return out + b"\0" * (-len(out) % 512)


def module_load_order(kernel: Kernel, names) -> list[Path]:
    """Module files to insmod, dependencies (incl. soft ones) first, no duplicates."""
    order: list[Path] = []
    for name in names:
        r = subprocess.run(
            [
                "modprobe",
                "-C",
                "/dev/null",
                "-d",
                str(kernel.root),
                "-S",
                kernel.release,
                "--show-depends",
                name,
            ],
            check=name not in OPTIONAL_MODULES,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            continue  # an optional module this kernel does not have
        out = r.stdout
        for line in out.splitlines():
            m = re.match(r"insmod (\S+)", line)
            if m and Path(m.group(1)) not in order:
                order.append(Path(m.group(1)))
    return order


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /out
echo "@@BOOTED $(uname -r)"
# keep kernel messages (e.g. IPVS "no destination available") off the slow serial
# console; they stay in dmesg, which comes back with the results
dmesg -n 1
for m in $(cat /modules.list); do
    base=${m##*/}; base=${base%.ko}
    if [ -e /job/skip-module.$base ]; then continue; fi
    params=""
    [ -e /job/params.$base ] && params=$(cat /job/params.$base)
    insmod "$m" $params 2>/tmp/insmod.err || echo "@@INSMOD-FAIL $base $(cat /tmp/insmod.err)"
done
if [ -e /job/extra-modules.list ]; then
    while read m params; do
        insmod "/job/$m" $params || echo "@@INSMOD-FAIL $m"
    done < /job/extra-modules.list
fi
. /netsetup.sh
echo "@@READY"
if [ -e /job/run.sh ]; then
    cd /job && . /job/run.sh > /out/run.log 2>&1
    echo "@@JOB-EXIT $?"
fi
dmesg > /out/dmesg.txt
echo "@@OUT-BEGIN"
tar -C /out -cf - . | gzip -1 | base64
echo "@@OUT-END"
sync
poweroff -f
"""


# Sourced in the initial namespace and again in each scenario's fresh netns: routes
# and sysctls are per network namespace.
NETSETUP = r"""ip link set lo up
ip route add local 10.0.0.0/8 dev lo
ip -6 route add local fd00::/16 dev lo
sysctl -qw net.ipv4.ip_nonlocal_bind=1 net.ipv6.ip_nonlocal_bind=1
# IPVS answers a TCP flow without destination with ICMP port-unreachable; the ICMP
# token bucket (1000/s, burst 50) would drop most of them and the client would not
# learn it was refused. The ICMP errors also pass the loopback backlog
# (netdev_max_backlog, 1000), which can overflow when the host starves the guest and
# softirqs lag; a refused client is then never told (seen under a loaded host).
for kv in net.ipv4.icmp_msgs_per_sec=100000000 net.ipv4.icmp_msgs_burst=100000000 \
          net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0 \
          net.core.netdev_max_backlog=1000000; do
    sysctl -qw $kv 2>/dev/null
done
"""


def _module_bytes(mod: Path) -> bytes:
    """A module file as busybox insmod wants it: decompressed."""
    tool = {".xz": "xz", ".zst": "zstd", ".gz": "gzip"}.get(mod.suffix)
    if tool is None:
        return mod.read_bytes()
    return subprocess.run(
        [tool, "-dc", str(mod)], check=True, capture_output=True
    ).stdout


def base_image(kernel: Kernel, extra_module_names=()) -> Path:
    """Build (or reuse) the base initramfs for ``kernel`` (its architecture's userland)."""
    land = userland.get(kernel.arch)
    flowgen = build_flowgen(kernel.arch)
    modules = module_load_order(kernel, (*BASE_MODULES, *extra_module_names))
    files = land.files()  # guest path -> host file (busybox, ipvsadm, its libraries)
    h = hashlib.sha256()
    for part in (
        INIT.encode(),
        NETSETUP.encode(),
        kernel.release.encode(),
        kernel.arch.name.encode(),
        flowgen.name.encode(),
        json.dumps(land.versions, sort_keys=True).encode(),
        "\n".join(map(str, modules)).encode(),
    ):
        h.update(hashlib.sha256(part).digest())
    out = cache_dir() / "initramfs" / f"base-{kernel.release}-{h.hexdigest()[:12]}.cpio"
    if out.exists():
        return out
    c = Cpio()
    dirs = "bin sbin usr/bin usr/sbin proc sys dev tmp job out lib/modules etc"
    for d in dirs.split():
        c.mkdir(d)
    c.file("init", INIT.encode(), 0o755)
    c.file("netsetup.sh", NETSETUP.encode(), 0o755)
    for guest, real in sorted(files.items()):
        c.file(guest, real.read_bytes(), 0o755)
    c.file("bin/flowgen", flowgen.read_bytes(), 0o755)
    names = []
    for mod in modules:
        name = mod.name.split(".ko")[0] + ".ko"
        c.file(f"lib/modules/{name}", _module_bytes(mod))
        names.append(f"/lib/modules/{name}")
    c.file("modules.list", ("\n".join(names) + "\n").encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(out)
    tmp.write_bytes(c.bytes())
    os.replace(tmp, out)
    return out
