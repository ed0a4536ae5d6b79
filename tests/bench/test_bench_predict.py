"""Benchmark: `maglevx predict` over a 10-million-flow CSV (rate, peak RSS).

Not a timed assertion: run with ``pytest tests/bench/test_bench_predict.py -m
bench`` (MAGLEVX_BENCH_FLOWS sets the number of flows, default 10,000,000).
The CLI runs in a child process that reports its own peak RSS (VmHWM of
/proc/self/status: getrusage() would count the pages a child shares with
the big parent right after fork); results go to the benchmark's extra_info
and are printed.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOWS = int(os.environ.get("MAGLEVX_BENCH_FLOWS", "10000000"))

pytestmark = pytest.mark.bench


@pytest.fixture(autouse=True)
def only_when_selected(request):
    if "bench" not in (request.config.getoption("-m") or ""):
        pytest.skip("benchmark: select with -m bench")


HISTORY = (
    "-A -t 10.0.0.1:80 -s mh -b mh-port\n"
    + "".join(f"-a -t 10.0.0.1:80 -r 10.1.0.{i}:80 -m -w {i}\n" for i in range(1, 21))
    + "-e -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 0\n"
    "-A -u [fd00::1]:53 -s mh -b mh-fallback,mh-port\n"
    + "".join(f"-a -u [fd00::1]:53 -r [fd00:1::{i:x}]:53 -m\n" for i in range(1, 9))
)


CHILD = """
import sys
from maglevx.cli import main
rc = main(sys.argv[1:])
sys.stdout.flush()
hwm = [x for x in open("/proc/self/status") if x.startswith("VmHWM:")]
sys.stderr.write(hwm[0])
sys.exit(rc)
"""


def write_flows(path: Path, n: int, seed: int = 7) -> None:
    """n flows, 90% IPv4 TCP and 10% IPv6 UDP, in 1M-line chunks."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for start in range(0, n, 1_000_000):
            k = min(1_000_000, n - start)
            a = rng.integers(0, 2**32, k, dtype=np.uint64).tolist()
            p = rng.integers(1024, 65536, k).tolist()
            v6 = (rng.random(k) < 0.1).tolist()
            f.write(
                "".join(
                    f"udp,fd00:9::{x >> 16:x}:{x & 0xFFFF:x},{q},fd00::1,53\n"
                    if six
                    else f"tcp,{x >> 24}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255},"
                    f"{q},10.0.0.1,80\n"
                    for x, q, six in zip(a, p, v6)
                )
            )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    (d / "h.txt").write_text(HISTORY)
    flows = d / "flows.csv"
    write_flows(flows, FLOWS)
    return d / "h.txt", flows


def test_bench_predict_csv(benchmark, inputs):
    history, flows = inputs
    cmd = [sys.executable, "-c", CHILD, "predict", "--history", str(history),
           str(flows)]  # fmt: skip
    result = {}

    def run():
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as devnull:
            r = subprocess.run(
                cmd, stdout=devnull, stderr=subprocess.PIPE, check=True, cwd=ROOT,
                text=True,
            )  # fmt: skip
        result["seconds"] = time.perf_counter() - t0
        result["rss_kib"] = int(r.stderr.split("VmHWM:")[1].split()[0])

    benchmark.pedantic(run, rounds=1, iterations=1)
    rss_mib = result["rss_kib"] / 1024
    rate = FLOWS / result["seconds"]
    benchmark.extra_info.update(
        flows=FLOWS, seconds=round(result["seconds"], 2),
        flows_per_second=round(rate), peak_rss_mib=round(rss_mib, 1),
        input_bytes=flows.stat().st_size,
    )  # fmt: skip
    print(
        f"\npredict: {FLOWS:,} flows in {result['seconds']:.2f} s = "
        f"{rate / 1e6:.2f} M flows/s, peak RSS {rss_mib:.0f} MiB"
    )
