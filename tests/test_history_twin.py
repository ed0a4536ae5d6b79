"""Randomized histories: the C core and the Python twin build the same director."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maglevx import Director, _core, _twin
from maglevx.model import fold_address


@st.composite
def histories(draw):
    v6 = draw(st.booleans())
    vip = "[fd00::1]:80" if v6 else "10.0.0.1:80"
    flags = draw(
        st.sampled_from(
            ["", " -b mh-port", " -b mh-fallback", " -b mh-fallback,mh-port"]
        )
    )
    lines = [f"-A -t {vip} -s mh{flags}"]
    live: dict[str, int] = {}
    for _ in range(draw(st.integers(0, 80))):
        n = draw(st.integers(1, 400))
        rs = (
            f"[fd00:1::{n:x}]:{8000 + n % 7}"
            if v6
            else f"10.1.{n // 250}.{n % 250}:{8000 + n % 7}"
        )
        w = draw(st.one_of(st.integers(0, 65535), st.sampled_from([0, 1, 2, 5])))
        if rs in live:
            op = draw(st.sampled_from(["-e", "-d"]))
            if op == "-d":
                lines.append(f"-d -t {vip} -r {rs}")
                del live[rs]
            else:
                lines.append(f"-e -t {vip} -r {rs} -m -w {w}")
                live[rs] = w
        else:
            lines.append(f"-a -t {vip} -r {rs} -m -w {w}")
            live[rs] = w
    return "\n".join(lines)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=histories(),
    variant=st.sampled_from(["upstream", "backport"]),
    word_size=st.sampled_from([64, 32]),
    m=st.sampled_from([251, 1021, 4093, 8191]),
    seed=st.integers(0, 2**32 - 1),
)
def test_history_tables_and_lookups_agree(text, variant, word_size, m, seed):
    d = Director.from_history(text, variant=variant, word_size=word_size, table_size=m)
    svc = d.services[0]
    servers = svc.table_servers
    weights = [svc.table_weight(rs) for rs in servers]
    args = (
        m,
        word_size,
        [fold_address(rs.address) for rs in servers],
        [rs.port for rs in servers],
        weights,
    )
    c_table = _core.build_table(*args)
    np.testing.assert_array_equal(c_table, _twin.build_table(*args))
    np.testing.assert_array_equal(c_table, svc.table)
    rng = np.random.default_rng(seed)
    shape = (64, 4) if svc.family == 6 else 64
    addrs = rng.integers(0, 2**32, shape, dtype=np.uint32)
    ports = rng.integers(0, 65536, 64, dtype=np.uint16)
    folds = addrs if svc.family == 4 else np.bitwise_xor.reduce(addrs, axis=1)
    hp = ports if svc.hashes_port else np.zeros_like(ports)
    avail = svc.availability()
    np.testing.assert_array_equal(
        _core.Scheduler(m, word_size, c_table, avail, svc.fallback).lookup_many(
            folds, hp
        ),
        _twin.Scheduler(m, word_size, c_table, avail, svc.fallback).lookup_many(
            folds, hp
        ),
    )
    np.testing.assert_array_equal(
        svc.lookup_many(addrs, ports).view(np.uint32),
        _twin.Scheduler(m, word_size, c_table, avail, svc.fallback).lookup_many(
            folds, hp
        ),
    )


def test_thousands_of_servers_agree():
    lines = ["-A -t 10.0.0.1:80 -s mh"] + [
        f"-a -t 10.0.0.1:80 -r 10.{2 + i // 65536}.{i // 256 % 256}.{i % 256}:80 -m -w {(i * 7919) % 65536}"
        for i in range(3000)
    ]
    for variant in ("upstream", "backport"):
        d = Director.from_history("\n".join(lines), variant=variant, table_size=65521)
        svc = d.services[0]
        args = (
            65521,
            64,
            [fold_address(rs.address) for rs in svc.table_servers],
            [rs.port for rs in svc.table_servers],
            [svc.table_weight(rs) for rs in svc.table_servers],
        )
        np.testing.assert_array_equal(_twin.build_table(*args), svc.table)
