"""maglevx.arrow: Arrow columns in, real servers out, equal to Director.lookup_many.

The reference is Director.lookup_many (itself checked against the kernel by
the frozen vectors and tests/kernel); these tests check that the Arrow path
gives the same answers for every column type it takes, names the row and
column of bad input, and allocates no output memory per batch when asked.
"""

from __future__ import annotations

import ipaddress
import tracemalloc

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from maglevx import Director, MaglevxError  # noqa: E402
from maglevx.arrow import ArrowPredictor, predict_arrow  # noqa: E402
from maglevx.backend import PURE_PYTHON  # noqa: E402

N = 300 if PURE_PYTHON else 5000

HISTORY = """
-A -t 10.0.0.1:80 -s mh -b mh-port
-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
-a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 2
-a -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 1
-e -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 0
-A -u 10.0.0.2:53 -s mh
-a -u 10.0.0.2:53 -r 10.1.0.9:53 -m -w 1
-a -u 10.0.0.2:53 -r 10.1.0.8:53 -m -w 1
-A -t 10.0.0.3:80 -s rr
-a -t 10.0.0.3:80 -r 10.1.0.7:80 -m
-A -f 7 -s mh -b mh-port
-a -f 7 -r 10.2.0.1:0 -m
-a -f 7 -r 10.2.0.2:0 -m
-A -t [2001:db8::1]:443 -s mh -b mh-port
-a -t [2001:db8::1]:443 -r [2001:db8:1::1]:443 -m
-a -t [2001:db8::1]:443 -r [2001:db8:1::2]:443 -m
-a -t [2001:db8::1]:443 -r [2001:db8:1::3]:443 -m -w 3
-e -t [2001:db8::1]:443 -r [2001:db8:1::3]:443 -m -w 0
"""

DESTS4 = [("tcp", "10.0.0.1", 80), ("udp", "10.0.0.2", 53), ("tcp", "10.0.0.3", 80),
          ("sctp", "10.0.0.9", 1)]  # fmt: skip


@pytest.fixture(scope="module")
def director():
    return Director.from_history(HISTORY)


def _flows4(n, seed=1, dests=DESTS4):
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(dests), n)
    proto = [dests[i][0] for i in pick]
    daddr = [dests[i][1] for i in pick]
    dport = np.array([dests[i][2] for i in pick], np.uint16)
    saddr = rng.integers(0, 2**32, n, dtype=np.uint32)
    sport = rng.integers(0, 65536, n, dtype=np.uint16)
    return proto, saddr, sport, daddr, dport


def _expected(director, proto, saddrs_text, sport, daddrs_text, dport):
    ref = director.lookup_many(proto, saddrs_text, sport, daddrs_text, dport)
    return [None if rs is None else (str(rs.address), rs.port) for rs in ref]


def _got(result):
    out = []
    for a, p in zip(result["raddr"].to_pylist(), result["rport"].to_pylist()):
        if a is None:
            assert p is None
            out.append(None)
        elif isinstance(a, int):
            out.append((str(ipaddress.IPv4Address(a)), p))
        elif isinstance(a, bytes):
            out.append((str(ipaddress.IPv6Address(a)), p))
        else:
            out.append((a, p))
    return out


def _u32(texts):
    return np.array([int(ipaddress.IPv4Address(t)) for t in texts], np.uint32)


def test_ipv4_columns_equal_director_lookup_many(director):
    proto, saddr, sport, daddr, dport = _flows4(N)
    table = pa.table({"proto": proto, "saddr": saddr, "sport": sport,
                      "daddr": _u32(daddr), "dport": dport})  # fmt: skip
    result = predict_arrow(director, table)
    assert result.schema.field("raddr").type == pa.uint32()
    assert result.schema.field("rport").type == pa.uint16()
    stext = [str(ipaddress.IPv4Address(int(a))) for a in saddr]
    exp = _expected(director, proto, stext, sport, daddr, dport)
    got = _got(result)
    assert got == exp
    # every kind of answer is there: a server, a drained one's slot (null),
    # an rr service (null), no service at all (null)
    assert any(g is None for g, p in zip(got, proto) if p == "tcp")
    assert {g[0] for g in got if g} >= {"10.1.0.1", "10.1.0.2", "10.1.0.9"}


def test_ipv6_fixed_size_binary_equal_director_lookup_many(director):
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, (N, 16), dtype=np.uint8)
    sport = rng.integers(0, 65536, N, dtype=np.uint16)
    d6 = ipaddress.IPv6Address("2001:db8::1").packed
    saddr = pa.array([bytes(r) for r in raw], pa.binary(16))
    daddr = pa.array([d6] * N, pa.binary(16))
    proto = pa.array(["tcp"] * N).dictionary_encode()
    table = pa.table({"proto": proto, "saddr": saddr, "sport": sport,
                      "daddr": daddr, "dport": np.full(N, 443, np.uint16)})  # fmt: skip
    result = predict_arrow(director, table)
    assert result.schema.field("raddr").type == pa.binary(16)
    stext = [str(ipaddress.IPv6Address(bytes(r))) for r in raw]
    exp = _expected(director, ["tcp"] * N, stext, sport, ["2001:db8::1"] * N,
                    np.full(N, 443))  # fmt: skip
    got = _got(result)
    assert got == exp
    assert None in got  # the drained server keeps slots (upstream)


def test_sliced_and_chunked_columns(director):
    """Offsets into Arrow buffers (a slice, several chunks) are honoured."""
    proto, saddr, sport, daddr, dport = _flows4(400, seed=3)
    table = pa.table({"proto": proto, "saddr": saddr, "sport": sport,
                      "daddr": _u32(daddr), "dport": dport})  # fmt: skip
    whole = _got(predict_arrow(director, table))
    sliced = table.slice(37, 200)
    assert _got(predict_arrow(director, sliced)) == whole[37:237]
    chunked = pa.concat_tables([table.slice(0, 100), table.slice(100)])
    assert _got(predict_arrow(director, chunked)) == whole
    # IPv6 slice: the fixed_size_binary buffer offset
    raw = [bytes([i]) * 16 for i in range(50)]
    t6 = pa.table({"proto": ["tcp"] * 50, "saddr": pa.array(raw, pa.binary(16)),
                   "sport": pa.array(range(50), pa.uint16()),
                   "daddr": pa.array([ipaddress.IPv6Address("2001:db8::1").packed] * 50,
                                     pa.binary(16)),
                   "dport": pa.array([443] * 50, pa.uint16())})  # fmt: skip
    full6 = _got(predict_arrow(director, t6))
    assert _got(predict_arrow(director, t6.slice(10, 20))) == full6[10:30]


def test_string_addresses_and_any_integer_ports(director):
    proto, saddr, sport, daddr, dport = _flows4(300, seed=4)
    stext = [str(ipaddress.IPv4Address(int(a))) for a in saddr]
    table = pa.table({"proto": proto, "saddr": stext,
                      "sport": sport.astype(np.int64), "daddr": daddr,
                      "dport": dport.astype(np.int32)})  # fmt: skip
    result = predict_arrow(director, table)
    assert result.schema.field("raddr").type == pa.string()
    assert _got(result) == _expected(director, proto, stext, sport, daddr, dport)


def test_mark_selects_the_fwmark_service(director):
    n = 200
    proto, saddr, sport, daddr, dport = _flows4(
        n, seed=5, dests=[("tcp", "10.9.9.9", 80)]
    )
    mark = np.full(n, 7, np.uint32)
    mark[::2] = 0  # no mark: no service
    table = pa.table({"proto": proto, "saddr": saddr, "sport": sport,
                      "daddr": _u32(daddr), "dport": dport, "mark": mark})  # fmt: skip
    got = _got(predict_arrow(director, table))
    svc = director.service(("fwmark", 7, 4))
    for i in range(n):
        if mark[i]:
            rs = svc.schedule(
                str(ipaddress.IPv4Address(int(saddr[i]))), int(sport[i]), "tcp"
            )
            # a real server without a port takes the flow's (ip_vs_schedule(),
            # 6.1:549-551; kernel theme fwmark in docs/decision-path.md)
            assert rs.port == 0
            assert got[i] == (str(rs.address), int(dport[i]))
        else:
            assert got[i] is None


def test_strict_names_the_row(director):
    proto, saddr, sport, daddr, dport = _flows4(50, seed=6, dests=DESTS4[:2])
    proto[17], daddr[17], dport[17] = "tcp", "10.0.0.3", 80  # an rr service
    table = pa.table({"proto": proto, "saddr": saddr, "sport": sport,
                      "daddr": _u32(daddr), "dport": dport})  # fmt: skip
    p = ArrowPredictor(director, strict=True)
    p.predict(table.slice(0, 10))
    with pytest.raises(
        MaglevxError, match=r"row 17: no mh virtual service for tcp 10\.0\.0\.3 port 80"
    ):
        p.predict(table.slice(10))  # rows count across batches


def _table(**over):
    cols = {"proto": pa.array(["tcp", "tcp"]), "saddr": pa.array([1, 2], pa.uint32()),
            "sport": pa.array([1, 2], pa.uint16()),
            "daddr": pa.array([int(ipaddress.IPv4Address("10.0.0.1"))] * 2, pa.uint32()),
            "dport": pa.array([80, 80], pa.uint16())}  # fmt: skip
    for k, v in over.items():
        if v is None:
            del cols[k]
        else:
            cols[k] = v
    return pa.table(cols)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"sport": None}, r"field 'sport': missing column sport"),
        (
            {"sport": None, "proto": None},
            r"field 'proto': missing columns proto, sport",
        ),
        (
            {"sport": pa.array([1.0, 2.0])},
            r"field 'sport': expected integers, got double",
        ),
        (
            {"dport": pa.array([80, 70000], pa.int32())},
            r"field 'dport': row 1: 70000 is outside 0\.\.65535",
        ),
        ({"sport": pa.array([1, None], pa.uint16())}, r"field 'sport': row 1: null"),
        (
            {"saddr": pa.array([1, 2], pa.int64())},
            r"field 'saddr': expected uint32 \(IPv4\), fixed_size_binary\(16\) \(IPv6\) or strings, got int64",
        ),
        (
            {"saddr": pa.array(["1.2.3.4", "1.2.3"])},
            r"field 'saddr': row 1: '1\.2\.3' is not an IPv4 address",
        ),
        (
            {"proto": pa.array(["tcp", "icmp"])},
            r"field 'proto': row 1: unknown protocol 'icmp'",
        ),
        ({"proto": pa.array([1, 2])}, r"field 'proto': expected strings"),
        (
            {"daddr": pa.array([b"x" * 16] * 2, pa.binary(16))},
            r"field 'daddr': daddr is fixed_size_binary\(16\) but saddr is uint32",
        ),
        (
            {"mark": pa.array([1.5, 2.5])},
            r"field 'mark': expected integers, got double",
        ),
    ],
)
def test_bad_columns_one_clear_error(director, over, message):
    with pytest.raises(MaglevxError, match=message):
        predict_arrow(director, _table(**over))


def test_not_a_table(director):
    with pytest.raises(
        MaglevxError, match="expected a pyarrow RecordBatch or Table, got dict"
    ):
        predict_arrow(director, {"proto": ["tcp"]})


def test_empty_table(director):
    assert predict_arrow(director, _table().slice(0, 0)).num_rows == 0


def test_stream_of_batches_allocates_no_output_memory(director):
    """With reuse=True, batch after batch costs no new output buffers.

    A fresh result per batch would allocate n*(4+2) bytes (raddr, rport) plus
    a validity bitmap; tracemalloc (which numpy reports to) sees far less.
    """
    n = 2000 if PURE_PYTHON else 100_000
    proto, saddr, sport, daddr, dport = _flows4(n, seed=7, dests=DESTS4[:1])
    batch = pa.record_batch({"proto": pa.array(proto).dictionary_encode(),
                             "saddr": saddr, "sport": sport,
                             "daddr": _u32(daddr), "dport": dport})  # fmt: skip
    p = ArrowPredictor(director, reuse=True)
    first = _got(p.predict(batch))
    assert None in first  # nulls: the bitmap path is exercised too
    if PURE_PYTHON:  # the twin's lookups allocate Python lists; answers only
        assert _got(p.predict(batch.slice(5, 100))) == first[5:105]
        return
    tracemalloc.start()
    try:
        for _ in range(5):
            r = p.predict(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _got(r) == first
    assert peak < 64 * 1024, peak
    # without reuse every batch gets its own buffers (results stay valid)
    q = ArrowPredictor(director)
    a = q.predict(batch)
    q.predict(batch.slice(0, 10))
    assert _got(a) == first


def test_numpy_out_reused_allocates_nothing(director):
    """VirtualService.lookup_many with out=: no new array per batch."""
    svc = director.service(("tcp", ipaddress.ip_address("10.0.0.1"), 80))
    n = 2000 if PURE_PYTHON else 200_000
    rng = np.random.default_rng(8)
    addrs = rng.integers(0, 2**32, n, dtype=np.uint32)
    ports = rng.integers(0, 65536, n, dtype=np.uint16)
    out = np.empty(n, np.int32)
    ref = svc.lookup_many(addrs, ports)
    assert svc.lookup_many(addrs, ports, out=out) is not None
    np.testing.assert_array_equal(out, ref)
    if PURE_PYTHON:
        return
    tracemalloc.start()
    try:
        for _ in range(5):
            svc.lookup_many(addrs, ports, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024, peak
    with pytest.raises(MaglevxError, match="out must be a writable C-contiguous int32"):
        svc.lookup_many(addrs, ports, out=np.empty(n, np.int64))
