"""Predictions over a Dask DataFrame of flow logs, partition by partition.

:func:`predict` adds ``raddr`` and ``rport`` to every partition (the flow
columns of :mod:`maglevx.arrow`); :func:`verify` compares them with the real
servers a log recorded and counts the disagreements per partition. The
director travels to the workers as its pickle (a :class:`Director` pickles
by value: its parameters and state) and each worker process rebuilds it once
and keeps it. Results are those of one process, row for row.

Persistence templates (``-p``) are the director's state and need the flows
in input order (``docs/decision-path.md``). Templates never cross directors:
each director's frame carries its own. Within one director, the partitions
of a director with persistent services are decided one after another, in
partition order: each partition's task gets the director (with its
templates) from the previous partition's task, so the answers are those of
one ``maglevx predict`` run over the whole log; only different directors'
frames run in parallel. Directors without persistent services have no such
state and their partitions run in parallel.

A bad row raises MaglevxError naming the partition and the row within it,
e.g. ``partition 3: field 'sport': row 17: 70000 is outside 0..65535``.
dask and pyarrow are imported lazily (``pip install 'maglevx[dask]'``).
"""

from __future__ import annotations

import functools
import pickle
from typing import Any

from maglevx.arrow import COLUMNS, MARK, ArrowPredictor, require_pyarrow
from maglevx.decision import persistent
from maglevx.errors import MaglevxError
from maglevx.model import Director


@functools.lru_cache(maxsize=16)
def _director(blob: bytes) -> Director:
    """The director of a pickle, rebuilt once per worker process."""
    d = pickle.loads(blob)
    if not isinstance(d, Director):
        raise MaglevxError(f"expected a pickled Director, got {type(d).__name__}")
    return d


def _predict_partition(
    part: Any, blob: bytes, strict: bool, partition_info: Any = None
) -> Any:
    number = partition_info["number"] if partition_info else 0
    return _predict_frame(part, _director(blob), strict, number)


def _predict_in_order(
    part: Any, blob: bytes, strict: bool, number: int
) -> tuple[Any, bytes]:
    """One partition of a persistent director: (frame, director after it).

    The director (and its templates) comes pickled from the previous
    partition's task and goes on to the next one.
    """
    director = pickle.loads(blob)
    out = _predict_frame(part, director, strict, number)
    return out, pickle.dumps(director)


def _predict_frame(part: Any, director: Director, strict: bool, number: int) -> Any:
    import pandas as pd

    pa = require_pyarrow()
    cols = [c for c in (*COLUMNS, MARK) if c in part.columns]
    table = pa.Table.from_pandas(part[cols], preserve_index=False)
    try:
        for name in ("saddr", "daddr"):
            t = table.schema.field(name).type
            if pa.types.is_binary(t) or pa.types.is_large_binary(t):
                i = table.column_names.index(name)
                try:
                    table = table.set_column(i, name, table[name].cast(pa.binary(16)))
                except pa.ArrowInvalid:
                    raise MaglevxError(
                        "IPv6 addresses must be 16 bytes each", field=name
                    ) from None
        result = ArrowPredictor(director, strict=strict).predict(table)
    except MaglevxError as exc:
        raise MaglevxError(f"partition {number}: {exc}") from None
    out = part.copy(deep=False)
    out["raddr"] = pd.Series(
        pd.array(result["raddr"].combine_chunks(), dtype=pd.ArrowDtype(
            result.schema.field("raddr").type)),
        index=part.index,
    )  # fmt: skip
    out["rport"] = pd.Series(
        pd.array(result["rport"].combine_chunks(), dtype=pd.ArrowDtype(pa.uint16())),
        index=part.index,
    )
    return out


def _address_type(pa: Any, series: Any) -> Any:
    """The Arrow type raddr gets for a saddr column of this dtype."""
    dtype = series.dtype
    pa_type = getattr(dtype, "pyarrow_dtype", None)
    if pa_type is not None:
        if pa.types.is_uint32(pa_type) or pa.types.is_fixed_size_binary(pa_type):
            return pa_type
        return pa.string()
    if str(dtype) == "uint32":
        return pa.uint32()
    if dtype.kind == "O" and len(series) and isinstance(series.iloc[0], bytes):
        return pa.binary(16)
    return pa.string()


def predict(ddf: Any, director: Director, *, strict: bool = True) -> Any:
    """*ddf* with ``raddr`` and ``rport`` added, partition by partition.

    Columns as for :mod:`maglevx.arrow` (``saddr``/``daddr`` as uint32,
    16-byte values or strings). *strict*: a flow no mh service takes is an
    error (as for ``maglevx predict``); else its ``raddr`` is null.
    """
    import pandas as pd

    pa = require_pyarrow()
    if not isinstance(director, Director):
        raise MaglevxError(f"expected a Director, got {type(director).__name__}")
    missing = [c for c in COLUMNS if c not in ddf.columns]
    if missing:
        raise MaglevxError(
            f"no column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"flows need {', '.join(COLUMNS)}"
        )
    blob = pickle.dumps(director)
    meta = ddf._meta.copy()
    meta["raddr"] = pd.Series([], dtype=pd.ArrowDtype(_address_type(pa, meta["saddr"])))
    meta["rport"] = pd.Series([], dtype=pd.ArrowDtype(pa.uint16()))
    if any(persistent(s) for s in director.services):
        return _predict_chain(ddf, blob, strict, meta)
    return ddf.map_partitions(_predict_partition, blob, strict, meta=meta)


def _predict_chain(ddf: Any, blob: bytes, strict: bool, meta: Any) -> Any:
    """Partitions one after another, the director passed along (templates)."""
    import dask
    import dask.dataframe as dd

    outs = []
    state: Any = blob
    for number, part in enumerate(ddf.to_delayed()):
        task = dask.delayed(_predict_in_order, nout=2, pure=True)(
            part, state, strict, number
        )
        outs.append(task[0])
        state = task[1]
    return dd.from_delayed(outs, meta=meta, divisions=ddf.divisions, verify_meta=False)


def _verify_partition(
    part: Any, observed: tuple[str, str], partition_info: Any = None
) -> Any:
    import pandas as pd

    raddr, rport = observed
    got_a, got_p = part["raddr"], part["rport"]
    want_a, want_p = part[raddr], part[rport]
    same = (got_a.astype(object).fillna(-1).to_numpy() == want_a.astype(object)
            .fillna(-1).to_numpy()) & (
        got_p.astype(object).fillna(-1).to_numpy()
        == want_p.astype(object).fillna(-1).to_numpy()
    )  # fmt: skip
    number = partition_info["number"] if partition_info else 0
    return pd.DataFrame(
        {
            "partition": [number],
            "flows": [len(part)],
            "mismatches": [int((~same).sum())],
        }
    )


def verify(
    ddf: Any,
    director: Director,
    *,
    observed: tuple[str, str] = ("observed_raddr", "observed_rport"),
) -> Any:
    """Per partition: flows, and how many the log's real server differs from.

    *observed*: the columns holding the real server the director chose (of
    the type of ``saddr``; null for none). Returns a small pandas DataFrame
    (``partition``, ``flows``, ``mismatches``), computed.
    """
    import pandas as pd

    for c in observed:
        if c not in ddf.columns:
            raise MaglevxError(f"no column {c} (the observed real server)")
    predicted = predict(ddf, director, strict=False)
    meta = pd.DataFrame(
        {
            name: pd.Series([], dtype="int64")
            for name in ("partition", "flows", "mismatches")
        }
    )
    counts = predicted.map_partitions(_verify_partition, observed, meta=meta)
    return counts.compute().reset_index(drop=True)


__all__ = ["predict", "verify"]
