"""Frozen 32-bit vectors: what Debian's real i386 kernel chose, replayed without a VM.

tests/vectors/kernel-6.1-686-pae.txt.gz was captured by
tests/kernel/ipvs_vm/capture_vectors_i386.py (its header says from which kernel, ipvsadm,
date and command). Every flow must come out the same from maglevx with
``word_size=32``; the 64-bit model must not (a 32-bit director is different).
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
from frozen import Case, load

import maglevx

VECTORS = Path(__file__).resolve().parent / "vectors" / "kernel-6.1-686-pae.txt.gz"


HEADER, CASES = load(VECTORS)


def _choice(rs) -> tuple[str, int] | None:
    return None if rs is None else (str(rs.address), rs.port)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return ipaddress.ip_address(a[0]) == ipaddress.ip_address(b[0]) and a[1] == b[1]


def _predict(case: Case, word_size: int) -> list[tuple[str, int] | None]:
    d = maglevx.Director.from_history(case.history, word_size=word_size)
    return [_choice(maglevx.lookup(f, d)) for f in case.flows]


def test_vectors_are_substantial_and_documented():
    text = "\n".join(HEADER)
    for what in ("# kernel: ", "# ipvsadm: ", "# captured: ", " with: python "):
        assert what in text, f"header lacks {what!r}"
    assert "word size 32" in text
    assert len(CASES) >= 10
    assert sum(len(c.flows) for c in CASES) >= 5000


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kernel_choice_equals_word_size_32(case):
    got = _predict(case, 32)
    bad = [
        (f, want, have)
        for f, want, have in zip(case.flows, case.expected, got)
        if not _same(want, have)
    ]
    assert bad == [], f"{len(bad)}/{len(case.flows)} differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("name", ["typical-10-equal", "typical-10-equal-mh-port"])
def test_cli_replays_case(tmp_path, name):
    """The documented command line gives the kernel's answer, line for line."""
    case = next(c for c in CASES if c.name == name)
    hist = tmp_path / "history"
    hist.write_text("\n".join(case.history) + "\n")
    flows = tmp_path / "flows.csv"
    flows.write_text("".join(",".join(map(str, f)) + "\n" for f in case.flows))
    out = subprocess.run(
        [sys.executable, "-m", "maglevx", "predict", "--history", str(hist)]
        + ["--word-size", "32", str(flows)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    want = [
        ",".join(map(str, f)) + ("," + ",".join(map(str, e)) if e else ",,")
        for f, e in zip(case.flows, case.expected)
    ]
    assert out == want


@pytest.mark.parametrize("name", ["typical-10-equal", "typical-10-equal-mh-port"])
def test_word_size_64_disagrees(name):
    """Ten equal servers: a 64-bit director sends ~90% of these flows elsewhere."""
    case = next(c for c in CASES if c.name == name)
    got = _predict(case, 64)
    differ = sum(not _same(w, h) for w, h in zip(case.expected, got))
    assert differ > 0.8 * len(case.flows), f"{differ}/{len(case.flows)}"
