"""`maglevx predict` over Parquet and Arrow IPC: same answers as the CSV path.

The CSV path (tests/test_cli.py, tests/test_tools_predict.py) is the
reference: the same flows as Parquet or Arrow must give the same lines, and
Parquet/Arrow output must hold the same real servers.
"""

from __future__ import annotations

import io
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from maglevx import arrow, cli  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HISTORY = """\
-A -t 10.0.0.1:80 -s mh -b mh-port
-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m
-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m
-a -t 10.0.0.1:80 -r 10.1.0.3:80 -m
-e -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 0
-A -u 10.0.0.2:53 -s mh
-a -u 10.0.0.2:53 -r 10.1.0.9:53 -m
-a -u 10.0.0.2:53 -r 10.1.0.8:53 -m
-A -t [2001:db8::1]:443 -s mh -b mh-port
-a -t [2001:db8::1]:443 -r [2001:db8:1::1]:443 -m
-a -t [2001:db8::1]:443 -r [2001:db8:1::2]:443 -m
"""


@pytest.fixture
def history(tmp_path):
    p = tmp_path / "h.txt"
    p.write_text(HISTORY)
    return str(p)


def _flows(n, seed=1):
    rng = np.random.default_rng(seed)
    tcp = rng.random(n) < 0.6
    saddr = rng.integers(1, 2**32, n, dtype=np.uint32)
    sport = rng.integers(1, 65536, n, dtype=np.uint16)
    d1, d2 = (int(ipaddress.IPv4Address(a)) for a in ("10.0.0.1", "10.0.0.2"))
    return pa.table(
        {
            "ts": np.arange(n, dtype=np.int64),  # an extra column, kept
            "proto": pa.array(np.where(tcp, "tcp", "udp")).dictionary_encode(),
            "saddr": saddr,
            "sport": sport,
            "daddr": np.where(tcp, d1, d2).astype(np.uint32),
            "dport": np.where(tcp, 80, 53).astype(np.uint16),
        }
    )


def _csv_of(table):
    rows = zip(
        table["proto"].cast(pa.string()).to_pylist(),
        table["saddr"].to_pylist(),
        table["sport"].to_pylist(),
        table["daddr"].to_pylist(),
        table["dport"].to_pylist(),
    )
    return "".join(
        f"{p},{ipaddress.IPv4Address(s)},{sp},{ipaddress.IPv4Address(d)},{dp}\n"
        for p, s, sp, d, dp in rows
    )


def main(*argv):
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    rc = cli.main(list(argv), stdout=out)
    out.flush()
    return rc, raw.getvalue()


def _reference(history, csv_text, tmp_path):
    p = tmp_path / "flows.csv"
    p.write_text(csv_text)
    rc, out = main("predict", "--history", history, str(p))
    assert rc == 0
    return out.decode()


def test_parquet_in_csv_out_equals_csv_path(history, tmp_path):
    table = _flows(3000)
    path = tmp_path / "flows.parquet"
    pq.write_table(table, path, row_group_size=700)  # several row groups
    rc, out = main("predict", "--history", history, str(path))  # detected
    assert rc == 0
    expected = _reference(history, _csv_of(table), tmp_path)
    assert out.decode() == expected
    assert ",," in expected  # no destination: the drained server's slots


def test_parquet_out_and_arrow_out_keep_columns(history, tmp_path):
    table = _flows(2000, seed=2)
    src = tmp_path / "flows.parquet"
    pq.write_table(table, src, row_group_size=512)
    expected = _reference(history, _csv_of(table), tmp_path).splitlines()
    exp_pairs = [tuple(line.split(",")[5:]) for line in expected]
    for fmt, read in (
        ("parquet", lambda b: pq.read_table(io.BytesIO(b))),
        ("arrow", lambda b: pa.ipc.open_stream(b).read_all()),
    ):
        rc, out = main(
            "predict", "--history", history, "--output-format", fmt, str(src)
        )
        assert rc == 0
        got = read(out)
        assert got.column_names == [*table.column_names, "raddr", "rport"]
        assert got["ts"].to_pylist() == list(range(2000))
        assert got.schema.field("raddr").type == pa.uint32()
        pairs = [
            ("", "") if a is None else (str(ipaddress.IPv4Address(a)), str(p))
            for a, p in zip(got["raddr"].to_pylist(), got["rport"].to_pylist())
        ]
        assert pairs == exp_pairs


def test_arrow_ipc_stream_on_stdin_and_ipc_file(history, tmp_path):
    table = _flows(500, seed=3)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        for b in table.to_batches(max_chunksize=128):
            w.write_batch(b)
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "predict", "--history", history, "-"],
        input=sink.getvalue(), capture_output=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    expected = _reference(history, _csv_of(table), tmp_path)
    assert r.stdout.decode() == expected
    path = tmp_path / "flows.arrow"
    with pa.ipc.new_file(str(path), table.schema) as w:
        w.write_table(table, max_chunksize=100)
    rc, out = main("predict", "--history", history, "--format", "arrow", str(path))
    assert rc == 0 and out.decode() == expected


def test_ipv6_and_string_columns(history, tmp_path):
    rng = np.random.default_rng(4)
    raw = [bytes(r) for r in rng.integers(0, 256, (300, 16), dtype=np.uint8)]
    d6 = ipaddress.IPv6Address("2001:db8::1").packed
    t6 = pa.table({"proto": ["tcp"] * 300, "saddr": pa.array(raw, pa.binary(16)),
                   "sport": pa.array(range(300), pa.uint16()),
                   "daddr": pa.array([d6] * 300, pa.binary(16)),
                   "dport": pa.array([443] * 300, pa.uint16())})  # fmt: skip
    path = tmp_path / "v6.parquet"
    pq.write_table(t6, path)
    rc, out = main("predict", "--history", history, str(path))
    assert rc == 0
    csv = "".join(
        f"tcp,{ipaddress.IPv6Address(r)},{i},2001:db8::1,443\n"
        for i, r in enumerate(raw)
    )
    assert out.decode() == _reference(history, csv, tmp_path)
    # addresses as strings (a CSV turned into Parquet as is)
    table = _flows(200, seed=5)
    csv4 = _csv_of(table)
    cols = list(zip(*(line.split(",") for line in csv4.splitlines())))
    ts = pa.table({"proto": cols[0], "saddr": cols[1], "sport": np.array(cols[2], np.int64),
                   "daddr": cols[3], "dport": np.array(cols[4], np.int64)})  # fmt: skip
    pq.write_table(ts, tmp_path / "s.parquet")
    rc, out = main("predict", "--history", history, str(tmp_path / "s.parquet"))
    assert rc == 0 and out.decode() == _reference(history, csv4, tmp_path)


def _run_error(history, path, *extra):
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "predict", "--history", history, *extra, str(path)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2, r
    assert len(r.stderr.splitlines()) == 1, r.stderr
    return r


def test_parquet_without_the_needed_columns(history, tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(_flows(10).drop_columns(["sport", "dport"]), path)
    r = _run_error(history, path)
    assert r.stderr.startswith(f"maglevx: error: {path}: no columns sport, dport;")
    assert "the file has ts, proto, saddr, daddr" in r.stderr


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("sport", pa.array([1.5] * 10), "field 'sport': expected integers, got double"),
        ("saddr", pa.array(range(10), pa.int64()),
         "field 'saddr': expected uint32 (IPv4), fixed_size_binary(16) (IPv6) or strings, got int64"),
        ("proto", pa.array(range(10), pa.int8()), "field 'proto': expected strings"),
    ],
)  # fmt: skip
def test_wrong_column_types_name_the_column(history, tmp_path, column, values, message):
    table = _flows(10)
    i = table.column_names.index(column)
    path = tmp_path / "bad.parquet"
    pq.write_table(table.set_column(i, column, values), path)
    r = _run_error(history, path)
    assert r.stderr.startswith(f"maglevx: error: {path}: {message}"), r.stderr


def test_bad_row_rows_before_it_written(history, tmp_path):
    table = _flows(1000, seed=6)
    dport = table["dport"].to_numpy().copy()
    dport[777] = 81  # no service
    table = table.set_column(
        table.column_names.index("dport"), "dport", pa.array(dport)
    )
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path, row_group_size=300)
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "predict", "--history", history, str(path)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0  # without --strict: empty fields, counted
    assert r.stderr == (
        f"maglevx: {path}: 1 of 1000 flows go to no virtual service: written "
        "with empty fields (the kernel does not schedule them; --strict makes "
        "this an error)\n"
    )
    lines = r.stdout.splitlines()
    assert (
        lines[777]
        == "tcp," + _csv_of(table.slice(777, 1)).strip().split(",", 1)[1] + ",,"
    )
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "predict", "--strict", "--history", history,
         str(path)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr == (
        f"maglevx: error: {path}: field 'daddr': row 777: no virtual service for "
        "tcp 10.0.0.1 port 81\n"
    )
    assert r.stdout == "".join(line + "\n" for line in lines[:777])


def test_not_parquet_and_pipes(history, tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    r = _run_error(history, path)
    assert r.stderr.startswith(f"maglevx: error: {path}: not a Parquet file")
    ok = tmp_path / "ok.parquet"
    pq.write_table(_flows(5), ok)
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "predict", "--history", history, "--format",
         "parquet", "-"], input=ok.read_bytes(), capture_output=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2
    assert b"Parquet input must be a file" in r.stderr
    csv = tmp_path / "f.csv"
    csv.write_text("tcp,1.2.3.4,5,10.0.0.1,80\n")
    r = _run_error(history, csv, "--output-format", "parquet")
    assert "--output-format parquet needs Parquet or Arrow input" in r.stderr


def test_empty_input_gives_a_valid_empty_output(history, tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(_flows(0), path)
    rc, out = main(
        "predict", "--history", history, "--output-format", "parquet", str(path)
    )
    assert rc == 0
    got = pq.read_table(io.BytesIO(out))
    assert got.num_rows == 0 and got.column_names[-2:] == ["raddr", "rport"]
    rc, out = main("predict", "--history", history, str(path))
    assert rc == 0 and out == b""


def test_detect():
    assert arrow.detect(b"PAR1\x15") == "parquet"
    assert arrow.detect(b"ARROW1\x00\x00") == "arrow"
    assert arrow.detect(b"\xff\xff\xff\xff\x10") == "arrow"
    assert arrow.detect(b"tcp,1.2.3.4") is None


CHILD = """
import sys
from maglevx.cli import main
rc = main(sys.argv[1:])
sys.stdout.flush()
hwm = [x for x in open("/proc/self/status") if x.startswith("VmHWM:")]
sys.stderr.write(hwm[0])
sys.exit(rc)
"""


@pytest.mark.parametrize("output_format", ["csv", "parquet", "arrow"])
def test_peak_memory_flat_in_the_number_of_flows(history, tmp_path, output_format):
    """8x the flows (same row-group size) costs no more than a few MiB of RSS.

    (pyarrow's system allocator: mimalloc keeps freed pages, which is noise.)
    Were the input or the output held whole, 1.6M flows would cost tens of
    MiB more than 200k (about 15 bytes a flow in, 21 out, more as CSV).
    """
    from maglevx.backend import PURE_PYTHON

    # the twin looks up ~100k flows/s: smaller there (a weaker check)
    sizes = (50_000, 400_000) if PURE_PYTHON else (200_000, 1_600_000)
    rss = {}
    for n in sizes:
        path = tmp_path / f"f{n}.parquet"
        pq.write_table(_flows(n, seed=9), path, row_group_size=65536)
        with open(tmp_path / "out", "wb") as out:
            r = subprocess.run(
                [sys.executable, "-c", CHILD, "predict", "--history", history,
                 "--output-format", output_format, str(path)],
                stdout=out, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                env={**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"},
            )  # fmt: skip
        assert r.returncode == 0, r.stderr
        rss[n] = int(r.stderr.split("VmHWM:")[1].split()[0]) / 1024
    # the twin's per-flow Python ints fragment the heap: a looser bound there
    assert rss[sizes[1]] - rss[sizes[0]] < (24 if PURE_PYTHON else 12), rss
