"""Command line, from the repository's root:
``PYTHONPATH=tests/kernel python -m ipvs_vm SUBCOMMAND``.

  prereqs                 install missing apt packages (root) and report
  fetch [-k KEY | --all]  download + unpack kernels and headers into the cache
                          (default: the main campaign's 6.1 and 6.12)
  headers KEY             print the headers dir (KDIR) of kernel KEY
  run -k KEY --seeds S..  boot KEY, run the scenarios of those seeds, compare
                          (maglevx gets the options of KEY's architecture;
                          --decision: the decision scenarios of those seeds)
  replay DIR              re-run a replay directory's scenario in the VM

KEY: any of ipvs_vm.kernels.KERNELS (6.1, 6.12, 5.10, 6.12-trixie, 6.1-686-pae,
6.1-arm64, 6.1-s390x).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import campaign, decision, kernels, prereqs, scenarios, userland
from .jobs import Scenario


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ipvs_vm")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prereqs")
    f = sub.add_parser("fetch")
    keys = sorted(kernels.KERNELS)
    f.add_argument("-k", "--kernel", action="append", choices=keys)
    f.add_argument("--all", action="store_true", help="every kernel and userland")
    h = sub.add_parser("headers")
    h.add_argument("kernel", choices=keys)
    r = sub.add_parser("run")
    r.add_argument("-k", "--kernel", default="6.1", choices=keys)
    r.add_argument("--seeds", type=int, nargs="+", required=True)
    r.add_argument("--flows", type=int, default=2500, help="flows per scenario")
    r.add_argument(
        "--decision", action="store_true", help="decision scenarios (decision.py)"
    )
    rp = sub.add_parser("replay")
    rp.add_argument("dir", type=Path)
    rp.add_argument("-k", "--kernel", default="6.1", choices=keys)
    a = ap.parse_args(argv)
    if a.cmd == "prereqs":
        left = prereqs.ensure()
        print(
            prereqs.explain(left) if left else "all kernel-test prerequisites present"
        )
        return 1 if left else 0
    if a.cmd == "fetch":
        failed = 0
        for key in keys if a.all else a.kernel or kernels.KERNEL_KEYS:
            try:
                k = kernels.fetch_kernel(key)
                userland.get(k.arch)
                userland.build_flowgen(k.arch)
            except (kernels.PrerequisiteError, OSError) as exc:
                print(f"{key}: cannot fetch: {exc}", file=sys.stderr)
                failed = 1
                continue
            print(
                f"{key}: {k.describe()}\n  vmlinuz {k.vmlinuz}\n  headers {k.headers_dir}"
            )
        return failed
    if a.cmd == "headers":
        print(kernels.headers_dir(a.kernel))
        return 0
    if a.cmd == "run":
        gen = decision.generate if a.decision else scenarios.generate
        scs = [gen(s, a.flows) for s in a.seeds]
    else:
        scs = [Scenario.from_json(json.loads((a.dir / "scenario.json").read_text()))]
    t0 = time.monotonic()
    rep = campaign.run(kernels.fetch_kernel(a.kernel), scs)
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
