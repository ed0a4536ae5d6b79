"""Command line: ``python tests/kernel/run.py SUBCOMMAND`` (or ``python -m ipvs_vm``
with tests/kernel on PYTHONPATH).

  prereqs                 install missing apt packages (root) and report
  fetch [-k KEY]          download + unpack kernels and headers into the cache
  headers KEY             print the headers dir (KDIR) of kernel KEY
  run -k KEY --seeds S..  boot KEY, run the scenarios of those seeds, compare
                          (--decision: the decision scenarios of those seeds)
  replay DIR              re-run a replay directory's scenario in the VM
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import compare, decision, kernels, prereqs, scenarios
from .jobs import Scenario


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ipvs_vm")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prereqs")
    f = sub.add_parser("fetch")
    f.add_argument("-k", "--kernel", action="append", choices=kernels.KERNEL_KEYS)
    h = sub.add_parser("headers")
    h.add_argument("kernel", choices=kernels.KERNEL_KEYS)
    r = sub.add_parser("run")
    r.add_argument("-k", "--kernel", default="6.1", choices=kernels.KERNEL_KEYS)
    r.add_argument("--seeds", type=int, nargs="+", required=True)
    r.add_argument("--flows", type=int, default=2500, help="flows per scenario")
    r.add_argument(
        "--decision", action="store_true", help="decision scenarios (decision.py)"
    )
    rp = sub.add_parser("replay")
    rp.add_argument("dir", type=Path)
    rp.add_argument("-k", "--kernel", default="6.1", choices=kernels.KERNEL_KEYS)
    a = ap.parse_args(argv)
    if a.cmd == "prereqs":
        left = prereqs.ensure()
        print(
            prereqs.explain(left) if left else "all kernel-test prerequisites present"
        )
        return 1 if left else 0
    if a.cmd == "fetch":
        for key in a.kernel or kernels.KERNEL_KEYS:
            k = kernels.fetch_kernel(key)
            print(
                f"{key}: {k.describe()}\n  vmlinuz {k.vmlinuz}\n  headers {k.headers_dir}"
            )
        return 0
    if a.cmd == "headers":
        print(kernels.headers_dir(a.kernel))
        return 0
    if a.cmd == "run":
        gen = decision.generate if a.decision else scenarios.generate
        scs = [gen(s, a.flows) for s in a.seeds]
    else:
        scs = [Scenario.from_json(json.loads((a.dir / "scenario.json").read_text()))]
    t0 = time.monotonic()
    rep = compare.run(kernels.fetch_kernel(a.kernel), scs)
    print(rep.summary(), f"({time.monotonic() - t0:.1f}s)")
    for m in rep.mismatches[:20]:
        print("MISMATCH", m)
    for p in rep.problems[:20]:
        print("PROBLEM", p)
    for d in rep.replay_dirs:
        print("replay:", d)
    return 1 if rep.mismatches or rep.problems or rep.order_mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
