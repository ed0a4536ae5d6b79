"""DuckDB and Polars integration: answers equal to Director.lookup_many.

Director.lookup_many is the reference (checked against the kernel by the
frozen vectors and tests/kernel). Inputs are large enough that DuckDB calls
the UDF with many vectors and Polars' streaming engine with many batches.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")
import pyarrow.parquet as pq  # noqa: E402
from test_arrow import DESTS4, HISTORY, _flows4, _u32  # noqa: E402

from maglevx import Director, MaglevxError  # noqa: E402
from maglevx.backend import PURE_PYTHON  # noqa: E402
from maglevx.dataframes import polars_expr, register_duckdb  # noqa: E402

N = 3000 if PURE_PYTHON else 20_000


@pytest.fixture(scope="module")
def director():
    return Director.from_history(HISTORY)


@pytest.fixture(scope="module")
def flows(director):
    proto, saddr, sport, daddr, dport = _flows4(N, seed=11)
    stext = [str(ipaddress.IPv4Address(int(a))) for a in saddr]
    ref = director.lookup_many(proto, stext, sport, daddr, dport)
    expected = [None if rs is None else (int(rs.address), rs.port) for rs in ref]
    table = pa.table({"proto": proto, "saddr": saddr, "sport": sport,
                      "daddr": _u32(daddr), "dport": dport})  # fmt: skip
    return table, stext, daddr, expected


def _pairs(struct_rows, conv=lambda a: a):
    return [
        None if r is None or r["raddr"] is None else (conv(r["raddr"]), r["rport"])
        for r in struct_rows
    ]


def test_duckdb_uint32_udf(director, flows):
    table, _, _, expected = flows
    con = duckdb.connect()
    register_duckdb(con, director)
    con.register("flows", table)
    rows = con.sql(
        "SELECT maglevx(proto, saddr, sport, daddr, dport) AS r FROM flows"
    ).fetchall()
    got = [
        None if r[0]["raddr"] is None else (r[0]["raddr"], r[0]["rport"]) for r in rows
    ]
    assert got == expected
    assert None in got and len(set(got)) > 3


def test_duckdb_over_parquet_with_varchar_addresses(director, flows, tmp_path):
    table, stext, dtext, expected = flows
    path = tmp_path / "flows.parquet"
    t = table.set_column(1, "saddr", pa.array(stext)).set_column(
        3, "daddr", pa.array(dtext)
    )
    pq.write_table(t, path, row_group_size=4096)
    con = duckdb.connect()
    register_duckdb(con, director, name="mx", address="varchar")
    con.execute("SET threads=1")  # rows in file order
    rows = con.sql(
        f"SELECT r.raddr, r.rport FROM (SELECT mx(proto, saddr, sport, daddr, dport) "
        f"AS r FROM read_parquet('{path}'))"
    ).fetchall()
    got = [None if a is None else (int(ipaddress.IPv4Address(a)), p) for a, p in rows]
    assert got == expected
    # the agreement in SQL: how many flows have no destination
    nulls = con.sql(
        f"SELECT count(*) FROM read_parquet('{path}') "
        "WHERE mx(proto, saddr, sport, daddr, dport).raddr IS NULL"
    ).fetchall()[0][0]
    assert nulls == expected.count(None)


def test_duckdb_ipv6_blob(director):
    rng = np.random.default_rng(12)
    n = 500
    raw = [bytes(r) for r in rng.integers(0, 256, (n, 16), dtype=np.uint8)]
    sport = rng.integers(0, 65536, n, dtype=np.uint16)
    d6 = ipaddress.IPv6Address("2001:db8::1")
    t = pa.table({"proto": ["tcp"] * n, "saddr": pa.array(raw, pa.binary()),
                  "sport": sport, "daddr": pa.array([d6.packed] * n, pa.binary()),
                  "dport": np.full(n, 443, np.uint16)})  # fmt: skip
    con = duckdb.connect()
    register_duckdb(con, director, address="blob")
    con.register("f6", t)
    rows = con.sql(
        "SELECT maglevx(proto, saddr, sport, daddr, dport) FROM f6"
    ).fetchall()
    got = [
        None if r[0]["raddr"] is None else (bytes(r[0]["raddr"]), r[0]["rport"])
        for r in rows
    ]
    ref = director.lookup_many(
        ["tcp"] * n, [str(ipaddress.IPv6Address(b)) for b in raw], sport,
        [str(d6)] * n, np.full(n, 443),
    )  # fmt: skip
    assert got == [None if rs is None else (rs.address.packed, rs.port) for rs in ref]


def test_duckdb_strict_error(director, flows):
    table, *_ = flows
    con = duckdb.connect()
    register_duckdb(con, director, strict=True)
    con.register("flows", table)
    with pytest.raises(
        # the first bad row of the vector, in input order
        duckdb.Error,
        match=r"row \d+: no (mh )?virtual service for",
    ):
        con.sql(
            "SELECT maglevx(proto, saddr, sport, daddr, dport) FROM flows"
        ).fetchall()
    with pytest.raises(MaglevxError, match="address type 'inet'"):
        register_duckdb(con, director, address="inet")


def test_polars_streaming_expression(director, flows):
    table, stext, dtext, expected = flows
    lf = pl.from_arrow(table).lazy().with_columns(pl.col("proto").cast(pl.Categorical))
    out = (
        lf.with_columns(polars_expr(director).alias("r"))
        .unnest("r")
        .collect(engine="streaming")
    )
    got = [None if a is None else (a, p) for a, p in zip(out["raddr"], out["rport"])]
    assert got == expected
    assert out.schema["raddr"] == pl.UInt32 and out.schema["rport"] == pl.UInt16


def test_polars_string_columns_and_ipv6(director, flows):
    table, stext, dtext, expected = flows
    df = pl.DataFrame({"p": table["proto"].to_pylist(), "s": stext,
                       "sp": table["sport"].to_numpy().astype(np.int64), "d": dtext,
                       "dp": table["dport"].to_numpy()})  # fmt: skip
    expr = polars_expr(
        director,
        proto="p",
        saddr="s",
        sport="sp",
        daddr="d",
        dport="dp",
        address="string",
    )
    out = df.lazy().select(expr.alias("r")).unnest("r").collect(engine="streaming")
    got = [
        None if a is None else (int(ipaddress.IPv4Address(a)), p)
        for a, p in zip(out["raddr"], out["rport"])
    ]
    assert got == expected
    # IPv6 as 16-byte Binary
    d6 = ipaddress.IPv6Address("2001:db8::1").packed
    raw = [bytes([i % 256]) * 16 for i in range(300)]
    df6 = pl.DataFrame({"proto": ["tcp"] * 300, "saddr": raw, "sport": list(range(300)),
                        "daddr": [d6] * 300, "dport": [443] * 300})  # fmt: skip
    out6 = (
        df6.lazy()
        .select(polars_expr(director, address="binary").alias("r"))
        .unnest("r")
    )
    out6 = out6.collect(engine="streaming")
    ref = director.lookup_many(
        ["tcp"] * 300, [str(ipaddress.IPv6Address(b)) for b in raw], list(range(300)),
        ["2001:db8::1"] * 300, [443] * 300,
    )  # fmt: skip
    assert [
        None if a is None else (a, p) for a, p in zip(out6["raddr"], out6["rport"])
    ] == [None if rs is None else (rs.address.packed, rs.port) for rs in ref]


def test_polars_bad_row_raises(director):
    df = pl.DataFrame({"proto": ["tcp", "icmp"], "saddr": pl.Series([1, 2], dtype=pl.UInt32),
                       "sport": [1, 2], "daddr": pl.Series([1, 2], dtype=pl.UInt32),
                       "dport": [1, 2]})  # fmt: skip
    with pytest.raises(
        Exception, match=r"field 'proto': row \d+: unknown protocol 'icmp'"
    ):
        df.lazy().select(polars_expr(director)).collect(engine="streaming")


def test_dests_used():
    assert DESTS4[0] == ("tcp", "10.0.0.1", 80)


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_persistent_director_refused(engine):
    """Engines run batches in any order; templates need input order."""
    d = Director.from_history(
        "-A -t 10.0.0.1:80 -s mh -p 300\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m\n"
    )
    with pytest.raises(
        MaglevxError, match=r"persistent services \(TCP 10\.0\.0\.1:80\) need"
    ):
        if engine == "duckdb":
            register_duckdb(duckdb.connect(), d)
        else:
            polars_expr(d)
