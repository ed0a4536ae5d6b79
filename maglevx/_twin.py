"""Pure-Python twin of the C core in ``csrc/``: readable, slow, exact.

Every function here has a C counterpart in ``csrc/mx_maglev.[ch]`` or
``csrc/mx_hsiphash.[ch]`` and must give identical results; the test suite
checks that on randomized inputs. Read this file to learn the algorithm.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
HASH1_KEY = 2654435761
HASH2_KEY = 2654446892
SLOT_EMPTY = 0xFFFF
NONE = 0xFFFFFFFF
MAX_DESTS = 0xFFFE

_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1


def _rol64(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def _rol32(x: int, b: int) -> int:
    return ((x << b) | (x >> (32 - b))) & _M32


def _sipround(v: list[int]) -> None:
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & _M64
    v1 = _rol64(v1, 13) ^ v0
    v0 = _rol64(v0, 32)
    v2 = (v2 + v3) & _M64
    v3 = _rol64(v3, 16) ^ v2
    v0 = (v0 + v3) & _M64
    v3 = _rol64(v3, 21) ^ v0
    v2 = (v2 + v1) & _M64
    v1 = _rol64(v1, 17) ^ v2
    v2 = _rol64(v2, 32)
    v[:] = [v0, v1, v2, v3]


def _hsipround(v: list[int]) -> None:
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & _M32
    v1 = _rol32(v1, 5) ^ v0
    v0 = _rol32(v0, 16)
    v2 = (v2 + v3) & _M32
    v3 = _rol32(v3, 8) ^ v2
    v0 = (v0 + v3) & _M32
    v3 = _rol32(v3, 7) ^ v0
    v2 = (v2 + v1) & _M32
    v1 = _rol32(v1, 13) ^ v2
    v2 = _rol32(v2, 16)
    v[:] = [v0, v1, v2, v3]


def hsiphash64(data: bytes, k0: int, k1: int) -> int:
    """hsiphash() of a 64-bit kernel: SipHash-1-3, low 32 bits."""
    v = [
        0x736F6D6570736575 ^ k0,
        0x646F72616E646F6D ^ k1,
        0x6C7967656E657261 ^ k0,
        0x7465646279746573 ^ k1,
    ]
    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v[3] ^= m
        _sipround(v)
        v[0] ^= m
    b = (n << 56) & _M64 | int.from_bytes(data[end:], "little")
    v[3] ^= b
    _sipround(v)
    v[0] ^= b
    v[2] ^= 0xFF
    for _ in range(3):
        _sipround(v)
    return (v[0] ^ v[1] ^ v[2] ^ v[3]) & _M32


def hsiphash32(data: bytes, k0: int, k1: int) -> int:
    """hsiphash() of a 32-bit kernel: HalfSipHash-1-3."""
    v = [k0, k1, 0x6C796765 ^ k0, 0x74656462 ^ k1]
    n = len(data)
    end = n - n % 4
    for i in range(0, end, 4):
        m = int.from_bytes(data[i : i + 4], "little")
        v[3] ^= m
        _hsipround(v)
        v[0] ^= m
    b = (n << 24) & _M32 | int.from_bytes(data[end:], "little")
    v[3] ^= b
    _hsipround(v)
    v[0] ^= b
    v[2] ^= 0xFF
    for _ in range(3):
        _hsipround(v)
    return v[1] ^ v[3]


def hsiphash(word_size: int, data: bytes, k0: int, k1: int) -> int:
    """The kernel's hsiphash() for a kernel of *word_size* bits (64 or 32)."""
    if word_size == 32:
        return hsiphash32(data, k0, k1)
    return hsiphash64(data, k0, k1)


def tab_bits(m: int) -> int:
    """IP_VS_MH_TAB_BITS for table size *m*: CONFIG_IP_VS_MH_TAB_INDEX / 2."""
    return (PRIMES.index(m) + 8) // 2


def hashkey(word_size: int, key: int, fold: int, port: int, offset: int) -> int:
    """ip_vs_mh_hashkey(): hsiphash of v = offset + port + fold (u32)."""
    v = (offset + port + fold) & _M32
    return hsiphash(word_size, v.to_bytes(4, "little"), key, key)


def slot(m: int, word_size: int, fold: int, port: int) -> int:
    """The slot a flow hashes to."""
    return hashkey(word_size, HASH1_KEY, fold, port, 0) % m


def build_table(
    m: int,
    word_size: int,
    folds: Sequence[int],
    ports: Sequence[int],
    weights: Sequence[int],
) -> npt.NDArray[np.uint16]:
    """ip_vs_mh_reassign(): the table of real server indices (list order).

    Raises ValueError when there are more real servers than slots; the
    kernel then keeps the old table.
    """
    folds = [int(f) for f in folds]
    ports = [int(p) for p in ports]
    weights = [int(w) for w in weights]
    n = len(folds)
    if n > m or n > MAX_DESTS:
        raise ValueError(f"{n} real servers do not fit a table of {m} slots")
    positive = [w for w in weights if w > 0]
    g = 0
    for w in positive:
        g = _gcd(w, g) if g else w
    table = [SLOT_EMPTY] * m
    if g == 0:
        return np.array(table, dtype=np.uint16)
    rshift = max(0, (max(weights) // g).bit_length() - tab_bits(m))
    perm, skip, turns = [], [], []
    for fold, port, w in zip(folds, ports, weights):
        perm.append(hashkey(word_size, HASH1_KEY, fold, port, 0) % m)
        skip.append(hashkey(word_size, HASH2_KEY, fold, port, 0) % (m - 1) + 1)
        t = (w // g) >> rshift
        turns.append(t if t else int(w != 0))
    filled = 0
    while True:
        for i in range(n):
            for _ in range(turns[i]):
                c = perm[i]
                while table[c] != SLOT_EMPTY:
                    c += skip[i]
                    if c >= m:
                        c -= m
                perm[i] = c  # the kernel does not step past a claimed slot
                table[c] = i
                filled += 1
                if filled == m:
                    return np.array(table, dtype=np.uint16)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def lookup(
    m: int,
    word_size: int,
    table: Sequence[int],
    avail: Sequence[int],
    fallback: bool,
    fold: int,
    port: int,
) -> int:
    """ip_vs_mh_get() / ip_vs_mh_get_fallback(): real server index or NONE."""
    ihash = slot(m, word_size, fold, port)
    d = int(table[ihash])
    if d == SLOT_EMPTY:
        return NONE
    if avail[d]:
        return d
    if not fallback:
        return NONE
    for off in range(m):
        roff = (off + ihash) % m
        d = int(table[hashkey(word_size, HASH1_KEY, fold, port, roff) % m])
        if d == SLOT_EMPTY:
            break
        if avail[d]:
            return d
    return NONE


def lookup_many(
    m: int,
    word_size: int,
    table: npt.NDArray[np.uint16],
    avail: npt.NDArray[np.uint8],
    fallback: bool,
    folds: npt.NDArray[np.uint32],
    ports: npt.NDArray[np.uint16] | None,
    out: npt.NDArray[np.uint32] | None = None,
) -> npt.NDArray[np.uint32]:
    """lookup() for arrays of folded client addresses and hashed ports.

    *ports* None: no port is hashed (all 0). *out*: array to write into.
    """
    tab = table.tolist()
    av = avail.tolist()
    fl = folds.tolist()
    po = [0] * len(fl) if ports is None else ports.tolist()
    res = [lookup(m, word_size, tab, av, fallback, f, p) for f, p in zip(fl, po)]
    if out is None:
        return np.array(res, dtype=np.uint32)
    if out.shape != (len(res),):
        raise ValueError("out differs in length from the flows")
    out[:] = res
    return out


def lookup_many6(
    m: int,
    word_size: int,
    table: npt.NDArray[np.uint16],
    avail: npt.NDArray[np.uint8],
    fallback: bool,
    addrs: npt.NDArray[np.uint32] | npt.NDArray[np.uint8],
    ports: npt.NDArray[np.uint16] | None,
    out: npt.NDArray[np.uint32] | None = None,
) -> npt.NDArray[np.uint32]:
    """lookup_many() for IPv6 addresses: (n, 4) uint32 words or (n, 16) bytes."""
    if addrs.dtype == np.uint8:
        addrs = addrs.view(">u4").astype(np.uint32)
    folds = addrs[:, 0] ^ addrs[:, 1] ^ addrs[:, 2] ^ addrs[:, 3]
    return lookup_many(m, word_size, table, avail, fallback, folds, ports, out)


class Scheduler:
    """A table and its availability, for lookups of one flow at a time."""

    def __init__(
        self,
        m: int,
        word_size: int,
        table: npt.NDArray[np.uint16],
        avail: npt.NDArray[np.uint8],
        fallback: bool,
    ) -> None:
        if len(table) != m:
            raise ValueError("table size differs from m")
        if any(d != SLOT_EMPTY and d >= len(avail) for d in table.tolist()):
            raise ValueError("table refers to a real server beyond avail")
        self.args = (m, word_size, table.tolist(), avail.tolist(), fallback)
        self.arrays = (m, word_size, table, avail, fallback)

    def lookup(self, fold: int, port: int) -> int:
        """As module-level lookup(): real server index or NONE."""
        return lookup(*self.args, fold, port)

    def lookup_many(
        self,
        folds: npt.NDArray[np.uint32],
        ports: npt.NDArray[np.uint16] | None,
        out: npt.NDArray[np.uint32] | None = None,
    ) -> npt.NDArray[np.uint32]:
        """Module-level lookup_many() with this table and availability."""
        m, word_size, table, avail, fallback = self.arrays
        return lookup_many(m, word_size, table, avail, fallback, folds, ports, out)

    def lookup_many6(
        self,
        addrs: npt.NDArray[np.uint32] | npt.NDArray[np.uint8],
        ports: npt.NDArray[np.uint16] | None,
        out: npt.NDArray[np.uint32] | None = None,
    ) -> npt.NDArray[np.uint32]:
        """Module-level lookup_many6() with this table and availability."""
        m, word_size, table, avail, fallback = self.arrays
        return lookup_many6(m, word_size, table, avail, fallback, addrs, ports, out)

    def lookup_text(self, family: int, text: str, port: int) -> int:
        """lookup() for a client address as text, as inet_pton() reads it.

        Returns -1 when *text* is not an IPv*family* address to inet_pton().
        """
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        try:
            n = int.from_bytes(socket.inet_pton(af, text), "big")
        except (OSError, ValueError, UnicodeError):
            return -1
        return self.lookup(n if family == 4 else _fold6(n), port)


def _fold6(n: int) -> int:
    return (n >> 96 ^ n >> 64 ^ n >> 32 ^ n) & _M32


KERNEL_REFERENCE = "v6.1 net/netfilter/ipvs/ip_vs_mh.c"
