"""Secret hash keys and big-endian directors in the core's low-level functions.

``hash_key`` (16 bytes, the module's ``hash_key`` parameter) and ``byte_order``
("little"/"big") are keyword arguments of ``hashkey``, ``slot``,
``build_table`` and ``Scheduler`` in both ``maglevx._core`` and
``maglevx._twin``; their defaults are the kernel's behaviour. The reference
is ``tests/sipref.py``: SipHash-1-3 / HalfSipHash-1-3 written from the papers
(no PyPI package implements the 1-3 variants), itself checked against the
kernel's ``lib/test_siphash.c`` vectors below. The key layout is the one
kmod/README.md documents ("A secret hash key").
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
from sipref import halfsiphash13, siphash13_32

VECTORS = Path(__file__).resolve().parent / "vectors" / "hsiphash-kat.txt"
KERNEL_KEYS = {64: (2654435761, 2654446892), 32: (2654435761, 2654446892)}


def kernel_vectors() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {64: [], 32: []}
    for line in VECTORS.read_text().splitlines():
        if line and not line.startswith("#"):
            ws, _, h = line.split()
            out[int(ws)].append(int(h, 16))
    return out


def ref_hash(word_size: int, h2: bool, v: int, key: bytes | None, order: str) -> int:
    """ip_vs_mh_hashkey() of v from the reference, with the README's key layout."""
    data = (v & 0xFFFFFFFF).to_bytes(4, order)
    if key is None:
        k = KERNEL_KEYS[word_size][h2]
        kb = k.to_bytes(word_size // 8, "little") * 2
    elif word_size == 64:
        kb = bytes(b ^ 0xFF for b in key) if h2 else key
    else:
        kb = key[8:] if h2 else key[:8]
    return siphash13_32(data, kb) if word_size == 64 else halfsiphash13(data, kb)


def test_reference_matches_kernel_vectors():
    vec = kernel_vectors()
    for n in range(64):
        assert siphash13_32(bytes(range(n)), bytes(range(16))) == vec[64][n]
        assert halfsiphash13(bytes(range(n)), bytes(range(8))) == vec[32][n]


@pytest.mark.parametrize("word_size", [64, 32])
def test_key_000102_is_the_kernel_test_key(core, word_size):
    """With K = 00 01 .. 0f, H1 is keyed as lib/test_siphash.c: vector 4 is
    the bytes 00 01 02 03, i.e. v = 0x03020100 little-endian, 0x00010203 big."""
    k = bytes(range(16))
    want = kernel_vectors()[word_size][4]
    assert core.hashkey(word_size, core.HASH1_KEY, 0x03020100, 0, 0, hash_key=k) == want
    assert (
        core.hashkey(
            word_size, core.HASH1_KEY, 0x00010203, 0, 0, hash_key=k, byte_order="big"
        )
        == want
    )


@pytest.mark.parametrize("word_size", [64, 32])
def test_defaults_are_the_kernel(core, word_size):
    for v in (0, 1, 0x0A000001, 0xFFFFFFFF):
        for key in (core.HASH1_KEY, core.HASH2_KEY):
            plain = core.hashkey(word_size, key, v, 0, 0)
            assert plain == core.hashkey(
                word_size, key, v, 0, 0, byte_order="little", hash_key=None
            )
            assert plain == ref_hash(
                word_size, key == core.HASH2_KEY, v, None, "little"
            )


@pytest.mark.parametrize("word_size", [64, 32])
@pytest.mark.parametrize("order", ["little", "big"])
def test_hashkey_against_reference(core, word_size, order):
    rnd = random.Random(word_size * 7 + len(order))
    for _ in range(200):
        key = rnd.randbytes(16) if rnd.random() < 0.8 else None
        fold, port, off = rnd.getrandbits(32), rnd.getrandbits(16), rnd.randrange(4093)
        v = fold + port + off
        for h2, name in ((False, core.HASH1_KEY), (True, core.HASH2_KEY)):
            got = core.hashkey(
                word_size, name, fold, port, off, byte_order=order, hash_key=key
            )
            assert got == ref_hash(word_size, h2, v, key, order), (key, v, h2)


def _ref_table(m, word_size, folds, ports, weights, key, order):
    """ip_vs_mh_reassign() from the reference hash (plain, unoptimized)."""
    primes = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
    tab_bits = (primes.index(m) + 8) // 2
    g = 0
    for w in weights:
        if w:
            g = np.gcd(g, w) if g else w
    table = [0xFFFF] * m
    if not g:
        return table
    bits = int(max(weights) // g).bit_length()
    rshift = max(bits - tab_bits, 0)
    perm = [
        ref_hash(word_size, False, f + p, key, order) % m for f, p in zip(folds, ports)
    ]
    skip = [
        ref_hash(word_size, True, f + p, key, order) % (m - 1) + 1
        for f, p in zip(folds, ports)
    ]
    turns = [((w // g) >> rshift) or int(w != 0) for w in weights]
    filled = 0
    while True:
        for i in range(len(folds)):
            for _ in range(turns[i]):
                c = perm[i]
                while table[c] != 0xFFFF:
                    c = (c + skip[i]) % m
                perm[i] = c
                table[c] = i
                filled += 1
                if filled == m:
                    return table


@pytest.mark.parametrize("word_size", [64, 32])
@pytest.mark.parametrize("order", ["little", "big"])
@pytest.mark.parametrize("keyed", [False, True])
def test_build_table_and_scheduler(core, word_size, order, keyed):
    rnd = random.Random(word_size + 2 * keyed + len(order))
    key = rnd.randbytes(16) if keyed else None
    m = 251
    n = 7
    folds = [0xAC100000 + rnd.getrandbits(16) for _ in range(n)]
    ports = [rnd.choice((80, 443, 8080)) for _ in range(n)]
    weights = [rnd.randint(0, 5) for _ in range(n - 1)] + [3]
    kw = {"byte_order": order, "hash_key": key}
    table = core.build_table(m, word_size, folds, ports, weights, **kw)
    assert [int(x) for x in table] == _ref_table(
        m, word_size, folds, ports, weights, key, order
    )
    avail = np.array([w > 0 for w in weights], dtype=np.uint8)
    s = core.Scheduler(m, word_size, table, avail, False, **kw)
    assert s.byte_order == order and s.hash_key == key
    cfolds = np.array([rnd.getrandbits(32) for _ in range(300)], dtype=np.uint32)
    cports = np.array([rnd.getrandbits(16) for _ in range(300)], dtype=np.uint16)
    many = s.lookup_many(cfolds, cports)
    for f, p, got in zip(cfolds.tolist(), cports.tolist(), many.tolist()):
        slot = ref_hash(word_size, False, f + p, key, order) % m
        assert core.slot(m, word_size, f, p, **kw) == slot
        d = table[slot]
        want = d if d != 0xFFFF and avail[d] else core.NONE
        assert s.lookup(f, p) == want == got
    again = pickle.loads(pickle.dumps(s))
    assert again.byte_order == order and again.hash_key == key
    assert again.lookup_many(cfolds, cports).tolist() == many.tolist()


def test_a_key_changes_the_decisions(core):
    folds = [0xAC100001 + i for i in range(8)]
    plain = core.build_table(4093, 64, folds, [80] * 8, [1] * 8)
    keyed = core.build_table(4093, 64, folds, [80] * 8, [1] * 8, hash_key=bytes(16))
    big = core.build_table(4093, 64, folds, [80] * 8, [1] * 8, byte_order="big")
    assert (plain != keyed).mean() > 0.5 and (plain != big).mean() > 0.5


@pytest.mark.parametrize(
    "kw",
    [
        {"hash_key": b"short"},
        {"hash_key": bytes(17)},
        {"hash_key": "00" * 16},
        {"byte_order": "middle"},
        {"byte_order": None},
    ],
)
def test_bad_key_or_byte_order_refused(core, kw):
    with pytest.raises((ValueError, TypeError)):
        core.hashkey(64, core.HASH1_KEY, 1, 2, 0, **kw)
    with pytest.raises((ValueError, TypeError)):
        core.Scheduler(
            251, 64, np.zeros(251, np.uint16), np.ones(1, np.uint8), False, **kw
        )
