"""``maglevx table``: which slots each real server holds, and why.

Per ``mh`` service and real server: weights, turns, slots and shares, with
warnings (docs/tools.md, "table").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from math import gcd
from typing import Any

import numpy as np

from maglevx import decision
from maglevx.backend import core
from maglevx.model import Director, VirtualService
from maglevx.tools.text import flags_text, percent, render_table

SHARE_TOLERANCE = 0.01  # relative deviation above which M is called too small


@dataclass
class ServerShare:
    """One real server's place in a table."""

    position: int  # 0 = list head (newest)
    endpoint: str
    weight: int
    last_weight: int
    table_weight: int  # weight (backport) or last_weight (upstream)
    available: bool
    turns: int  # slots claimed per round
    slots: int
    share: float  # percent of the M slots
    weight_share: float  # percent of the sum of table weights
    target_share: float  # percent of the sum of turns: what the fill aims at


@dataclass
class Quantization:
    """How the kernel turns weights into turns (``ip_vs_mh_reassign``)."""

    gcd: int
    rshift: int
    max_turns: int  # the most turns a server can get per round
    changes_ratio: bool
    weights_ratio: str  # e.g. "100:5:3"
    turns_ratio: str  # e.g. "50:2:1"


@dataclass
class ServiceTable:
    """The table of one virtual service, summarized."""

    service: str
    variant: str
    word_size: int
    table_size: int
    flags: str
    filled: int
    empty: int
    quantization: Quantization
    max_deviation: float  # max relative deviation of a share from its target
    servers: list[ServerShare] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # what decides a flow besides the table (persistence, port zero, fwmark,
    # FTP, one-packet; maglevx.decision.service_notes)
    decision: list[str] = field(default_factory=list)
    never_scheduled: bool = False  # port zero without persistence

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


def _ratio(values: list[int]) -> str:
    nz = [v for v in values if v > 0]
    g = gcd(*nz) or 1
    return ":".join(str(v // g) for v in nz)


def service_table(svc: VirtualService) -> ServiceTable:
    """Summarize *svc*'s current table (see the module docstring)."""
    d, snap = svc.director, svc.snapshot
    m, servers, weights = d.table_size, snap.servers, list(snap.weights)
    g, rshift, turns = snap.quantize()
    counts = np.bincount(
        snap.table[snap.table != core.SLOT_EMPTY], minlength=len(servers)
    ).tolist()
    filled = sum(counts)
    wsum, tsum = sum(weights), sum(turns)
    rows = [
        ServerShare(
            position=i,
            endpoint=rs.endpoint,
            weight=rs.weight,
            last_weight=rs.last_weight,
            table_weight=weights[i],
            available=rs.available,
            turns=turns[i],
            slots=counts[i],
            share=percent(counts[i], m),
            weight_share=percent(weights[i], wsum),
            target_share=percent(turns[i], tsum),
        )
        for i, rs in enumerate(servers)
    ]
    devs = [abs(r.share / r.target_share - 1) for r in rows if r.target_share > 0]
    wr, tr = _ratio(weights), _ratio(turns)
    q = Quantization(
        gcd=g,
        rshift=rshift,
        max_turns=(1 << core.tab_bits(m)) - 1,
        changes_ratio=wr != tr,
        weights_ratio=wr,
        turns_ratio=tr,
    )
    st = ServiceTable(
        service=svc.name,
        variant=d.variant,
        word_size=d.word_size,
        table_size=m,
        flags=flags_text(svc.flags),
        filled=filled,
        empty=m - filled,
        quantization=q,
        max_deviation=max(devs, default=0.0),
        servers=rows,
        decision=decision.service_notes(d, svc),
        never_scheduled=not (svc.fwmark or svc.port or decision.persistent(svc)),
    )
    st.warnings = _warnings(svc, st)
    return st


def _warnings(svc: VirtualService, st: ServiceTable) -> list[str]:
    out = []
    if st.never_scheduled:
        out.append(
            "port zero without persistence: the kernel never schedules this "
            "service's flows, whatever its table"
        )
    q = st.quantization
    if q.changes_ratio:
        out.append(
            f"weights {q.weights_ratio} act as {q.turns_ratio}: a server claims "
            f"at most {q.max_turns} slots per round with M={st.table_size}, so "
            f"weights (divided by their gcd {q.gcd}) are shifted right by "
            f"{q.rshift}"
        )
    for r in st.servers:
        if r.slots == 0:
            why = "weight 0" if r.table_weight == 0 else "the table filled first"
            out.append(f"{r.endpoint} holds no slots ({why})")
        elif not r.available:
            fate = (
                "they fall back to other servers (mh-fallback)"
                if svc.fallback
                else "new flows there get no destination"
            )
            out.append(
                f"{r.endpoint} is unavailable (weight {r.weight}) but holds "
                f"{r.slots} slots ({r.share:.1f}% of flows): {fate}"
            )
    if st.max_deviation > SHARE_TOLERANCE:
        # Each round hands out sum(turns) slots and the last round is cut
        # short, so shares reach their target within ~1% once M is about
        # 100 x sum(turns) (100 x servers for equal weights).
        tsum = sum(r.turns for r in st.servers)
        n = sum(1 for r in st.servers if r.turns > 0)
        better = [p for p in core.PRIMES if p >= 100 * tsum and p > st.table_size]
        hint = ""
        if better:
            how = _how_to_set(st, better[0])
            hint = f"; M={better[0]} would keep them within ~1% ({how})"
        out.append(
            f"M={st.table_size} is small for {n} servers ({tsum} turns per "
            f"round): slot shares are off their target by up to "
            f"{100 * st.max_deviation:.1f}%{hint}"
        )
    if not st.filled:  # a table is full or, all weights 0, empty
        out.append("every slot is empty: new flows get no destination")
    return out


def _how_to_set(st: ServiceTable, m: int) -> str:
    """Where a director's table size is chosen."""
    if st.variant == "backport":
        return f"maglevx's module: load it with table_size={m}"
    index = 8 + list(core.PRIMES).index(m)  # Kconfig: 8..17, M = PRIMES[i - 8]
    return (
        f"a kernel build option: CONFIG_IP_VS_MH_TAB_INDEX={index}, see "
        f"/boot/config-$(uname -r); or maglevx's module with table_size={m}"
    )


def table_report(
    director: Director,
    service: str | None = None,
    *,
    notes: dict[str, list[str]] | None = None,
) -> list[ServiceTable]:
    """Summaries of the tables of *director*'s ``mh`` services.

    *service*: only the service of this name (e.g. ``TCP 10.0.0.1:80``).
    *notes*: more warnings per service name, shown first (what the input
    could not tell, e.g. a listing's unknown last_weight).

    >>> d = Director.from_history(["-A -t 10.0.0.1:80 -s mh",
    ...     "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 100",
    ...     "-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 5",
    ...     "-a -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 3"])
    >>> table_report(d)[0].quantization.turns_ratio
    '1:2:50'
    """
    out = [
        service_table(svc)
        for svc in director.services
        if svc.scheduler == "mh" and (service is None or svc.name == service)
    ]
    for st in out:
        st.warnings[:0] = (notes or {}).get(st.service, [])
    return out


def render(reports: list[ServiceTable]) -> str:
    """The human-readable form of :func:`table_report`."""
    parts = []
    for st in reports:
        q = st.quantization
        head = (
            f"{st.service}  ({st.variant}, {st.word_size}-bit, M={st.table_size}, "
            f"flags {st.flags})\n"
            f"  {st.filled} slots filled, {st.empty} empty; weights "
            f"{q.weights_ratio or '-'} -> turns {q.turns_ratio or '-'} "
            f"(gcd {q.gcd}, shift {q.rshift})"
        )
        rows = [
            [
                r.position,
                r.endpoint,
                r.weight,
                r.table_weight,
                r.turns,
                r.slots,
                round(r.share, 2),
                round(r.weight_share, 2),
                "yes" if r.available else "NO",
            ]
            for r in st.servers
        ]
        body = render_table(
            ["#", "real server", "weight", "table_w", "turns", "slots", "share%",
             "weight%", "available"],
            rows,
        )  # fmt: skip
        notes = "".join(f"\n  decision: {n}" for n in st.decision)
        warn = "".join(f"\n  ! {w}" for w in st.warnings)
        parts.append(f"{head}{notes}\n{body}{warn}")
    return "\n\n".join(parts) if parts else "no mh services"
