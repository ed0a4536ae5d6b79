"""The C extension and the pure-Python twin agree on tables and lookups."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maglevx import _core, _twin

PRIMES = _twin.PRIMES
SMALL_PRIMES = [251, 509, 1021, 4093]


def test_constants_agree():
    for name in ("PRIMES", "HASH1_KEY", "HASH2_KEY", "SLOT_EMPTY", "NONE", "MAX_DESTS"):
        assert getattr(_core, name) == getattr(_twin, name), name
    assert PRIMES == (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)


@pytest.mark.parametrize("m", PRIMES)
def test_tab_bits(m):
    # CONFIG_IP_VS_MH_TAB_INDEX = 8 + position; BITS = INDEX / 2
    assert _core.tab_bits(m) == _twin.tab_bits(m) == (8 + PRIMES.index(m)) // 2


servers = st.lists(
    st.tuples(
        st.integers(0, 2**32 - 1),
        st.integers(0, 65535),
        st.one_of(st.integers(0, 65535), st.sampled_from([0, 1, 2, 3, 63, 64, 65535])),
    ),
    min_size=0,
    max_size=200,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rs=servers,
    m=st.sampled_from(SMALL_PRIMES),
    word_size=st.sampled_from([64, 32]),
    flows=st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 65535)), max_size=50
    ),
    fallback=st.booleans(),
    drained=st.sets(st.integers(0, 199)),
)
def test_tables_and_lookups_agree(rs, m, word_size, flows, fallback, drained):
    folds = [f for f, _, _ in rs]
    ports = [p for _, p, _ in rs]
    weights = [w for _, _, w in rs]
    a = _core.build_table(m, word_size, folds, ports, weights)
    b = _twin.build_table(m, word_size, folds, ports, weights)
    np.testing.assert_array_equal(a, b)
    avail = np.array(
        [int(w > 0 and i not in drained) for i, w in enumerate(weights)], np.uint8
    )
    fa = np.array([f for f, _ in flows], np.uint32)
    pa = np.array([p for _, p in flows], np.uint16)
    np.testing.assert_array_equal(
        _core.Scheduler(m, word_size, a, avail, fallback).lookup_many(fa, pa),
        _twin.Scheduler(m, word_size, b, avail, fallback).lookup_many(fa, pa),
    )
    for f, p in flows[:5]:
        assert _core.Scheduler(m, word_size, a, avail, fallback).lookup(
            f, p
        ) == _twin.Scheduler(m, word_size, b, avail, fallback).lookup(f, p)


@pytest.mark.parametrize("m", [4093, 65521, 131071])
@pytest.mark.parametrize("word_size", [64, 32])
def test_large_tables_agree(m, word_size):
    rng = np.random.default_rng(m + word_size)
    n = 3000
    folds = rng.integers(0, 2**32, n, dtype=np.uint32)
    ports = rng.integers(0, 65536, n, dtype=np.uint32)
    weights = rng.integers(0, 65536, n, dtype=np.uint32)
    weights[rng.random(n) < 0.1] = 0
    np.testing.assert_array_equal(
        _core.build_table(m, word_size, folds, ports, weights),
        _twin.build_table(m, word_size, folds, ports, weights),
    )


def test_every_slot_filled_when_any_weight(core):
    t = core.build_table(251, 64, [1, 2, 3], [80, 80, 80], [0, 5, 0])
    assert set(t.tolist()) == {1}


def test_all_zero_weights_leave_table_empty(core):
    t = core.build_table(251, 64, [1, 2], [80, 80], [0, 0])
    assert (t == core.SLOT_EMPTY).all()


def test_more_servers_than_slots_is_refused(core):
    n = 252
    with pytest.raises(ValueError, match="do not fit"):
        core.build_table(251, 64, list(range(n)), [0] * n, [1] * n)


def test_bad_table_size_is_refused():
    with pytest.raises(ValueError):
        _core.build_table(4000, 64, [1], [1], [1])


# mx_populate() probes MX_PROBES slots at once and lets a server with several
# turns take every empty slot of a batch; the twin claims one slot at a time,
# as ip_vs_mh_populate(). Each case ends the fill in another branch.
POPULATE_CASES = {
    # one permutation shared by all (equal fold + port): long scans
    "shared permutation": ([1] * 50, [80] * 50, list(range(1, 51)), 1021),
    # one turn each: the single-claim path
    "one turn each": (list(range(300)), [80] * 300, [1] * 300, 1021),
    # few servers, many turns: the fill ends inside a batch
    "many turns": ([7, 8, 9], [1, 2, 3], [100, 50, 1], 251),
    # as many servers as slots: the last slot can go to a first claim
    "n = m": (list(range(251)), [0] * 251, [1] * 251, 251),
    "n = m, mixed": (list(range(251)), [0] * 251, [1 + i % 3 for i in range(251)], 251),
}


@pytest.mark.parametrize("case", POPULATE_CASES)
@pytest.mark.parametrize("word_size", [64, 32])
def test_batched_populate_claims_as_the_kernel(case, word_size):
    folds, ports, weights, m = POPULATE_CASES[case]
    np.testing.assert_array_equal(
        _core.build_table(m, word_size, folds, ports, weights),
        _twin.build_table(m, word_size, folds, ports, weights),
    )
