"""``maglevx explain``: every step of one scheduling decision.

The probes come from the same scheduler object that answers ``predict``
(``TableSnapshot.trace``), so an explanation cannot disagree with it; the
hash values shown are recomputed with the core's ``hashkey``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
    """How the director schedules one new flow."""

    flow: str
    service: str
    variant: str
    word_size: int
    table_size: int
    flags: str
    hashed_address: str
    fold: int  # the address as the 32-bit value hashed (IPv6: XOR of words)
    hashed_port: int  # 0 unless the port is hashed
    port_reason: str
    v: int
    v_bytes: str  # v as the director's CPU stores it: what hsiphash reads
    key: int  # hsiphash key word (both words equal)
    hash: int
    slot: int
    slot_server: str | None
    slot_server_available: bool
    fallback: bool
    probes: list[Probe] = field(default_factory=list)
    result: str | None = None  # the real server, None: no destination
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


def explain(flow: str, director: Director, *, fwmark: int | None = None) -> Explanation:
    """Explain how *director* schedules *flow* (``proto,saddr,sport,daddr,dport``).

    Raises MaglevxError for a bad flow or no matching mh service.
    """
    fields = [f.strip() for f in flow.split(",")]
    proto, saddr, sport, daddr, dport = parse_five_tuple(fields)
    svc = director.service_for(proto, daddr, dport, fwmark)
    if svc is None:
        raise MaglevxError(
            f"no virtual service for {proto} {format_endpoint(daddr, dport)}",
            field="daddr",
        )
    svc.require_mh()
    if saddr.version != svc.family:
        raise MaglevxError(f"{saddr} is not IPv{svc.family}", field="saddr")
    d = svc.director
    snap = svc.snapshot
    m, ws = d.table_size, d.word_size
    hashing = snap.build.params.hashing
    fold_value = fold(saddr)
    port = snap.hashed_port(proto, sport)
    if d.variant == "backport":
        why = "backport hashes the client port" if port else "hash_port=0"
    else:
        why = "mh-port is set" if port else "mh-port is not set: port 0"

    def at(entry: int) -> tuple[str | None, bool]:
        if entry == core.SLOT_EMPTY:
            return None, False
        return snap.servers[entry].endpoint, bool(snap.avail[entry])

    probes = snap.trace(fold_value, port)
    slot, entry = probes[0]
    first, first_ok = at(entry)
    v = (port + fold_value) & 0xFFFFFFFF
    ex = Explanation(
        flow=",".join(fields),
        service=svc.name,
        variant=d.variant,
        word_size=ws,
        table_size=m,
        flags=flags_text(svc.flags),
        hashed_address=str(saddr),
        fold=fold_value,
        hashed_port=port,
        port_reason=why,
        v=v,
        v_bytes=v.to_bytes(4, d.byte_order).hex(" "),
        key=core.HASH1_KEY,
        hash=core.hashkey(ws, core.HASH1_KEY, fold_value, port, 0, **hashing),
        slot=slot,
        slot_server=first,
        slot_server_available=first_ok,
        fallback=snap.fallback,
    )
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
            if rs is None:
                ex.reason = f"probe {off} hit an empty slot: no destination"
            elif ok:
                ex.result = rs
                ex.reason = f"probe {off} found an available real server"
    return ex


def render(ex: Explanation, *, max_probes: int = 20) -> str:
    """The human-readable form of :func:`explain`."""
    lines = [
        f"flow        {ex.flow}",
        f"service     {ex.service} ({ex.variant}, {ex.word_size}-bit, "
        f"M={ex.table_size}, flags {ex.flags})",
        f"address     {ex.hashed_address} -> fold 0x{ex.fold:08x}",
        f"port        {ex.hashed_port} ({ex.port_reason})",
        f"hash input  v = 0 + {ex.hashed_port} + 0x{ex.fold:08x} = 0x{ex.v:08x} "
        f"(bytes {ex.v_bytes})",
        f"hash        hsiphash{ex.word_size}(v, key {ex.key}) = 0x{ex.hash:08x}",
        f"slot        0x{ex.hash:08x} mod {ex.table_size} = {ex.slot}",
        f"table       slot {ex.slot} -> "
        + (
            "empty"
            if ex.slot_server is None
            else f"{ex.slot_server} ("
            + ("available" if ex.slot_server_available else "unavailable")
            + ")"
        ),
    ]
    if ex.probes:
        lines.append(
            "fallback    off  roffset  v           hash        slot   real server"
        )
        for p in ex.probes[:max_probes]:
            state = "empty" if p.real_server is None else (
                f"{p.real_server} " + ("available" if p.available else "unavailable")
            )  # fmt: skip
            lines.append(
                f"            {p.offset:<4} {p.roffset:<8} 0x{p.v:08x}  "
                f"0x{p.hash:08x}  {p.slot:<6} {state}"
            )
        if len(ex.probes) > max_probes:
            lines.append(f"            ... {len(ex.probes) - max_probes} more (--json)")
    lines.append(f"result      {ex.result or 'no destination'}: {ex.reason}")
    return "\n".join(lines)
