"""Capture frozen vectors: decisions of Debian's real amd64 kernels, for the fast suite.

Boots the kernel once, runs seeded scenarios of every theme of ipvs_vm.scenarios
(all flag combinations, -E flag edits, IPv4/IPv6, TCP/UDP, weight-0 edits, deletes
and re-adds, service re-creation, -g/-i real servers, large weights) plus a few
hand-written typical services, and writes what the kernel chose for every flow, with
a header naming the kernel, ipvsadm, date and command. tests/test_frozen_vectors.py
replays the file through maglevx without any VM.

    PYTHONPATH=tests/kernel python -m ipvs_vm.capture_vectors -k 6.1 -o tests/vectors/kernel-6.1-amd64.txt.gz

Format: the one of tests/vectors/kernel-6.1-686-pae.txt (gzip-compressed here):

* ``#`` lines: header;
* ``== NAME`` starts a case; its ``> `` lines are the ipvsadm -R history, applied
  to an empty director (a later phase of a scenario repeats the earlier phases'
  lines, so every case stands alone);
* then ``proto,saddr,sport,daddr,dport,raddr,rport`` per flow (raddr and rport
  empty: no destination).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import random
import subprocess
import sys
from pathlib import Path

from . import jobs, kernels, predict, scenarios
from .jobs import Flow, Phase, Scenario


def typical() -> list[Scenario]:
    """Hand-written services people run, with their flows."""
    rnd = random.Random(7)

    def flows(proto, vip, port, n, v6=False):
        out = []
        for _ in range(n):
            if v6:
                a = f"fd00:c::{rnd.randint(1, 0xFFFF):x}:{rnd.randint(1, 0xFFFF):x}"
            else:
                a = f"10.{rnd.randint(2, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
            out.append(Flow(proto, a, rnd.randint(1024, 65535), vip, port))
        return out

    v = "10.1.0.1:80"
    kube = [f"-A -t {v} -s mh -b mh-port"] + [
        f"-a -t {v} -r 172.16.0.{i}:8080 -m -w 1" for i in range(1, 6)
    ]
    return [
        Scenario(
            "typical-kube-proxy-terminating-endpoint",
            [
                Phase(kube, flows("tcp", "10.1.0.1", 80, 200)),
                # kube-proxy sets a terminating endpoint to weight 0: its slots stay
                Phase(
                    [f"-e -t {v} -r 172.16.0.3:8080 -m -w 0"],
                    flows("tcp", "10.1.0.1", 80, 300),
                ),
            ],
        ),
        Scenario(
            "typical-fallback-weight-0",
            [
                Phase(
                    [f"-A -u {v} -s mh -b mh-fallback"]
                    + [f"-a -u {v} -r 172.16.1.{i}:53 -m -w 1" for i in range(1, 9)]
                    + [f"-e -u {v} -r 172.16.1.4:53 -m -w 0"],
                    flows("udp", "10.1.0.1", 80, 300),
                )
            ],
        ),
        Scenario(
            "typical-weights-100-5-3",
            [
                Phase(
                    [
                        f"-A -t {v} -s mh",
                        f"-a -t {v} -r 172.16.2.1:80 -g -w 100",
                        f"-a -t {v} -r 172.16.2.2:80 -g -w 5",
                        f"-a -t {v} -r 172.16.2.3:80 -g -w 3",
                    ],
                    flows("tcp", "10.1.0.1", 80, 300),
                )
            ],
        ),
        Scenario(
            "typical-ipv6-both-flags",
            [
                Phase(
                    ["-A -t [fd00:1::1]:443 -s mh -b mh-fallback,mh-port"]
                    + [
                        f"-a -t [fd00:1::1]:443 -r [2001:db8::{i}]:443 -i -w {i}"
                        for i in range(1, 7)
                    ],
                    flows("tcp", "fd00:1::1", 443, 300, v6=True),
                )
            ],
        ),
    ]


def ipvsadm_version(guest_says: str) -> str:
    pkg = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}", "ipvsadm"],
        capture_output=True,
        text=True,
    )
    return f"{guest_says.strip()} (Debian {pkg.stdout.strip()})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", "--kernel", default="6.1", choices=kernels.KERNEL_KEYS)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(2001, 2025)))
    ap.add_argument("--flows", type=int, default=250, help="flows per seeded scenario")
    a = ap.parse_args(argv)
    k = kernels.fetch_kernel(a.kernel)
    scs = typical() + [scenarios.generate(s, a.flows) for s in a.seeds]
    (batch,) = scenarios.pack(scs, 10**9)
    results, boot = jobs.run_scenarios(
        k, batch, pre_snippet="ipvsadm --version > /out/ipvsadm-version"
    )
    uname = boot.console.split("@@BOOTED", 1)[1].split()[0]
    lines, total, mism = [], 0, 0
    for res in results:
        sc = res.scenario
        for j, (ph, pr) in enumerate(zip(sc.phases, res.phases)):
            assert not pr.problems, pr.problems
            history = sc.history_upto(j).splitlines()
            model = predict.predict(sc.history_upto(j), ph.flows)
            lines.append(f"== {sc.name}/phase{j}")
            lines += [f"> {h}" for h in history]
            for r, m in zip(pr.results, model):
                total += 1
                mism += not predict.same_choice(r.choice, m)
                lines.append(
                    f"{r.flow.csv()},{r.raddr or ''},{'' if r.rport is None else r.rport}"
                )
    cmd = f"PYTHONPATH=tests/kernel python -m ipvs_vm.capture_vectors -k {a.kernel} -o {a.output}"
    if a.seeds != list(range(2001, 2025)) or a.flows != 250:
        cmd += f" --seeds {' '.join(map(str, a.seeds))} --flows {a.flows}"
    header = [
        "# Frozen vectors: IPVS Maglev (ip_vs_mh) decisions of a real 64-bit kernel.",
        f"# kernel: {k.package} {k.version} (Debian, amd64), uname -r {uname}",
        f"# ipvsadm: {ipvsadm_version(boot.text('ipvsadm-version'))}",
        "# director: word size 64 (hsiphash = SipHash-1-3), variant upstream "
        "(in-tree ip_vs_mh), M = 4093 (CONFIG_IP_VS_MH_TAB_INDEX=12)",
        "# guest: qemu-system-x86_64 (TCG), busybox-static, flows from "
        "tests/kernel/flowgen.c; choices read from /proc/net/ip_vs_conn",
        f"# captured: {datetime.date.today().isoformat()} with: {cmd}",
        f"# maglevx agreed on {total - mism} of {total} flows at capture time: "
        f"{mism} mismatches",
        "# format: '== NAME' starts a case; '> ' lines are its ipvsadm -R history "
        "(applied to an empty director);",
        "# then proto,saddr,sport,daddr,dport,raddr,rport per flow "
        "(raddr,rport empty: no destination)",
    ]
    data = "\n".join(header + lines) + "\n"
    with gzip.GzipFile(a.output, "wb", mtime=0) as f:
        f.write(data.encode())
    print(f"{a.output}: {total} flows, {mism} mismatches with maglevx")
    return 0 if mism == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
