"""hsiphash against the kernel's own known-answer vectors (lib/test_siphash.c)."""

from pathlib import Path

import pytest

KAT = Path(__file__).parent / "vectors" / "hsiphash-kat.txt"
KEYS = {
    64: (0x0706050403020100, 0x0F0E0D0C0B0A0908),
    32: (0x03020100, 0x07060504),
}


def _vectors():
    for line in KAT.read_text().splitlines():
        if line and not line.startswith("#"):
            ws, n, h = line.split()
            yield int(ws), int(n), int(h, 16)


VECTORS = list(_vectors())


def test_vector_file_is_complete():
    assert sorted((ws, n) for ws, n, _ in VECTORS) == sorted(
        (ws, n) for ws in (64, 32) for n in range(64)
    )


@pytest.mark.parametrize(
    "word_size,length,expected", VECTORS, ids=[f"{w}-{n}" for w, n, _ in VECTORS]
)
def test_kernel_vector(core, word_size, length, expected):
    k0, k1 = KEYS[word_size]
    assert core.hsiphash(word_size, bytes(range(length)), k0, k1) == expected


@pytest.mark.parametrize("word_size", [64, 32])
def test_u32_fast_path_equals_byte_path(core, word_size):
    # ip_vs_mh hashes one u32 through the fast path; vector 4 pins it.
    key = 2654435761
    for v in (0, 1, 0x0A000001, 0xFFFFFFFF, 0x12345678):
        assert core.hashkey(word_size, key, v, 0, 0) == core.hsiphash(
            word_size, v.to_bytes(4, "little"), key, key
        )


def test_word_sizes_differ(core):
    data = (0x0A000001).to_bytes(4, "little")
    assert core.hsiphash(64, data, 1, 1) != core.hsiphash(32, data, 1, 1)
