"""Table builds: how the time grows with the table size M and real servers N.

The timed call is the C core's build (``_core.build_table()``: gcd, shift,
permutations, population), a fresh table every call. The model reuses a
table while servers and weights are unchanged (``_Build._reuse``), so its
path is timed separately (``api_s``) with an edit that changes the table
every call: the first real server's weight alternates between two values.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from common import ROUNDS, best_seconds, service

from maglevx import _core
from maglevx.model import fold_address


@pytest.mark.parametrize("weights", ["equal", "mixed"])
@pytest.mark.parametrize("n", [10, 100, 1000, 5000])
@pytest.mark.parametrize("m", [4093, 65521, 131071])
def test_table_build(benchmark, m, n, weights):
    if n > m:
        pytest.skip(f"{n} real servers do not fit {m} slots (the kernel refuses)")
    svc = service(4, n, m, "mh-port", weights)
    servers, w = svc.snapshot.build.servers, svc.snapshot.build.weights
    folds = np.array([fold_address(rs.address) for rs in servers], np.uint32)
    ports = np.array([rs.port for rs in servers], np.uint32)
    w = np.array(w, np.uint32)

    def build():
        return _core.build_table(m, 64, folds, ports, w)

    table = benchmark.pedantic(build, rounds=ROUNDS, warmup_rounds=1)
    assert np.array_equal(table, svc.snapshot.build.table)  # the model's table

    first = svc.real_servers[0]
    turn = itertools.cycle([first.weight + 1, first.weight])

    def edit_and_build():
        # what an `-e` does, then the table on first use: never reused
        svc.edit_server(first.address, first.port, weight=next(turn), forward="masq")
        return svc.snapshot.build.table

    api_s = best_seconds(edit_and_build)
    benchmark.extra_info.update(
        kind="build", m=m, n=n, weights=weights,
        core_s=benchmark.stats.stats.min, api_s=api_s, rounds=ROUNDS,
    )  # fmt: skip
