"""``maglevx diff``: what moves between two configurations (docs/tools.md).

Per ``mh`` service both directors have: the slots that change hands (same M
only), the sampled flows scheduled elsewhere, per real server what comes in
and goes out, and for ``upstream`` directors the new flows refused on a
weight-0 server's slot, with and without ``mh-fallback`` (kube-proxy drains
terminating pods to weight 0 without fallback: their slots stay). NEW may be
OLD with edits (:func:`apply_edits`) applied as the kernel would.
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from maglevx.addresses import format_endpoint
from maglevx.errors import MaglevxError
from maglevx.ipvsadm import parse_endpoint
from maglevx.model import Director, VirtualService
from maglevx.tools.sample import FlowSample, as_names, decide, slot_names, synthetic
from maglevx.tools.text import percent, render_table

EDIT_KINDS = ("remove", "drain", "add")
NO_DESTINATION = "(no destination)"
_COLUMNS = "real server,slots:old,new,in,out,flows:old,new,in,out".split(",")


@dataclass(frozen=True)
class Edit:
    """A proposed change: remove / drain / add a real server."""

    kind: str
    endpoint: str  # RIP:PORT or [RIP6]:PORT
    weight: int = 0  # for add

    def __post_init__(self) -> None:
        if self.kind not in EDIT_KINDS:
            raise MaglevxError(
                f"edit {self.kind!r} is not one of {', '.join(EDIT_KINDS)}",
                field="kind",
            )
        if parse_endpoint(self.endpoint, f"--{self.kind}")[1] is None:
            raise MaglevxError(
                f"{self.endpoint!r} has no port (RIP:PORT)", field=f"--{self.kind}"
            )

    def __str__(self) -> str:
        weight = f" weight {self.weight}" if self.kind == "add" else ""
        return f"{self.kind} {self.endpoint}{weight}"


def parse_edit(kind: str, text: str) -> Edit:
    """``RIP:PORT`` (remove, drain) or ``RIP:PORT:W`` (add) as an Edit."""
    field = f"--{kind}"
    weight = 0
    ep = text
    if kind == "add":
        # RIP:PORT[:WEIGHT] or [RIP6]:PORT[:WEIGHT]; no weight: 1, as ipvsadm -a
        weight = 1
        tail = text[text.find("]") + 1 :] if text.startswith("[") else text
        if tail.count(":") == 2:
            ep, w = text.rsplit(":", 1)
            if not w.isascii() or not w.isdigit() or int(w) > 65535:
                raise MaglevxError(f"weight {w!r} is not 0..65535", field=field)
            weight = int(w)
    address, port = parse_endpoint(ep, field)
    return Edit(kind, ep if port is None else format_endpoint(address, port), weight)


def apply_edits(
    director: Director, edits: list[Edit], *, service: str | None = None
) -> Director:
    """A copy of *director* with *edits* applied as the kernel would.

    ``remove``/``drain`` apply to every mh service holding the real server
    (or only *service*); ``add`` needs *service* unless there is one mh
    service. ``drain`` edits the weight to 0, keeping method and thresholds.
    """
    d = director.copy()
    mh = [s for s in d.services if s.scheduler == "mh"]
    if service is not None:
        mh = [s for s in mh if s.name == service]
        if not mh:
            raise MaglevxError(f"no mh service {service!r}", field="--service")
    for e in edits:
        address, port = parse_endpoint(e.endpoint, f"--{e.kind}")
        assert port is not None
        if e.kind == "add":
            if len(mh) != 1:
                raise MaglevxError(
                    f"which service gets {e.endpoint}? name it with --service "
                    f"(one of: {', '.join(repr(s.name) for s in mh)})",
                    field="--add",
                )
            targets = mh
        else:
            targets = [s for s in mh if s.find(address, port) is not None]
            if not targets:
                raise MaglevxError(
                    f"no mh service has real server {e.endpoint}", field=f"--{e.kind}"
                )
        for svc in targets:
            rs = svc.find(address, port)
            if e.kind == "remove":
                svc.remove_server(address, port)
            elif e.kind == "drain" and rs is not None:
                svc.edit_server(
                    address, port, weight=0, forward=rs.forward,
                    u_threshold=rs.u_threshold, l_threshold=rs.l_threshold,
                )  # fmt: skip
            else:
                svc.add_server(address, port, weight=e.weight, forward="masq")
    return d


@dataclass
class ServerMoves:
    """What one real server gains and loses."""

    endpoint: str
    slots_old: int
    slots_new: int
    slots_in: int
    slots_out: int
    flows_old: int
    flows_new: int
    flows_in: int
    flows_out: int


@dataclass
class Refusals:
    """New flows refused (no destination) in one table, in percent."""

    refused_without_fallback: float
    refused_with_fallback: float
    rerouted_with_fallback: float  # landed on an unavailable server, moved
    service_has_fallback: bool


@dataclass
class ServiceDiff:
    """How one service changes."""

    service: str
    status: str  # changed, same, added, removed
    flows: int = 0
    flows_moved: int = 0
    flows_moved_pct: float = 0.0
    slots_compared: bool = False
    slots_moved: int = 0
    slots_moved_pct: float = 0.0
    servers: list[ServerMoves] = field(default_factory=list)
    refusals_old: Refusals | None = None
    refusals_new: Refusals | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def different(self) -> bool:
        """Whether anything moves."""
        return self.status != "same"


@dataclass
class DiffReport:
    """The result of :func:`diff_directors`."""

    old: str
    new: str
    sample: str
    services: list[ServiceDiff]

    @property
    def different(self) -> bool:
        """Whether any service changes."""
        return any(s.different for s in self.services)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {**asdict(self), "different": self.different}


def refusals(svc: VirtualService, sample: FlowSample) -> Refusals:
    """How many sampled flows get no destination, with and without fallback."""
    plain = decide(svc, sample, fallback=False)
    fb = decide(svc, sample, fallback=True)
    n = len(sample)
    return Refusals(
        refused_without_fallback=percent(int((plain < 0).sum()), n),
        refused_with_fallback=percent(int((fb < 0).sum()), n),
        rerouted_with_fallback=percent(int(((plain < 0) & (fb >= 0)).sum()), n),
        service_has_fallback=svc.fallback,
    )


def diff_services(
    old: VirtualService, new: VirtualService, sample: FlowSample
) -> ServiceDiff:
    """Compare two tables of the same service on slots and on *sample*."""
    names: dict[str | None, int] = {}
    a = as_names(old, decide(old, sample), names)
    b = as_names(new, decide(new, sample), names)
    sa, sb = slot_names(old, names), slot_names(new, names)
    count = partial(np.bincount, minlength=len(names))
    sd = ServiceDiff(service=new.name, status="same", flows=len(sample))
    moved = a != b
    sd.flows_moved = int(moved.sum())
    sd.flows_moved_pct = percent(sd.flows_moved, len(sample))
    m_old, m_new = old.director.table_size, new.director.table_size
    sin = sout = np.full(len(names), -1, np.int64)  # different M: slots not comparable
    if m_old == m_new:
        sd.slots_compared = True
        smoved = sa != sb
        sd.slots_moved = int(smoved.sum())
        sd.slots_moved_pct = percent(sd.slots_moved, m_old)
        sin, sout = count(sb[smoved]), count(sa[smoved])
    else:
        sd.notes.append(f"M differs ({m_old} vs {m_new}): slots are not comparable")
    columns = [count(sa), count(sb), sin, sout]
    columns += [count(a), count(b), count(b[moved]), count(a[moved])]
    for name, i in names.items():
        moves = (int(c[i]) for c in columns)
        sd.servers.append(ServerMoves(name or NO_DESTINATION, *moves))
    if old.director.variant == "upstream":
        sd.refusals_old = refusals(old, sample)
    if new.director.variant == "upstream":
        sd.refusals_new = refusals(new, sample)
    if old.flags != new.flags:
        sd.notes.append("scheduler flags differ")
    if sd.flows_moved or sd.slots_moved or old.flags != new.flags:
        sd.status = "changed"
    return sd


def diff_directors(
    old: Director,
    new: Director,
    *,
    samples: dict[str, FlowSample] | None = None,
    sample_size: int = 100_000,
    seed: int = 1,
    old_label: str = "OLD",
    new_label: str = "NEW",
) -> DiffReport:
    """Compare every mh service of *old* and *new*.

    *samples*: flows per service name (e.g. from a flow file); services
    without one get *sample_size* synthetic flows (same seed on both sides).
    """
    olds = {s.key: s for s in old.services if s.scheduler == "mh"}
    news = {s.key: s for s in new.services if s.scheduler == "mh"}
    out = [ServiceDiff(s.name, "removed") for k, s in olds.items() if k not in news]
    for key, svc in news.items():
        if key not in olds:
            out.append(ServiceDiff(svc.name, "added"))
            continue
        sample = (samples or {}).get(svc.name) or synthetic(svc, sample_size, seed)
        out.append(diff_services(olds[key], svc, sample))
    how = f"{sample_size} synthetic clients per service (seed {seed})"
    if samples:
        how = f"flows from a file, else {sample_size} synthetic clients (seed {seed})"
    return DiffReport(old_label, new_label, how, out)


def refusal_text(r: Refusals | None) -> str:
    """Refused new flows without and with mh-fallback, e.g. for a report line."""
    if r is None:
        return "-"
    return (
        f"{r.refused_without_fallback:.2f}% without mh-fallback, "
        f"{r.refused_with_fallback:.2f}% with"
    )


def render(rep: DiffReport) -> str:
    """The human-readable form of :func:`diff_directors`."""
    parts = [f"OLD {rep.old}\nNEW {rep.new}\nsample: {rep.sample}"]
    for sd in rep.services:
        if sd.status in ("added", "removed"):
            parts.append(f"{sd.service}: {sd.status}")
            continue
        slots = ""
        if sd.slots_compared:
            slots = f"{sd.slots_moved_pct:.2f}% of slots ({sd.slots_moved}) and "
        head = (
            f"{sd.service}: {sd.status}; {slots}{sd.flows_moved_pct:.2f}% of flows "
            f"({sd.flows_moved} of {sd.flows}) move"
        )
        rows = [
            ["-" if v == -1 else v for v in astuple(s)]  # slots in/out: M differs
            for s in sd.servers
            if s.slots_old or s.slots_new or s.flows_old or s.flows_new
        ]
        lines = [head, render_table(_COLUMNS, rows)]
        has = sd.refusals_new or sd.refusals_old
        if has is not None:
            lines.append(
                "  refused new flows (weight-0 slots), upstream: "
                f"OLD {refusal_text(sd.refusals_old)}; "
                f"NEW {refusal_text(sd.refusals_new)}; this service "
                f"{'has' if has.service_has_fallback else 'has no'} mh-fallback"
            )
            n = sd.refusals_new
            if n and n.refused_with_fallback >= 100.0:
                lines.append(
                    "  ! every new flow would be refused: no real server is "
                    "available (mh-fallback cannot help)"
                )
            elif n and n.refused_without_fallback > 0 and not n.service_has_fallback:
                lines.append(
                    f"  ! {n.refused_without_fallback:.2f}% of new flows would be "
                    "refused: drained (weight 0) servers keep their slots; set "
                    "mh-fallback or delete them instead"
                )
        lines += [f"  note: {x}" for x in sd.notes]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
