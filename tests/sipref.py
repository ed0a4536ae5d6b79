"""SipHash-1-3 and HalfSipHash-1-3 written from the papers, for tests only.

An independent reference for the C core, the twin and the kernel module
when they use keys other than the kernel's fixed ones (the kernel's own
vectors, tests/vectors/hsiphash-kat.txt, cover one key per word size):
Aumasson & Bernstein, "SipHash: a fast short-input PRF" (INDOCRYPT 2012),
and the HalfSipHash reference code of the same authors, with c = 1
compression and d = 3 finalization rounds as the kernel's hsiphash(). Bytes
in, a byte key, little-endian words; SipHash's 64-bit result is truncated to
its low 32 bits as the kernel's hsiphash() does on 64-bit kernels.
"""

from __future__ import annotations

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def _rotl(x: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    return ((x << b) | (x >> (bits - b))) & mask


def siphash13_32(msg: bytes, key: bytes) -> int:
    """SipHash-1-3 with a 16-byte key, low 32 bits of the 64-bit result."""
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:16], "little")
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]

    def rnd() -> None:
        v[0] = (v[0] + v[1]) & M64
        v[1] = _rotl(v[1], 13, 64) ^ v[0]
        v[0] = _rotl(v[0], 32, 64)
        v[2] = (v[2] + v[3]) & M64
        v[3] = _rotl(v[3], 16, 64) ^ v[2]
        v[0] = (v[0] + v[3]) & M64
        v[3] = _rotl(v[3], 21, 64) ^ v[0]
        v[2] = (v[2] + v[1]) & M64
        v[1] = _rotl(v[1], 17, 64) ^ v[2]
        v[2] = _rotl(v[2], 32, 64)

    n = len(msg)
    blocks = [msg[i : i + 8] for i in range(0, n - n % 8, 8)]
    last = msg[n - n % 8 :] + bytes(7 - n % 8) + bytes([n & 0xFF])
    for b in [*blocks, last]:
        m = int.from_bytes(b, "little")
        v[3] ^= m
        rnd()
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(3):
        rnd()
    return (v[0] ^ v[1] ^ v[2] ^ v[3]) & M32


def halfsiphash13(msg: bytes, key: bytes) -> int:
    """HalfSipHash-1-3 with an 8-byte key, 32-bit result."""
    k0 = int.from_bytes(key[:4], "little")
    k1 = int.from_bytes(key[4:8], "little")
    v = [k0, k1, k0 ^ 0x6C796765, k1 ^ 0x74656462]

    def rnd() -> None:
        v[0] = (v[0] + v[1]) & M32
        v[1] = _rotl(v[1], 5, 32) ^ v[0]
        v[0] = _rotl(v[0], 16, 32)
        v[2] = (v[2] + v[3]) & M32
        v[3] = _rotl(v[3], 8, 32) ^ v[2]
        v[0] = (v[0] + v[3]) & M32
        v[3] = _rotl(v[3], 7, 32) ^ v[0]
        v[2] = (v[2] + v[1]) & M32
        v[1] = _rotl(v[1], 13, 32) ^ v[2]
        v[2] = _rotl(v[2], 16, 32)

    n = len(msg)
    blocks = [msg[i : i + 4] for i in range(0, n - n % 4, 4)]
    last = msg[n - n % 4 :] + bytes(3 - n % 4) + bytes([n & 0xFF])
    for b in [*blocks, last]:
        m = int.from_bytes(b, "little")
        v[3] ^= m
        rnd()
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(3):
        rnd()
    return v[1] ^ v[3]
