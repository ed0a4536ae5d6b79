"""The debug kernel of issue 15 and what its debuggers say about our module.

:func:`build` runs ``scripts/debug-kernel.sh`` (Debian's linux-source-6.1,
``make tinyconfig`` + ``scripts/debug-kernel.config``: KASAN, UBSAN, lockdep with
PROVE_RCU, DEBUG_ATOMIC_SLEEP, kmemleak, DEBUG_OBJECTS_RCU_HEAD, DEBUG_LIST), which
caches the build under ``$MAGLEVX_CACHE/debug-kernel`` laid out like the unpacked
Debian kernels, so the harness (:mod:`ipvs_vm.qemu`) boots it as it boots those.

:func:`wrap_job` puts the kmemleak baseline before a :mod:`kmod_vm` job and, after
it, the kmemleak scan and the read-only probes of :data:`PROBE` that show each
debugger was on (nothing is provoked). :func:`splats` finds debugger reports in
a console or log; :func:`detectors` reads the probes back.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

from .kernels import Kernel, PrerequisiteError

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "debug-kernel.sh"
KMEMLEAK = "/sys/kernel/debug/kmemleak"


@dataclasses.dataclass(frozen=True)
class DebugKernel:
    kernel: Kernel
    build_seconds: int  # what the cold build took on the machine that made the cache
    config_hash: str


def build() -> DebugKernel:
    """Build (first call on a machine) or reuse the cached debug kernel."""
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PrerequisiteError(
            f"scripts/debug-kernel.sh failed ({proc.returncode}): "
            f"{proc.stderr.strip()[-3000:]}"
        )
    out = Path(proc.stdout.strip().splitlines()[-1])
    meta = json.loads((out / "kernel.json").read_text())
    kernel = Kernel(
        key=meta["key"],
        release=meta["release"],
        package=meta["package"],
        version=meta["version"],
        root=Path(meta["root"]),
    )
    return DebugKernel(kernel, int(meta["build_seconds"]), meta["config_hash"])


# -- the guest -------------------------------------------------------------------

# Before the campaign: two scans let kmemleak settle on what boot left unreferenced
# (an object is reported only once its checksum is stable across scans), then
# `clear` greys those, so the final scan reports only what was lost afterwards.
PRE = f"""
mount -t debugfs none /sys/kernel/debug 2>/dev/null
echo scan > {KMEMLEAK}; echo $? > /out/kmemleak.pre-rc
echo scan > {KMEMLEAK}
cat {KMEMLEAK} > /out/kmemleak.baseline
echo clear > {KMEMLEAK}
"""

# After the campaign (which ends with ipvsadm -C and rmmod): objects younger than
# 5 s are never reported, and a leak needs two scans with the same checksum.
POST = f"""
sleep 6
echo scan > {KMEMLEAK}; echo $? > /out/kmemleak.scan-rc
sleep 1
echo scan > {KMEMLEAK}
cat {KMEMLEAK} > /out/kmemleak.final
"""

# Read-only evidence that each debugger was on (nothing is provoked).
KALLSYMS = (
    "kasan_report",  # KASAN
    "__ubsan_handle_out_of_bounds",  # UBSAN
    "lockdep_rcu_suspicious",  # lockdep's RCU checker (PROVE_RCU calls it)
    "__might_resched",  # DEBUG_ATOMIC_SLEEP
    "kmemleak_alloc",  # DEBUG_KMEMLEAK
    "rcuhead_is_static_object",  # DEBUG_OBJECTS_RCU_HEAD
    "__list_add_valid",  # DEBUG_LIST
)
PROBE = r"""
{
    echo "@lockdep $(test -r /proc/lockdep && echo present || echo absent)"
    echo "@lockdep_stats"; cat /proc/lockdep_stats
    echo "@kmemleak $(test -r KMEMLEAK && echo present || echo absent)"
    echo "@debug_objects"; cat /sys/kernel/debug/debug_objects/stats
    echo "@kallsyms"; awk '{print $3}' /proc/kallsyms | grep -xE 'SYMS' | sort -u
    echo "@end"
} > /out/detectors.txt 2>&1
""".replace("KMEMLEAK", KMEMLEAK).replace("SYMS", "|".join(KALLSYMS))


def wrap_job(files: dict) -> dict:
    """A :func:`kmod_vm.guest_job` with the kmemleak baseline, scan and probes."""
    out = dict(files)
    out["run.sh"] = PRE + files["run.sh"] + POST + PROBE
    return out


# -- reading the results -----------------------------------------------------------

# Anything the debuggers (or the kernel itself) print when something is wrong.
SPLAT = re.compile(
    r"\bBUG:|\bWARNING:|kernel BUG|Oops|general protection fault|Kernel panic|"
    r"Call Trace:|KASAN|UBSAN|kmemleak: \d+ new suspected|unreferenced object|"
    r"possible recursive locking|possible circular locking|suspicious RCU usage|"
    r"inconsistent lock state|lock held when returning|bad unlock balance|"
    r"held lock freed|possible irq lock inversion|DEBUG_LOCKS_WARN_ON|"
    r"lockdep is turned off|ODEBUG|list_add corruption|list_del corruption|"
    r"refcount_t:|self-detected stall|rcu: INFO:|blocked for more than"
)


def splats(text: str) -> list[str]:
    """Lines of ``text`` that report a bug (none of the boot banners match)."""
    return [ln for ln in text.splitlines() if SPLAT.search(ln)]


def sections(text: str) -> dict[str, list[str]]:
    """``detectors.txt`` as {"@name": [lines after it]}."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@"):
            name, _, rest = line.partition(" ")
            current = out.setdefault(name, [])
            if rest:
                current.append(rest)
        elif current is not None:
            current.append(line)
    return out


def stat(lines: list[str], name: str) -> int | None:
    """The first number after ``name:`` in ``/proc/lockdep_stats`` or debugobjects'
    ``stats`` lines (``" lock-classes:  1234 [max: 8192]"`` -> 1234)."""
    for line in lines:
        key, _, value = line.partition(":")
        m = re.match(r"\s*(\d+)", value)
        if key.strip() == name and m:
            return int(m.group(1))
    return None


BANNERS = (
    "KernelAddressSanitizer initialized",  # KASAN
    "Lock dependency validator",  # lockdep
    "RCU lockdep checking is enabled",  # PROVE_RCU
    "kmemleak: Kernel memory leak detector initialized",
)


def detector_problems(dmesg: str, files: dict) -> list[str]:
    """Why the debuggers may not have been on for the whole boot ([] if they were).

    ``files``: the boot's /out (``detectors.txt`` from :data:`PROBE`, the kmemleak
    scans' exit codes). Everything is read, nothing provoked: boot banners;
    lockdep's ``debug_locks`` still 1 at the end (lockdep turns itself off after its
    first report) with dependencies recorded (PROVE_LOCKING); kmemleak's file there
    and its scans accepted; debugobjects having tracked objects with 0 warnings
    (only rcu_heads are tracked in this config); the debuggers' symbols in kallsyms.
    """

    def text(name: str) -> str:
        data = files.get(name, b"")
        return data.decode(errors="replace") if isinstance(data, bytes) else data

    out = [f"no {b!r} in dmesg" for b in BANNERS if b not in dmesg]
    if "kmemleak: Kernel memory leak detector disabled" in dmesg:
        out.append("kmemleak disabled itself")
    probe = sections(text("detectors.txt"))
    if "@end" not in probe:
        return out + [f"detectors.txt incomplete: {text('detectors.txt')[:500]!r}"]
    if probe.get("@lockdep") != ["present"]:
        out.append("no /proc/lockdep")
    stats = probe.get("@lockdep_stats", [])
    if stat(stats, "debug_locks") != 1:
        out.append(f"lockdep debug_locks is not 1 at the end: {stats[-3:]}")
    for name in ("lock-classes", "direct dependencies"):
        if not stat(stats, name):
            out.append(f"lockdep recorded no {name}")
    if probe.get("@kmemleak") != ["present"]:
        out.append(f"no {KMEMLEAK}")
    for name in ("kmemleak.pre-rc", "kmemleak.scan-rc"):
        if text(name).strip() != "0":
            out.append(f"kmemleak refused a scan ({name}: {text(name).strip()!r})")
    objs = probe.get("@debug_objects", [])
    if not stat(objs, "pool_max_used"):
        out.append(f"debugobjects tracked nothing: {objs[:3]}")
    if stat(objs, "warnings") != 0:
        out.append(f"debugobjects warnings: {objs}")
    absent = sorted(set(KALLSYMS) - set(probe.get("@kallsyms", [])))
    if absent:
        out.append(f"not in /proc/kallsyms: {', '.join(absent)}")
    return out
