"""Fuzzing flow CSV (`maglevx predict`): the slow path and the C scanner agree,
stdout keeps every flow before a bad line and nothing after, errors are located.
"""

import io
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import oracles  # noqa: E402

from maglevx import Director  # noqa: E402
from maglevx.errors import MaglevxError  # noqa: E402
from maglevx.predict import predict_lines, predict_stream  # noqa: E402

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
DIRECTORS = {
    v: Director.from_history(oracles.FLOW_HISTORY, variant=v, table_size=251)
    for v in ("upstream", "backport")
}


@FUZZ
@given(
    data=st.data(),
    n=st.integers(0, 20),
    variant=st.sampled_from(sorted(DIRECTORS)),
    block=st.integers(1, 100),
)
def test_generated_flows(data, n, variant, block):
    text = oracles.gen_flows(lambda seq: data.draw(st.sampled_from(seq)), n)
    d = DIRECTORS[variant]
    try:
        oracles.check_flows(d, text)
    except MaglevxError:
        pass
    oracles.check_stream(d, text.encode(), block_bytes=block)


@FUZZ
@given(text=st.text(max_size=200))
def test_arbitrary_text(text):
    try:
        oracles.check_flows(DIRECTORS["upstream"], text)
    except MaglevxError:
        pass


@FUZZ
@given(data=st.binary(max_size=200), block=st.integers(1, 64))
def test_arbitrary_bytes_through_the_c_scanner(data, block):
    oracles.check_stream(DIRECTORS["upstream"], data, block_bytes=block)


GOOD = "tcp,192.0.2.1,1,10.0.0.1,80\n"


def test_later_bad_line_keeps_earlier_output_only():
    out = io.StringIO()
    with pytest.raises(MaglevxError) as exc:
        predict_lines(DIRECTORS["upstream"], io.StringIO(GOOD * 3 + "x\n" + GOOD), out,
                      source="f.csv")  # fmt: skip
    assert str(exc.value).startswith("f.csv:4: expected 5 fields")
    assert out.getvalue().count("\n") == 3


# -- regressions found by fuzzing ------------------------------------------


@pytest.mark.parametrize("path", ["lines", "stream"])
def test_sport_with_thousands_of_digits(path):
    line = "tcp,192.0.2.1," + "9" * 5000 + ",10.0.0.1,80\n"
    with pytest.raises(MaglevxError, match=r"^f\.csv:2: field 'sport'"):
        if path == "lines":
            predict_lines(DIRECTORS["upstream"], [GOOD, line], io.StringIO(),
                          source="f.csv")  # fmt: skip
        else:
            predict_stream(DIRECTORS["upstream"], io.BytesIO((GOOD + line).encode()),
                           io.StringIO(), source="f.csv")  # fmt: skip


def test_stream_not_utf8_names_line():
    out = io.StringIO()
    with pytest.raises(MaglevxError) as exc:
        predict_stream(DIRECTORS["upstream"], io.BytesIO(GOOD.encode() + b"\xff\n"),
                       out, source="f.csv")  # fmt: skip
    assert exc.value.line == 2
    assert out.getvalue().count("\n") == 1
