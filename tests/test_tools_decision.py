"""The decision path through the command line: predict, explain, table, errors.

The rules themselves are pinned in tests/test_decision.py and replayed from the
real kernels in tests/test_decision_vectors.py; here: that each command shows them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HISTORY = """\
-A -t 10.1.0.1:80 -s mh -b mh-port -p 600 -M 255.255.255.0
-a -t 10.1.0.1:80 -r 172.16.0.1:80 -m
-a -t 10.1.0.1:80 -r 172.16.0.2:80 -m
-a -t 10.1.0.1:80 -r 172.16.0.3:80 -m
-A -f 5 -s mh
-a -f 5 -r 172.16.0.9 -g
-A -t 10.1.0.2:0 -s mh -p
-a -t 10.1.0.2:0 -r 172.16.1.1:8080 -m
"""


def run(*args: str, stdin: str = "", tmp: Path) -> subprocess.CompletedProcess:
    hist = tmp / "h.txt"
    hist.write_text(HISTORY)
    argv = [sys.executable, "-m", "maglevx", args[0], "--history", str(hist), *args[1:]]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True)


def predict(flows: str, tmp: Path, *extra: str) -> list[list[str]]:
    r = run("predict", *extra, stdin=flows, tmp=tmp)
    assert r.returncode == 0, r.stderr
    return [line.split(",") for line in r.stdout.splitlines()]


def test_one_client_network_shares_one_server_in_input_order(tmp_path):
    flows = "".join(f"tcp,10.2.0.{i},{5000 + i},10.1.0.1,80\n" for i in range(1, 60))
    out = predict(flows, tmp_path)
    assert len({tuple(x[5:]) for x in out}) == 1  # one /24: one template


def test_client_port_20_gets_no_destination(tmp_path):
    (a,) = predict("tcp,10.2.0.1,20,10.1.0.2,53\n", tmp_path)
    assert a[5:] == ["", ""]


def test_fwmark_field_decimal_or_hex(tmp_path):
    out = predict(
        "tcp,10.2.0.1,5000,10.1.0.1,80,5\ntcp,10.2.0.1,5001,10.1.0.1,80,0x5\n"
        "tcp,10.2.1.1,5002,10.1.0.1,80\n",
        tmp_path,
    )
    assert out[0][6:] == out[1][6:] == ["172.16.0.9", "80"]  # the flow's port
    assert out[2][5] != "172.16.0.9"


@pytest.mark.parametrize("mark", ["banana", "0x", "-1", "0x100000000", "1.5"])
def test_a_mark_that_is_not_a_number_is_one_error(tmp_path, mark):
    r = run("predict", stdin=f"tcp,10.2.0.1,5000,10.1.0.1,80,{mark}\n", tmp=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    # one error line (a warning about the history may come before it)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("maglevx: error")]
    assert len(errors) == 1 and "<stdin>:1" in errors[0] and "fwmark" in errors[0]


def test_port_zero_keeps_the_clients_port(tmp_path):
    out = predict("tcp,10.2.0.1,5000,10.1.0.2,443\ntcp,10.2.0.1,5001,10.1.0.2,22\n",
                  tmp_path)  # fmt: skip
    assert out[0][5:] == ["172.16.1.1", "443"] and out[1][5:] == ["172.16.1.1", "22"]


def test_explain_says_why_a_flow_is_never_scheduled(tmp_path):
    r = run("explain", "tcp,10.2.0.1,20,10.1.0.1,80", tmp=tmp_path)
    assert r.returncode == 0 and "FTP data" in r.stdout and "never" in r.stdout
    r = run("explain", "tcp,10.2.0.1,5000,10.1.0.1,80", "--fwmark", "0x5",
            "--json", tmp=tmp_path)  # fmt: skip
    ex = json.loads(r.stdout)
    assert ex["service"] == "FWM 5" and ex["connection"] == "172.16.0.9:80"


def test_explain_follows_a_template_of_a_dump(tmp_path):
    conns = tmp_path / "conn"
    conns.write_text("TCP 0A020000 0000 0A010001 0050 AC100002 0050 NONE 59\n")
    r = run("explain", "tcp,10.2.0.77,5000,10.1.0.1,80", "--conns", str(conns),
            "--json", tmp=tmp_path)  # fmt: skip
    ex = json.loads(r.stdout)
    assert ex["outcome"] == "template" and ex["connection"] == "172.16.0.2:80"
    assert "10.2.0.0" in ex["template"]


def test_table_shows_persistence_and_port_zero(tmp_path):
    r = run("table", tmp=tmp_path)
    assert "persistent 600 s, client mask 255.255.255.0" in r.stdout
    assert "port zero: catches every port" in r.stdout
    assert "fwmark 5" in r.stdout


def test_port_zero_without_persistence_from_a_listing(tmp_path):
    snap = tmp_path / "ln.txt"
    snap.write_text(
        "TCP  10.1.0.3:0 mh\n  -> 172.16.0.1:80                Masq    1      0     0\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "table", "--snapshot", str(snap)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert "never schedules" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "explain", "--snapshot", str(snap),
         "tcp,10.2.0.1,5000,10.1.0.3,443"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert "never schedules" in r.stdout and "no destination" in r.stdout


@pytest.mark.parametrize(
    "line,what",
    [
        ("-A -t [fd00::1]:80 -s mh -p -M 255.255.255.0", "ipv6 netmask"),
        ("-A -t 10.1.0.9:80 -s mh -p -M 255.255.255.256", "persistent mask"),
        ("-A -t 10.1.0.9:0 -s mh", "zero port"),
        ("-A -t 10.1.0.9:80 -s mh -o", "one-packet"),
    ],
)
def test_bad_service_lines_are_one_error(tmp_path, line, what):
    hist = tmp_path / "bad.txt"
    hist.write_text(line + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "predict", "--history", str(hist)],
        input="", capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert what in r.stderr.lower() and "bad.txt:1" in r.stderr


@pytest.mark.parametrize("expire", [False, True])
def test_expire_quiescent_template_flag(tmp_path, expire):
    hist = tmp_path / "q.txt"
    hist.write_text(HISTORY + "-e -t 10.1.0.1:80 -r 172.16.0.2:80 -m -w 0\n")
    conns = tmp_path / "conn"
    conns.write_text("TCP 0A020000 0000 0A010001 0050 AC100002 0050 NONE 59\n")
    argv = [
        sys.executable,
        "-m",
        "maglevx",
        "explain",
        "--history",
        str(hist),
        "--conns",
        str(conns),
        "--json",
        "tcp,10.2.0.77,5000,10.1.0.1,80",
    ]
    if expire:
        argv.append("--expire-quiescent-template")
    r = subprocess.run(argv, capture_output=True, text=True)  # fmt: skip
    ex = json.loads(r.stdout)
    if expire:  # the template to a weight-0 server is not followed
        assert ex["outcome"] != "template" and ex["connection"] != "172.16.0.2:80"
    else:  # quiescent, still followed
        assert ex["outcome"] == "template" and ex["connection"] == "172.16.0.2:80"
