"""The Arrow/Parquet path makes the kernel's whole decision, templates included.

The reference is the CSV path of ``maglevx predict`` (one run over the same
flows, in the same order), itself replayed against Debian's real kernels by
tests/test_decision_vectors.py. Each theme's history hits one family of
branches of docs/decision-path.md on purpose: persistent services with and
without ``-M`` (IPv4 and IPv6, many connections per client, several clients per
network), port-zero catch-alls, fwmark services (the ``mark`` column, the CSV's
6th field), the FTP lookup and FTP data (client port 20), and ``-E`` dropping
``-p``. Flows go in small batches, so templates made in one batch must be
followed in the next ones. Last, the real kernels' decision vectors are fed
through :class:`ArrowPredictor` phase by phase.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from maglevx import Director, MaglevxError, arrow, cli  # noqa: E402
from maglevx.backend import PURE_PYTHON  # noqa: E402

N = 400 if PURE_PYTHON else 3000
BATCH = 97  # rows per batch: a template made in one batch decides in later ones

PERSIST = """
-A -t 10.0.0.1:80 -s mh -p 300 -M 255.255.255.0
-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m
-a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 2
-a -t 10.0.0.1:80 -r 10.1.0.3:80 -m
-A -u 10.0.0.1:53 -s mh -b mh-port -p
-a -u 10.0.0.1:53 -r 10.1.0.4:53 -m
-a -u 10.0.0.1:53 -r 10.1.0.5:53 -m
-A -t 10.0.0.2:80 -s mh -b mh-port
-a -t 10.0.0.2:80 -r 10.1.0.6:80 -m
-a -t 10.0.0.2:80 -r 10.1.0.7:80 -m
-A -t [2001:db8::1]:443 -s mh -p 600 -M 64
-a -t [2001:db8::1]:443 -r [2001:db8:1::1]:443 -m
-a -t [2001:db8::1]:443 -r [2001:db8:1::2]:8443 -m
-A -u [2001:db8::1]:53 -s mh -b mh-port -p
-a -u [2001:db8::1]:53 -r [2001:db8:1::3]:53 -m
-a -u [2001:db8::1]:53 -r [2001:db8:1::4]:53 -m
-A -t [2001:db8::2]:80 -s mh
-a -t [2001:db8::2]:80 -r [2001:db8:1::5]:80 -m
-a -t [2001:db8::2]:80 -r [2001:db8:1::6]:80 -m
"""

PORTZERO = """
-A -t 10.0.0.3:0 -s mh -p 300 -M 255.255.0.0
-a -t 10.0.0.3:0 -r 10.1.0.1 -g
-a -t 10.0.0.3:0 -r 10.1.0.2:8080 -m
-A -t 10.0.0.3:80 -s mh
-a -t 10.0.0.3:80 -r 10.1.0.3:80 -m
-A -u 10.0.0.3:0 -s mh -b mh-port -p
-a -u 10.0.0.3:0 -r 10.1.0.4 -g
-a -u 10.0.0.3:0 -r 10.1.0.5 -g
-A -t [2001:db8::3]:0 -s mh -p 300 -M 48
-a -t [2001:db8::3]:0 -r 2001:db8:1::1 -g
-a -t [2001:db8::3]:0 -r [2001:db8:1::2]:8080 -m
-A -t [2001:db8::3]:80 -s mh
-a -t [2001:db8::3]:80 -r [2001:db8:1::3]:80 -m
"""

FTP = """
-A -t 10.0.0.4:21 -s mh -p 300
-a -t 10.0.0.4:21 -r 10.1.0.1:21 -m
-a -t 10.0.0.4:21 -r 10.1.0.2:2121 -m
-A -t 10.0.0.4:0 -s mh -p 300
-a -t 10.0.0.4:0 -r 10.1.0.3 -g
-A -t 10.0.0.5:21 -s mh
-a -t 10.0.0.5:21 -r 10.1.0.4:21 -m
-a -t 10.0.0.5:21 -r 10.1.0.5:21 -m
-A -u 10.0.0.5:53 -s mh
-a -u 10.0.0.5:53 -r 10.1.0.6:53 -m
-A -t [2001:db8::4]:21 -s mh -b mh-port -p -M 120
-a -t [2001:db8::4]:21 -r [2001:db8:1::1]:21 -m
-a -t [2001:db8::4]:21 -r [2001:db8:1::2]:21 -m
-A -t [2001:db8::5]:21 -s mh
-a -t [2001:db8::5]:21 -r [2001:db8:1::3]:21 -m
"""

FWMARK = """
-A -f 5 -s mh -p 300 -M 255.255.255.0
-a -f 5 -r 10.1.0.1 -g
-a -f 5 -r 10.1.0.2:8080 -m
-A -f 6 -s mh -b mh-port
-a -f 6 -r 10.1.0.3 -g
-a -f 6 -r 10.1.0.4 -g
-A -t 10.0.0.6:80 -s mh
-a -t 10.0.0.6:80 -r 10.1.0.5:80 -m
-A -f 5 -6 -s mh -p -M 64
-a -f 5 -6 -r 2001:db8:1::1 -g
-a -f 5 -6 -r [2001:db8:1::2]:8080 -m
-A -f 7 -6 -s mh
-a -f 7 -6 -r [2001:db8:1::3]:443 -m
-A -t [2001:db8::6]:80 -s mh
-a -t [2001:db8::6]:80 -r [2001:db8:1::4]:80 -m
"""

# -E without -p drops persistence (10.0.0.8, 2001:db8::8); -E with -p brings
# it back with another mask (10.0.0.9, 2001:db8::9)
TOGGLE = """
-A -t 10.0.0.8:80 -s mh -p 300 -M 255.255.255.0
-a -t 10.0.0.8:80 -r 10.1.0.1:80 -m
-a -t 10.0.0.8:80 -r 10.1.0.2:80 -m
-a -t 10.0.0.8:80 -r 10.1.0.3:80 -m
-E -t 10.0.0.8:80 -s mh
-A -t 10.0.0.9:80 -s mh -p 300
-a -t 10.0.0.9:80 -r 10.1.0.4:80 -m
-a -t 10.0.0.9:80 -r 10.1.0.5:80 -m
-E -t 10.0.0.9:80 -s mh
-E -t 10.0.0.9:80 -s mh -p 300 -M 255.255.0.0
-A -t [2001:db8::8]:80 -s mh -p 300 -M 64
-a -t [2001:db8::8]:80 -r [2001:db8:1::1]:80 -m
-a -t [2001:db8::8]:80 -r [2001:db8:1::2]:80 -m
-E -t [2001:db8::8]:80 -s mh
-A -t [2001:db8::9]:80 -s mh -p 300
-a -t [2001:db8::9]:80 -r [2001:db8:1::3]:80 -m
-a -t [2001:db8::9]:80 -r [2001:db8:1::4]:80 -m
-E -t [2001:db8::9]:80 -s mh
-E -t [2001:db8::9]:80 -s mh -p 60 -M 32
"""

ANY_PORT = (0, 1, 20, 21, 22, 53, 80, 443, 1023, 1024, 2121, 65535)
# theme: (history, {family: destinations (proto, daddr, dports)}, marks)
THEMES = {
    "persist": (PERSIST, {
        4: [("tcp", "10.0.0.1", (80,)), ("udp", "10.0.0.1", (53,)),
            ("tcp", "10.0.0.2", (80,)), ("tcp", "10.0.0.99", (80,))],
        6: [("tcp", "2001:db8::1", (443,)), ("udp", "2001:db8::1", (53,)),
            ("tcp", "2001:db8::2", (80,)), ("sctp", "2001:db8::1", (443,))],
    }, (0,)),
    "portzero": (PORTZERO, {
        4: [("tcp", "10.0.0.3", ANY_PORT), ("udp", "10.0.0.3", ANY_PORT),
            ("sctp", "10.0.0.3", (80,))],
        6: [("tcp", "2001:db8::3", ANY_PORT), ("udp", "2001:db8::3", ANY_PORT)],
    }, (0,)),
    "ftp": (FTP, {
        4: [("tcp", "10.0.0.4", ANY_PORT), ("tcp", "10.0.0.5", ANY_PORT),
            ("udp", "10.0.0.5", (53, 21, 1024)), ("udp", "10.0.0.4", (21, 1024))],
        6: [("tcp", "2001:db8::4", ANY_PORT), ("tcp", "2001:db8::5", ANY_PORT)],
    }, (0,)),
    "fwmark": (FWMARK, {
        4: [("tcp", "10.0.0.6", (80,)), ("udp", "10.0.0.6", (53,)),
            ("tcp", "10.0.0.7", (443, 0))],
        6: [("tcp", "2001:db8::6", (80,)), ("udp", "2001:db8::7", (53,))],
    }, (0, 5, 6, 7, 9)),
    "toggle": (TOGGLE, {
        4: [("tcp", "10.0.0.8", (80,)), ("tcp", "10.0.0.9", (80,))],
        6: [("tcp", "2001:db8::8", (80,)), ("tcp", "2001:db8::9", (80,))],
    }, (0,)),
}  # fmt: skip


def _clients(rng, family, n):
    """Client addresses: a few networks, a few hosts each, drawn many times."""
    nets = rng.integers(0, 2**32, 12, dtype=np.uint64)
    hosts = rng.integers(0, 2**16, 6)
    hosts[:3] &= 0xFF  # several clients in one /24 (and /120)
    net = nets[rng.integers(0, len(nets), n)]
    host = hosts[rng.integers(0, len(hosts), n)]
    if family == 4:
        # /24 and /16 networks share their upper bits
        return [str(ipaddress.IPv4Address((int(a) & 0xFFFF0000) | int(h)))
                for a, h in zip(net, host)]  # fmt: skip
    return [
        str(ipaddress.IPv6Address((0x2001_0DB8_0000 + (int(a) & 0xFF)) << 80
                                  | (int(a) >> 8) << 40 | int(h)))
        for a, h in zip(net, host)
    ]  # fmt: skip


def _flows(theme, family, n, seed=1):
    """(CSV text with the mark as 6th field, Arrow table of native columns)."""
    _, dests, marks = THEMES[theme]
    rng = np.random.default_rng(seed + family)
    ds = dests[family]
    pick = rng.integers(0, len(ds), n)
    proto = [ds[i][0] for i in pick]
    daddr = [ds[i][1] for i in pick]
    dport = [int(rng.choice(ds[i][2])) for i in pick]
    saddr = _clients(rng, family, n)
    sport = rng.integers(1024, 65536, n)
    low = rng.random(n)
    sport[low < 0.15] = rng.integers(1, 1024, int((low < 0.15).sum()))
    sport[low < 0.05] = 20  # FTP data: never scheduled
    mark = rng.choice(marks, n).astype(np.uint32)
    text = "".join(
        f"{p},{s},{sp},{d},{dp},{hex(m) if i % 3 else m}\n"
        for i, (p, s, sp, d, dp, m) in enumerate(
            zip(proto, saddr, sport.tolist(), daddr, dport, mark.tolist())
        )
    )
    if family == 4:
        addr = pa.array([int(ipaddress.IPv4Address(a)) for a in saddr], pa.uint32())
        dst = pa.array([int(ipaddress.IPv4Address(a)) for a in daddr], pa.uint32())
    else:
        addr = pa.array([ipaddress.IPv6Address(a).packed for a in saddr], pa.binary(16))
        dst = pa.array([ipaddress.IPv6Address(a).packed for a in daddr], pa.binary(16))
    table = pa.table({
        "proto": pa.array(proto).dictionary_encode(), "saddr": addr,
        "sport": pa.array(sport, pa.uint16()), "daddr": dst,
        "dport": pa.array(dport, pa.uint16()), "mark": mark,
    })  # fmt: skip
    return text, table


def _main(*argv):
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    rc = cli.main(list(argv), stdout=out)
    out.flush()
    assert rc == 0
    return raw.getvalue().decode()


def _csv_answers(history_path, text, tmp_path):
    """(raddr, rport) per flow from `maglevx predict` over CSV (the reference)."""
    p = tmp_path / "flows.csv"
    p.write_text(text)
    out = _main("predict", "--history", str(history_path), str(p))
    answers = []
    for line in out.splitlines():
        raddr, rport = line.split(",")[-2:]
        answers.append(None if not raddr else (ipaddress.ip_address(raddr), int(rport)))
    return answers


def _arrow_answers(result):
    answers = []
    for a, p in zip(result["raddr"].to_pylist(), result["rport"].to_pylist()):
        if a is None:
            assert p is None
            answers.append(None)
        else:
            addr = ipaddress.ip_address(a if not isinstance(a, str) else a)
            answers.append((addr, p))
    return answers


CASES = [(t, f) for t in THEMES for f in (4, 6)]


@pytest.fixture
def history_path(tmp_path, request):
    theme = request.node.callspec.params["theme"]
    p = tmp_path / "h.txt"
    p.write_text(THEMES[theme][0])
    return p


@pytest.mark.parametrize(("theme", "family"), CASES)
def test_arrow_batches_equal_csv_predict(theme, family, history_path, tmp_path):
    text, table = _flows(theme, family, N)
    want = _csv_answers(history_path, text, tmp_path)
    assert len(want) == N
    d = Director.from_history(THEMES[theme][0])
    p = arrow.ArrowPredictor(d, reuse=True)
    got = []
    for batch in table.to_batches(max_chunksize=BATCH):
        got += _arrow_answers(p.predict(batch))
    assert got == want
    # the test can fail: these flows depend on templates
    fresh = [
        _arrow_answers(arrow.predict_arrow(Director.from_history(THEMES[theme][0]), b))
        for b in table.to_batches(max_chunksize=BATCH)
    ]
    if theme != "toggle" or family == 4:
        assert sum(fresh, []) != want, "no flow followed a template of an earlier batch"


@pytest.mark.parametrize(("theme", "family"), CASES)
def test_parquet_predict_equals_csv_predict(theme, family, history_path, tmp_path):
    text, table = _flows(theme, family, N, seed=7)
    want = _csv_answers(history_path, text, tmp_path)
    path = tmp_path / "flows.parquet"
    pq.write_table(table, path, row_group_size=BATCH * 3)
    # the CLI (row groups of 291 rows)
    out = _main("predict", "--history", str(history_path), str(path))
    got = [None if not a else (ipaddress.ip_address(a), int(p))
           for a, p in (line.split(",")[-2:] for line in out.splitlines())]  # fmt: skip
    assert got == want
    # string address columns, Parquet out, batches smaller than a row group
    strings = table.set_column(
        1, "saddr", arrow.address_strings(pa, table["saddr"].combine_chunks())
    ).set_column(3, "daddr", arrow.address_strings(pa, table["daddr"].combine_chunks()))
    spath = tmp_path / "strings.parquet"
    pq.write_table(strings, spath, row_group_size=BATCH * 3)
    sink = io.BytesIO()
    with open(spath, "rb") as f:
        arrow.predict_columnar(
            Director.from_history(THEMES[theme][0]), f, sink, "parquet",
            output_format="parquet", batch_rows=BATCH, strict=False,
        )  # fmt: skip
    result = pq.read_table(io.BytesIO(sink.getvalue()))
    assert _arrow_answers(result) == want


def test_templates_stay_with_the_director_between_predictors():
    """One director's templates, whichever predictor or call decides."""
    _, table = _flows("persist", 4, 600, seed=3)
    whole = _arrow_answers(arrow.predict_arrow(Director.from_history(PERSIST), table))
    d = Director.from_history(PERSIST)
    first = _arrow_answers(arrow.predict_arrow(d, table.slice(0, 300)))
    assert len(d.templates) > 0
    second = _arrow_answers(arrow.ArrowPredictor(d).predict(table.slice(300)))
    assert first + second == whole
    d = Director.from_history(PERSIST)
    arrow.predict_arrow(d, table.slice(0, 300))
    d.reset_templates()  # as if every template had expired
    forgot = _arrow_answers(arrow.predict_arrow(d, table.slice(300)))
    assert forgot != second


def test_a_bad_row_changes_no_template():
    """A batch with a bad row is refused whole: templates stay as before."""
    _, table = _flows("persist", 4, 600, seed=4)
    d = Director.from_history(PERSIST)
    p = arrow.ArrowPredictor(d, strict=True)
    # row 250 goes to no virtual service (10.0.0.99 is in the theme: drop it)
    keep = [i for i, v in enumerate(table["daddr"].to_pylist())
            if v != int(ipaddress.IPv4Address("10.0.0.99"))]  # fmt: skip
    table = table.take(keep)
    dport = table["dport"].to_pylist()
    dport[250] = 81
    bad = table.set_column(4, "dport", pa.array(dport, pa.uint16()))
    with pytest.raises(MaglevxError, match=r"row 250: no virtual service"):
        p.predict(bad)
    assert len(d.templates) == 0
    assert p.predict(bad.slice(0, 250)).num_rows == 250


def _vector_cases():
    out = []
    for path in sorted((Path(__file__).parent / "vectors").glob("decision-*.json.gz")):
        with gzip.open(path, "rt") as f:
            scenarios = json.load(f)["scenarios"]
        out += [(path, i, s["scenario"]["name"]) for i, s in enumerate(scenarios)]
    return out


VECTORS = _vector_cases()


def _runs(flows):
    """Consecutive flows of one family (an Arrow batch holds one)."""
    runs: list[list[str]] = []
    fam = None
    for flow in flows:
        f = ":" in flow.split(",")[1]
        if runs and f == fam:
            runs[-1].append(flow)
        else:
            runs.append([flow])
            fam = f
    return runs


@pytest.mark.parametrize(
    ("path", "index"),
    [(p, i) for p, i, _ in VECTORS],
    ids=[f"{p.name}-{n}" for p, _, n in VECTORS],
)
def test_kernel_decision_vectors_through_arrow(path, index):
    """Debian's real kernels' answers (tests/vectors, see test_decision_vectors)."""
    with gzip.open(path, "rt") as f:
        data = json.load(f)["scenarios"][index]
    sc = data["scenario"]
    d = Director(
        expire_quiescent_template=bool(
            sc["meta"].get("sysctl", {}).get("expire_quiescent_template")
        )
    )
    p = arrow.ArrowPredictor(d, reuse=True)
    bad = []
    for j, (ph, got) in enumerate(zip(sc["phases"], data["phases"])):
        for line in ph["history"]:
            d.apply(line)
        ops = {(ipaddress.ip_address(c), pt): (dd, dp)
               for c, pt, dd, dp in got["one_packet"]}  # fmt: skip
        answers = []
        for run in _runs(ph["flows"]):
            fields = [x.split(",") for x in run]
            batch = pa.record_batch({
                "proto": [f[0] for f in fields],
                "saddr": [f[1] for f in fields],
                "sport": pa.array([int(f[2]) for f in fields], pa.uint16()),
                "daddr": [f[3] for f in fields],
                "dport": pa.array([int(f[4]) for f in fields], pa.uint16()),
                "mark": pa.array([int(f[5]) if len(f) > 5 else 0 for f in fields],
                                 pa.uint32()),
            })  # fmt: skip
            answers += _arrow_answers(p.predict(batch))
        assert len(answers) == len(ph["flows"])
        for flow, model, (raddr, rport, _status) in zip(ph["flows"], answers,
                                                         got["kernel"]):  # fmt: skip
            f = flow.split(",")
            kernel = (ipaddress.ip_address(raddr), rport) if raddr else None
            if kernel is None and model is not None:
                # a one-packet (-o) datagram: no entry, seen on its way out
                seen = ops.get((ipaddress.ip_address(f[1]), int(f[2])))
                if seen is not None:
                    kernel = (ipaddress.ip_address(seen[0]), seen[1])
            if kernel != model:
                bad.append((j, flow, kernel, model))
        # the templates the Arrow path left are the kernel's (ip_vs_conn)
        ip = ipaddress.ip_address
        want = {(pr, ip(c), ip(v), vp, ip(da), dp)
                for pr, c, v, vp, da, dp in got["templates"]}  # fmt: skip
        have = {(t.protocol, t.client, t.vaddr, t.vport, t.daddr, t.dport)
                for t in d.templates}  # fmt: skip
        assert have == want, (
            f"phase {j}: kernel only {want - have}, maglevx only {have - want}"
        )
    assert not bad, f"{len(bad)} flows differ, e.g. {bad[:3]}"
