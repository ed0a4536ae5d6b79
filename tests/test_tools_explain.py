"""`maglevx explain`: per-step values from the twin, equal to the C core."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maglevx import Director, _twin, lookup
from maglevx.backend import core
from maglevx.errors import MaglevxError
from maglevx.model import fold_address
from maglevx.tools.explain import explain, render

ROOT = Path(__file__).resolve().parent.parent
VIP = "-t 10.0.0.1:80"
BASE = [f"-a {VIP} -r 10.1.0.{i}:80 -m" for i in range(1, 6)]


def director(flags="", drain=True, **kw):
    lines = [f"-A {VIP} -s mh{flags}", *BASE]
    if drain:
        lines.append(f"-e {VIP} -r 10.1.0.3:80 -m -w 0")
        lines.append(f"-e {VIP} -r 10.1.0.4:80 -m -w 0")
    return Director.from_history("\n".join(lines), **kw)


@pytest.mark.parametrize("flags", ["", " -b mh-port", " -b mh-fallback,mh-port"])
@pytest.mark.parametrize("word_size", [64, 32])
def test_explanation_matches_lookup(flags, word_size):
    d = director(flags, word_size=word_size, table_size=251)
    for i in range(60):
        flow = f"tcp,192.0.2.{i},{3000 + i},10.0.0.1,80"
        ex = explain(flow, d)
        rs = lookup(flow.split(","), d)
        assert ex.result == (rs.endpoint if rs else None)
        port = 3000 + i if "mh-port" in flags else 0
        fold = fold_address(__import__("ipaddress").ip_address(f"192.0.2.{i}"))
        assert ex.slot == core.slot(251, word_size, fold, port) == ex.hash % 251
        assert ex.v == (fold + port) & 0xFFFFFFFF


def test_fallback_lists_every_probe_until_an_available_server():
    d = director(" -b mh-fallback")
    found = 0
    for i in range(200):
        ex = explain(f"tcp,198.51.100.{i},1,10.0.0.1,80", d)
        if not ex.probes:
            continue
        found += 1
        last = ex.probes[-1]
        assert last.available and last.real_server == ex.result
        assert all(not p.available for p in ex.probes[:-1])
        for p in ex.probes:
            assert p.roffset == (p.offset + ex.slot) % 4093
            assert p.hash == _twin.hashkey(64, _twin.HASH1_KEY, ex.fold, 0, p.roffset)
            assert p.slot == p.hash % 4093
        assert "fallback" in render(ex)
    assert found > 10


def test_no_fallback_says_no_destination():
    d = director()
    ex = next(
        e
        for e in (explain(f"tcp,198.51.100.{i},1,10.0.0.1,80", d) for i in range(200))
        if not e.slot_server_available
    )
    assert ex.result is None and not ex.probes and "no mh-fallback" in ex.reason


@pytest.mark.parametrize(
    "flow,field",
    [("tcp,1.2.3.4,1,10.0.0.9,80", "daddr"), ("tcp,1.2.3,1,10.0.0.1,80", "saddr")],
)
def test_bad_flow(flow, field):
    with pytest.raises(MaglevxError) as e:
        explain(flow, director())
    assert e.value.field == field


def test_cli_explain_json():
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "explain", "--history",
         "examples/history.txt", "--json", "udp,2001:db8:ff::1,53000,2001:db8::15,53"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["service"] == "UDP [2001:db8::15]:53" and data["hashed_port"] == 53000
