"""Memory: bytes per table slot, and the RSS of the largest benchmark case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

PROBE = """
import json, sys
sys.path.insert(0, {here!r})

def hwm_kib():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking
    # parent (pytest) across exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

import maglevx
base = hwm_kib()
if {build}:
    from common import flows, service
    svc = service(4, 5000, 131071, "mh-port", "mixed")
    table = svc.table
    addrs, ports = flows(4, 1_000_000)
    svc.lookup_many(addrs, ports)
    per_slot = table.nbytes / len(table)
else:
    per_slot = None
print(json.dumps({{"import_kib": base, "peak_kib": hwm_kib(), "bytes_per_slot": per_slot}}))
"""


def _probe(build: bool) -> dict:
    code = PROBE.format(here=str(HERE), build=build)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_memory_largest_case(benchmark):
    """M = 131071, N = 5000 mixed weights, then 1M IPv4 flows looked up."""
    result = benchmark.pedantic(_probe, args=(True,), rounds=1, iterations=1)
    idle = _probe(False)
    benchmark.extra_info.update(
        kind="memory", m=131071, n=5000, flows=1_000_000,
        bytes_per_slot=result["bytes_per_slot"],
        peak_rss_mib=result["peak_kib"] / 1024,
        import_rss_mib=idle["peak_kib"] / 1024,
    )  # fmt: skip
