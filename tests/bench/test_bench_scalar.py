"""One flow at a time: maglevx.lookup() with str and with ipaddress inputs."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from common import ROUNDS, service

import maglevx

CLIENTS = 10000  # distinct client addresses, cycled


@pytest.mark.parametrize("inputs", ["str", "ipaddress"])
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_scalar_lookup(benchmark, family, inputs):
    svc = service(family, 100, 4093, "mh-port")
    d = svc.director
    rng = np.random.default_rng(3)
    if family == 4:
        addrs = [ipaddress.IPv4Address(int(a)) for a in rng.integers(0, 2**32, CLIENTS)]
        vip = ipaddress.ip_address("10.0.0.1")
    else:
        addrs = [
            ipaddress.IPv6Address(int(a) << 64 | int(b))
            for a, b in rng.integers(0, 2**63, (CLIENTS, 2))
        ]
        vip = ipaddress.ip_address("fd00::1")
    ports = rng.integers(1024, 65536, CLIENTS).tolist()
    if inputs == "str":
        tuples = [("tcp", str(a), p, str(vip), 80) for a, p in zip(addrs, ports)]
    else:
        tuples = [("tcp", a, p, vip, 80) for a, p in zip(addrs, ports)]
    lookup = maglevx.lookup

    def run():
        for t in tuples:
            lookup(t, d)

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info.update(
        kind="scalar", family=family, inputs=inputs,
        us_per_call=benchmark.stats.stats.min / CLIENTS * 1e6,
    )  # fmt: skip
