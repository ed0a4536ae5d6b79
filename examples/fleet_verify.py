"""Verify a synthetic day of flow logs from a fleet of 10 directors with Dask.

Ten directors are meant to run the same configuration (``INTENDED``). Nine
do; on director 7 someone raised one real server's weight to 2, so its
Maglev table differs. Each director logs, per new flow, the real server it
chose (what a conntrack export or an IPFIX collector records). We predict every
flow with the intended configuration, partition by partition on a local
Dask cluster, and count the disagreements per director.

    python examples/fleet_verify.py [--flows-per-director N] [--workers 2]

Needs ``pip install 'maglevx[dask]'``.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

import numpy as np

import maglevx
from maglevx.arrow import predict_arrow

VIP = "203.0.113.10"
SERVERS = [f"10.20.0.{i}" for i in range(1, 9)]


def history(order: list[str]) -> str:
    """An mh service on VIP:443 (mh-port) with *order*'s real servers."""
    lines = [f"-A -t {VIP}:443 -s mh -b mh-port"]
    lines += [f"-a -t {VIP}:443 -r {rs}:443 -m -w 1" for rs in order]
    return "\n".join(lines) + "\n"


INTENDED = history(SERVERS)
DRIFTED = INTENDED + f"-e -t {VIP}:443 -r {SERVERS[4]}:443 -m -w 2\n"


def day_of_logs(directors: int, flows: int, seed: int = 7):  # noqa: ANN201
    """One pandas DataFrame per director: flows and the real server it chose."""
    import pandas as pd
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    vip = int(ipaddress.IPv4Address(VIP))
    frames = []
    for n in range(directors):
        actual = maglevx.Director.from_history(DRIFTED if n == 7 else INTENDED)
        df = pd.DataFrame(
            {
                "director": np.full(flows, n, np.uint8),
                "ts": np.sort(rng.integers(0, 86400, flows)).astype(np.uint32),
                "proto": "tcp",
                "saddr": rng.integers(1, 2**32, flows, dtype=np.uint32),
                "sport": rng.integers(1024, 65536, flows).astype(np.uint16),
                "daddr": np.full(flows, vip, np.uint32),
                "dport": np.full(flows, 443, np.uint16),
            }
        )
        chose = predict_arrow(actual, pa.Table.from_pandas(df, preserve_index=False))
        df["observed_raddr"] = pd.array(chose["raddr"].to_pylist(), dtype="UInt32")
        df["observed_rport"] = pd.array(chose["rport"].to_pylist(), dtype="UInt16")
        frames.append(df)
    return frames


def main(argv: list[str] | None = None) -> int:
    """Build the logs, verify them on a local cluster, print a report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows-per-director", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    import dask.dataframe as dd
    import distributed
    import pandas as pd

    from maglevx import dask as mdask

    frames = day_of_logs(10, args.flows_per_director)
    # one partition per director's log
    ddf = dd.from_pandas(
        pd.concat(frames, ignore_index=True), npartitions=10, sort=False
    )
    intended = maglevx.Director.from_history(INTENDED)
    with distributed.LocalCluster(
        n_workers=args.workers, processes=True, threads_per_worker=1,
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster):  # fmt: skip
        report = mdask.verify(ddf, intended)
    bad = report[report["mismatches"] > 0]
    for row in report.itertuples():
        share = row.mismatches / row.flows
        print(
            f"director {row.partition}: {row.flows} flows, {row.mismatches} not "
            f"where the intended table sends them ({share:.1%})"
        )
    if len(bad):
        print(f"{len(bad)} director(s) disagree with the intended configuration: "
              f"{', '.join(str(p) for p in bad['partition'])}")  # fmt: skip
        return 1
    print("all directors agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
