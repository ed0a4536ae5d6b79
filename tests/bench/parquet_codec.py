"""pyarrow's Parquet codec alone on the flow-log shape of test_bench_columnar (2M IPv4 rows)."""

import io
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

n = 2_000_000
rng = np.random.default_rng(1)
t = pa.table(
    {
        "proto": pa.array(["tcp"] * n).dictionary_encode(),
        "saddr": rng.integers(0, 2**32, n, dtype=np.uint32),
        "sport": rng.integers(0, 65536, n, dtype=np.uint16),
        "daddr": np.full(n, 0x0A000001, np.uint32),
        "dport": np.full(n, 80, np.uint16),
        "raddr": rng.integers(0, 8, n, dtype=np.uint32) + 0x0A010001,
        "rport": np.full(n, 80, np.uint16),
    }
)
for kw in ({}, {"compression": "none"}, {"compression": "lz4"}):
    w = r = 9.0
    for _ in range(5):
        b = io.BytesIO()
        t0 = time.perf_counter()
        pq.write_table(t, b, **kw)
        w = min(w, time.perf_counter() - t0)
        b.seek(0)
        t0 = time.perf_counter()
        pq.read_table(b)
        r = min(r, time.perf_counter() - t0)
    print(
        f"{kw or 'defaults (snappy, dictionary)'}: encode {w * 1e3:.0f} ms, decode {r * 1e3:.0f} ms, "
        f"decode+encode {n / (w + r) / 1e6:.1f} M rows/s"
    )
