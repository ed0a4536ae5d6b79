"""The bulk lookup path (csrc/mx_bulk.c) gives the kernel's `%` path's results."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from maglevx import _core, _twin

ROOT = Path(__file__).resolve().parent.parent
PRIMES = _twin.PRIMES


@pytest.mark.parametrize(
    "flags", [["-m64"], ["-m64", "-DMX_NO_VECTOR_CLONES"], ["-m32"]]
)
def test_fastmod_is_the_remainder(tmp_path, flags):
    """mx_fastmod() == `%` for every table size, on dense and boundary values.

    Also every divisor 2..2^17 on boundary values (q*d - 1, q*d, q*d + 1),
    and mx_bulk_lookup() == mx_lookup_many() with and without the
    vectorized clone.
    """
    arch = flags[0]
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "fastmod_check"
    build = subprocess.run(
        [
            cc,
            *flags,
            "-O3",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{ROOT / 'csrc'}",
            str(ROOT / "tests/c/fastmod_check.c"),
            str(ROOT / "csrc/mx_bulk.c"),
            str(ROOT / "csrc/mx_maglev.c"),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0 and arch == "-m32":
        pytest.skip(f"cannot build {arch} programs here: {build.stderr[-200:]}")
    assert build.returncode == 0, build.stderr
    args = [str(m) for m in PRIMES] + (["all"] if len(flags) == 1 else [])
    run = subprocess.run([str(exe), *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def _table(m, word_size, n, seed):
    rng = np.random.default_rng(seed)
    folds = rng.integers(0, 2**32, n, dtype=np.uint32)
    ports = rng.integers(0, 65536, n, dtype=np.uint32)
    weights = rng.integers(0, 5, n, dtype=np.uint32)
    return _core.build_table(m, word_size, folds, ports, weights), weights


def _per_flow(m, word_size, table, avail, fallback, folds, ports):
    ports = np.zeros(len(folds), np.uint16) if ports is None else ports
    return np.array(
        [
            _core.Scheduler(m, word_size, table, avail, fallback).lookup(int(f), int(p))
            for f, p in zip(folds, ports)
        ],
        np.uint32,
    )


@pytest.mark.parametrize("m", PRIMES)
@pytest.mark.parametrize("word_size", [64, 32])
@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.parametrize("hash_port", [False, True])
def test_bulk_equals_per_flow(m, word_size, fallback, hash_port):
    table, weights = _table(m, word_size, 40, m + word_size)
    avail = (weights > 0).astype(np.uint8)
    avail[::4] = 0  # drained servers exercise the fallback probes
    rng = np.random.default_rng(m)
    n = 3001  # not a multiple of the block size
    folds = rng.integers(0, 2**32, n, dtype=np.uint32)
    folds[:4] = [0, 1, 2**32 - 1, 2**31]
    ports = rng.integers(0, 65536, n, dtype=np.uint16) if hash_port else None
    expected = _per_flow(m, word_size, table, avail, fallback, folds, ports)
    np.testing.assert_array_equal(
        _core.Scheduler(m, word_size, table, avail, fallback).lookup_many(folds, ports),
        expected,
    )


@pytest.mark.parametrize("word_size", [64, 32])
@pytest.mark.parametrize("hash_port", [False, True])
def test_bulk6_folds_words_and_bytes(word_size, hash_port):
    m = 4093
    table, weights = _table(m, word_size, 30, 7)
    avail = (weights > 0).astype(np.uint8)
    rng = np.random.default_rng(6)
    n = 1000
    words = rng.integers(0, 2**32, (n, 4), dtype=np.uint32)
    raw = np.ascontiguousarray(words.astype(">u4")).view(np.uint8).reshape(n, 16)
    ports = rng.integers(0, 65536, n, dtype=np.uint16) if hash_port else None
    folds = words[:, 0] ^ words[:, 1] ^ words[:, 2] ^ words[:, 3]
    expected = _per_flow(m, word_size, table, avail, True, folds, ports)
    for core in (_core, _twin):
        for addrs in (words, raw):
            np.testing.assert_array_equal(
                core.Scheduler(m, word_size, table, avail, True).lookup_many6(
                    addrs, ports
                ),
                expected,
            )


def test_empty_and_mismatched_inputs():
    table, weights = _table(251, 64, 5, 1)
    avail = np.ones(5, np.uint8)
    empty = np.zeros(0, np.uint32)
    assert _core.Scheduler(251, 64, table, avail, False).lookup_many(
        empty, None
    ).shape == (0,)
    assert _core.Scheduler(251, 64, table, avail, False).lookup_many6(
        np.zeros((0, 4), np.uint32), None
    ).shape == (0,)
    with pytest.raises(ValueError, match="differ in length"):
        _core.Scheduler(251, 64, table, avail, False).lookup_many(
            np.zeros(3, np.uint32), np.zeros(2, np.uint16)
        )
    with pytest.raises(ValueError, match="beyond avail"):
        _core.Scheduler(251, 64, table, avail[:2], False).lookup_many(empty, None)
    all_empty = np.full(251, _core.SLOT_EMPTY, np.uint16)
    out = _core.Scheduler(251, 64, all_empty, np.zeros(0, np.uint8), False).lookup_many(
        np.arange(3, dtype=np.uint32), None
    )
    assert (out == _core.NONE).all()
