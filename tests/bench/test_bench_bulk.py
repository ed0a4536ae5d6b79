"""Bulk lookups: the public numpy API vs the bare C loop vs the Python twin."""

from __future__ import annotations

import hashlib
import threading

import bare
import numpy as np
import pytest
from common import FLOWS, ROUNDS, best_seconds, flows, service

from maglevx import _twin

TWIN_FLOWS = 2000  # the twin takes ~10 us a flow


@pytest.fixture(scope="session")
def bare_exe(tmp_path_factory):
    return bare.build(str(tmp_path_factory.mktemp("bare")))


@pytest.mark.parametrize("m", [4093, 65521])
@pytest.mark.parametrize("port", [False, True], ids=["noport", "port"])
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_bulk_lookup(benchmark, bare_exe, family, port, m):
    svc = service(family, 100, m, "mh-port" if port else "")
    addrs, ports = flows(family, FLOWS)
    ceiling = bare.run(bare_exe, m, 64, family, port, FLOWS, ROUNDS)
    benchmark.pedantic(
        svc.lookup_many, args=(addrs, ports), rounds=ROUNDS, warmup_rounds=1
    )
    after = bare.run(bare_exe, m, 64, family, port, FLOWS, ROUNDS)
    ceiling = {k: max(v, after[k]) for k, v in ceiling.items()}

    st = svc.snapshot
    few, few_ports = addrs[:TWIN_FLOWS], (ports[:TWIN_FLOWS] if port else None)
    ts = _twin.Scheduler(m, 64, st.table, st.avail, False)
    twin = ts.lookup_many if family == 4 else ts.lookup_many6
    twin_s = best_seconds(lambda: twin(few, few_ports), 1)
    np.testing.assert_array_equal(  # same answers, or the race means nothing
        twin(few, few_ports),
        svc.lookup_many(few, few_ports).view(np.uint32),
    )
    api = FLOWS / benchmark.stats.stats.min
    benchmark.extra_info.update(
        kind="bulk", family=family, port=port, m=m, flows=FLOWS,
        api_per_s=api, bare_bulk_per_s=ceiling["bulk"],
        bare_kernel_loop_per_s=ceiling["kernel_loop"],
        bare_lookup_many_per_s=ceiling["lookup_many"],
        twin_per_s=TWIN_FLOWS / twin_s,
    )  # fmt: skip


def _sha256_twice(data: bytes, threads: int) -> None:
    if threads == 1:
        hashlib.sha256(data).digest()
        hashlib.sha256(data).digest()
        return
    t = threading.Thread(target=lambda: hashlib.sha256(data).digest())
    t.start()
    hashlib.sha256(data).digest()
    t.join()


def test_bulk_lookup_threads(benchmark):
    """Two threads over one big array vs one thread, interleaved.

    A control measures how much a second thread can give on this machine
    at this moment: hashlib's sha256, which also runs without the GIL, on
    two buffers in one thread vs in two.
    """
    svc = service(4, 100, 4093, "mh-port")
    n = 4 * FLOWS
    addrs, ports = flows(4, n)
    data = bytes(32 << 20)
    one = two = c_one = c_two = float("inf")
    for _ in range(ROUNDS):
        one = min(one, best_seconds(lambda: svc.lookup_many(addrs, ports), 1))
        two = min(
            two, best_seconds(lambda: svc.lookup_many(addrs, ports, threads=2), 1)
        )
        c_one = min(c_one, best_seconds(lambda: _sha256_twice(data, 1), 1))
        c_two = min(c_two, best_seconds(lambda: _sha256_twice(data, 2), 1))
    benchmark.pedantic(
        svc.lookup_many, args=(addrs, ports), kwargs={"threads": 2}, rounds=ROUNDS
    )
    two = min(two, benchmark.stats.stats.min)
    benchmark.extra_info.update(
        kind="threads", flows=n, one_thread_per_s=n / one, two_threads_per_s=n / two,
        control_speedup=c_one / c_two,
    )  # fmt: skip
