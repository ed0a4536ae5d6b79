"""What a Python user reaches for today: uhashring's ketama ring.

The same keys (client addresses) go to the same number of nodes (real
servers) through uhashring's get_node(), through maglevx.lookup() one at
a time, and through VirtualService.lookup_many() in one call.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from common import best_seconds, service

import maglevx

KEYS = 100_000
NODES = 100


def test_uhashring_vs_maglevx(benchmark):
    uhashring = pytest.importorskip("uhashring")
    svc = service(4, NODES, 4093, "")
    d = svc.director
    nums = np.random.default_rng(5).integers(0, 2**32, KEYS, dtype=np.uint32)
    keys = [str(ipaddress.IPv4Address(int(a))) for a in nums]
    ring = uhashring.HashRing(
        nodes=[str(rs) for rs in svc.table_servers], hash_fn="ketama"
    )
    tuples = [("tcp", k, 40000, "10.0.0.1", 80) for k in keys]

    def ketama():
        get = ring.get_node
        for k in keys:
            get(k)

    def scalar():
        lookup = maglevx.lookup
        for t in tuples:
            lookup(t, d)

    benchmark.pedantic(ketama, rounds=3, warmup_rounds=1)
    ketama_s = benchmark.stats.stats.min
    scalar_s = best_seconds(scalar, 3)
    bulk_s = best_seconds(lambda: svc.lookup_many(nums), 7)
    benchmark.extra_info.update(
        kind="uhashring", keys=KEYS, nodes=NODES,
        uhashring_per_s=KEYS / ketama_s, maglevx_scalar_per_s=KEYS / scalar_s,
        maglevx_bulk_per_s=KEYS / bulk_s,
    )  # fmt: skip
