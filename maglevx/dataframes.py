"""maglevx from DuckDB and Polars, through Arrow (see docs/dataframes.md).

- :func:`register_duckdb`: a vectorized (Arrow) DuckDB scalar function
  ``maglevx(proto, saddr, sport, daddr, dport)`` returning
  ``STRUCT(raddr, rport)`` (NULL fields: no destination).
- :func:`polars_expr`: a Polars expression over the five flow columns
  giving a struct ``{raddr, rport}``; elementwise, so it runs batch by batch
  in the streaming engine (``collect(engine="streaming")``).

Both feed each batch to :class:`maglevx.arrow.ArrowPredictor`, so the
answers are those of :meth:`Director.lookup_many` (a flow no mh service
takes gives NULL unless *strict*). duckdb and polars are imported lazily.

Both engines call the function on batches in any order and from several
threads, so a director with persistent services (``-p``), whose templates
need the flows in input order, is refused: use ``ArrowPredictor`` over the
batches in order, ``maglevx predict --format parquet`` or
:func:`maglevx.dask.predict`.
"""

from __future__ import annotations

from typing import Any

from maglevx.arrow import COLUMNS, ArrowPredictor, require_pyarrow
from maglevx.decision import persistent
from maglevx.errors import MaglevxError
from maglevx.model import Director

ADDRESS_TYPES = ("uint32", "varchar", "blob")


def _require_no_templates(director: Director, engine: str) -> None:
    """Refuse a director whose answers depend on the order of the batches."""
    if not isinstance(director, Director):
        raise MaglevxError(f"expected a Director, got {type(director).__name__}")
    names = [s.name for s in director.services if persistent(s)]
    if names:
        raise MaglevxError(
            f"{engine} calls maglevx on batches in any order, but persistent "
            f"services ({', '.join(names)}) need the flows in input order "
            "(templates): use maglevx.arrow.ArrowPredictor over the batches in "
            "order, maglevx predict --format parquet, or maglevx.dask.predict"
        )


def _predict_struct(
    director: Director, arrays: list[Any], strict: bool, names: tuple[str, ...]
) -> Any:
    """ArrowPredictor over one batch of columns -> StructArray(raddr, rport)."""
    pa = require_pyarrow()
    cols = []
    for a in arrays:
        if isinstance(a, pa.ChunkedArray):
            a = a.combine_chunks()
        t = a.type
        if pa.types.is_string_view(t) or pa.types.is_large_string(t):
            a = a.cast(pa.string())
        elif pa.types.is_dictionary(t) and (
            pa.types.is_string_view(t.value_type)
            or pa.types.is_large_string(t.value_type)
        ):
            a = a.cast(pa.string())
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            a = a.cast(pa.binary(16))
        cols.append(a)
    batch = pa.RecordBatch.from_arrays(cols, list(names))
    # one predictor per call: engines call from several threads at once
    result = ArrowPredictor(director, strict=strict).predict(batch)
    raddr = result.column(0)
    if pa.types.is_fixed_size_binary(raddr.type):
        raddr = raddr.cast(pa.binary())
    return pa.StructArray.from_arrays([raddr, result.column(1)], ["raddr", "rport"])


def register_duckdb(
    con: Any,
    director: Director,
    *,
    name: str = "maglevx",
    address: str = "uint32",
    strict: bool = False,
) -> None:
    """Register ``name(proto, saddr, sport, daddr, dport)`` on a DuckDB connection.

    *address*: the SQL type of ``saddr``/``daddr``: ``uint32`` (UINTEGER,
    IPv4), ``varchar`` (address text, either family) or ``blob`` (16
    bytes, IPv6). Ports are USMALLINT, the protocol VARCHAR. The result is
    ``STRUCT(raddr <address type>, rport USMALLINT)``.
    """
    import duckdb

    _require_no_templates(director, "DuckDB")
    if address not in ADDRESS_TYPES:
        raise MaglevxError(
            f"address type {address!r} is not one of {', '.join(ADDRESS_TYPES)}",
            field="address",
        )
    sql_addr = {"uint32": "UINTEGER", "varchar": "VARCHAR", "blob": "BLOB"}[address]

    def udf(proto: Any, saddr: Any, sport: Any, daddr: Any, dport: Any) -> Any:
        return _predict_struct(
            director, [proto, saddr, sport, daddr, dport], strict, COLUMNS
        )

    con.create_function(
        name,
        udf,
        ["VARCHAR", sql_addr, "USMALLINT", sql_addr, "USMALLINT"],
        duckdb.struct_type({"raddr": sql_addr, "rport": "USMALLINT"}),
        type="arrow",
        null_handling="special",
        side_effects=False,
    )


def polars_expr(
    director: Director,
    *,
    proto: str = "proto",
    saddr: str = "saddr",
    sport: str = "sport",
    daddr: str = "daddr",
    dport: str = "dport",
    strict: bool = False,
    address: str = "uint32",
) -> Any:
    """A Polars expression: the struct ``{raddr, rport}`` of each flow.

    Columns: protocol as String or Categorical; addresses as *address* says:
    ``uint32`` (UInt32, IPv4), ``binary`` (Binary of 16 bytes, IPv6) or
    ``string`` (String, either family), which is also the type of
    ``raddr``; ports as UInt16 (any integer type). Elementwise
    (``is_elementwise=True``): the streaming engine calls it batch by batch.
    """
    import polars as pl

    _require_no_templates(director, "Polars")
    dtypes = {"uint32": pl.UInt32, "binary": pl.Binary, "string": pl.String}
    if address not in dtypes:
        raise MaglevxError(
            f"address type {address!r} is not one of {', '.join(dtypes)}",
            field="address",
        )
    names = (proto, saddr, sport, daddr, dport)

    def batch(s: Any) -> Any:
        arr = s.to_arrow()
        pa = require_pyarrow()
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        fields = [arr.field(i) for i in range(len(names))]
        return pl.Series(_predict_struct(director, fields, strict, COLUMNS))

    return pl.struct(list(names)).map_batches(
        batch,
        return_dtype=pl.Struct({"raddr": dtypes[address], "rport": pl.UInt16}),
        is_elementwise=True,
    )


__all__ = ["ADDRESS_TYPES", "polars_expr", "register_duckdb"]
