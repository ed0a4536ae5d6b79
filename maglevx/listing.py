"""``ipvsadm -Ln --nosort`` listings into records (syntax only).

A listing shows the kernel's current state: each virtual service with its
flags, and its real servers head first (``--nosort``). This module turns
the text into :class:`ListedService` records; :mod:`maglevx.model` loads
them (``Director.from_snapshot``) and says what a listing cannot know.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from maglevx.addresses import IPAddress, parse_number
from maglevx.errors import MaglevxError
from maglevx.ipvs import MAX_TIMEOUT, SCHEDULERS, SVC_F_ONEPACKET, SVC_F_PERSISTENT
from maglevx.ipvsadm import (
    check_line_length,
    parse_endpoint,
    parse_sched_flags,
    split_lines,
)


@dataclass(frozen=True)
class ListedServer:
    """One ``-> addr:port Forward Weight ...`` line."""

    address: IPAddress
    port: int
    forward: str  # masq, route or tunnel
    weight: int
    line: int


@dataclass
class ListedService:
    """One service line and the real servers listed under it, head first."""

    protocol: str  # tcp, udp, sctp or fwmark
    address: IPAddress | None
    port: int
    fwmark: int
    family: int
    scheduler: str
    flags: int
    persistent: int | None
    netmask: str | None
    line: int
    servers: list[ListedServer] = field(default_factory=list)


# re.ASCII: \d must not match other scripts' digits (int("٣") == 3).
_SVC_RE = re.compile(
    r"^(?P<proto>TCP|UDP|SCTP)\s+(?P<addr>\S+)\s+(?P<sched>\S+)(?P<rest>.*)$",
    re.ASCII,
)
_FWM_RE = re.compile(
    r"^FWM\s+(?P<mark>\d+)(?P<v6>\s+IPv6)?\s+(?P<sched>\S+)(?P<rest>.*)$",
    re.ASCII,
)
_RS_RE = re.compile(
    r"^->\s+(?P<addr>\S+)\s+(?P<fwd>Masq|Local|Route|Tunnel|Bypass)\s+"
    r"(?P<weight>-?\d+)(\s+\d+\s+\d+)?\s*$",
    re.ASCII,
)
_FLAGS_RE = re.compile(r"^\((?P<flags>[^)]*)\)\s*")
_PERSISTENT_RE = re.compile(r"^persistent\s+(?P<t>\d+)\s*", re.ASCII)
_MASK_RE = re.compile(r"^mask\s+(?P<mask>\S+)\s*")
_PE_RE = re.compile(r"^pe\s+\S+\s*")
_OPS_RE = re.compile(r"^ops\s*$")
_FORWARD_NAMES = {
    "Masq": "masq", "Local": "masq", "Route": "route",
    "Tunnel": "tunnel", "Bypass": "route",
}  # fmt: skip
_HEADERS = ("IP Virtual Server", "Prot LocalAddress", "-> RemoteAddress")


def parse_listing(
    text: str | Iterable[str], *, source: str = "<snapshot>"
) -> Iterator[ListedService]:
    """The services of a listing, in listed order; each with its servers.

    A service is yielded once the next service line (or the end) is read.
    """
    svc: ListedService | None = None
    for lineno, raw in enumerate(split_lines(text), 1):
        line = raw.strip()
        if not line or line.startswith(_HEADERS):
            continue
        try:
            check_line_length(line)
            if line.startswith("->"):
                if svc is None:
                    raise MaglevxError("real server line before any service")
                svc.servers.append(_server(line, lineno))
                continue
            nxt = _service(line, lineno)
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None
        if svc is not None:
            yield svc
        svc = nxt
    if svc is not None:
        yield svc


def _service(line: str, lineno: int) -> ListedService:
    m = _SVC_RE.match(line)
    fwm = _FWM_RE.match(line) if m is None else None
    if m is not None:
        protocol = m["proto"].lower()
        address, port = parse_endpoint(m["addr"], "LocalAddress:Port")
        fwmark, family = 0, address.version
        sched, rest = m["sched"], m["rest"]
    elif fwm is not None:
        protocol, address, port = "fwmark", None, 0
        fwmark = parse_number(fwm["mark"], 1, 0xFFFFFFFF, "fwmark", "FWM")
        family = 6 if fwm["v6"] else 4
        sched, rest = fwm["sched"], fwm["rest"]
    else:
        raise MaglevxError(f"not a line of `ipvsadm -Ln --nosort`: {line!r}")
    if sched not in SCHEDULERS:
        raise MaglevxError(f"unknown scheduler {sched!r}", field="Scheduler")
    flags, persistent, netmask = 0, None, None
    rest = rest.strip()
    if fm := _FLAGS_RE.match(rest):
        flags = parse_sched_flags(fm["flags"], sched, "Flags")
        rest = rest[fm.end() :]
    if pm := _PERSISTENT_RE.match(rest):
        flags |= SVC_F_PERSISTENT
        persistent = parse_number(pm["t"], 0, MAX_TIMEOUT, "timeout", "persistent")
        rest = rest[pm.end() :]
    if mm := _MASK_RE.match(rest):
        netmask = mm["mask"]
        rest = rest[mm.end() :]
    rest = _PE_RE.sub("", rest)
    if _OPS_RE.match(rest):
        flags |= SVC_F_ONEPACKET
        rest = ""
    if rest.strip():
        raise MaglevxError(f"unexpected service attributes {rest.strip()!r}")
    return ListedService(
        protocol=protocol,
        address=address,
        port=port or 0,
        fwmark=fwmark,
        family=family,
        scheduler=sched,
        flags=flags,
        persistent=persistent,
        netmask=netmask,
        line=lineno,
    )


def _server(line: str, lineno: int) -> ListedServer:
    m = _RS_RE.match(line)
    if m is None:
        raise MaglevxError(f"not a real server line: {line!r}")
    address, port = parse_endpoint(m["addr"], "RemoteAddress:Port")
    if m["weight"].startswith("-"):
        raise MaglevxError(
            f"weight {m['weight'][:21]} is outside 0..65535", field="Weight"
        )
    weight = parse_number(m["weight"], 0, 65535, "weight", "Weight")
    return ListedServer(address, port or 0, _FORWARD_NAMES[m["fwd"]], weight, lineno)
