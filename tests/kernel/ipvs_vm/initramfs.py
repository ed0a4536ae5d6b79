"""The guest's initramfs: busybox, ipvsadm (+ its libraries and loader), the ip_vs
module closure, our static flow generator, and an /init that runs a job.

The base image depends only on the kernel and the host's tools, so it is built once
and cached; each boot appends a small second cpio archive carrying the job (the
kernel unpacks concatenated newc archives in order, later files win).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

from .kernels import Kernel, PrerequisiteError, cache_dir

HERE = Path(__file__).resolve().parent
FLOWGEN_SRC = HERE.parent / "flowgen.c"

# Loaded in this order (each with its dependencies, as modprobe --show-depends says).
# ip_vs_mh last, so an out-of-tree replacement can take its place. nf_tables lets
# the guest's nft set packet marks for fwmark services (its route chain, meta mark,
# sets and dynset are built into nf_tables.ko on Debian's 6.1 and 6.12).
BASE_MODULES = ("nf_tables", "ip_vs", "ip_vs_mh")


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


def _tool(name: str) -> str:
    for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        p = Path(d) / name
        if p.exists():
            return str(p)
    found = shutil.which(name)
    if not found:
        raise PrerequisiteError(f"{name} not found on the host")
    return found


def build_flowgen() -> Path:
    """Compile flowgen.c statically (cached by source hash)."""
    src = FLOWGEN_SRC.read_bytes()
    out = cache_dir() / "bin" / f"flowgen-{hashlib.sha256(src).hexdigest()[:12]}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        if shutil.which("gcc") is None:
            raise PrerequisiteError("gcc not found")
        tmp = out.with_suffix(".tmp")
        subprocess.run(
            ["gcc", "-O2", "-static", "-Wall", "-o", str(tmp), str(FLOWGEN_SRC)],
            check=True,
            capture_output=True,
        )
        tmp.rename(out)
    return out


def module_load_order(kernel: Kernel, names) -> list[Path]:
    """Module files to insmod, dependencies (incl. soft ones) first, no duplicates."""
    order: list[Path] = []
    for name in names:
        out = subprocess.run(
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
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for line in out.splitlines():
            m = re.match(r"insmod (\S+)", line)
            if m and Path(m.group(1)) not in order:
                order.append(Path(m.group(1)))
    return order


def _ldd_closure(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


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


def base_image(kernel: Kernel, extra_module_names=()) -> Path:
    """Build (or reuse) the base initramfs for ``kernel``."""
    busybox = _tool("busybox")
    ipvsadm = _tool("ipvsadm")
    nft = _tool("nft")
    flowgen = build_flowgen()
    modules = module_load_order(kernel, (*BASE_MODULES, *extra_module_names))
    h = hashlib.sha256()
    for part in (
        INIT.encode(),
        NETSETUP.encode(),
        kernel.release.encode(),
        flowgen.name.encode(),
        Path(busybox).read_bytes(),
        Path(ipvsadm).read_bytes(),
        Path(nft).read_bytes(),
        "\n".join(map(str, modules)).encode(),
    ):
        h.update(hashlib.sha256(part).digest())
    out = cache_dir() / "initramfs" / f"base-{kernel.release}-{h.hexdigest()[:12]}.cpio"
    if out.exists():
        return out
    c = Cpio()
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "job",
        "out",
        "lib/modules",
        "etc",
    ):
        c.mkdir(d)
    c.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    c.file("init", INIT.encode(), 0o755)
    c.file("netsetup.sh", NETSETUP.encode(), 0o755)
    c.file("bin/ipvsadm", Path(ipvsadm).read_bytes(), 0o755)
    c.file("bin/nft", Path(nft).read_bytes(), 0o755)
    libs = dict.fromkeys(_ldd_closure(ipvsadm) + _ldd_closure(nft))
    for lib in libs:
        real = os.path.realpath(lib)
        c.file(lib, Path(real).read_bytes(), 0o755)
    c.file("bin/flowgen", flowgen.read_bytes(), 0o755)
    names = []
    for mod in modules:
        data = mod.read_bytes()
        if mod.suffix == ".xz":
            data = subprocess.run(
                ["xz", "-dc", str(mod)], check=True, capture_output=True
            ).stdout
        elif mod.suffix == ".zst":
            data = subprocess.run(
                ["zstd", "-dc", str(mod)], check=True, capture_output=True
            ).stdout
        name = mod.name.split(".ko")[0] + ".ko"
        c.file(f"lib/modules/{name}", data)
        names.append(f"/lib/modules/{name}")
    c.file("modules.list", ("\n".join(names) + "\n").encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(c.bytes())
    tmp.rename(out)
    return out
