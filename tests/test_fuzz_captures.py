"""Fuzzing `/proc/net/ip_vs_conn` and `conntrack -L` dumps (maglevx.captures)."""

import io
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import oracles  # noqa: E402

from maglevx import Director  # noqa: E402
from maglevx.captures import parse_conntrack, parse_ip_vs_conn  # noqa: E402
from maglevx.errors import MaglevxError  # noqa: E402

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
D = Director.from_history(oracles.FLOW_HISTORY, table_size=251)
GEN = {"ip_vs_conn": oracles.gen_ip_vs_conn, "conntrack": oracles.gen_conntrack}


@FUZZ
@given(data=st.data(), n=st.integers(0, 12), fmt=st.sampled_from(sorted(GEN)))
def test_generated_dumps(data, n, fmt):
    text = GEN[fmt](lambda seq: data.draw(st.sampled_from(seq)), n)
    oracles.check_capture(D, text.encode(), fmt)


@FUZZ
@given(data=st.binary(max_size=300), fmt=st.sampled_from(sorted(GEN)))
def test_arbitrary_bytes(data, fmt):
    oracles.check_capture(D, data, fmt)


# -- regressions found by fuzzing ------------------------------------------


@pytest.mark.parametrize(
    "parse,line",
    [
        (parse_conntrack,
         "tcp 6 1 ESTABLISHED src=192.0.2.1 dst=10.0.0.1 sport=" + "9" * 5000 + " dport=80"),
        (parse_ip_vs_conn,
         "TCP C0000201 9C40 0A000001 0050 0A010001 0050 ESTABLISHED " + "9" * 5000),
    ],
    ids=["conntrack", "ip_vs_conn"],
)  # fmt: skip
def test_numbers_with_thousands_of_digits(parse, line):
    with pytest.raises(MaglevxError, match=r"^c\.txt:1: field "):
        list(parse(io.StringIO(line), source="c.txt"))


def test_conntrack_port_in_other_script_is_refused():
    line = "tcp 6 1 ESTABLISHED src=192.0.2.1 dst=10.0.0.1 sport=٤٠ dport=80"
    with pytest.raises(MaglevxError, match=r"field 'sport'"):
        list(parse_conntrack(io.StringIO(line), source="c.txt"))


def test_capture_not_utf8_names_line():
    from maglevx.predict import predict_capture

    dump = b"tcp 6 1 ESTABLISHED src=192.0.2.1 dst=10.0.0.1 sport=1 dport=80\n\xff\n"
    with pytest.raises(MaglevxError) as exc:
        predict_capture(D, io.BytesIO(dump), io.StringIO(), "conntrack",
                        source="c.txt", err=io.StringIO())  # fmt: skip
    assert exc.value.line == 2
