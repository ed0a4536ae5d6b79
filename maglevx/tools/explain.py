"""``maglevx explain``: every step of one decision, the kernel's and the scheduler's.

The probes come from the same scheduler object that answers ``predict``
(``TableSnapshot.trace``), so an explanation cannot disagree with it; the
hash values shown are recomputed with the core's ``hashkey``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from maglevx import decision
from maglevx.addresses import fold, format_endpoint
from maglevx.backend import core
from maglevx.errors import MaglevxError
from maglevx.model import Director, parse_five_tuple
from maglevx.tools.text import flags_text


@dataclass
class Probe:
    """One step of ``ip_vs_mh_get_fallback()``."""

    offset: int  # off
    roffset: int  # (off + slot) mod M, added into the hash input
    v: int  # offset + port + fold (u32): what hsiphash reads
    hash: int
    slot: int
    real_server: str | None  # None: empty slot
    available: bool


@dataclass
class Explanation:
    """How the director decides one new flow (docs/decision-path.md).

    ``outcome`` and ``decision`` say what the kernel does and why (FTP data,
    no service, port zero without persistence, a persistence template, the
    scheduler). The hash fields describe the scheduler's pick; they are None
    when the kernel never asks the scheduler.
    """

    flow: str
    outcome: str = ""  # maglevx.decision outcome
    decision: str = ""  # why, in one sentence
    service: str | None = None
    notes: list[str] = field(default_factory=list)  # the service's decision rules
    template: str | None = None  # the persistence template followed or made
    one_packet: bool = False
    connection: str | None = None  # the real server and port the flow goes to
    variant: str = ""
    word_size: int = 0
    table_size: int = 0
    flags: str = ""
    hashed_address: str | None = None
    fold: int | None = None  # the address as the 32-bit value hashed
    hashed_port: int | None = None  # 0 unless the port is hashed
    port_reason: str = ""
    v: int | None = None
    v_bytes: str = ""  # v as the director's CPU stores it: what hsiphash reads
    key: int | None = None  # hsiphash key word (both words equal)
    hash: int | None = None
    slot: int | None = None
    slot_server: str | None = None
    slot_server_available: bool = False
    fallback: bool = False
    probes: list[Probe] = field(default_factory=list)
    result: str | None = None  # the scheduler's pick, None: no destination
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


def explain(flow: str, director: Director, *, fwmark: int | None = None) -> Explanation:
    """Explain how *director* decides *flow* (``proto,saddr,sport,daddr,dport``).

    The director's persistence templates are read, not changed. Raises
    MaglevxError for a bad flow, an address no service has, or a flow the
    scheduler of a service other than mh would decide.
    """
    fields = [f.strip() for f in flow.split(",")]
    proto, saddr, sport, daddr, dport = parse_five_tuple(fields)
    templates = director.templates.copy()  # read, not changed
    dec = decision.decide(director, fields, fwmark=fwmark or 0, templates=templates)
    svc = dec.service
    if svc is None and not any(
        s.address == daddr and s.protocol == proto for s in director.services
    ):
        raise MaglevxError(
            f"no virtual service for {proto} {format_endpoint(daddr, dport)}",
            field="daddr",
        )
    ex = Explanation(
        flow=",".join(fields),
        outcome=dec.outcome,
        decision=dec.why,
        service=None if svc is None else svc.name,
        notes=[] if svc is None else decision.service_notes(director, svc),
        template=None
        if dec.template is None
        else decision.format_template_key(dec.template),
        one_packet=dec.one_packet,
        connection=None
        if dec.server is None or dec.port is None
        else format_endpoint(dec.server.address, dec.port),
    )
    if svc is None or dec.passed or dec.outcome == decision.PORT_ZERO:
        return ex  # the kernel never asks the scheduler
    svc.require_mh()
    _scheduler_steps(ex, svc, saddr, svc.hashed_port(proto, sport))
    return ex


def _scheduler_steps(ex: Explanation, svc: Any, saddr: Any, port: int) -> None:
    """Fill in every step of the scheduler's pick (``ip_vs_mh_schedule``)."""
    d, snap = svc.director, svc.snapshot
    m, ws, hashing = d.table_size, d.word_size, d.params.hashing
    fold_value = fold(saddr)
    if d.variant == "backport":
        ex.port_reason = "backport hashes the client port" if port else "hash_port=0"
    else:
        ex.port_reason = "mh-port is set" if port else "mh-port is not set: port 0"

    def at(entry: int) -> tuple[str | None, bool]:
        if entry == core.SLOT_EMPTY:
            return None, False
        return snap.servers[entry].endpoint, bool(snap.avail[entry])

    probes = snap.trace(fold_value, port)
    slot, entry = probes[0]
    first, first_ok = at(entry)
    v = (port + fold_value) & 0xFFFFFFFF
    ex.variant, ex.word_size, ex.table_size = d.variant, ws, m
    ex.flags = flags_text(svc.flags)
    ex.hashed_address, ex.fold, ex.hashed_port = str(saddr), fold_value, port
    ex.v, ex.v_bytes = v, v.to_bytes(4, d.byte_order).hex(" ")
    ex.key = core.HASH1_KEY
    ex.hash = core.hashkey(ws, core.HASH1_KEY, fold_value, port, 0, **hashing)
    ex.slot, ex.slot_server, ex.slot_server_available = slot, first, first_ok
    ex.fallback = snap.fallback
    if first is None:
        ex.reason = "the slot is empty: no destination"
    elif first_ok:
        ex.result, ex.reason = first, "the slot's real server is available"
    elif not snap.fallback:
        ex.reason = (
            f"{first} is unavailable (weight 0 or overloaded) and there is no "
            "mh-fallback: no destination (ICMP port unreachable)"
        )
    else:
        ex.reason = f"all {m} probes failed: no destination"
        for off, (pslot, pentry) in enumerate(probes[1:]):
            roff = (off + slot) % m
            ph = core.hashkey(ws, core.HASH1_KEY, fold_value, port, roff, **hashing)
            rs, ok = at(pentry)
            v_probe = (roff + port + fold_value) & 0xFFFFFFFF
            ex.probes.append(Probe(off, roff, v_probe, ph, pslot, rs, ok))
            if ok:  # the table is full: no probe meets an empty slot
                ex.result = rs
                ex.reason = f"probe {off} found an available real server"


def render(ex: Explanation, *, max_probes: int = 20) -> str:
    """The human-readable form of :func:`explain`."""
    head = [f"flow        {ex.flow}"]
    rules = [f"  note      {n}" for n in ex.notes]
    if ex.template:
        rules.append(f"template    {ex.template}")
    if ex.fold is None or ex.outcome == decision.TEMPLATE:
        head += [f"service     {ex.service or 'none'}", *rules]
        head.append(f"decision    {ex.connection or 'no destination'}: {ex.decision}")
        if ex.one_packet:
            head.append("            (one-packet: no connection entry is kept)")
        if ex.fold is None:
            return "\n".join(head)
        head.append("the scheduler alone would decide:")
    if ex.slot_server is None:
        at_slot = "empty"
    else:
        ok = "available" if ex.slot_server_available else "unavailable"
        at_slot = f"{ex.slot_server} ({ok})"
    lines = head + [
        f"service     {ex.service} ({ex.variant}, {ex.word_size}-bit, "
        f"M={ex.table_size}, flags {ex.flags})",
        f"address     {ex.hashed_address} -> fold 0x{ex.fold:08x}",
        f"port        {ex.hashed_port} ({ex.port_reason})",
        f"hash input  v = 0 + {ex.hashed_port} + 0x{ex.fold:08x} = 0x{ex.v:08x} "
        f"(bytes {ex.v_bytes})",
        f"hash        hsiphash{ex.word_size}(v, key {ex.key}) = 0x{ex.hash:08x}",
        f"slot        0x{ex.hash:08x} mod {ex.table_size} = {ex.slot}",
        f"table       slot {ex.slot} -> {at_slot}",
    ]
    if ex.probes:
        lines.append(
            "fallback    off  roffset  v           hash        slot   real server"
        )
        for p in ex.probes[:max_probes]:
            state = "available" if p.available else "unavailable"
            lines.append(
                f"            {p.offset:<4} {p.roffset:<8} 0x{p.v:08x}  "
                f"0x{p.hash:08x}  {p.slot:<6} {p.real_server} {state}"
            )
        if len(ex.probes) > max_probes:
            lines.append(f"            ... {len(ex.probes) - max_probes} more (--json)")
    lines.append(f"result      {ex.result or 'no destination'}: {ex.reason}")
    if ex.outcome != decision.TEMPLATE:
        lines += rules
        if ex.connection and ex.connection != ex.result:
            lines.append(f"connection  {ex.connection} ({ex.decision})")
        elif ex.template:
            lines.append(f"decision    {ex.decision}")
        if ex.one_packet:
            lines.append("one-packet  no connection entry is kept")
    return "\n".join(lines)
