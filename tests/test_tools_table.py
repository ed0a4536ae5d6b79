"""`maglevx table`: slot shares, quantization and warnings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maglevx import Director, MaglevxError, _core, _twin
from maglevx.tools.sources import resolve_service
from maglevx.tools.table import table_report

ROOT = Path(__file__).resolve().parent.parent
VIP = "-t 10.0.0.1:80"


def hist(*lines, **kw):
    return Director.from_history("\n".join(lines), **kw)


def test_weights_100_5_3_act_as_50_2_1():
    # the kernel: a server claims at most 2^TAB_BITS - 1 = 63 slots per round
    for core in (_core, _twin):
        assert core.quantize(4093, [100, 5, 3]) == (1, 1, [50, 2, 1])
    d = hist(
        f"-A {VIP} -s mh",
        f"-a {VIP} -r 10.1.0.1:80 -m -w 100",
        f"-a {VIP} -r 10.1.0.2:80 -m -w 5",
        f"-a {VIP} -r 10.1.0.3:80 -m -w 3",
    )
    (st,) = table_report(d)
    q = st.quantization
    assert (q.weights_ratio, q.turns_ratio, q.rshift) == ("3:5:100", "1:2:50", 1)
    assert any("act as 1:2:50" in w for w in st.warnings)
    assert sum(r.slots for r in st.servers) == 4093 == st.filled


@pytest.mark.parametrize(
    "weights,expected",
    [([0, 0], (0, 0, [0, 0])), ([4, 6], (2, 0, [2, 3])), ([1, 0], (1, 0, [1, 0]))],
)
@pytest.mark.parametrize("core", [_core, _twin])
def test_quantize_gcd_and_zero(core, weights, expected):
    assert core.quantize(251, weights) == expected


def test_upstream_drained_server_keeps_slots_and_is_flagged():
    d = hist(
        f"-A {VIP} -s mh",
        f"-a {VIP} -r 10.1.0.1:80 -m",
        f"-a {VIP} -r 10.1.0.2:80 -m",
        f"-e {VIP} -r 10.1.0.2:80 -m -w 0",
    )
    (st,) = table_report(d)
    drained = next(r for r in st.servers if r.endpoint == "10.1.0.2:80")
    assert drained.slots > 0 and not drained.available and drained.table_weight == 1
    assert any("no destination" in w and "10.1.0.2:80" in w for w in st.warnings)


def test_backport_drained_server_holds_no_slots():
    d = hist(
        f"-A {VIP} -s mh",
        f"-a {VIP} -r 10.1.0.1:80 -m",
        f"-a {VIP} -r 10.1.0.2:80 -m",
        f"-e {VIP} -r 10.1.0.2:80 -m -w 0",
        variant="backport",
    )
    (st,) = table_report(d)
    assert [r.slots for r in st.servers] == [0, 4093]
    assert any("holds no slots (weight 0)" in w for w in st.warnings)


def test_small_table_warning_only_when_shares_are_off():
    lines = [f"-A {VIP} -s mh"] + [
        f"-a {VIP} -r 10.1.0.{i}:80 -m" for i in range(1, 41)
    ]
    (small,) = table_report(hist(*lines, table_size=251))
    (big,) = table_report(hist(*lines, table_size=4093))
    assert any("M=251 is small" in w and "M=4093" in w for w in small.warnings)
    assert not any("is small" in w for w in big.warnings)


def test_cli_table_text_json_and_service_filter(tmp_path):
    run = [
        sys.executable,
        "-m",
        "maglevx",
        "table",
        "--history",
        "examples/history.txt",
    ]
    r = subprocess.run(run, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "TCP 203.0.113.15:80" in r.stdout
    r = subprocess.run(
        [*run, "--json", "--service", "UDP [2001:db8::15]:53"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    data = json.loads(r.stdout)
    assert [s["service"] for s in data] == ["UDP [2001:db8::15]:53"]
    r = subprocess.run(
        [*run, "--service", "TCP 1.1.1.1:1"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stderr.startswith(
        "maglevx: error: field '--service'"
    )


@pytest.mark.parametrize("text", ["FWM \u00b2", "FWM \u0663", "TCP 10.0.0.1:\u00b2"])
def test_service_named_with_a_unicode_digit_is_one_error(text):
    # "²".isdigit() is true but int("²") raises: it was a bare ValueError
    director = Director.from_history("-A -f 3 -s mh\n-a -f 3 -r 10.1.0.1:80\n")
    with pytest.raises(MaglevxError, match=r"^field '--service': no mh service"):
        resolve_service(text, director)
