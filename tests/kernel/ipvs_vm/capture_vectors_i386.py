"""Capture frozen 32-bit vectors: decisions of Debian's real i386 kernel.

Boots the i386 kernel once (ipvs_vm's "6.1-686-pae", arch I386), runs a few seeded scenarios
(every theme of ipvs_vm.scenarios) and two typical hand-written services, and
writes what the kernel chose for every flow, with a header saying which kernel,
ipvsadm, date and command produced it. tests/test_frozen_vectors_i386.py replays
the file through maglevx with ``--word-size 32`` without any VM.

    PYTHONPATH=tests/kernel python -m ipvs_vm.capture_vectors_i386 -o tests/vectors/kernel-6.1-686-pae.txt.gz

File format (text, gzip-compressed when the name ends in .gz, one file per kernel;
the same as the amd64 vectors of tests/kernel/ipvs_vm/capture_vectors.py):

* ``#`` lines: the header (provenance) and comments;
* ``== NAME``: starts a case;
* ``> LINE``: the case's ipvsadm history (``ipvsadm -R`` lines, applied in order
  to an empty director: everything the kernel saw before the flows);
* ``proto,saddr,sport,daddr,dport,raddr,rport``: a new flow and the real server
  the kernel scheduled it to (``raddr,rport`` empty: no destination).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import shlex
import sys
from pathlib import Path

from . import campaign, kernels, scenarios, userland
from .arch import I386
from .jobs import Flow, Phase, Scenario

KEY = "6.1-686-pae"

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SEEDS = list(range(101, 117))  # two of each of the 8 themes
DEFAULT_FLOWS = 400


def typical_scenarios(n_flows: int) -> list[Scenario]:
    """Ten equal-weight real servers, M = 4093: the README's mixed-fleet example.

    One TCP service without flags and one UDP service with mh-port, so both the
    address-only and the address+port hashes are frozen.
    """
    out = []
    for name, proto, opt, flags, vip in (
        ("typical-10-equal", "tcp", "-t", "", "10.1.0.1"),
        ("typical-10-equal-mh-port", "udp", "-u", " -b mh-port", "10.1.0.2"),
    ):
        hist = [f"-A {opt} {vip}:80 -s mh{flags}"]
        hist += [f"-a {opt} {vip}:80 -r 172.16.0.{i}:80 -m -w 1" for i in range(1, 11)]
        gen = scenarios.Generator(len(out))
        flows = [
            Flow(proto, gen.v4(10, 2, 255), gen.rnd.randint(1024, 65535), vip, 80)
            for _ in range(n_flows)
        ]
        out.append(Scenario(name=name, phases=[Phase(hist, flows)]))
    return out


def render(report: campaign.Report, kernel, command: str) -> str:
    info = report.guest_info
    lines = [
        "# Frozen vectors: IPVS Maglev (ip_vs_mh) decisions of a real 32-bit kernel.",
        f"# kernel: {kernel.package} {kernel.version} (Debian, i386), "
        f"uname -r {info.get('uname-r')}, uname -m {info.get('uname-m')}",
        f"# ipvsadm: {info.get('ipvsadm')} (Debian ipvsadm:i386 "
        f"{userland.get(I386).versions.get('ipvsadm')})",
        "# director: word size 32 (hsiphash = HalfSipHash-1-3), variant upstream "
        "(in-tree ip_vs_mh), M = 4093 (CONFIG_IP_VS_MH_TAB_INDEX=12)",
        "# guest: qemu-system-i386 (TCG), busybox-static:i386, flows from "
        "tests/kernel/flowgen.c (gcc -m32 -static); choices read from "
        "/proc/net/ip_vs_conn",
        f"# captured: {datetime.date.today().isoformat()} with: {command}",
        f"# maglevx --word-size 32 agreed on all {report.flows} flows at capture "
        f"time: {len(report.mismatches)} mismatches",
    ]
    lines += [
        "# format: '== NAME' starts a case; '> ' lines are its ipvsadm -R history "
        "(applied to an empty director);",
        "# then proto,saddr,sport,daddr,dport,raddr,rport per flow (raddr,rport "
        "empty: no destination)",
    ]
    for res in report.results:
        sc = res.scenario
        for j, (ph, pr) in enumerate(zip(sc.phases, res.phases)):
            if not ph.flows:
                continue
            name = sc.name if len(sc.phases) == 1 else f"{sc.name}-phase{j}"
            lines.append(f"== {name}")
            lines += [f"> {ln}" for ln in sc.history_upto(j).splitlines() if ln]
            for r in pr.results:
                rport = "" if r.rport is None else r.rport
                lines.append(f"{r.flow.csv()},{r.raddr or ''},{rport}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=DEFAULT_SEEDS)
    ap.add_argument("--flows", type=int, default=DEFAULT_FLOWS, help="per scenario")
    a = ap.parse_args(argv)
    kernel = kernels.fetch_kernel(KEY)
    scs = typical_scenarios(a.flows) + [scenarios.generate(s, a.flows) for s in a.seeds]
    report = campaign.run(kernel, scs, keep_results=True)
    print(report.summary())
    out = a.output
    try:
        shown = out.resolve().relative_to(REPO)
    except ValueError:
        shown = out
    argv_shown = [str(x) for x in (argv if argv is not None else sys.argv[1:])]
    argv_shown = [str(shown) if x == str(a.output) else x for x in argv_shown]
    command = shlex.join(
        [
            "PYTHONPATH=tests/kernel",
            "python",
            "-m",
            "ipvs_vm.capture_vectors_i386",
            *argv_shown,
        ]
    )
    text = render(report, kernel, command).encode()
    if out.suffix == ".gz":
        with gzip.GzipFile(out, "wb", mtime=0) as f:  # mtime 0: reproducible bytes
            f.write(text)
    else:
        out.write_bytes(text)
    print(f"wrote {out}")
    return 1 if report.mismatches or report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
