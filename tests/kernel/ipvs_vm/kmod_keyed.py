"""A small, independent prediction of ip_vs_mh.ko with a secret ``hash_key``.

Written for the kernel tests from the papers and kmod/README.md only (it imports
nothing from maglevx), so that it can judge the module and the C core alike:

- SipHash-1-3 and HalfSipHash-1-3 from the papers (``tests/sipref.py``), over
  bytes with a byte key, output truncated as the kernel's ``hsiphash()`` does;
- the key layout of ``mx_params_set_key()`` (kmod/README.md, "A secret hash key");
- the Maglev table fill and the backport lookup of ``csrc/mx_maglev.c``.
"""

from __future__ import annotations

import ipaddress
from math import gcd

from sipref import M32, halfsiphash13, siphash13_32

PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
KERNEL_H1, KERNEL_H2 = 2654435761, 2654446892


def hash_keys(key: bytes | None, word_size: int) -> tuple[bytes, bytes]:
    """(H1 key, H2 key) as bytes, per kmod/README.md; None: the kernel's."""
    if key is None:
        if word_size == 64:
            return (
                KERNEL_H1.to_bytes(8, "little") * 2,
                KERNEL_H2.to_bytes(8, "little") * 2,
            )
        return KERNEL_H1.to_bytes(4, "little") * 2, KERNEL_H2.to_bytes(4, "little") * 2
    assert len(key) == 16
    if word_size == 64:
        return key, bytes(b ^ 0xFF for b in key)
    return key[:8], key[8:]


def hashkey(
    key: bytes | None, word_size: int, h2: bool, v: int, byte_order: str = "little"
) -> int:
    """ip_vs_mh_hashkey() of the u32 ``v`` (offset + port + fold)."""
    data = (v & M32).to_bytes(4, byte_order)
    k = hash_keys(key, word_size)[1 if h2 else 0]
    return siphash13_32(data, k) if word_size == 64 else halfsiphash13(data, k)


def fold(address: str) -> int:
    a = ipaddress.ip_address(address)
    n = int(a)
    if a.version == 4:
        return n
    return (n >> 96 ^ n >> 64 ^ n >> 32 ^ n) & M32


def build_table(
    servers: list[tuple[str, int, int]],
    m: int,
    *,
    key: bytes | None,
    word_size: int = 64,
    byte_order: str = "little",
) -> list[int | None]:
    """The backport's table for ``servers`` (address, port, live weight), head first."""
    tab_bits = (PRIMES.index(m) + 8) // 2
    weights = [max(w, 0) for _, _, w in servers]
    g = 0
    for w in weights:
        if w > 0:
            g = gcd(g, w) if g else w
    table: list[int | None] = [None] * m
    if g == 0:
        return table
    bits = (max(weights) // g).bit_length()
    rshift = bits - tab_bits if bits > tab_bits else 0
    perm, skip, turns = [], [], []
    for (addr, port, _), w in zip(servers, weights):
        v = fold(addr) + port
        perm.append(hashkey(key, word_size, False, v, byte_order) % m)
        skip.append(hashkey(key, word_size, True, v, byte_order) % (m - 1) + 1)
        t = (w // g) >> rshift
        turns.append(t if t else int(w != 0))
    filled = 0
    while True:
        for i in range(len(servers)):
            for _ in range(turns[i]):
                c = perm[i]
                while table[c] is not None:
                    c = (c + skip[i]) % m
                perm[i] = c
                table[c] = i
                filled += 1
                if filled == m:
                    return table


def schedule(
    table: list[int | None],
    servers: list[tuple[str, int, int]],
    saddr: str,
    sport: int,
    *,
    key: bytes | None,
    word_size: int = 64,
    byte_order: str = "little",
) -> tuple[str, int] | None:
    """The backport's choice (port always hashed): (address, port) or None."""
    m = len(table)
    d = table[hashkey(key, word_size, False, fold(saddr) + sport, byte_order) % m]
    if d is None or servers[d][2] <= 0:
        return None
    return servers[d][0], servers[d][1]
