"""`maglevx verify --format parquet|arrow`: a flow log's real servers checked.

A flow log holds the flow columns of `predict` and the real server the
director chose (``raddr``, ``rport`` by default). The reference is `maglevx
predict` over the same flows (tests/test_arrow_decisions.py checks it against
the CSV path and the real kernels' vectors): a log written by it verifies with
no difference, and every changed row is found and named.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402
from test_arrow_decisions import PERSIST, _flows  # noqa: E402
from test_predict_columnar import CHILD, HISTORY  # noqa: E402
from test_predict_columnar import _flows as _plain_flows  # noqa: E402

from maglevx import Director, arrow, cli  # noqa: E402
from maglevx.backend import PURE_PYTHON  # noqa: E402
from maglevx.tools import verify  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
N = 400 if PURE_PYTHON else 3000


@pytest.fixture
def history(tmp_path):
    p = tmp_path / "h.txt"
    p.write_text(PERSIST)
    return str(p)


def _log(family, n=N, seed=11):
    """A flow log whose raddr/rport are maglevx's answers (templates included)."""
    _, table = _flows("persist", family, n, seed=seed)
    result = arrow.predict_arrow(Director.from_history(PERSIST), table)
    return table.append_column("raddr", result["raddr"]).append_column(
        "rport", result["rport"]
    )


def _main(*argv):
    out = io.StringIO()
    rc = cli.main(list(argv), stdout=out)
    return rc, out.getvalue()


def _run_error(*argv):
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "verify", *argv],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2, r
    lines = [x for x in r.stderr.splitlines() if "ipvsadm -S" not in x]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("family", [4, 6])
def test_a_log_of_the_predictions_verifies(history, tmp_path, family):
    log = _log(family)
    path = tmp_path / "log.parquet"
    pq.write_table(log, path, row_group_size=97)  # templates cross row groups
    rc, out = _main("verify", "--history", history, "--conn", str(path), "--json")
    assert rc == 0, out
    import json

    rep = json.loads(out)
    assert rep["differ"] == 0 and rep["flows"] == N
    assert rep["checked"] + rep["no_service"] == N and rep["no_service"] > 0


def test_changed_rows_are_found_and_named(history, tmp_path):
    log = _log(4)
    rport = log["rport"].to_pylist()
    raddr = log["raddr"].to_pylist()
    scheduled = [i for i, a in enumerate(raddr) if a is not None]
    a, b, c = scheduled[3], scheduled[len(scheduled) // 2], scheduled[-1]
    rport[a] = 1  # another port
    raddr[b] = None  # "no destination" in the log
    raddr[c] = int(raddr[c]) + 1  # another real server
    log = log.set_column(log.column_names.index("rport"), "rport",
                         pa.array(rport, pa.uint16()))  # fmt: skip
    log = log.set_column(log.column_names.index("raddr"), "raddr",
                         pa.array(raddr, pa.uint32()))  # fmt: skip
    # as an Arrow IPC stream, observed columns renamed
    log = log.rename_columns(
        [{"raddr": "obs_a", "rport": "obs_p"}.get(x, x) for x in log.column_names]
    )
    path = tmp_path / "log.arrows"
    with pa.ipc.new_stream(str(path), log.schema) as w:
        for batch in log.to_batches(max_chunksize=100):
            w.write_batch(batch)
    rc, out = _main("verify", "--history", history, "--conn", str(path),
                    "--format", "arrow", "--observed", "obs_a,obs_p")  # fmt: skip
    assert rc == 1, out
    assert "3 differ" in out
    rows = [int(x.split()[1].rstrip(":")) for x in out.splitlines()
            if x.startswith("  row ")]  # fmt: skip
    assert rows == [a, b, c]
    assert f"  row {b}: " in out and "-> observed no destination, predicted" in out


def test_log_without_the_needed_columns(history, tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(_log(4, 50).drop_columns(["sport"]), path)
    line = _run_error("--history", history, "--conn", str(path))
    assert line.startswith(f"maglevx: error: {path}: no column sport;"), line
    pq.write_table(_log(4, 50).drop_columns(["rport"]), path)
    line = _run_error("--history", history, "--conn", str(path))
    assert line.startswith(f"maglevx: error: {path}: no column rport (the real"), line


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("sport", pa.array([1.5] * 50), "field 'sport': expected integers, got double"),
        ("rport", pa.array(["80"] * 50), "field 'rport': expected integers, got string"),
        ("raddr", pa.array(range(50), pa.int64()),
         "field 'raddr': expected uint32 or IPv4 address strings (the flows are "
         "IPv4), got int64"),
        ("raddr", pa.array(["10.1.0.1"] * 49 + ["nope"]),
         "field 'raddr': row 49: 'nope' is not an IPv4 address"),
    ],
)  # fmt: skip
def test_wrong_column_types_name_file_and_column(history, tmp_path, column, values,
                                                 message):  # fmt: skip
    log = _log(4, 50)
    path = tmp_path / "bad.parquet"
    pq.write_table(log.set_column(log.column_names.index(column), column, values), path)
    line = _run_error("--history", history, "--conn", str(path))
    assert line == f"maglevx: error: {path}: {message}", line


def test_flow_log_report_api(tmp_path):
    log = _log(6, 300)
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, log.schema) as w:
        w.write_table(log, max_chunksize=64)
    rep = verify.verify_flow_log(
        Director.from_history(PERSIST), io.BytesIO(sink.getvalue()), "arrow"
    )
    assert (rep.flows, rep.differ) == (300, 0) and not rep.different
    assert rep.checked == rep.matched > 0


def test_peak_memory_flat_in_the_number_of_flows(tmp_path):
    """8x the flows costs no more than a few MiB: read one row group at a time."""
    h = tmp_path / "plain.txt"
    h.write_text(HISTORY)
    d = Director.from_history(HISTORY)
    sizes = (50_000, 400_000) if PURE_PYTHON else (200_000, 1_600_000)
    rss = {}
    for n in sizes:
        table = _plain_flows(n, seed=9)
        result = arrow.predict_arrow(d, table)
        log = table.append_column("raddr", result["raddr"]).append_column(
            "rport", result["rport"]
        )
        path = tmp_path / f"f{n}.parquet"
        pq.write_table(log, path, row_group_size=65536)
        del table, result, log
        r = subprocess.run(
            [sys.executable, "-c", CHILD, "verify", "--history", str(h), "--conn",
             str(path)],
            capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"{n} flows checked: {n} as predicted, 0 differ" in r.stdout
        rss[n] = int(r.stderr.split("VmHWM:")[1].split()[0]) / 1024
    assert rss[sizes[1]] - rss[sizes[0]] < (24 if PURE_PYTHON else 12), rss
