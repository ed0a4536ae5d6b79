"""Arrow-native bulk predictions: flow columns in, real servers out.

Flow logs kept as Parquet or Arrow (IPFIX collectors, conntrack exports,
cloud flow logs) go into the core without a copy when their columns have
the core's types:

=========  ==================================================================
column     Arrow type
=========  ==================================================================
``proto``  ``string``/``large_string`` or a dictionary of them (tcp/udp/sctp)
``saddr``  ``uint32`` (IPv4) or ``fixed_size_binary(16)`` (IPv6); or strings
``sport``  ``uint16`` (any integer type is taken, checked to 0..65535)
``daddr``  same family and kind as ``saddr``
``dport``  ``uint16`` (as ``sport``)
``mark``   optional, ``uint32`` (any integer type): the packet's fwmark, 0 none
=========  ==================================================================

The result has two columns, ``raddr`` (the type of ``saddr``) and ``rport``
(``uint16``), null where the kernel finds no destination (and, unless
*strict*, where no ``mh`` service takes the flow, as
:meth:`Director.lookup_many` does).

The answer is the kernel's whole decision (``docs/decision-path.md``), equal
to ``maglevx predict`` over the same flows as CSV: fwmark services first (the
``mark`` column), the FTP and port-zero catch-alls, client port 20 never
scheduled. Flows of persistent services (``-p``) are decided one by one, in
input order, by :func:`maglevx.decision.decide` against the director's
templates (``director.templates``): a template made by one flow decides the
later flows of its client network, in the same batch and in every later
batch given to any predictor of that director, as in one ``predict`` run
(``director.reset_templates()`` forgets them). Every other destination stays
vectorised: without persistence no state decides a flow. A batch with a bad
row raises before any template changes, naming the first bad row. A
director with persistent services must not be predicted from several
threads at once (the templates are shared state).

:class:`ArrowPredictor` keeps its output buffers between batches: with
``reuse=True`` a stream of batches of at most the largest size seen
allocates no new output memory; each result then aliases the predictor's
buffers and is valid until its next call (write or copy it first).

pyarrow is imported lazily (``pip install maglevx[arrow]``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np
import numpy.typing as npt

from maglevx import decision
from maglevx.backend import core
from maglevx.decision import FTPDATA
from maglevx.errors import MaglevxError
from maglevx.ipvs import PROTOCOLS
from maglevx.model import Director, TableSnapshot

COLUMNS = ("proto", "saddr", "sport", "daddr", "dport")
MARK = "mark"
_PROTO_CODE = {p: i + 1 for i, p in enumerate(PROTOCOLS)}  # 0: not a protocol
_CODE_PROTO = {v: k for k, v in _PROTO_CODE.items()}

# How the flows to one destination are decided (ArrowPredictor._route):
_NO_SERVICE = 0  # no (mh) virtual service: null, counted in no_service
_NEVER = 1  # a catch-all service without -p: never scheduled, null
_TABLE = 2  # the scheduler's pick, vectorised: no state decides it
_DECIDE = 3  # a persistent service: maglevx.decision, flow by flow (templates)
_Route = tuple[int, "TableSnapshot | None"]


def _address(values: npt.NDArray[Any], row: int, family: int) -> Any:
    """One address of a uint32 or (n, 16) uint8 column as an ipaddress."""
    if family == 4:
        return ipaddress.IPv4Address(int(values[row]))
    return ipaddress.IPv6Address(bytes(values[row]))


def require_pyarrow() -> Any:
    """Import pyarrow, or raise MaglevxError saying how to install it."""
    try:
        import pyarrow
    except ImportError:
        raise MaglevxError(
            "pyarrow is not installed: pip install 'maglevx[arrow]'"
        ) from None
    return pyarrow


class _RowError(MaglevxError):
    """A MaglevxError about one row, which it keeps (counted from 0)."""

    def __init__(
        self, message: str, *, row: int | None = None, field: str | None = None
    ) -> None:
        # engines may rebuild an exception as type(e)(str(e)): row None
        super().__init__(
            message if row is None else f"row {row}: {message}", field=field
        )
        self.row = row
        self._what = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_row_error, (self._what, self.row, self.field))


def _row_error(message: str, row: int | None, field: str | None) -> _RowError:
    return _RowError(message, row=row, field=field)


class _Columns:
    """One batch's flow columns as numpy arrays (zero-copy where possible)."""

    def __init__(
        self, batch: Any, offset: int, codes: npt.NDArray[np.uint8], intp: Any
    ) -> None:
        pa = require_pyarrow()
        self._codes = codes
        self._intp = intp
        names = batch.schema.names
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise MaglevxError(
                f"missing column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} (needed: {', '.join(COLUMNS)})",
                field=missing[0],
            )
        self.n = batch.num_rows
        self.offset = offset
        col = {name: _one_chunk(pa, batch.column(name)) for name in COLUMNS}
        # a bad row of each column is kept, the first in input order raised
        # (rows before it are good: predict_columnar writes them)
        errors: list[_RowError] = []

        def checked(fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except _RowError as exc:
                errors.append(exc)
                return None

        self.proto = checked(self._protocols, pa, col["proto"])
        sa = checked(self._addresses, pa, col["saddr"], "saddr")
        da = checked(self._addresses, pa, col["daddr"], "daddr")
        if sa is not None and da is not None:
            self.kind, self.family, self.saddr = sa
            kind, family, self.daddr = da
            if (kind, family) != (self.kind, self.family):
                raise MaglevxError(
                    f"daddr is {_kind_name(kind, family)} but saddr is "
                    f"{_kind_name(self.kind, self.family)}",
                    field="daddr",
                )
        self.sport = checked(self._integers, pa, col["sport"], "sport", 0xFFFF,
                             np.uint16)  # fmt: skip
        self.dport = checked(self._integers, pa, col["dport"], "dport", 0xFFFF,
                             np.uint16)  # fmt: skip
        self.mark = None
        if MARK in names:
            m = checked(self._integers, pa, _one_chunk(pa, batch.column(MARK)), MARK,
                        0xFFFFFFFF, np.uint32)  # fmt: skip
            if m is not None and m.any():
                self.mark = m
        if errors:
            raise min(errors, key=lambda e: e.row if e.row is not None else -1)

    def _no_nulls(self, arr: Any, name: str) -> None:
        if arr.null_count:
            row = int(np.flatnonzero(~_valid(arr))[0])
            raise _RowError("null", row=self.offset + row, field=name)

    def _protocols(self, pa: Any, arr: Any) -> npt.NDArray[np.uint8]:
        t = arr.type
        if pa.types.is_dictionary(t):
            if not _is_string(pa, t.value_type):
                raise MaglevxError(
                    f"expected strings (tcp/udp/sctp), got {t}", field="proto"
                )
            self._no_nulls(arr, "proto")
            lut = np.array(
                [
                    _PROTO_CODE.get(v.strip().lower(), 0)
                    for v in arr.dictionary.to_pylist()
                ]
                + [0],
                np.uint8,
            )
            idx = _numpy(pa, arr.indices)
            codes = self._codes[: len(arr)]
            if len(lut) == 2:  # one protocol: no gather
                codes.fill(lut[0])
            else:  # np.take() would convert the indices to a new intp array
                ip = self._intp[: len(arr)]
                np.copyto(ip, idx, casting="unsafe")
                np.take(lut, ip, out=codes, mode="clip")
        elif _is_string(pa, t):
            self._no_nulls(arr, "proto")
            enc = arr.dictionary_encode()
            lut = np.array(
                [
                    _PROTO_CODE.get(v.strip().lower(), 0)
                    for v in enc.dictionary.to_pylist()
                ]
                + [0],
                np.uint8,
            )
            codes = lut[_numpy(pa, enc.indices)]
        else:
            raise MaglevxError(
                f"expected strings (tcp/udp/sctp) or a dictionary of them, got {t}",
                field="proto",
            )
        if codes.size and not codes.all():
            row = int(np.flatnonzero(codes == 0)[0])
            raise _RowError(
                f"unknown protocol {arr[row].as_py()!r}; expected tcp, udp or sctp",
                row=self.offset + row,
                field="proto",
            )
        return codes

    def _integers(
        self, pa: Any, arr: Any, name: str, hi: int, dtype: Any
    ) -> npt.NDArray[Any]:
        if not pa.types.is_integer(arr.type):
            raise MaglevxError(f"expected integers, got {arr.type}", field=name)
        self._no_nulls(arr, name)
        a = _numpy(pa, arr)
        if np.iinfo(a.dtype).min < 0 or np.iinfo(a.dtype).max > hi:
            bad = (a < 0) | (a > hi)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise _RowError(
                    f"{int(a[row])} is outside 0..{hi}",
                    row=self.offset + row,
                    field=name,
                )
        return a if a.dtype == dtype else a.astype(dtype)

    def _addresses(
        self, pa: Any, arr: Any, name: str
    ) -> tuple[str, int, npt.NDArray[Any]]:
        t = arr.type
        if pa.types.is_uint32(t):
            self._no_nulls(arr, name)
            return "uint32", 4, _numpy(pa, arr)
        if pa.types.is_fixed_size_binary(t) and t.byte_width == 16:
            self._no_nulls(arr, name)
            buf = arr.buffers()[1]
            raw = np.frombuffer(buf, np.uint8)[
                arr.offset * 16 : (arr.offset + len(arr)) * 16
            ]
            return "fsb16", 6, raw.reshape(-1, 16)
        if _is_string(pa, t) or (
            pa.types.is_dictionary(t) and _is_string(pa, t.value_type)
        ):
            self._no_nulls(arr, name)
            if pa.types.is_dictionary(t):
                arr = arr.cast(t.value_type)
            texts = arr.to_pylist()
            family = 6 if texts and ":" in texts[0] else 4
            parsed, bad = core.parse_addresses(family, texts)
            if bad >= 0:
                raise _RowError(
                    f"{texts[bad]!r} is not an IPv{family} address like row "
                    f"{self.offset}",
                    row=self.offset + bad,
                    field=name,
                )
            return "string", family, parsed
        raise MaglevxError(
            f"expected uint32 (IPv4), fixed_size_binary(16) (IPv6) or strings, got {t}",
            field=name,
        )


def _kind_name(kind: str, family: int) -> str:
    return {"uint32": "uint32", "fsb16": "fixed_size_binary(16)"}.get(
        kind, f"IPv{family} strings"
    )


def _is_string(pa: Any, t: Any) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _one_chunk(pa: Any, col: Any) -> Any:
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        return col.combine_chunks()
    return col


def _numpy(pa: Any, arr: Any) -> npt.NDArray[Any]:
    """An integer Array's values as numpy, without a copy.

    Array.to_numpy() imports pandas when it is installed (over a second);
    the values buffer is read directly instead (nulls are checked apart).
    """
    t = arr.type
    kind = "i" if pa.types.is_signed_integer(t) else "u"
    dtype = np.dtype(f"{kind}{t.bit_width // 8}")
    buf = arr.buffers()[1]
    if buf is None or len(arr) == 0:
        return np.empty(0, dtype)
    return np.frombuffer(buf, dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def _valid(arr: Any) -> npt.NDArray[np.bool_]:
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool)


class _ServerTable:
    """A snapshot's real servers as arrays, with a null entry at the end."""

    def __init__(self, snap: TableSnapshot, family: int) -> None:
        servers = snap.servers
        self.ports = np.array([rs.port for rs in servers] + [0], np.uint16)
        self.addrs: npt.NDArray[Any]
        if family == 4:
            self.addrs = np.array([int(rs.address) for rs in servers] + [0], np.uint32)
        else:
            self.addrs = np.frombuffer(
                b"".join(rs.address.packed for rs in servers) + bytes(16), np.uint8
            ).reshape(-1, 16)
        self.texts = np.array([str(rs.address) for rs in servers] + [None], object)
        # a real server without a port (fwmark -g/-i) takes the flow's port
        self.portless = any(rs.port == 0 for rs in servers)


class ArrowPredictor:
    """Predicts batches of flows for one director, batch after batch.

    *strict*: raise MaglevxError for a flow no ``mh`` service takes (as
    ``maglevx predict`` does) instead of a null. *reuse*: keep output
    buffers between calls (see the module docstring).
    """

    def __init__(
        self, director: Director, *, strict: bool = False, reuse: bool = False
    ) -> None:
        if not isinstance(director, Director):
            raise MaglevxError(f"expected a Director, got {type(director).__name__}")
        require_pyarrow()
        self.director = director
        self.strict = strict
        self.reuse = reuse
        self.rows = 0  # rows predicted so far (errors name rows from here)
        self.no_service = 0  # rows no mh service took (null, unless strict)
        self._tables: dict[int, tuple[TableSnapshot, _ServerTable]] = {}
        self._cap = 0
        self._idx = np.empty(0, np.uint32)
        self._rport = np.empty(0, np.uint16)
        self._raddr4 = np.empty(0, np.uint32)
        self._raddr6 = np.empty((0, 16), np.uint8)
        self._valid = np.empty(0, np.bool_)
        self._bits = np.empty(0, np.uint8)
        self._tmp = np.empty(0, np.uint64)
        self._codes = np.empty(0, np.uint8)
        self._intp = np.empty(0, np.intp)
        self._eq = np.empty(0, np.bool_)
        self._unrouted = np.empty(0, np.bool_)
        # of the last batch: rows no mh service took, and the address family
        self.unrouted: npt.NDArray[np.bool_] = self._unrouted
        self.family = 4

    def _grow(self, n: int) -> None:
        if n <= self._cap and self.reuse:
            return
        cap = max(n, self._cap) if self.reuse else n
        words = (cap + 63) // 64
        self._idx = np.empty(cap, np.uint32)
        self._rport = np.empty(cap, np.uint16)
        self._raddr4 = np.empty(cap, np.uint32)
        self._raddr6 = np.empty((cap, 16), np.uint8)
        self._valid = np.zeros(words * 64, np.bool_)
        self._bits = np.empty(words * 8, np.uint8)
        self._tmp = np.empty(words * 8, np.uint64)
        self._codes = np.empty(cap, np.uint8)
        self._intp = np.empty(cap, np.intp)
        self._eq = np.empty(cap, np.bool_)
        self._ftp = np.empty(cap, np.bool_)
        self._unrouted = np.empty(cap, np.bool_)
        self._cap = cap

    def _servers(self, snap: TableSnapshot, family: int) -> _ServerTable:
        hit = self._tables.get(id(snap))
        if hit is not None and hit[0] is snap:
            return hit[1]
        if len(self._tables) > 256:
            self._tables.clear()
        st = _ServerTable(snap, family)
        self._tables[id(snap)] = (snap, st)
        return st

    def predict(self, batch: Any) -> Any:
        """``raddr``/``rport`` for a RecordBatch or Table of flows.

        Returns a RecordBatch for a RecordBatch, else a Table.
        """
        pa = require_pyarrow()
        if isinstance(batch, pa.Table):
            out = [self.predict(b) for b in batch.to_batches()]
            if not out:
                return pa.table(
                    {
                        "raddr": pa.array([], pa.uint32()),
                        "rport": pa.array([], pa.uint16()),
                    }
                )
            return pa.Table.from_batches(out)
        if not isinstance(batch, pa.RecordBatch):
            raise MaglevxError(
                f"expected a pyarrow RecordBatch or Table, got {type(batch).__name__}"
            )
        n = batch.num_rows
        self._grow(n)
        cols = _Columns(batch, self.rows, self._codes, self._intp)
        idx = self._idx[:n]
        rport = self._rport[:n]
        valid = self._valid[:n]
        raddr = self._raddr4[:n] if cols.family == 4 else self._raddr6[:n]
        unrouted = self._unrouted[:n]
        unrouted.fill(False)
        # every route first: a bad row raises before any template changes
        groups = self._groups(cols)
        decisions = self.director.needs_decisions()
        decide_rows: list[Any] = []
        for rows, route in groups:
            kind, snap = route
            if kind == _DECIDE:
                decide_rows.append(np.arange(n) if rows is None else rows)
                continue
            if snap is None:
                self._fill_none(rows, idx, rport, raddr, valid)
                if kind == _NO_SERVICE:
                    self.no_service += n if rows is None else len(rows)
                    unrouted[slice(None) if rows is None else rows] = True
                continue
            st = self._servers(snap, cols.family)
            self._lookup(cols, rows, snap, idx)
            i32 = idx.view(np.int32)
            if rows is None:
                # np.take() would convert int32 indices to a new intp array
                ip = self._intp[:n]
                np.copyto(ip, i32)
                np.take(st.ports, ip, out=rport, mode="wrap")
                np.take(st.addrs, ip, axis=0, out=raddr, mode="wrap")
                np.not_equal(i32, -1, out=valid)
            else:
                sel = i32[rows]
                rport[rows] = st.ports[sel]
                raddr[rows] = st.addrs[sel]
                valid[rows] = sel != -1
            if decisions and st.portless:
                # decision.decide(): a real server without a port (fwmark -g)
                # gets the flow's destination port (ip_vs_schedule, 6.1:549)
                if rows is None:
                    np.copyto(rport, cols.dport, where=rport == 0)
                else:
                    got = rport[rows]
                    rport[rows] = np.where(got == 0, cols.dport[rows], got)
        # FTP data (client port 20) is never scheduled (ip_vs_schedule())
        not_ftp = self._ftp[:n]
        np.not_equal(cols.sport, FTPDATA, out=not_ftp)
        np.logical_and(valid, not_ftp, out=valid)
        texts: dict[int, str] = {}
        if decide_rows:
            rows = (
                decide_rows[0]
                if len(decide_rows) == 1
                else np.sort(np.concatenate(decide_rows))
            )
            self._decide(cols, rows, rport, raddr, valid, texts)
        result = self._result(pa, cols, n, rport, raddr, valid, groups, texts)
        self.unrouted, self.family = unrouted, cols.family
        self.rows += n
        return result

    def _decide(
        self, cols: _Columns, rows: Any, rport: Any, raddr: Any, valid: Any,
        texts: dict[int, str],
    ) -> None:  # fmt: skip
        """Rows of persistent services, flow by flow in input order.

        ``maglevx.decision`` decides them against the director's templates
        (``director.templates``), which it reads and updates: the first
        connection of a client network makes the template the later ones
        follow, in this batch and the next ones.
        """
        director = self.director
        templates = director.templates
        family = cols.family
        mark = cols.mark
        for r in rows.tolist():
            flow = (
                _CODE_PROTO[int(cols.proto[r])],
                _address(cols.saddr, r, family),
                int(cols.sport[r]),
                _address(cols.daddr, r, family),
                int(cols.dport[r]),
            )
            fwmark = 0 if mark is None else int(mark[r])
            dec = decision.decide(director, flow, fwmark=fwmark, templates=templates)
            rs = dec.server
            if rs is None:
                valid[r] = False
                rport[r] = 0
                raddr[r] = 0
                continue
            valid[r] = True
            rport[r] = dec.port
            if family == 4:
                raddr[r] = int(rs.address)
            else:
                raddr[r] = np.frombuffer(rs.address.packed, np.uint8)
            if cols.kind == "string":
                texts[r] = str(rs.address)

    def _fill_none(
        self, rows: Any, idx: Any, rport: Any, raddr: Any, valid: Any
    ) -> None:
        sl = slice(None) if rows is None else rows
        rport[sl] = 0
        raddr[sl] = 0
        valid[sl] = False

    def _groups(self, cols: _Columns) -> list[tuple[Any, _Route]]:
        """(rows or None for all, route) per destination.

        Every destination is routed before any is decided; the error of the
        first bad row (in input order) is raised.
        """
        n = cols.n
        if n == 0:
            return []
        if self._one_destination(cols):
            return [(None, self._route(cols, 0))]
        if cols.family == 4:
            key = cols.daddr.astype(np.uint64) << np.uint64(24)
            key |= cols.dport.astype(np.uint64) << np.uint64(8)
            key |= cols.proto
            keyv: npt.NDArray[Any] = key
        else:
            rec = np.empty((n, 19), np.uint8)
            rec[:, :16] = cols.daddr
            rec[:, 16:18] = cols.dport.view(np.uint8).reshape(-1, 2)
            rec[:, 18] = cols.proto
            keyv = rec.view(np.dtype((np.void, 19))).ravel()
        if cols.mark is not None:
            both = np.empty(n, [("k", keyv.dtype), ("m", np.uint32)])
            both["k"] = keyv
            both["m"] = cols.mark
            keyv = both
        _, first, inverse = np.unique(keyv, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(first) + 1))
        out = []
        errors: list[_RowError] = []
        for g, row in enumerate(first.tolist()):
            rows = order[bounds[g] : bounds[g + 1]]
            try:
                out.append((rows, self._route(cols, row)))
            except _RowError as exc:
                errors.append(exc)
        if errors:
            raise min(errors, key=lambda e: e.row if e.row is not None else -1)
        return out

    def _one_destination(self, cols: _Columns) -> bool:
        """Whether every flow has row 0's destination (in kept buffers)."""
        eq = self._eq[: cols.n]
        columns: list[Any] = [cols.proto, cols.dport]
        if cols.mark is not None:
            columns.append(cols.mark)
        if cols.family == 4:
            columns.append(cols.daddr)
        else:
            words = cols.daddr.view(np.uint64)
            columns += [words[:, 0], words[:, 1]]
        for c in columns:
            np.equal(c, c[0], out=eq)
            if not eq.all():
                return False
        return True

    def _route(self, cols: _Columns, row: int) -> _Route:
        """How the flows to *row*'s destination are decided (see _Route)."""
        proto = _CODE_PROTO[int(cols.proto[row])]
        if cols.family == 4:
            daddr: Any = ipaddress.IPv4Address(int(cols.daddr[row]))
        else:
            daddr = ipaddress.IPv6Address(bytes(cols.daddr[row]))
        dport = int(cols.dport[row])
        mark = int(cols.mark[row]) if cols.mark is not None else None
        svc = self.director.resolve(proto, str(daddr), dport, mark or None)
        at = cols.offset + row
        if svc is None or svc.scheduler != "mh":
            if self.strict:
                what = "no virtual service" if svc is None else "no mh virtual service"
                raise _RowError(
                    f"{what} for {proto} {daddr} port {dport}"
                    + (f" mark {mark}" if mark else ""),
                    row=at,
                    field="daddr",
                )
            return (_NO_SERVICE, None)
        if svc.family != cols.family:
            raise _RowError(
                f"{svc.name} is IPv{svc.family}, the flow IPv{cols.family}",
                row=at,
                field="saddr",
            )
        if decision.persistent(svc):
            return (_DECIDE, None)  # templates: flow by flow, in input order
        if not svc.fwmark and svc.port != dport:
            # found through the FTP or port-zero catch-all lookup, without
            # persistence: ip_vs_schedule() never schedules such a packet
            return (_NEVER, None)
        return (_TABLE, svc.snapshot)

    def _lookup(self, cols: _Columns, rows: Any, snap: TableSnapshot, idx: Any) -> None:
        sched = snap.scheduler
        saddr = cols.saddr if rows is None else cols.saddr[rows]
        ports = None
        # the kernel hashes the client port of TCP/UDP/SCTP flows only when
        # the service says so (mh-port, or the backport module)
        if snap.hashes_port:
            ports = cols.sport if rows is None else cols.sport[rows]
            ports = np.ascontiguousarray(ports)
        saddr = np.ascontiguousarray(saddr)
        target = idx if rows is None else np.empty(len(rows), np.uint32)
        if cols.family == 4:
            sched.lookup_many(saddr, ports, target)
        else:
            sched.lookup_many6(saddr, ports, target)
        if rows is not None:
            idx[rows] = target

    def _bitmap(self, n: int, valid: Any) -> Any:
        """Arrow's validity bitmap for *valid* (LSB first), in a kept buffer."""
        words = (n + 7) // 8
        v = self._valid
        v[n : words * 8] = False
        packed = v[: words * 8].view(np.uint64)
        tmp = self._tmp[:words]
        # 8 bools (bytes 0/1) -> one byte, bit j = bool j
        np.multiply(packed, np.uint64(0x0102040810204080), out=tmp)
        np.right_shift(tmp, np.uint64(56), out=tmp)
        bits = self._bits[:words]
        np.copyto(bits, tmp, casting="unsafe")
        return bits

    def _result(
        self, pa: Any, cols: _Columns, n: int, rport: Any, raddr: Any, valid: Any,
        groups: list[tuple[Any, _Route]], decided: dict[int, str],
    ) -> Any:  # fmt: skip
        nulls = n - int(np.count_nonzero(valid))
        if not self.reuse:
            rport, raddr = rport.copy(), raddr.copy()
        vbuf = None
        if nulls:
            bits = self._bitmap(n, valid)
            vbuf = pa.py_buffer(bits if self.reuse else bits.copy())
        if cols.kind == "string":
            texts = np.full(n, None, object)
            for rows, (_, snap) in groups:
                if snap is None:
                    continue
                st = self._servers(snap, cols.family)
                i32 = self._idx[:n].view(np.int32)
                sel = slice(None) if rows is None else rows
                texts[sel] = st.texts[i32[sel]]
            for r, text in decided.items():
                texts[r] = text
            texts[~valid] = None  # FTP data
            addr_arr = pa.array(texts, pa.string())
        elif cols.family == 4:
            addr_arr = pa.Array.from_buffers(
                pa.uint32(), n, [vbuf, pa.py_buffer(raddr)], null_count=nulls
            )
        else:
            addr_arr = pa.Array.from_buffers(
                pa.binary(16), n, [vbuf, pa.py_buffer(raddr)], null_count=nulls
            )
        port_arr = pa.Array.from_buffers(
            pa.uint16(), n, [vbuf, pa.py_buffer(rport)], null_count=nulls
        )
        return pa.RecordBatch.from_arrays([addr_arr, port_arr], ["raddr", "rport"])


def predict_arrow(director: Director, flows: Any, *, strict: bool = False) -> Any:
    """``raddr``/``rport`` for a pyarrow Table or RecordBatch of flows.

    See the module docstring for the columns. For a stream of batches,
    keep one :class:`ArrowPredictor` (``reuse=True`` to allocate nothing
    per batch).
    """
    return ArrowPredictor(director, strict=strict).predict(flows)


def address_strings(pa: Any, arr: Any) -> Any:
    """An address column (uint32, fixed_size_binary(16) or strings) as text."""
    t = arr.type
    if _is_string(pa, t):
        return arr
    if pa.types.is_uint32(t):
        a = arr.to_numpy(zero_copy_only=False)
        valid = _valid(arr)
        return pa.array(
            [str(ipaddress.IPv4Address(int(x))) if v else None
             for x, v in zip(a.tolist(), valid.tolist())],
            pa.string(),
        )  # fmt: skip
    return pa.array(
        [None if b is None else str(ipaddress.IPv6Address(b)) for b in arr.to_pylist()],
        pa.string(),
    )


# -- files: Parquet and Arrow IPC ------------------------------------------

INPUT_FORMATS = ("parquet", "arrow")
OUTPUT_FORMATS = ("csv", "parquet", "arrow")
BATCH_ROWS = 1 << 16


def detect(head: bytes) -> str | None:
    """``parquet`` or ``arrow`` (IPC file or stream) from a file's first bytes."""
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:6] == b"ARROW1" or head[:4] == b"\xff\xff\xff\xff":
        return "arrow"
    return None


def _check_schema(pa: Any, schema: Any, source: str) -> None:
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise MaglevxError(
            f"no column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"flows need {', '.join(COLUMNS)} (and optionally {MARK}); the file "
            f"has {', '.join(schema.names) or 'none'}",
            source=source,
        )


def read_batches(
    stream: Any, fmt: str, *, source: str, columns: list[str] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Any:  # fmt: skip
    """(schema, iterator of RecordBatches) of a Parquet or Arrow IPC input.

    Parquet is read one row group at a time in batches of *batch_rows*
    (memory stays bounded by the largest row group); IPC one record batch
    at a time. *stream*: a seekable binary file for Parquet and IPC files;
    any binary stream for IPC streams. *columns*: read only these (those
    present).
    """
    pa = require_pyarrow()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if not _seekable(stream):
            raise MaglevxError(
                "Parquet input must be a file (its index is at the end), not a "
                "pipe; or convert it to an Arrow IPC stream",
                source=source,
            )
        try:
            # pre_buffer would read ahead every row group iter_batches asks for:
            # the whole file; one row group at a time keeps memory bounded
            pf = pq.ParquetFile(stream, pre_buffer=False)
        except (pa.ArrowException, OSError) as exc:
            raise MaglevxError(f"not a Parquet file: {exc}", source=source) from None
        schema = pf.schema_arrow
        _check_schema(pa, schema, source)
        cols = None if columns is None else [c for c in columns if c in schema.names]
        if cols is not None:
            schema = pa.schema([schema.field(c) for c in cols])
        return schema, _guard(
            pa, pf.iter_batches(batch_size=batch_rows, columns=cols), source
        )
    if fmt != "arrow":
        raise MaglevxError(f"unknown columnar format {fmt!r}", source=source)
    head = _peek(stream, 6)
    try:
        if head == b"ARROW1":
            if not _seekable(stream):
                raise MaglevxError(
                    "an Arrow IPC file must be a file, not a pipe (send the "
                    "IPC stream format instead)",
                    source=source,
                )
            reader = pa.ipc.open_file(stream)
            batches: Any = (
                reader.get_batch(i) for i in range(reader.num_record_batches)
            )
        else:
            reader = pa.ipc.open_stream(stream)
            batches = iter(reader)
    except pa.ArrowException as exc:
        raise MaglevxError(f"not Arrow IPC data: {exc}", source=source) from None
    schema = reader.schema
    _check_schema(pa, schema, source)
    if columns is not None:
        cols = [c for c in columns if c in schema.names]
        schema = pa.schema([schema.field(c) for c in cols])
        batches = (b.select(cols) for b in batches)
    return schema, _guard(pa, batches, source)


def _guard(pa: Any, batches: Any, source: str) -> Any:
    """*batches*, a decoding error turned into MaglevxError."""
    try:
        yield from batches
    except pa.ArrowException as exc:
        raise MaglevxError(f"cannot decode: {exc}", source=source) from None


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False


def _peek(stream: Any, n: int) -> bytes:
    peek = getattr(stream, "peek", None)
    if peek is not None:
        return bytes(peek(n)[:n])
    if _seekable(stream):
        pos = stream.tell()
        head = stream.read(n)
        stream.seek(pos)
        return bytes(head)
    return b""


def _ipv4_text(pa: Any, arr: Any) -> Any:
    """uint32 addresses as dotted quads, vectorized (nulls stay null)."""
    import pyarrow.compute as pc

    parts = [
        pc.cast(pc.bit_wise_and(pc.shift_right(arr, shift), 255), pa.string())
        for shift in (24, 16, 8, 0)
    ]
    return pc.binary_join_element_wise(*parts, ".")


def _as_text(pa: Any, arr: Any) -> Any:
    t = arr.type
    if pa.types.is_dictionary(t):
        return arr.cast(t.value_type)
    if pa.types.is_uint32(t):
        return _ipv4_text(pa, arr)
    if pa.types.is_fixed_size_binary(t):
        return address_strings(pa, arr)
    return arr


def _csv_batch(pa: Any, batch: Any, result: Any) -> Any:
    """The flow columns and the result as predict's CSV text columns."""
    arrays = [_as_text(pa, batch.column(c)) for c in COLUMNS]
    arrays += [_as_text(pa, result.column(0)), result.column(1)]
    return pa.RecordBatch.from_arrays(arrays, [*COLUMNS, "raddr", "rport"])


def predict_columnar(
    director: Director,
    stream: Any,
    out: Any,
    fmt: str,
    *,
    output_format: str = "csv",
    source: str = "<flows>",
    batch_rows: int = BATCH_ROWS,
    strict: bool = True,
    stats: dict[str, int] | None = None,
) -> int:
    """``maglevx predict`` over Parquet or Arrow IPC flows; returns the count.

    *out*: a binary stream. ``csv`` output is predict's CSV (the five flow
    columns, then ``raddr,rport``, empty for no destination); ``parquet``
    and ``rport``. A flow no mh service takes gets nulls (empty fields),
    counted in ``stats["no_service"]``, or with *strict* is an error, as
    for CSV; on a bad row every row before it has been written, none after
    it, and the error names the row (counted from 0) and the column.
    """
    pa = require_pyarrow()
    if output_format not in OUTPUT_FORMATS:
        raise MaglevxError(
            f"unknown output format {output_format!r}; expected "
            f"{', '.join(OUTPUT_FORMATS)}",
            field="--output-format",
        )
    columns = [*COLUMNS, MARK] if output_format == "csv" else None
    schema, batches = read_batches(
        stream, fmt, source=source, columns=columns, batch_rows=batch_rows
    )
    predictor = ArrowPredictor(director, strict=strict, reuse=True)
    writer: Any = None
    count = 0

    def write(batch: Any, result: Any) -> None:
        nonlocal writer
        if output_format == "csv":
            rec = _csv_batch(pa, batch, result)
        else:
            rec = pa.RecordBatch.from_arrays(
                [*batch.columns, *result.columns],
                [*batch.schema.names, "raddr", "rport"],
            )
        if writer is None:
            writer = _writer(pa, out, output_format, rec.schema)
        writer.write_batch(rec)

    try:
        for batch in batches:
            try:
                result = predictor.predict(batch)
            except MaglevxError as exc:
                row = getattr(exc, "row", None)
                if row is not None and row > predictor.rows:
                    head = batch.slice(0, row - predictor.rows)
                    write(head, ArrowPredictor(director, strict=strict).predict(head))
                    count += head.num_rows
                raise MaglevxError(
                    exc.message, source=source, field=exc.field
                ) from None
            write(batch, result)
            count += batch.num_rows
    finally:
        if writer is None and count == 0:
            # an empty input still gives a valid (empty) output file
            empty = _empty_result(pa, schema, output_format)
            writer = _writer(pa, out, output_format, empty)
        writer.close()
        if stats is not None:
            stats["flows"] = count
            stats["no_service"] = predictor.no_service
        flush = getattr(out, "flush", None)
        if flush is not None:
            flush()
    return count


def _empty_result(pa: Any, schema: Any, output_format: str) -> Any:
    if output_format == "csv":
        return pa.schema([(c, pa.string()) for c in (*COLUMNS, "raddr")]
                         + [("rport", pa.uint16())])  # fmt: skip
    t = schema.field("saddr").type
    raddr = t.value_type if pa.types.is_dictionary(t) else t
    if pa.types.is_large_string(raddr):
        raddr = pa.string()
    return schema.append(pa.field("raddr", raddr)).append(
        pa.field("rport", pa.uint16())
    )


def _writer(pa: Any, out: Any, output_format: str, schema: Any) -> Any:
    if output_format == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(out, schema)
    if output_format == "arrow":
        return pa.ipc.new_stream(out, schema)
    import pyarrow.csv as pcsv

    options = pcsv.WriteOptions(include_header=False, quoting_style="none")
    return pcsv.CSVWriter(out, schema, write_options=options)


__all__ = [
    "COLUMNS",
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "ArrowPredictor",
    "detect",
    "predict_arrow",
    "predict_columnar",
    "read_batches",
    "require_pyarrow",
]
