"""Frozen vectors: what Debian's real amd64 kernels chose, replayed without a VM.

tests/vectors/kernel-6.1-amd64.txt.gz and kernel-6.12-amd64.txt.gz were captured by
tests/kernel/ipvs_vm/capture_vectors.py (each file's header names the kernel package and
``uname -r``, ipvsadm, the date and the command). Every flow of every case must
come out of maglevx (upstream variant, 64-bit, M = 4093) as the kernel chose it.
One test per case, so a failure names the scenario and its history.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from frozen import load

import maglevx

VECTORS = Path(__file__).resolve().parent / "vectors"
FILES = ("kernel-6.1-amd64.txt.gz", "kernel-6.12-amd64.txt.gz")


LOADED = {name: load(VECTORS / name) for name in FILES if (VECTORS / name).exists()}
PARAMS = [
    pytest.param(case, id=f"{name.split('-amd64')[0]}-{case.name}")
    for name, (_, cases) in LOADED.items()
    for case in cases
]


def _same(got, want) -> bool:
    if got is None or want is None:
        return got is want
    return ipaddress.ip_address(got[0]) == ipaddress.ip_address(want[0]) and (
        got[1] == want[1]
    )


@pytest.mark.parametrize("case", PARAMS)
def test_case_matches_kernel(case):
    director = maglevx.Director.from_history(case.history)
    bad = []
    for flow, want in zip(case.flows, case.expected):
        rs = maglevx.lookup(flow, director)
        got = None if rs is None else (str(rs.address), rs.port)
        if not _same(got, want):
            bad.append(f"{','.join(map(str, flow))}: kernel {want}, maglevx {got}")
    assert not bad, f"{len(bad)} of {len(case.flows)} flows differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("name", FILES)
def test_vectors_are_there_and_described(name):
    assert name in LOADED, f"tests/vectors/{name} missing"
    header, cases = LOADED[name]
    text = "\n".join(header)
    for what in ("# kernel:", "uname -r", "# ipvsadm:", "# captured:", "0 mismatches"):
        assert what in text
    flows = sum(len(c.flows) for c in cases)
    assert flows >= (5000 if "6.1-" in name else 2000)


def test_vectors_cover_the_space():
    """Every flag combination, -E edits, v4/v6, tcp/udp, weight 0, re-adds, -g/-i."""
    hist = [h for _, cases in LOADED.values() for c in cases for h in c.history]
    flows = [f for _, cases in LOADED.values() for c in cases for f in c.flows]
    text = "\n".join(hist)
    for needle in (
        "-b mh-port",
        "-b mh-fallback\n",
        "-b mh-fallback,mh-port",
        "-E ",
        "-w 0",
        "-d ",
        "-D ",
        " -g",
        " -i",
        " -u ",
        " -t [",
    ):
        assert needle in text, needle
    assert {f[0] for f in flows} == {"tcp", "udp"}
    assert any(":" in f[1] for f in flows)
    expected = [e for _, cases in LOADED.values() for c in cases for e in c.expected]
    assert None in expected
