"""`maglevx predict`: the CSV contract, errors and exit status."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HISTORY = (
    "-A -t 10.0.0.1:80 -s mh\n"
    + "".join(f"-a -t 10.0.0.1:80 -r 10.1.0.{i}:80 -m -w 1\n" for i in range(1, 6))
    + "-e -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 0\n-A -u [fd00::1]:53 -s mh -b mh-port\n-a -u [fd00::1]:53 -r [fd00:1::5]:53 -m\n"
)


def run(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "maglevx", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


@pytest.fixture
def history(tmp_path):
    p = tmp_path / "h.txt"
    p.write_text(HISTORY)
    return str(p)


def test_predict_appends_real_server_in_input_order(history):
    flows = "".join(f"tcp,192.0.2.{i},{1000 + i},10.0.0.1,80\n" for i in range(1, 60))
    flows += "udp,fd00:9::1,5353,fd00::1,53\n"
    r = run("predict", "--history", history, "-", stdin=flows)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 60
    for src, line in zip(flows.splitlines(), out):
        assert line.startswith(src + ",")
        raddr, rport = line[len(src) + 1 :].split(",")
        assert (
            (raddr, rport) == ("", "")
            or (raddr.startswith("10.1.0.") and rport == "80")
            or raddr == "fd00:1::5"
        )
    # the drained 10.1.0.3 keeps its slots (last_weight): its flows get no destination
    assert any(line.endswith(",,") for line in out)
    assert not any("10.1.0.3" in line for line in out)


def test_predict_reads_a_file_and_same_as_api(history, tmp_path):
    import maglevx

    f = tmp_path / "flows.csv"
    f.write_text("tcp,192.0.2.9,4242,10.0.0.1,80\n")
    r = run("predict", "--history", history, str(f))
    d = maglevx.Director.from_history(HISTORY)
    rs = maglevx.lookup(("tcp", "192.0.2.9", 4242, "10.0.0.1", 80), d)
    expected = f"{rs.address},{rs.port}" if rs else ","
    assert r.stdout == f"tcp,192.0.2.9,4242,10.0.0.1,80,{expected}\n"


@pytest.mark.parametrize(
    "flows,message",
    [
        ("tcp,192.0.2.1,1,10.0.0.1\n", "<stdin>:1: expected 5 fields"),
        (
            "tcp,192.0.2.1,1,10.0.0.1,80\ntcp,192.0.2.1,x,10.0.0.1,80\n",
            "<stdin>:2: field 'sport'",
        ),
        (
            "tcp,192.0.2.1,1,10.0.0.1,80\n\ntcp,192.0.2.999,1,10.0.0.1,80\n",
            "<stdin>:3: field 'saddr'",
        ),
        (
            "tcp,192.0.2.1,1,10.0.0.9,80\n",
            "<stdin>:1: field 'daddr': no virtual service",
        ),
        ("gre,192.0.2.1,1,10.0.0.1,80\n", "<stdin>:1: field 'proto'"),
    ],
)
def test_bad_flow_line_stops_with_one_clear_error(history, flows, message):
    strict = ["--strict"] if "no virtual service" in message else []
    r = run(
        "predict",
        "--history",
        history,
        *strict,
        "-",
        stdin=flows + "tcp,192.0.2.1,1,10.0.0.1,80\n",
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"maglevx: error: {message}" + r.stderr.strip().split(message, 1)[1]
    ]
    bad = int(message.split(":")[1])
    good_before = [x for x in flows.splitlines()[: bad - 1] if x]
    assert len(r.stdout.splitlines()) == len(good_before)


def test_flows_to_no_service_get_empty_fields_and_one_summary_line(history):
    r = run(
        "predict", "--history", history, "-",
        stdin="tcp,192.0.2.1,1,10.0.0.9,80\ntcp,192.0.2.1,1,10.0.0.1,80\n",
    )  # fmt: skip
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "tcp,192.0.2.1,1,10.0.0.9,80,,"
    assert r.stderr.splitlines() == [
        "maglevx: <stdin>: 1 of 2 flows go to no virtual service: written with "
        "empty fields (the kernel does not schedule them; --strict makes this an "
        "error)"
    ]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--table-size", "4000"], "4000 is not one of the kernel's primes"),
        (["--word-size", "16"], "invalid choice"),
        (["--variant", "x"], "invalid choice"),
    ],
)
def test_bad_parameters(history, args, message):
    r = run("predict", "--history", history, *args, "-", stdin="")
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1


def test_bad_history_names_file_line_field(tmp_path):
    h = tmp_path / "bad.txt"
    h.write_text("-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -w 99999\n")
    r = run("predict", "--history", str(h), "-", stdin="tcp,192.0.2.1,1,10.0.0.1,80\n")
    assert r.returncode == 2 and r.stdout == ""
    assert (
        r.stderr
        == f"maglevx: error: {h}:2: field '-w': weight 99999 is outside 0..65535\n"
    )


def test_missing_files(tmp_path):
    r = run("predict", "--history", str(tmp_path / "nope"), "-", stdin="")
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = run("predict", "--snapshot", str(tmp_path / "nope"), "-", stdin="")
    assert r.returncode == 2


def test_no_port_hash_only_for_backport(history):
    r = run("predict", "--history", history, "--no-port-hash", "-", stdin="")
    assert r.returncode == 2 and "backport" in r.stderr


def test_bundled_example_runs():
    r = run("predict", "--history", "examples/history.txt", "examples/flows.csv")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == len(
        (ROOT / "examples/flows.csv").read_text().splitlines()
    )
