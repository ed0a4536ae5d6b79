"""``maglevx verify``: whether a live director does what we predict.

Predicts the real server of every connection of a capture and reports each
that differs; known causes (persistence, the ``last_weight`` a listing cannot
show, connections older than a change) are caveats (``docs/tools.md``). The
module's debugfs ``tables`` (v1, ``kmod/ip_vs_mh_debugfs.c``) is compared
slot by slot.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from ipaddress import ip_address
from typing import Any

import numpy as np
import numpy.typing as npt

from maglevx import decision
from maglevx.addresses import fold, format_endpoint
from maglevx.backend import core
from maglevx.captures import CapturedFlow
from maglevx.errors import MaglevxError
from maglevx.ipvs import PROTOCOLS
from maglevx.ipvsadm import iter_history, split_lines
from maglevx.model import PRIMES, Director, VirtualService
from maglevx.netlink import run_ipvsadm  # noqa: F401 - ``ipvsadm -Ln --nosort``

PROC_CONN = "/proc/net/ip_vs_conn"
KMOD_TABLES = "/sys/kernel/debug/ip_vs_mh/tables"
KMOD_DUMP_VERSION = 1


@dataclass
class ConnCheck:
    """One connection whose real server is not the predicted one."""

    line: int
    flow: str
    service: str
    actual: str | None
    predicted: str | None
    state: str
    verdict: str  # mismatch, persistence, template, older
    note: str = ""


@dataclass
class KmodService:
    """A service's table as the module dumps it."""

    service: str
    family: int
    table_size: int
    word_size: int
    hash_port: bool
    dests: list[str]
    slots: list[int | None]  # index into dests, None: empty
    line: int
    netns: int | None = None  # the network namespace's inode number
    params: dict[str, str] = field(default_factory=dict)  # every params field
    weights: list[int] = field(default_factory=list)  # per dest, live weight
    overloaded: list[bool] = field(default_factory=list)  # per dest


@dataclass
class KmodCheck:
    """The module's table of one service against the prediction."""

    service: str
    slots_differ: int
    first_differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    """The result of :func:`verify`."""

    checked: int = 0
    matched: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    mismatches: list[ConnCheck] = field(default_factory=list)
    caveats: list[ConnCheck] = field(default_factory=list)
    kmod: list[KmodCheck] = field(default_factory=list)

    @property
    def different(self) -> bool:
        """Whether anything differs that no caveat explains."""
        return bool(self.mismatches) or any(k.slots_differ or k.notes
                                            for k in self.kmod)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {**asdict(self), "different": self.different}


def _predict(svc: VirtualService, flows: list[CapturedFlow]) -> list[str | None]:
    snap = svc.snapshot
    folds = np.array([fold(f.saddr) for f in flows], np.uint32)
    ports = np.array([snap.hashed_port(f.proto, f.sport) for f in flows], np.uint16)
    idx = snap.scheduler.lookup_many(folds, ports).view(np.int32)
    servers = snap.servers
    # a real server without a port (fwmark -g) gets the flow's port
    return [
        None
        if i < 0
        else format_endpoint(servers[i].address, servers[i].port or f.dport)
        for i, f in zip(idx.tolist(), flows)
    ]


def _service_of(director: Director, c: CapturedFlow) -> VirtualService | None:
    if c.proto not in PROTOCOLS:
        return None
    return decision.service_find(director, c.proto, c.daddr, c.dport)


def _group(
    director: Director, conns: list[CapturedFlow], skipped: Counter[str]
) -> dict[int, tuple[VirtualService, list[CapturedFlow]]]:
    """The connections (not templates) per mh service; *skipped* counts the rest."""
    groups: dict[int, tuple[VirtualService, list[CapturedFlow]]] = {}
    no_service = "to no virtual service of the configuration"
    if any(s.protocol == "fwmark" for s in director.services):
        no_service += (
            " (connections of fwmark services cannot be told: a capture shows no mark)"
        )
    for c in conns:
        if c.template:
            continue  # checked against the connections they decide
        svc = _service_of(director, c)
        if svc is None:
            skipped[no_service] += 1
        elif svc.scheduler != "mh":
            skipped[f"scheduler {svc.scheduler}"] += 1
        elif c.saddr.version != svc.family:
            skipped["client of another family"] += 1
        elif c.real_server is None:
            skipped[
                "the capture does not show the real server (conntrack shows it "
                "for masquerading only: read /proc/net/ip_vs_conn)"
            ] += 1
        else:
            groups.setdefault(id(svc), (svc, []))[1].append(c)
    return groups


def verify(
    director: Director,
    conns: list[CapturedFlow],
    *,
    history: str | None = None,
    kmod_dump: str | None = None,
    kmod_source: str = KMOD_TABLES,
    from_listing: bool = False,
) -> VerifyReport:
    """Compare the kernel's connections (and module tables) with predictions.

    Persistence templates in *conns* (client port 0) are the director's
    template state: a connection of a persistent service is predicted to go
    where its template says (``docs/decision-path.md``), and each template is
    checked against the scheduler where the first connection's hash is
    known (a full mask and no hashed port).

    *history*: the ``ipvsadm -R`` text *director* was built from, to
    recognize connections older than a change. *kmod_dump*: the text of
    the module's debugfs ``tables`` file. *from_listing*: *director* was
    read from ``ipvsadm -Ln``, which shows no ``last_weight``: on upstream
    services with weight-0 real servers the table is then uncertain, and
    differences there are caveats.
    """
    rep = VerifyReport()
    skipped: Counter[str] = Counter()
    mismatched: list[tuple[ConnCheck, CapturedFlow]] = []  # connections only
    templates = decision.templates_from_conns(director, conns)
    _check_templates(director, conns, rep, skipped)
    for svc, flows in _group(director, conns, skipped).values():
        persistent = decision.persistent(svc)
        uncertain = (
            from_listing
            and not persistent
            and svc.director.variant == "upstream"
            and any(rs.weight == 0 for rs in svc.table_servers)
        )
        current = {rs.endpoint: rs for rs in svc.table_servers}
        for f, p in zip(flows, _predict(svc, flows)):
            rep.checked += 1
            note = ""
            if persistent:
                key = decision.template_key(svc, f.proto, f.saddr, f.daddr, f.dport)
                t = templates.get(key)
                rs = None if t is None else decision.template_server(director, t)
                if rs is None:
                    note = "its persistence template is not in the dump"
                else:
                    port = rs.port if (f.dport == svc.port and rs.port) else f.dport
                    p = format_endpoint(rs.address, port)
            elif not svc.fwmark and svc.port not in (0, f.dport):
                p = None  # port zero or FTP catch-all without -p: never scheduled
            if f.real_server == p and not note:
                rep.matched += 1
                continue
            chk = ConnCheck(f.line, f.csv(), svc.name, f.real_server, p, f.state,
                            "mismatch")  # fmt: skip
            rs = current.get(f.real_server or "")
            if note:
                chk.verdict, chk.note = "persistence", note
            elif uncertain:
                chk.verdict = "last_weight"
                chk.note = (
                    "a listing shows no last_weight of weight-0 real servers, "
                    "which keep their slots: verify with --history"
                )
            elif (
                not persistent and history is None and (rs is None or not rs.available)
            ):
                chk.verdict = "older"
                chk.note = (
                    f"its real server is {'gone' if rs is None else 'drained'}: "
                    "the connection is older than that change"
                )
            if chk.verdict == "mismatch":
                mismatched.append((chk, f))
            (rep.caveats if chk.verdict != "mismatch" else rep.mismatches).append(chk)
    rep.skipped = dict(skipped)
    if history is not None and mismatched:
        _older_than_a_change(director, history, rep, mismatched)
    if kmod_dump is not None:
        rep.kmod = compare_kmod(director, parse_kmod_tables(kmod_dump, kmod_source))
    return rep


def _check_templates(
    director: Director,
    conns: list[CapturedFlow],
    rep: VerifyReport,
    skipped: Counter[str],
) -> None:
    """Check templates whose first connection's pick is known.

    The rest are caveats: their first connection's client address or port
    is unknown.
    """
    for c in conns:
        if not c.template:
            continue
        if c.dport == 0xFFFF:
            skipped["invalidated templates (real server gone)"] += 1
            continue
        svc = _service_of(director, c)
        if (
            svc is not None
            and svc.scheduler == "mh"
            and not svc.hashes_port
            and decision.svc_netmask(svc) == (0xFFFFFFFF if svc.family == 4 else 128)
        ):
            rep.checked += 1  # only a template whose pick is knowable is checked
            rs = svc.schedule(c.saddr, 0, c.proto)
            if (None if rs is None else rs.address) == c.raddr:
                rep.matched += 1
                continue
            rep.mismatches.append(
                ConnCheck(c.line, c.csv(), svc.name, c.real_server,
                          None if rs is None else rs.endpoint, c.state, "mismatch",
                          "template: its client's hash picks another real server")
            )  # fmt: skip
            continue
        rep.caveats.append(
            ConnCheck(c.line, c.csv(), "" if svc is None else svc.name,
                      c.real_server, None, c.state, "template",
                      "persistence template: made for its client network's first "
                      "connection (client port or full address unknown)")
        )  # fmt: skip


def _older_than_a_change(
    director: Director,
    history: str,
    rep: VerifyReport,
    mismatched: list[tuple[ConnCheck, CapturedFlow]],
) -> None:
    """Move mismatches that an earlier configuration explains to caveats."""
    d = Director.from_params(director.params)
    flows = [f for _, f in mismatched]
    last_match: dict[int, int] = {}  # id(flow): line
    for lineno, cmd in iter_history(history, source="<history>"):
        d.apply_command(cmd)
        for svc, fl in _group(d, flows, Counter()).values():
            for f, p in zip(fl, _predict(svc, fl)):
                if p == f.real_server:
                    last_match[id(f)] = lineno
    for c, f in mismatched:
        if id(f) in last_match:
            c.verdict = "older"
            c.note = (
                f"matches the configuration up to line {last_match[id(f)]}: "
                "older than a change"
            )
    rep.caveats += [c for c in rep.mismatches if c.verdict == "older"]
    rep.mismatches = [c for c in rep.mismatches if c.verdict != "older"]


def parse_kmod_tables(text: str, source: str = KMOD_TABLES) -> list[KmodService]:
    """Parse the module's ``tables`` dump (``kmod/ip_vs_mh_debugfs.c``, v1)."""
    out: list[KmodService] = []
    cur: dict[str, Any] = {}
    for lineno, raw in enumerate(split_lines(text), 1):
        f = raw.split()
        if not f:
            continue
        try:
            if f[0] == "version":
                if f[1:] != [str(KMOD_DUMP_VERSION)]:
                    raise MaglevxError(
                        f"dump version {' '.join(f[1:])} is not {KMOD_DUMP_VERSION}",
                        field="version",
                    )
            elif f[0] == "service":
                i = f.index("af")
                attrs = dict(zip(f[i::2], f[i + 1 :: 2]))
                cur = {
                    "service": " ".join(f[1:i]),
                    "line": lineno,
                    "family": 6 if attrs["af"] == "inet6" else 4,
                    "netns": int(attrs["netns"]) if "netns" in attrs else None,
                    "dests": [],
                    "weights": [],
                    "overloaded": [],
                }
            elif f[0] == "params":
                kv = dict(zip(f[1::2], f[2::2]))
                cur.update(params=kv, table_size=int(kv["table_size"]),
                           word_size=int(kv["word_size"]),
                           hash_port=kv["hash_port"] == "1")  # fmt: skip
            elif f[0] == "dest":
                attrs = dict(zip(f[3::2], f[4::2]))
                cur["dests"].append(f[2])
                cur["weights"].append(int(attrs["weight"]))
                cur["overloaded"].append(attrs["overload"] == "1")
            elif f[0] == "table":
                cur["slots"] = [None if x == "-" else int(x) for x in f[1:]]
            elif f[0] == "end":
                svc = KmodService(**cur)
                _check_kmod_service(svc)
                out.append(svc)
                cur = {}
            elif f[0] != "dests":  # "dests N" only announces the dest lines
                raise MaglevxError(f"unknown record {f[0]!r}", field=f[0])
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            if isinstance(exc, MaglevxError):
                raise exc.located(source, lineno) from None
            raise MaglevxError(
                f"malformed {f[0]!r} record", source=source, line=lineno, field=f[0]
            ) from None
    return out


def _check_kmod_service(svc: KmodService) -> None:
    """A dumped table must be whole: M slots, each naming a listed dest."""
    if svc.table_size not in PRIMES:
        raise MaglevxError(
            f"table size {svc.table_size} is not one of the kernel's primes",
            field="params",
        )
    if len(svc.slots) != svc.table_size:
        raise MaglevxError(
            f"{svc.service}: {len(svc.slots)} slots for a table of {svc.table_size}",
            field="table",
        )
    n = len(svc.dests)
    bad = next((s for s in svc.slots if s is not None and not 0 <= s < n), None)
    if bad is not None:
        raise MaglevxError(
            f"{svc.service}: slot names dest {bad}, but {n} dests are listed",
            field="table",
        )


def compare_kmod(director: Director, dump: list[KmodService]) -> list[KmodCheck]:
    """Slot-by-slot comparison of the module's tables with the predictions."""
    by_name = {s.name: s for s in director.services if s.scheduler == "mh"}
    out = []
    for k in dump:
        name = k.service
        if name.startswith("FWM") and k.family == 6:
            name += " IPv6"
        svc = by_name.get(name)
        chk = KmodCheck(service=name, slots_differ=0)
        out.append(chk)
        if svc is None:
            chk.notes.append("the module has this service; the configuration has not")
            continue
        d = svc.director
        if (k.table_size, k.word_size) != (d.table_size, d.word_size):
            chk.notes.append(
                f"module builds with M={k.table_size}, {k.word_size}-bit; "
                f"predicted with M={d.table_size}, {d.word_size}-bit: use "
                f"--table-size {k.table_size} --word-size {k.word_size}"
            )
            continue
        if d.variant != "backport":
            chk.notes.append("the module is the backport: use --variant backport")
        ours = [rs.endpoint for rs in svc.table_servers]
        if ours != k.dests:
            chk.notes.append(f"list order: module {k.dests}, predicted {ours}")
        for slot, (mine, theirs) in enumerate(zip(svc.table.tolist(), k.slots)):
            a = None if mine == 0xFFFF else ours[mine]
            b = None if theirs is None else k.dests[theirs]
            if a != b:
                chk.slots_differ += 1
                if len(chk.first_differences) < 10:
                    chk.first_differences.append(
                        f"slot {slot}: module {b}, predicted {a}"
                    )
    return out


def render(rep: VerifyReport, *, show_caveats: bool = False) -> str:
    """The human-readable form of :func:`verify`."""
    out = [
        f"{rep.checked} connections checked: {rep.matched} as predicted, "
        f"{len(rep.mismatches)} differ, {len(rep.caveats)} explained (caveats)"
        if rep.checked
        else "0 connections checked"
    ]
    out += [f"  skipped {n}: {why}" for why, n in rep.skipped.items()]
    if rep.caveats:
        kinds = Counter(c.verdict for c in rep.caveats)
        out.append("  caveats: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    for c in rep.mismatches + (rep.caveats if show_caveats else []):
        out.append(
            f"  line {c.line}: {c.flow} [{c.state}] -> kernel {c.actual}, "
            f"predicted {c.predicted or 'no destination'}"
            + (f" ({c.verdict}: {c.note})" if c.verdict != "mismatch" else "")
        )
    for k in rep.kmod:
        differs = k.slots_differ or k.notes
        status = f"{k.slots_differ} slots differ" if differs else "identical"
        out.append(f"module table {k.service}: {status}")
        out += [f"  {x}" for x in k.notes + k.first_differences]
    if rep.different:
        out.append("differences found")
    elif rep.checked == 0:
        out.append("nothing verified: no connection of the capture is to an mh service")
    else:
        out.append("as predicted")
    return "\n".join(out)


# -- flow logs as Parquet or Arrow IPC -----------------------------------------

OBSERVED = ("raddr", "rport")
SHOWN = 20  # mismatches kept for the report (memory stays bounded)


@dataclass
class FlowLogReport:
    """The result of :func:`verify_flow_log`."""

    flows: int = 0
    checked: int = 0
    matched: int = 0
    no_service: int = 0  # flows no mh service takes: not checked
    differ: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)  # first SHOWN

    @property
    def different(self) -> bool:
        """Whether any flow went elsewhere than predicted."""
        return self.differ > 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {**asdict(self), "different": self.different}


def verify_flow_log(
    director: Director,
    stream: Any,
    fmt: str,
    *,
    source: str = "<flows>",
    observed: tuple[str, str] = OBSERVED,
    batch_rows: int | None = None,
) -> FlowLogReport:
    """Compare a flow log's real servers with the predictions, batch by batch.

    *stream*: Parquet or Arrow IPC (*fmt* ``parquet``/``arrow``) with the
    flow columns of :mod:`maglevx.arrow` and *observed*: the real server
    address (the type of ``saddr``, or address text; null: none) and port
    the director chose. Flows are taken as new connections in log order, as
    ``maglevx predict`` takes them (persistence templates included). Read one
    row group (or record batch) at a time: memory stays bounded.
    """
    from maglevx import arrow

    pa = arrow.require_pyarrow()
    schema, batches = arrow.read_batches(
        stream, fmt, source=source, batch_rows=batch_rows or arrow.BATCH_ROWS
    )
    missing = [c for c in observed if c not in schema.names]
    if missing:
        raise MaglevxError(
            f"no column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(the real server the director chose: --observed "
            f"{','.join(observed)}); the file has {', '.join(schema.names)}",
            source=source,
        )
    predictor = arrow.ArrowPredictor(director, reuse=True)
    rep = FlowLogReport()
    for batch in batches:
        try:
            flows = batch.select([c for c in (*arrow.COLUMNS, arrow.MARK)
                                  if c in batch.schema.names])  # fmt: skip
            base = predictor.rows
            result = predictor.predict(flows)
            family = predictor.family
            got_a, got_ok = _addresses(pa, result.column(0), family, "raddr", base)
            want_a, want_ok = _addresses(
                pa, batch.column(observed[0]), family, observed[0], base
            )
            got_p = _ports(pa, result.column(1), "rport", base)
            want_p = _ports(pa, batch.column(observed[1]), observed[1], base)
        except MaglevxError as exc:
            raise MaglevxError(exc.message, source=source, field=exc.field) from None
        checked = ~predictor.unrouted
        same_a = got_a == want_a
        if same_a.ndim == 2:
            same_a = same_a.all(axis=1)
        same = (got_ok == want_ok) & (~got_ok | ((got_p == want_p) & same_a))
        k = int(checked.sum())
        bad = np.flatnonzero(checked & ~same)
        rep.flows += batch.num_rows
        rep.checked += k
        rep.no_service += batch.num_rows - k
        rep.matched += k - len(bad)
        rep.differ += len(bad)
        for r in bad[: max(0, SHOWN - len(rep.mismatches))].tolist():
            row = batch.slice(r, 1).to_pylist()[0]
            rep.mismatches.append({
                "row": base + r,
                "flow": ",".join(_text(row[c]) for c in arrow.COLUMNS),
                "observed": _endpoint(row[observed[0]], row[observed[1]]),
                "predicted": _endpoint(
                    result.column(0)[r].as_py(), result.column(1)[r].as_py()
                ),
            })  # fmt: skip
    return rep


def _addresses(
    pa: Any, arr: Any, family: int, name: str, base: int
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """An address column as numbers (uint32, or (n, 16) bytes), and validity."""
    from maglevx import arrow

    arr = arrow._one_chunk(pa, arr)
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type)
        t = arr.type
    ok = arrow._valid(arr) if arr.null_count else np.ones(len(arr), bool)
    if pa.types.is_uint32(t) and family == 4:
        return arrow._numpy(pa, arr.fill_null(0)), ok
    if pa.types.is_fixed_size_binary(t) and t.byte_width == 16 and family == 6:
        buf = np.frombuffer(arr.buffers()[1], np.uint8)
        return buf[arr.offset * 16 : (arr.offset + len(arr)) * 16].reshape(-1, 16), ok
    if (pa.types.is_binary(t) or pa.types.is_large_binary(t)) and family == 6:
        raw = [b if b is not None else bytes(16) for b in arr.to_pylist()]
        bad = next((i for i, b in enumerate(raw) if len(b) != 16), None)
        if bad is not None:
            raise MaglevxError(
                f"row {base + bad}: IPv6 addresses are 16 bytes", field=name
            )
        return np.frombuffer(b"".join(raw), np.uint8).reshape(-1, 16), ok
    if arrow._is_string(pa, t):
        texts = arr.to_pylist()
        filler = "0.0.0.0" if family == 4 else "::"
        parsed, bad = core.parse_addresses(
            family, [filler if x is None else x.strip() for x in texts]
        )
        if bad >= 0:
            raise MaglevxError(
                f"row {base + bad}: {texts[bad]!r} is not an IPv{family} address",
                field=name,
            )
        return parsed, ok
    raise MaglevxError(
        f"expected {'uint32' if family == 4 else 'fixed_size_binary(16)'} or "
        f"IPv{family} address strings (the flows are IPv{family}), got {t}",
        field=name,
    )


def _ports(pa: Any, arr: Any, name: str, base: int) -> npt.NDArray[np.int64]:
    from maglevx import arrow

    arr = arrow._one_chunk(pa, arr)
    if not pa.types.is_integer(arr.type):
        raise MaglevxError(f"expected integers, got {arr.type}", field=name)
    values = arrow._numpy(pa, arr.fill_null(0)).astype(np.int64)
    bad = np.flatnonzero((values < 0) | (values > 0xFFFF))
    if bad.size:
        raise MaglevxError(
            f"row {base + int(bad[0])}: {int(values[bad[0]])} is outside 0..65535",
            field=name,
        )
    return values


def _text(value: Any) -> str:
    if (isinstance(value, int) and value > 0xFFFF) or (
        isinstance(value, bytes) and len(value) == 16
    ):
        return str(ip_address(value))
    return str(value)


def _endpoint(addr: Any, port: Any) -> str | None:
    if addr is None:
        return None
    if not isinstance(addr, (int, bytes)):
        addr = str(addr).strip()
    return format_endpoint(ip_address(addr), int(port or 0))


def render_flow_log(rep: FlowLogReport, source: str) -> str:
    """The human-readable form of :func:`verify_flow_log`."""
    out = [
        f"{source}: {rep.checked} flows checked: {rep.matched} as predicted, "
        f"{rep.differ} differ"
    ]
    if rep.no_service:
        out.append(f"  skipped {rep.no_service}: to no mh virtual service")
    for m in rep.mismatches:
        out.append(
            f"  row {m['row']}: {m['flow']} -> observed "
            f"{m['observed'] or 'no destination'}, predicted "
            f"{m['predicted'] or 'no destination'}"
        )
    if rep.differ > len(rep.mismatches):
        out.append(f"  ... and {rep.differ - len(rep.mismatches)} more")
    out.append("differences found" if rep.different else "as predicted")
    return "\n".join(out)
