"""maglevx.dask on a real distributed.LocalCluster: 2 worker processes.

The reference is one process: ArrowPredictor over the whole table (itself
equal to Director.lookup_many, tests/test_arrow.py). Each worker rebuilds the
director from its pickle.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from test_arrow import DESTS4, HISTORY, _flows4, _u32  # noqa: E402

from maglevx import Director, MaglevxError  # noqa: E402
from maglevx import dask as mdask  # noqa: E402
from maglevx.arrow import predict_arrow  # noqa: E402
from maglevx.backend import PURE_PYTHON  # noqa: E402

N = 4000 if PURE_PYTHON else 40_000


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as c:  # fmt: skip
        yield c


@pytest.fixture(scope="module")
def director():
    return Director.from_history(HISTORY)


def _frame(n, seed=21):
    proto, saddr, sport, daddr, dport = _flows4(n, seed=seed, dests=DESTS4[:2])
    return pd.DataFrame({"proto": proto, "saddr": saddr, "sport": sport,
                         "daddr": _u32(daddr), "dport": dport})  # fmt: skip


def _na(series):
    return [None if v is pd.NA or v is None else v for v in series.tolist()]


def test_predict_on_two_worker_processes_equals_one_process(client, director):
    df = _frame(N)
    ddf = dd.from_pandas(df, npartitions=8)
    got = mdask.predict(ddf, director).compute()
    workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2  # two processes did the work
    ref = predict_arrow(director, pa.Table.from_pandas(df, preserve_index=False))
    assert _na(got["raddr"]) == ref["raddr"].to_pylist()
    assert _na(got["rport"]) == ref["rport"].to_pylist()
    assert got["raddr"].isna().any()  # the drained server: no destination
    assert list(got.index) == list(df.index)


def test_ipv6_bytes_and_string_addresses(client, director):
    rng = np.random.default_rng(22)
    raw = [bytes(r) for r in rng.integers(0, 256, (1000, 16), dtype=np.uint8)]
    d6 = ipaddress.IPv6Address("2001:db8::1").packed
    b16 = pd.ArrowDtype(pa.binary(16))  # dask would turn object bytes into str
    df = pd.DataFrame({"proto": ["tcp"] * 1000, "saddr": pd.array(raw, dtype=b16),
                       "sport": rng.integers(0, 65536, 1000).astype(np.uint16),
                       "daddr": pd.array([d6] * 1000, dtype=b16),
                       "dport": np.full(1000, 443, np.uint16)})  # fmt: skip
    got = mdask.predict(dd.from_pandas(df, npartitions=3), director).compute()
    ref = director.lookup_many(
        ["tcp"] * 1000, [str(ipaddress.IPv6Address(b)) for b in raw], df["sport"],
        ["2001:db8::1"] * 1000, df["dport"],
    )  # fmt: skip
    assert [None if a is None or a is pd.NA else bytes(a) for a in got["raddr"]] == [
        None if rs is None else rs.address.packed for rs in ref
    ]
    s = _frame(500, seed=23)
    s["saddr"] = [str(ipaddress.IPv4Address(int(a))) for a in s["saddr"]]
    s["daddr"] = [str(ipaddress.IPv4Address(int(a))) for a in s["daddr"]]
    got = mdask.predict(dd.from_pandas(s, npartitions=2), director).compute()
    ref = director.lookup_many(s["proto"].tolist(), s["saddr"].tolist(), s["sport"],
                               s["daddr"].tolist(), s["dport"])  # fmt: skip
    assert [None if a is pd.NA or a is None else a for a in got["raddr"]] == [
        None if rs is None else str(rs.address) for rs in ref
    ]


def test_bad_row_names_partition_and_row(client, director):
    df = _frame(1000, seed=24)
    df["sport"] = df["sport"].astype(np.int64)
    df.loc[617, "sport"] = 70000  # partition 2 of 4 (250 rows each), row 117
    ddf = dd.from_pandas(df, npartitions=4, sort=False)
    with pytest.raises(
        MaglevxError,
        match=r"partition 2: field 'sport': row 117: 70000 is outside 0\.\.65535",
    ):
        mdask.predict(ddf, director).compute()
    with pytest.raises(MaglevxError, match="no column dport"):
        mdask.predict(ddf.drop(columns=["dport"]), director)


def test_persistent_director_partitions_in_order_equal_one_process(client):
    """Templates made in one partition decide flows of the later ones."""
    from test_arrow_decisions import PERSIST, _flows

    n = 600 if PURE_PYTHON else 4000
    _, table = _flows("persist", 4, n, seed=26)
    df = table.to_pandas()
    df["proto"] = df["proto"].astype(str)
    ddf = dd.from_pandas(df, npartitions=6, sort=False)
    director = Director.from_history(PERSIST)
    got = mdask.predict(ddf, director, strict=False).compute()
    assert len(director.templates) == 0  # the caller's director is untouched
    ref = predict_arrow(
        Director.from_history(PERSIST), pa.Table.from_pandas(df, preserve_index=False)
    )
    assert _na(got["raddr"]) == ref["raddr"].to_pylist()
    assert _na(got["rport"]) == ref["rport"].to_pylist()
    assert list(got.index) == list(df.index)
    # the test can fail: fresh templates per partition give other answers
    fresh = []
    for part in np.array_split(np.arange(n), 6):
        t = pa.Table.from_pandas(df.iloc[part], preserve_index=False)
        fresh += predict_arrow(Director.from_history(PERSIST), t)["rport"].to_pylist()
    assert fresh != ref["rport"].to_pylist()
    # a bad row still names its partition and row
    df.loc[n - 5, "sport"] = 0
    df["sport"] = df["sport"].astype(np.int64)
    df.loc[n - 5, "sport"] = 70000
    last = len(np.array_split(np.arange(n), 6)[-1])
    with pytest.raises(
        MaglevxError,
        match=rf"partition 5: field 'sport': row {last - 5}: 70000 is outside",
    ):
        mdask.predict(dd.from_pandas(df, npartitions=6, sort=False), director,
                      strict=False).compute()  # fmt: skip


def test_verify_counts_mismatches_per_partition(client, director):
    df = _frame(2000, seed=25)
    truth = predict_arrow(director, pa.Table.from_pandas(df, preserve_index=False))
    df["observed_raddr"] = pd.array(truth["raddr"].to_pylist(), dtype="UInt32")
    df["observed_rport"] = pd.array(truth["rport"].to_pylist(), dtype="UInt16")
    df.loc[[5, 6, 1500], "observed_rport"] = 1  # three wrong decisions
    rep = mdask.verify(dd.from_pandas(df, npartitions=4, sort=False), director)
    assert rep["flows"].tolist() == [500] * 4
    assert rep["mismatches"].tolist() == [2, 0, 0, 1]


def test_fleet_example_finds_the_drifted_director(client):
    """examples/fleet_verify.py's day of logs: only director 7 disagrees."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "fleet_verify.py"
    spec = importlib.util.spec_from_file_location("fleet_verify", path)
    fleet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fleet)
    frames = fleet.day_of_logs(10, 300 if PURE_PYTHON else 3000)
    ddf = dd.from_pandas(
        pd.concat(frames, ignore_index=True), npartitions=10, sort=False
    )
    rep = mdask.verify(ddf, Director.from_history(fleet.INTENDED))
    assert rep["partition"].tolist() == list(range(10))
    bad = rep[rep["mismatches"] > 0]["partition"].tolist()
    assert bad == [7]
    share = rep["mismatches"][7] / rep["flows"][7]
    assert 0.03 < share < 0.3  # one server's weight 1 -> 2 of 8 moves ~10%
