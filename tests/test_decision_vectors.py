"""Replay what Debian's real kernels decided in the decision scenarios, without a VM.

tests/vectors/decision-*.json.gz were captured by
tests/kernel/ipvs_vm/capture_decision_vectors.py (header fields name kernel, ipvsadm, date
and command): one scenario of every theme of tests/kernel/ipvs_vm/decision.py.
One director is carried across a scenario's phases, as the kernel's network
namespace was; every flow's real server (or none, and for UDP whether the packet
passed or was dropped), every one-packet datagram and every persistence template
must equal maglevx's.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
from pathlib import Path

import numpy as np
import pytest

import maglevx
from maglevx import decision

VECTORS = sorted((Path(__file__).parent / "vectors").glob("decision-*.json.gz"))


def _load(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)


def _director(scenario: dict) -> maglevx.Director:
    """An empty director with the scenario's sysctl, as its network namespace was."""
    sysctl = scenario["meta"].get("sysctl", {})
    return maglevx.Director(
        expire_quiescent_template=bool(sysctl.get("expire_quiescent_template"))
    )


CASES = [
    (p, i, s["scenario"]["name"])
    for p in VECTORS
    for i, s in enumerate(_load(p)["scenarios"])
]


def test_vectors_present():
    assert {p.name for p in VECTORS} >= {
        "decision-6.1-amd64.json.gz",
        "decision-6.12-amd64.json.gz",
    }


@pytest.mark.parametrize(
    "path,index",
    [(p, i) for p, i, _ in CASES],
    ids=[f"{p.name}-{n}" for p, _, n in CASES],
)
def test_scenario_replays(path, index):
    data = _load(path)["scenarios"][index]
    sc = data["scenario"]
    d = _director(sc)
    bad = []
    for j, (ph, got) in enumerate(zip(sc["phases"], data["phases"])):
        for line in ph["history"]:
            d.apply(line)
        ops = {
            (ipaddress.ip_address(c), p): (dd, dp) for c, p, dd, dp in got["one_packet"]
        }
        for flow, (raddr, rport, status) in zip(ph["flows"], got["kernel"]):
            f = flow.split(",")
            mark = int(f[5]) if len(f) > 5 else 0
            dec = decision.decide(
                d, (f[0], f[1], int(f[2]), f[3], int(f[4])), fwmark=mark
            )
            kernel = (raddr, rport) if raddr else None
            if kernel is None and dec.one_packet:
                kernel = ops.get((ipaddress.ip_address(f[1]), int(f[2])))
                kernel = None if kernel is None else tuple(kernel)
            model = None if dec.server is None else (str(dec.server.address), dec.port)
            same = (kernel is None and model is None) or (
                kernel is not None
                and model is not None
                and ipaddress.ip_address(kernel[0]) == ipaddress.ip_address(model[0])
                and kernel[1] == model[1]
            )
            if same and model is None and f[0] == "udp":
                same = (status == "s") == dec.passed
            if not same:
                bad.append((j, flow, kernel, status, model, dec.outcome))
        want = {
            (
                p,
                ipaddress.ip_address(c),
                ipaddress.ip_address(v),
                vp,
                ipaddress.ip_address(da),
                dp,
            )
            for p, c, v, vp, da, dp in got["templates"]
        }
        have = {
            (t.protocol, t.client, t.vaddr, t.vport, t.daddr, t.dport)
            for t in d.templates
        }
        assert have == want, (
            f"phase {j}: kernel only {want - have}, maglevx only {have - want}"
        )
    assert not bad, f"{len(bad)} flows differ, e.g. {bad[:3]}"


@pytest.mark.parametrize(
    "path,index",
    [(p, i) for p, i, _ in CASES],
    ids=[f"{p.name}-{n}" for p, _, n in CASES],
)
def test_scenario_replays_in_bulk(path, index):
    """The bulk column API makes the kernel's decisions and templates too.

    Each phase's flows go through ``Director.lookup_many`` as numpy columns
    (marks included), in one call, so templates are shared in input order.
    UDP flows the kernel answered with one-packet datagrams only are left
    out of the comparison (no connection entry records them).
    """
    data = _load(path)["scenarios"][index]
    sc = data["scenario"]
    d = _director(sc)
    bad = []
    for j, (ph, got) in enumerate(zip(sc["phases"], data["phases"])):
        for line in ph["history"]:
            d.apply(line)
        rows = [flow.split(",") for flow in ph["flows"]]
        if not rows:
            continue
        one_packet = {(ipaddress.ip_address(c), p) for c, p, _, _ in got["one_packet"]}
        servers = d.lookup_many(
            [f[0] for f in rows],
            [f[1] for f in rows],
            np.array([int(f[2]) for f in rows], np.uint16),
            [f[3] for f in rows],
            np.array([int(f[4]) for f in rows], np.uint16),
            fwmarks=np.array([int(f[5]) if len(f) > 5 else 0 for f in rows]),
        )
        for f, rs, (raddr, _rport, _status) in zip(rows, servers, got["kernel"]):
            if not raddr and (ipaddress.ip_address(f[1]), int(f[2])) in one_packet:
                continue
            kernel = None if not raddr else ipaddress.ip_address(raddr)
            model = None if rs is None else rs.address
            if kernel != model:
                bad.append((j, ",".join(f), raddr, str(rs)))
        want = {
            (p, ipaddress.ip_address(c), ipaddress.ip_address(v), vp, dp)
            for p, c, v, vp, _da, dp in got["templates"]
        }
        have = {(t.protocol, t.client, t.vaddr, t.vport, t.dport) for t in d.templates}
        assert have == want, f"phase {j}: {want ^ have}"
    assert not bad, f"{len(bad)} flows differ, e.g. {bad[:3]}"
