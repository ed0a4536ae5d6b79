"""Table builds: how the time grows with the table size M and real servers N."""

from __future__ import annotations

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

    def build():
        svc._rebuild()  # what every -a/-e/-d does, then the table on first use
        return svc.snapshot.build.table

    benchmark.pedantic(build, rounds=ROUNDS, warmup_rounds=1)
    servers, w = svc.snapshot.build.servers, svc.snapshot.build.weights
    folds = np.array([fold_address(rs.address) for rs in servers], np.uint32)
    ports = np.array([rs.port for rs in servers], np.uint32)
    w = np.array(w, np.uint32)
    core_s = best_seconds(lambda: _core.build_table(m, 64, folds, ports, w))
    benchmark.extra_info.update(
        kind="build", m=m, n=n, weights=weights, api_s=benchmark.stats.stats.min,
        core_s=core_s,
    )  # fmt: skip
