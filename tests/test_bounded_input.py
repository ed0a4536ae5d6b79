"""Hostile files stay cheap: long lines refused early, messages short (issue 17)."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

from maglevx import Director, MaglevxError
from maglevx.cli import main
from maglevx.predict import MAX_LINE_BYTES, predict_lines, predict_stream, text_lines

ROOT = Path(__file__).resolve().parent.parent
H = str(ROOT / "examples/history.txt")
GOOD = b"tcp,198.51.100.83,63143,203.0.113.15,80\n"


def test_a_one_mib_history_line_is_refused_with_one_line():
    line = "-A -t 10.0.0.1:80 -s mh " + "x" * (1 << 20)
    with pytest.raises(MaglevxError) as exc:
        Director.from_history(line, source="h.txt")
    msg = str(exc.value)
    assert msg.startswith("h.txt:1: line of 1048600 characters") and len(msg) < 200


@pytest.mark.parametrize("fast", [True, False])
def test_a_long_flow_line_is_refused_before_it_is_buffered(fast):
    data = GOOD + b"x" * (4 * MAX_LINE_BYTES) + b"\n" + GOOD
    out = io.StringIO()
    d = Director.from_history(Path(H).read_text())
    with pytest.raises(MaglevxError, match=r"^f:2: line longer than"):
        if fast:
            predict_stream(d, io.BytesIO(data), out, source="f")
        else:
            predict_lines(d, text_lines(io.BytesIO(data), "f"), out, source="f")
    assert out.getvalue().count("\n") == 1  # the line before it was written


def test_text_lines_splits_like_the_c_scanner():
    data = b"a\r\nb\rc\nd"
    lines = list(text_lines(io.BytesIO(data), "f"))
    assert lines == ["a\r\n", "b\r", "c\n", "d"]
    # a \r\n split across two reads stays one line end
    import maglevx.predict as p

    old, p._TEXT_BLOCK = p._TEXT_BLOCK, 2
    try:
        assert list(text_lines(io.BytesIO(data), "f")) == lines
    finally:
        p._TEXT_BLOCK = old


def test_error_messages_stay_short():
    bad = b"tcp," + b"a" * 60000 + b",1,203.0.113.15,80\n"
    r = subprocess.run([sys.executable, "-m", "maglevx", "predict", "--history", H],
                       input=bad, capture_output=True)  # fmt: skip
    assert r.returncode == 2
    err = r.stderr.decode()
    assert err.count("\n") == 1 and len(err) < 600, err[:200]
    assert "is not an IPv4 address" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["table", "--history", H, "--table-size", "1" + "0" * 5000],
            "kernel's primes",
        ),
        (
            ["diff", H, "--drain", "10.234.79.13:80", "--sample", "-1"],
            "number of flows",
        ),
    ],
)
def test_bad_numbers_exit_2_with_one_line(args, message):
    r = subprocess.run([sys.executable, "-m", "maglevx", *args],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and message in r.stderr
    assert r.stderr.count("\n") == 1 and len(r.stderr) < 400


def test_an_internal_error_exits_2_and_says_it_is_a_bug(monkeypatch, capsys):
    import maglevx.tools.table as table

    def boom(*a, **k):
        raise KeyError("oops")

    monkeypatch.setattr(table, "table_report", boom)
    assert main(["table", "--history", H]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maglevx: internal error: KeyError") and "bug" in err
