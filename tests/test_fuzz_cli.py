"""Fuzzing `maglevx` arguments, files and stdin: exit 0 or 2, one-line errors."""

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import oracles  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "h.txt").write_text(oracles.FLOW_HISTORY)
    (d / "bad.txt").write_text("-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -r x\n")
    (d / "s.txt").write_text("TCP  10.0.0.1:80 mh\n  -> 10.1.0.1:80  Masq  1  0  0\n")
    (d / "f.csv").write_text("tcp,192.0.2.1,1,10.0.0.1,80\n")
    (d / "latin1.csv").write_bytes(b"tcp,192.0.2.1,1,10.0.0.1,80\n\xe9\n")
    return d


TOKENS = ["predict", "table", "explain", "--history", "--snapshot", "--variant",
          "--word-size", "--table-size", "--no-port-hash", "--format", "-", "csv",
          "conntrack", "upstream", "backport", "32", "64", "16", "251", "4000", "x",
          "--", "tcp,192.0.2.1,1,10.0.0.1,80", "h.txt", "bad.txt", "s.txt", "f.csv",
          "latin1.csv", "missing.txt", "a\nb"]  # fmt: skip


@FUZZ
@given(
    argv=st.lists(st.sampled_from(TOKENS) | st.text(max_size=8), max_size=7),
    stdin=st.text(max_size=80),
)
def test_arguments(files, argv, stdin):
    argv = [str(files / a) if a.endswith((".txt", ".csv")) else a for a in argv]
    oracles.check_cli(argv, stdin)


@FUZZ
@given(stdin=st.text(max_size=200))
def test_predict_stdin(files, stdin):
    oracles.check_cli(["predict", "--history", str(files / "h.txt"), "-"], stdin)


def test_file_name_with_newline_is_one_line(files):
    rc, out, err = oracles.check_cli(["predict", "--history", str(files / "a\nb")])
    assert rc == 2 and "a\\nb" in err


# -- regressions found by fuzzing ------------------------------------------


@pytest.mark.parametrize("which", ["history", "flows"])
def test_file_name_with_nul(files, which):
    if which == "history":
        argv = ["predict", "--history", "a\0b", "-"]
    else:
        argv = ["predict", "--history", str(files / "h.txt"), "a\0b"]
    rc, _, err = oracles.check_cli(argv)
    assert rc == 2 and "a\\x00b" in err
