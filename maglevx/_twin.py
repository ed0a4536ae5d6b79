"""Pure-Python twin of the C core in ``csrc/``: readable, slow, exact.

Every function here has a C counterpart in ``csrc/mx_maglev.[ch]`` or
``csrc/mx_hsiphash.[ch]`` and must give identical results; the test suite
checks that on randomized inputs. Read this file to learn the algorithm.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Sequence
from functools import partial
from typing import Literal

import numpy as np
import numpy.typing as npt

from maglevx.addresses import fold_int

PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
HASH1_KEY = 2654435761
HASH2_KEY = 2654446892
SLOT_EMPTY = 0xFFFF
NONE = 0xFFFFFFFF
MAX_DESTS = 0xFFFE
KERNEL_REFERENCE = "v6.1 net/netfilter/ipvs/ip_vs_mh.c"

_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1


# rotations of SipRound (64-bit words) and HalfSipRound (32-bit words)
_ROTATIONS = {64: (13, 32, 16, 21, 17, 32), 32: (5, 16, 8, 7, 13, 16)}


def _rol(x: int, r: int, bits: int, mask: int) -> int:
    return ((x << r) | (x >> (bits - r))) & mask


def _sipround(v: list[int], bits: int, mask: int, r: tuple[int, ...]) -> None:
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & mask
    v1 = _rol(v1, r[0], bits, mask) ^ v0
    v0 = _rol(v0, r[1], bits, mask)
    v2 = (v2 + v3) & mask
    v3 = _rol(v3, r[2], bits, mask) ^ v2
    v0 = (v0 + v3) & mask
    v3 = _rol(v3, r[3], bits, mask) ^ v0
    v2 = (v2 + v1) & mask
    v1 = _rol(v1, r[4], bits, mask) ^ v2
    v2 = _rol(v2, r[5], bits, mask)
    v[:] = [v0, v1, v2, v3]


def _sip13(data: bytes, v: list[int], bits: int) -> list[int]:
    """SipHash-1-3 on *bits*-bit words from state *v*: the state at the end."""
    size, mask, r = bits // 8, (1 << bits) - 1, _ROTATIONS[bits]
    n = len(data)
    end = n - n % size
    words = [int.from_bytes(data[i : i + size], "little") for i in range(0, end, size)]
    # the last word: the length's low byte in the top byte, the tail below
    words.append((n << (bits - 8)) & mask | int.from_bytes(data[end:], "little"))
    for m in words:
        v[3] ^= m
        _sipround(v, bits, mask, r)
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(3):
        _sipround(v, bits, mask, r)
    return v


def hsiphash64(data: bytes, k0: int, k1: int) -> int:
    """hsiphash() of a 64-bit kernel: SipHash-1-3, low 32 bits."""
    v = [
        0x736F6D6570736575 ^ k0,
        0x646F72616E646F6D ^ k1,
        0x6C7967656E657261 ^ k0,
        0x7465646279746573 ^ k1,
    ]
    v = _sip13(data, v, 64)
    return (v[0] ^ v[1] ^ v[2] ^ v[3]) & _M32


def hsiphash32(data: bytes, k0: int, k1: int) -> int:
    """hsiphash() of a 32-bit kernel: HalfSipHash-1-3."""
    v = _sip13(data, [k0, k1, 0x6C796765 ^ k0, 0x74656462 ^ k1], 32)
    return v[1] ^ v[3]


def hsiphash(word_size: int, data: bytes, k0: int, k1: int) -> int:
    """The kernel's hsiphash() for a kernel of *word_size* bits (64 or 32)."""
    if word_size == 32:
        return hsiphash32(data, k0, k1)
    return hsiphash64(data, k0, k1)


def tab_bits(m: int) -> int:
    """IP_VS_MH_TAB_BITS for table size *m*: CONFIG_IP_VS_MH_TAB_INDEX / 2."""
    return (PRIMES.index(m) + 8) // 2


def hash_keys(
    word_size: int, hash_key: bytes | None = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The hsiphash key words of H1 and H2 (mx_params_init / mx_params_set_key).

    *hash_key*: None for the kernel's fixed keys (both words of each key the
    constant), or the module's 16-byte secret K: on 64-bit kernels H1 is
    keyed with K (little-endian words) and H2 with its complement; on
    32-bit kernels H1 with K[0:8] and H2 with K[8:16] (kmod/README.md).
    """
    if word_size not in (64, 32):
        raise ValueError(f"word size {word_size} is not 64 or 32")
    if hash_key is None:
        return (HASH1_KEY, HASH1_KEY), (HASH2_KEY, HASH2_KEY)
    if not isinstance(hash_key, bytes) or len(hash_key) != 16:
        raise ValueError("hash_key must be 16 bytes")
    if word_size == 64:
        k0 = int.from_bytes(hash_key[:8], "little")
        k1 = int.from_bytes(hash_key[8:], "little")
        return (k0, k1), (k0 ^ _M64, k1 ^ _M64)
    w = [int.from_bytes(hash_key[i : i + 4], "little") for i in range(0, 16, 4)]
    return (w[0], w[1]), (w[2], w[3])


def _check_byte_order(byte_order: str) -> Literal["little", "big"]:
    if byte_order == "little":
        return "little"
    if byte_order == "big":
        return "big"
    raise ValueError(f"byte order {byte_order!r} is not 'little' or 'big'")


def _hash(
    ws: int, key: tuple[int, int], order: Literal["little", "big"], v: int
) -> int:
    """mx_hash(): hsiphash of the u32 *v* as the director's CPU stores it."""
    return hsiphash(ws, (v & _M32).to_bytes(4, order), *key)


def hashkey(
    word_size: int,
    key: int,
    fold: int,
    port: int,
    offset: int,
    *,
    byte_order: str = "little",
    hash_key: bytes | None = None,
) -> int:
    """ip_vs_mh_hashkey(): hsiphash of v = offset + port + fold (u32).

    *key*: HASH1_KEY or HASH2_KEY, which of the two hashes (its key words
    come from *hash_key*, see hash_keys()). *byte_order*: the director's
    CPU; the kernel hashes the 4 bytes of v as the CPU stores them.
    """
    if key not in (HASH1_KEY, HASH2_KEY):
        raise ValueError(f"key {key} is not HASH1_KEY or HASH2_KEY")
    k = hash_keys(word_size, hash_key)[key == HASH2_KEY]
    return _hash(word_size, k, _check_byte_order(byte_order), offset + port + fold)


def slot(
    m: int,
    word_size: int,
    fold: int,
    port: int,
    *,
    byte_order: str = "little",
    hash_key: bytes | None = None,
) -> int:
    """The slot a flow hashes to."""
    h = hashkey(
        word_size, HASH1_KEY, fold, port, 0, byte_order=byte_order, hash_key=hash_key
    )
    return h % m


def quantize(m: int, weights: Sequence[int]) -> tuple[int, int, list[int]]:
    """The kernel's weight quantization: (gcd, rshift, turns per server).

    ip_vs_mh_gcd_weight() and ip_vs_mh_shift_weight(): turns =
    (weight / gcd) >> rshift, or 1 for a non-zero weight that shifts to 0.
    """
    weights = [int(w) for w in weights]
    g = math.gcd(*(w for w in weights if w > 0))
    if g == 0:
        return 0, 0, [0] * len(weights)
    rshift = max(0, (max(weights) // g).bit_length() - tab_bits(m))
    turns = [((w // g) >> rshift) or int(w != 0) for w in weights]
    return g, rshift, turns


def build_table(
    m: int,
    word_size: int,
    folds: Sequence[int],
    ports: Sequence[int],
    weights: Sequence[int],
    *,
    byte_order: str = "little",
    hash_key: bytes | None = None,
) -> npt.NDArray[np.uint16]:
    """ip_vs_mh_reassign(): the table of real server indices (list order).

    Returns a read-only array. Raises ValueError when there are more real
    servers than slots; the kernel then keeps the old table. *byte_order*
    and *hash_key* as for hashkey().
    """
    keys = hash_keys(word_size, hash_key)  # checked before any work
    order = _check_byte_order(byte_order)
    folds = [int(f) for f in folds]
    ports = [int(p) for p in ports]
    n = len(folds)
    if len(ports) != n or len(weights) != n:
        raise ValueError("folds, ports and weights differ in length")
    if n > m or n > MAX_DESTS:
        raise ValueError(f"{n} real servers do not fit a table of {m} slots")
    g, _, turns = quantize(m, weights)
    table = [SLOT_EMPTY] * m
    if g == 0:
        return _frozen(table, np.uint16)
    perm, skip = [], []
    for fold, port in zip(folds, ports):
        perm.append(_hash(word_size, keys[0], order, fold + port) % m)
        skip.append(_hash(word_size, keys[1], order, fold + port) % (m - 1) + 1)
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
                    return _frozen(table, np.uint16)


def _frozen(values: object, dtype: type) -> npt.NDArray:  # type: ignore[type-arg]
    a: npt.NDArray = np.array(values, dtype=dtype, copy=True, order="C")  # type: ignore[type-arg]
    a.flags.writeable = False
    return a


def parse_addresses(family: int, texts: Sequence[object]) -> tuple[npt.NDArray, int]:  # type: ignore[type-arg]
    """Client addresses as text, as inet_pton() reads them (see _core)."""
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    raw = []
    for i, text in enumerate(texts):
        if type(text) is not str:
            return np.zeros(0, np.uint32), i
        try:
            raw.append(socket.inet_pton(af, text))
        except (OSError, ValueError, UnicodeError):
            return np.zeros(0, np.uint32), i
    if family == 4:
        return np.array([int.from_bytes(b, "big") for b in raw], np.uint32), -1
    return np.frombuffer(b"".join(raw), np.uint8).reshape(-1, 16).copy(), -1


class Scheduler:
    """A table and its availability, for any number of lookups (see _core)."""

    def __init__(
        self,
        m: int,
        word_size: int,
        table: npt.ArrayLike,
        avail: npt.ArrayLike,
        fallback: bool,
        *,
        byte_order: str = "little",
        hash_key: bytes | None = None,
    ) -> None:
        if m not in PRIMES or word_size not in (32, 64):
            raise ValueError(f"table size {m} / word size {word_size} not supported")
        self._h1 = hash_keys(word_size, hash_key)[0]
        self.byte_order = _check_byte_order(byte_order)
        self.hash_key = hash_key
        t = _frozen(table, np.uint16)
        a = _frozen(avail, np.uint8)
        if t.ndim != 1 or t.shape[0] != m:
            raise ValueError(f"the table has {t.size} slots, not {m}")
        if a.ndim != 1:
            raise ValueError("avail must be one-dimensional")
        used = t[t != SLOT_EMPTY]
        if used.size and int(used.max()) >= a.shape[0]:
            raise ValueError("table refers to a real server beyond avail")
        self.m = m
        self.word_size = word_size
        self.table = t
        self.avail = a
        self.fallback = bool(fallback)
        self._tab = t.tolist()
        self._av = a.tolist()

    def __reduce__(self) -> tuple[object, ...]:
        new = partial(Scheduler, byte_order=self.byte_order, hash_key=self.hash_key)
        return new, (self.m, self.word_size, self.table, self.avail, self.fallback)

    def trace(self, fold: int, port: int) -> list[tuple[int, int]]:
        """The slots lookup() reads, in order: a list of (slot, entry).

        ip_vs_mh_get() reads one slot; ip_vs_mh_get_fallback() goes on
        while that slot's server is unavailable, hashing the offset into
        the key, and stops at an empty slot, an available server, or after
        M probes.
        """
        m, ws, order, h1 = self.m, self.word_size, self.byte_order, self._h1
        ihash = _hash(ws, h1, order, fold + port) % m
        d = self._tab[ihash]
        probes = [(ihash, d)]
        if d == SLOT_EMPTY or self._av[d] or not self.fallback:
            return probes
        for off in range(m):
            h = _hash(ws, h1, order, (off + ihash) % m + port + fold) % m
            d = self._tab[h]
            probes.append((h, d))
            if d == SLOT_EMPTY or self._av[d]:
                break
        return probes

    def lookup(self, fold: int, port: int) -> int:
        """ip_vs_mh_get() / ip_vs_mh_get_fallback(): real server index or NONE."""
        _, d = self.trace(fold, port)[-1]
        return d if d != SLOT_EMPTY and self._av[d] else NONE

    def lookup_text(self, family: int, text: str, port: int) -> int:
        """lookup() for a client address as text, as inet_pton() reads it.

        Returns -1 when *text* is not an IPv*family* address to inet_pton().
        """
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        try:
            n = int.from_bytes(socket.inet_pton(af, text), "big")
        except (OSError, ValueError, UnicodeError):
            return -1
        return self.lookup(fold_int(n, family), port)

    def lookup_many(
        self,
        folds: npt.NDArray[np.uint32],
        ports: npt.NDArray[np.uint16] | None = None,
        out: npt.NDArray[np.uint32] | None = None,
    ) -> npt.NDArray[np.uint32]:
        """lookup() over arrays; *ports* None: no port hashed; *out*: reuse."""
        fl = _checked(folds, np.uint32, 1, "folds").tolist()
        n = len(fl)
        if ports is None:
            po = [0] * n
        else:
            po = _checked(ports, np.uint16, 1, "ports").tolist()
            if len(po) != n:
                raise ValueError("folds and ports differ in length")
        res = [self.lookup(f, p) for f, p in zip(fl, po)]
        if out is None:
            return np.array(res, dtype=np.uint32)
        o = _checked(out, np.uint32, 1, "out")
        if o.shape[0] != n:
            raise ValueError("out differs in length from the flows")
        if not o.flags.writeable:
            raise ValueError("out is read-only")
        o[:] = res
        return out

    def lookup_many6(
        self,
        addrs: npt.NDArray[np.uint32] | npt.NDArray[np.uint8],
        ports: npt.NDArray[np.uint16] | None = None,
        out: npt.NDArray[np.uint32] | None = None,
    ) -> npt.NDArray[np.uint32]:
        """lookup_many() for IPv6 addresses: (n, 4) uint32 words or (n, 16) bytes."""
        if getattr(addrs, "dtype", None) == np.uint8:
            raw = _checked(addrs, np.uint8, 2, "addrs")
            if raw.shape[1] != 16:
                raise ValueError("IPv6 addresses as bytes must have shape (n, 16)")
            words = raw.view(">u4").astype(np.uint32)
        else:
            words = _checked(addrs, np.uint32, 2, "addrs")
            if words.shape[1] != 4:
                raise ValueError("IPv6 addresses as words must have shape (n, 4)")
        folds = np.bitwise_xor.reduce(words, axis=1)
        if ports is not None and len(ports) != folds.shape[0]:
            raise ValueError("addresses and ports differ in length")
        return self.lookup_many(folds, ports, out)


def _checked(a: object, dtype: type, ndim: int, what: str) -> npt.NDArray:  # type: ignore[type-arg]
    """*a* as the C core's typed memoryviews accept it, else ValueError."""
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
        raise ValueError(f"{what}: expected a {ndim}-d {np.dtype(dtype).name} array")
    if not a.flags.c_contiguous:
        raise ValueError(f"{what}: not C-contiguous")
    return a
