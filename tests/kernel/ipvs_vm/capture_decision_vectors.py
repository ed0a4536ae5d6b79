"""Capture frozen decision vectors: the real kernel's whole decision, for the fast suite.

Boots the kernel once and runs one decision scenario of every theme of
``ipvs_vm.decision`` (FTP-data, FTP lookup, port zero, fwmark via nft, persistence
with IPv4 masks and IPv6 prefixes, -E toggling -p, expire_quiescent_template, -o),
then writes, per phase, what the kernel did with every flow (real server or none,
and what the client saw), the one-packet datagrams nft recorded, and the valid
persistence templates in /proc/net/ip_vs_conn. tests/test_decision_vectors.py
replays the file through maglevx without any VM.

    PYTHONPATH=tests/kernel python -m ipvs_vm.capture_decision_vectors -k 6.1 \\
        -o tests/vectors/decision-6.1-amd64.json.gz
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import subprocess
import sys
from pathlib import Path

from . import decision, jobs, kernels


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", "--kernel", default="6.1", choices=kernels.KERNEL_KEYS)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(9)))
    ap.add_argument("--flows", type=int, default=400)
    a = ap.parse_args()
    k = kernels.fetch_kernel(a.kernel)
    scs = [decision.generate(s, a.flows) for s in a.seeds]
    results, boot = jobs.run_scenarios(k, scs, timeout=1500)
    ipvsadm = subprocess.run(
        ["ipvsadm", "--version"], capture_output=True, text=True
    ).stdout.strip()
    out = {
        "kernel": k.describe(),
        "ipvsadm": ipvsadm,
        "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv),
        "scenarios": [],
    }
    for res in results:
        phases = []
        for pr in res.phases:
            if pr.problems:
                raise SystemExit(f"{res.scenario.name}: {pr.problems[:3]}")
            ops = decision.observed_ops(pr.files)
            phases.append(
                {
                    # raddr, rport ("" / -1: no connection entry) and the client's view
                    "kernel": [
                        [r.raddr or "", -1 if r.rport is None else r.rport, r.status]
                        for r in pr.results
                    ],
                    "one_packet": sorted(
                        [str(c), p, d, dp] for (c, p), (d, dp) in ops.items()
                    ),
                    "templates": sorted(
                        [e.proto, str(e.caddr), str(e.vaddr), e.vport]
                        + [str(e.daddr), e.dport]
                        for e in pr.templates
                        if e.vport != 0xFFFF
                    ),
                }
            )
        out["scenarios"].append({"scenario": res.scenario.to_json(), "phases": phases})
    a.output.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(a.output, "wt") as f:
        json.dump(out, f, separators=(",", ":"))
    n = sum(len(p["kernel"]) for s in out["scenarios"] for p in s["phases"])
    print(f"{a.output}: {len(out['scenarios'])} scenarios, {n} flows, {k.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
