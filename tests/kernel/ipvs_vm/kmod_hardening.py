"""One boot per kernel that checks the module's hardening (issue 17).

The guest runs, in order (files in /out, see :func:`guest_job`):

A. the DEBUG build (``make debug``): the self-test passes at load; injected
   allocation failures (its ``fail_alloc`` parameter; Debian's kernels have no
   ``CONFIG_FAULT_INJECTION``) during a real-server delete, then a successful
   rebuild, then a service creation that cannot allocate;
B. the normal build with ``hash_key``: flows and the table dump against a
   prediction with the same key; the debugfs file's mode; a second network
   namespace that has its own service: each side's dump shows only its own;
   bad keys refused;
C. the adversarial rebuild: ``TWINS`` real servers 10.0.x.y:(60000 - k) sharing
   one permutation at M = 131071, with the soft-lockup watchdog at its lowest
   threshold (``watchdog_thresh=1``: a report after 2 s without scheduling). A
   shell loop ticks every 0.1 s meanwhile; the largest gap between its ticks is
   how long the rebuild kept the CPU. The kernel log is saved (dmesg.main);
D. only when a ``noresched.ko`` (built with ``-DMX_NO_RESCHED``) is given: C
   again with it, to show that the watchdog does fire without the rescheduling
   points (dmesg.noresched).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import lzma
import random
from pathlib import Path

from . import kmod_keyed, qemu
from .jobs import Flow
from .kernels import Kernel
from .kmod_vm import DEBUGFS, parse_phase

KEY = "5f3c9a1e0b7d24c68e1f3a5b7c9d0e2f"
TWIN_M = 131071
FI_VIP = ("tcp", "10.1.254.1", 80)
FI_SERVERS = [(f"172.16.254.{r}", 80, 1) for r in (3, 2, 1)]  # head first
FI_DELETED = ("172.16.254.2", 80)
TWIN_VIP = "10.1.252.1:80"


def twin(k: int) -> tuple[str, int]:
    """Real server k of the twins: fold + port = 10.0.0.0 + 60000 for every k."""
    return str(ipaddress.IPv4Address(0x0A000000 + k)), 60000 - k


@dataclasses.dataclass
class KeyedService:
    vip: tuple[str, str, int]  # proto, address, port
    servers: list[tuple[str, int, int]]  # head first: address, port, weight

    @property
    def flag(self) -> str:
        return "-t" if self.vip[0] == "tcp" else "-u"

    @property
    def vip_text(self) -> str:
        a = self.vip[1]
        return f"[{a}]:{self.vip[2]}" if ":" in a else f"{a}:{self.vip[2]}"

    def history(self) -> list[str]:
        out = [f"-A {self.flag} {self.vip_text} -s mh"]
        for a, p, w in reversed(self.servers):  # the last added is the head
            ep = f"[{a}]:{p}" if ":" in a else f"{a}:{p}"
            out.append(f"-a {self.flag} {self.vip_text} -r {ep} -m -w {w}")
        return out


KEYED = [
    KeyedService(
        ("tcp", "10.1.253.1", 80),
        [
            (f"172.16.253.{r}", 8000 + r, w)
            for r, w in zip(range(1, 9), (1, 2, 3, 1, 0, 4, 1, 2))
        ],
    ),
    KeyedService(
        ("udp", "fd00:1::fd", 53),
        [(f"2001:db8:fd::{r}", 53, w) for r, w in zip(range(1, 7), (3, 1, 2, 2, 1, 5))],
    ),
]


def clients(seed: int, n: int, v6: bool, prefix: str, vip) -> list[Flow]:
    rnd = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        if v6:
            a = str(ipaddress.IPv6Address(prefix) + rnd.getrandbits(64))
        else:
            a = f"{prefix}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
        f = Flow(vip[0], a, rnd.randint(1024, 65535), vip[1], vip[2])
        if f.client_key() not in seen:
            seen.add(f.client_key())
            out.append(f)
    return out


def flow_file(flows: list[Flow]) -> str:
    return "".join(
        f"{f.proto} {f.saddr} {f.sport} {f.daddr} {f.dport}\n" for f in flows
    )


@dataclasses.dataclass
class Plan:
    fi_flows: dict  # phase -> flows
    keyed_flows: list  # per KEYED service
    twins: int


def plan(twins: int) -> Plan:
    fi = {
        ph: clients(s, 300, False, f"10.24{s}", FI_VIP)
        for s, ph in enumerate(("before", "failed", "rebuilt"), start=1)
    }
    keyed = [
        clients(
            10 + i,
            600,
            ":" in svc.vip[1],
            "fd00:fd::" if ":" in svc.vip[1] else "10.253",
            svc.vip,
        )
        for i, svc in enumerate(KEYED)
    ]
    return Plan(fi, keyed, twins)


NS_SH = r"""ip link set lo up
readlink /proc/self/ns/net > /out/ns.child.inum
ipvsadm -A -t 10.9.9.9:80 -s mh
ipvsadm -a -t 10.9.9.9:80 -r 172.16.9.9:80 -m
cat DEBUGFS > /out/ns.child
touch /tmp/ns.ready
while [ ! -e /tmp/ns.done ]; do sleep 0.1; done
"""

TWINS_SH = r"""
# -- C/D: the adversarial rebuild (TAG) --
insmod /job/KO table_size=131071 > /out/TAG.insmod 2>&1; echo $? >> /out/TAG.insmod
# rr first (no table), all twins, then one switch to mh: one rebuild
ipvsadm -A -t TWIN_VIP -s rr
ipvsadm -R < TWINS_HIST > /out/TAG.restore 2>&1; echo $? >> /out/TAG.restore
rm -f /tmp/tick.stop /out/TAG.ticks
( while [ ! -e /tmp/tick.stop ]; do up >> /out/TAG.ticks; sleep 0.1; done ) &
tick=$!
sleep 1
t0=$(up); ipvsadm -E -t TWIN_VIP -s mh; rc=$?; t1=$(up)
echo "$rc $t0 $t1" > /out/TAG.create
ipvsadm -d -t TWIN_VIP -r TWIN_DELETED; rc=$?; t2=$(up)
echo "$rc $t1 $t2" > /out/TAG.delete
sleep 1
touch /tmp/tick.stop; wait $tick
cat DEBUGFS > /out/TAG.tables
ipvsadm -C; rmmod ip_vs_mh; echo $? > /out/TAG.rmmod
"""


def rr_module(kernel: Kernel) -> bytes:
    """The kernel's ip_vs_rr.ko (the base initramfs has only ip_vs and ip_vs_mh)."""
    d = kernel.modules_dir / "kernel" / "net" / "netfilter" / "ipvs"
    for name in ("ip_vs_rr.ko", "ip_vs_rr.ko.xz"):
        if (d / name).exists():
            data = (d / name).read_bytes()
            return lzma.decompress(data) if name.endswith(".xz") else data
    raise FileNotFoundError(f"no ip_vs_rr.ko in {d}")


def guest_job(
    kernel: Kernel, ko: Path, debug_ko: Path, noresched_ko: Path | None, p: Plan
) -> dict:
    files: dict = {
        "ip_vs_rr.ko": rr_module(kernel),
        "ip_vs_mh.ko": ko.read_bytes(),
        "debug.ko": debug_ko.read_bytes(),
        "skip-module.ip_vs_mh": b"",
        "ns.sh": NS_SH.replace("DEBUGFS", DEBUGFS),
    }
    if noresched_ko is not None:
        files["noresched.ko"] = noresched_ko.read_bytes()
    for ph, fl in p.fi_flows.items():
        files[f"fi.{ph}.flows"] = flow_file(fl)
    hist = [ln for svc in KEYED for ln in svc.history()]
    files["key.hist"] = "\n".join(hist) + "\n"
    files["key.flows"] = flow_file([f for fl in p.keyed_flows for f in fl])
    # the negative control (no resched points) rebuilds twice as many twins: its
    # rebuild must outlast the 2 s soft-lockup threshold by far on a fast host
    for name, n in (("twins.hist", p.twins), ("twins.nr.hist", 2 * p.twins)):
        files[name] = "".join(
            "-a -t {} -r {}:{} -m -w 1\n".format(TWIN_VIP, *twin(k))
            for k in range(1, n + 1)
        )
    fv, fa, fp = FI_VIP
    V = f"{fa}:{fp}"
    sh = [
        "# generated by tests/kernel/ipvs_vm/kmod_hardening.py",
        "mount -t debugfs none /sys/kernel/debug 2>/dev/null",
        "ipvsadm --set 0 0 60",
        "insmod /job/ip_vs_rr.ko > /out/rr.insmod 2>&1; echo $? >> /out/rr.insmod",
        "up() { cut -d' ' -f1 /proc/uptime; }",
        f"T={DEBUGFS}",
        "# -- A: the DEBUG build --",
        "insmod /job/debug.ko > /out/dbg.insmod 2>&1; echo $? >> /out/dbg.insmod",
        "stat -c %a $T > /out/dbg.mode",
        f"ipvsadm -A -t {V} -s mh",
        *[
            f"ipvsadm -a -t {V} -r {a}:{pt} -m -w {w}"
            for a, pt, w in reversed(FI_SERVERS)
        ],
        "/bin/flowgen fi.before.flows > /out/fi.before.out",
        "cat $T > /out/fi.before.tables",
        "echo 1 > /sys/module/ip_vs_mh/parameters/fail_alloc",
        f"ipvsadm -d -t {V} -r {FI_DELETED[0]}:{FI_DELETED[1]}; echo $? > /out/fi.del.rc",
        "cat /sys/module/ip_vs_mh/parameters/fail_alloc > /out/fi.left",
        "ipvsadm -Ln --nosort > /out/fi.failed.ln",
        "cat $T > /out/fi.failed.tables",
        "/bin/flowgen fi.failed.flows > /out/fi.failed.out",
        f"ipvsadm -e -t {V} -r {FI_SERVERS[-1][0]}:80 -m -w 1; echo $? > /out/fi.edit.rc",
        "cat $T > /out/fi.rebuilt.tables",
        "/bin/flowgen fi.rebuilt.flows > /out/fi.rebuilt.out",
        "echo 1 > /sys/module/ip_vs_mh/parameters/fail_alloc",
        "ipvsadm -A -t 10.1.254.2:80 -s mh > /out/fi.addsvc 2>&1; echo $? >> /out/fi.addsvc",
        "ipvsadm -Ln --nosort > /out/fi.addsvc.ln",
        "echo 0 > /sys/module/ip_vs_mh/parameters/fail_alloc",
        "ipvsadm -C; rmmod ip_vs_mh; echo $? > /out/dbg.rmmod",
        "# -- B: a secret key, the file mode, network namespaces --",
        f"insmod /job/ip_vs_mh.ko hash_key={KEY} > /out/key.insmod 2>&1; echo $? >> /out/key.insmod",
        "ls /sys/module/ip_vs_mh/parameters > /out/key.params",
        "stat -c %a $T > /out/key.mode",
        "ipvsadm -R < key.hist > /out/key.restore 2>&1; echo $? >> /out/key.restore",
        "ipvsadm -Ln --nosort > /out/key.ln",
        "/bin/flowgen key.flows > /out/key.out",
        "cat $T > /out/key.tables",
        "readlink /proc/self/ns/net > /out/ns.parent.inum",
        "rm -f /tmp/ns.ready /tmp/ns.done",
        "unshare -n sh /job/ns.sh > /out/ns.log 2>&1 &",
        "ns=$!",
        "n=0; while [ ! -e /tmp/ns.ready ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done",
        "cat $T > /out/ns.parent",
        "touch /tmp/ns.done; wait $ns",
        "ipvsadm -C; rmmod ip_vs_mh; echo $? > /out/key.rmmod",
    ]
    for i, bad in enumerate(("0011", "zz" * 16, KEY + "00", "")):
        sh += [
            f"insmod /job/ip_vs_mh.ko hash_key={bad} > /out/badkey{i} 2>&1; "
            f'echo "rc $?" >> /out/badkey{i}',
            f"if grep -q '^ip_vs_mh ' /proc/modules; then echo loaded >> /out/badkey{i}; "
            "rmmod ip_vs_mh; fi",
        ]
    sh += [
        "echo 1 > /proc/sys/kernel/watchdog_thresh",
        "cat /proc/sys/kernel/watchdog_thresh /proc/sys/kernel/soft_watchdog > /out/watchdog",
    ]
    twins_sh = (
        TWINS_SH.replace("TWIN_VIP", TWIN_VIP)
        .replace("TWIN_DELETED", "{}:{}".format(*twin(1)))
        .replace("DEBUGFS", DEBUGFS)
    )
    sh.append(
        twins_sh.replace("TAG", "tw")
        .replace("KO", "ip_vs_mh.ko")
        .replace("TWINS_HIST", "twins.hist")
    )
    sh.append("dmesg > /out/dmesg.main")
    if noresched_ko is not None:
        sh.append("dmesg -c > /dev/null")
        sh.append(
            twins_sh.replace("TAG", "nr")
            .replace("KO", "noresched.ko")
            .replace("TWINS_HIST", "twins.nr.hist")
        )
        sh.append("dmesg > /out/dmesg.noresched")
    files["run.sh"] = "\n".join(sh) + "\n"
    return files


@dataclasses.dataclass
class HardeningRun:
    boot: qemu.BootResult
    plan: Plan

    def text(self, name: str) -> str:
        return self.boot.text(name)

    def flows(self, name: str, flows: list[Flow]):
        """(choices, status, problems) of a flowgen output file."""
        return parse_phase(flows, self.text(name))

    def rebuild_seconds(self, tag: str, what: str) -> tuple[int, float]:
        rc, t0, t1 = self.text(f"{tag}.{what}").split()
        return int(rc), float(t1) - float(t0)

    def longest_tick_gap(self, tag: str) -> float:
        ticks = [float(x) for x in self.text(f"{tag}.ticks").split()]
        return max((b - a for a, b in zip(ticks, ticks[1:])), default=float("inf"))


def run(
    kernel: Kernel,
    ko: Path,
    debug_ko: Path,
    noresched_ko: Path | None,
    *,
    twins: int,
    timeout: float = 1200,
) -> HardeningRun:
    p = plan(twins)
    files = guest_job(kernel, ko, debug_ko, noresched_ko, p)
    return HardeningRun(qemu.boot(kernel, files, timeout=timeout), p)


def keyed_prediction(
    key: bytes | None,
) -> list[tuple[list[int | None], list[tuple[str, int, int]]]]:
    """(table, servers) per KEYED service, M = 4093, 64-bit little-endian."""
    return [
        (kmod_keyed.build_table(svc.servers, 4093, key=key), svc.servers)
        for svc in KEYED
    ]
