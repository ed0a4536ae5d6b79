"""The kernel's whole decision for a new connection, not only the scheduler's pick.

``ip_vs_in_hook()`` -> the protocol's ``conn_schedule()`` -> ``ip_vs_service_find()``
-> ``ip_vs_schedule()`` -> ``ip_vs_sched_persist()`` (Linux 6.1 and 6.12,
``net/netfilter/ipvs/ip_vs_core.c``, ``ip_vs_ctl.c``, ``ip_vs_conn.c``). Every rule
here cites its source line in ``docs/decision-path.md``; the scheduler itself is
``VirtualService.schedule``.

Persistence templates are state: :class:`Templates` holds them, keyed as the
kernel keys them (``ip_vs_ct_in_get``): (family, protocol, masked client address,
virtual address or fwmark, virtual port or 0). A :class:`Director` owns one
(``director.templates``, ``director.reset_templates()``); flows decided one after
another share it in input order. Time does not pass in the model: templates never
expire (the kernel drops one ``-p`` seconds after its last connection ended).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from maglevx.addresses import parse_five_tuple, parse_number
from maglevx.errors import MaglevxError
from maglevx.ipvs import SVC_F_ONEPACKET, SVC_F_PERSISTENT
from maglevx.templates import DestKey, IPAddr, Template, TemplateKey, Templates

__all__ = ["Decision", "Template", "Templates", "decide", "service_find"]

FTPPORT = 21  # include/net/ip_vs.h FTPPORT
FTPDATA = 20  # include/net/ip_vs.h FTPDATA
# net.ipv4.ip_unprivileged_port_start (inet_port_requires_bind_service)
UNPRIVILEGED_PORT_START = 1024

# Outcomes
SCHEDULED = "scheduled"  # the scheduler picked a real server (new template if -p)
TEMPLATE = "template"  # a persistence template decided
NO_DESTINATION = "no-destination"  # dropped, ICMP port unreachable to the client
NO_SERVICE = "no-service"  # no virtual service: IPVS does not touch the packet
FTP_DATA = "ftp-data"  # client port 20: never scheduled, the packet passes
FTP_PASS = "ftp-pass"  # another port caught by a non-persistent :21 service: passes
PORT_ZERO = "port-zero"  # non-persistent port-zero service: dropped, ICMP

PASSED = frozenset({NO_SERVICE, FTP_DATA, FTP_PASS})
DROPPED = frozenset({NO_DESTINATION, PORT_ZERO})


@dataclass(frozen=True)
class Decision:
    """What the kernel does with the first packet of a new connection.

    ``server``/``port``: the real server and the destination port of the
    connection entry (None unless ``outcome`` is SCHEDULED or TEMPLATE).
    ``template``: the template key followed or created (persistent services).
    ``one_packet``: ``-o`` for a UDP packet: no connection entry is kept.
    ``why``: one sentence for ``explain``.
    """

    outcome: str
    service: Any
    server: Any
    port: int | None
    template: TemplateKey | None
    one_packet: bool
    why: str
    replaced: bool = False  # a template existed but ip_vs_check_template() failed

    @property
    def scheduled(self) -> bool:
        """A real server was chosen (by the scheduler or a template)."""
        return self.server is not None

    @property
    def passed(self) -> bool:
        """The packet goes on unscheduled (to the director's own stack)."""
        return self.outcome in PASSED

    @property
    def dropped(self) -> bool:
        """The packet is dropped and the client gets ICMP port unreachable."""
        return self.outcome in DROPPED


def client_network(svc: Any, saddr: IPAddr) -> IPAddr:
    """The client address masked with the service's ``-M`` (ip_vs_sched_persist)."""
    m = svc_netmask(svc)
    if saddr.version == 4:
        return ipaddress.IPv4Address(int(saddr) & m)
    return ipaddress.IPv6Network(f"{saddr}/{m}", strict=False).network_address


def svc_netmask(svc: Any) -> int:
    """The service's netmask: an IPv4 mask as an int, or an IPv6 prefix length."""
    return int(svc.persistence_mask)


def persistent(svc: Any) -> bool:
    return bool(svc.flags & SVC_F_PERSISTENT) or svc.persistent is not None


def needs_decisions(director: Any) -> bool:
    """Whether a flow's fate can depend on more than its service's table.

    Persistence, the FTP lookup, port zero and fwmark services do; client
    port 20 alone is handled by every path.
    """
    return any(
        persistent(s) or s.port in (0, FTPPORT) or s.fwmark for s in director.services
    )


def service_find(
    director: Any, protocol: str, daddr: IPAddr, dport: int, fwmark: int = 0
) -> Any:
    """``ip_vs_service_find()``: fwmark first, exact, FTP's :21, then port zero."""
    family = daddr.version
    if fwmark:
        svc = director.find_service(("fwmark", fwmark, family))
        if svc is not None:
            return svc
    svc = director.find_service((protocol, daddr, dport))
    ports = {s.port for s in director.services}  # ftpsvc_counter, nullsvc_counter
    if (
        svc is None
        and protocol == "tcp"
        and FTPPORT in ports
        and (dport == FTPDATA or dport >= UNPRIVILEGED_PORT_START)
    ):
        svc = director.find_service((protocol, daddr, FTPPORT))
    if svc is None and 0 in ports:
        svc = director.find_service((protocol, daddr, 0))
    return svc


def dest_key(svc: Any, rs: Any) -> DestKey:
    """What makes a real server the same ``ip_vs_dest`` (ip_vs_trash_get_dest)."""
    return (svc.key, rs.address, rs.port)


def _dest(director: Any, key: DestKey) -> Any:
    svc = director.find_service(key[0])
    if svc is None:
        return None
    for rs in svc.real_servers:
        if rs.address == key[1] and rs.port == key[2]:
            return rs
    return None


def decide(
    director: Any,
    flow: Any,
    *,
    fwmark: int = 0,
    templates: Templates | None = None,
) -> Decision:
    """The kernel's decision for the first packet of a new connection.

    *flow*: ``(proto, saddr, sport, daddr, dport)`` (addresses and ports may be
    str). *fwmark*: the packet's mark (0: none). *templates*: the persistence
    templates to read and update (default: the director's own), so flows decided
    one after another share them in that order, as the kernel's would.
    """
    protocol, saddr, sport, daddr, dport = parse_five_tuple(flow)
    if not 0 <= fwmark <= 0xFFFFFFFF:
        raise MaglevxError(f"fwmark {fwmark} is outside 0..4294967295", field="fwmark")
    if templates is None:
        templates = director.templates
    svc = service_find(director, protocol, daddr, dport, fwmark)
    if svc is None:
        return Decision(
            NO_SERVICE, None, None, None, None, False,
            "no virtual service matches: IPVS lets the packet pass",
        )  # fmt: skip
    one_packet = bool(svc.flags & SVC_F_ONEPACKET) and protocol == "udp"
    if sport == FTPDATA:
        return Decision(
            FTP_DATA, svc, None, None, None, False,
            f"client port {FTPDATA} (FTP data): ip_vs_schedule() never schedules it, "
            "the packet passes",
        )  # fmt: skip
    if persistent(svc):
        return _persist(director, svc, protocol, saddr, sport, daddr, dport,
                        templates, one_packet)  # fmt: skip
    if not svc.fwmark and dport != svc.port:
        if svc.port == FTPPORT:
            return Decision(
                FTP_PASS, svc, None, None, None, False,
                f"caught by the FTP service {svc.name} for port {dport}; not "
                "persistent, so never scheduled: the packet passes",
            )  # fmt: skip
        return Decision(
            PORT_ZERO, svc, None, None, None, False,
            f"{svc.name} is a port-zero service without persistence: the kernel "
            "never schedules its flows (dropped, ICMP port unreachable)",
        )  # fmt: skip
    rs = svc.schedule(saddr, sport, protocol)
    if rs is None:
        return Decision(
            NO_DESTINATION, svc, None, None, None, one_packet,
            "the scheduler found no destination (dropped, ICMP port unreachable)",
        )  # fmt: skip
    return Decision(
        SCHEDULED, svc, rs, rs.port or dport, None, one_packet,
        "scheduled by " + svc.scheduler,
    )  # fmt: skip


def template_key(
    svc: Any, protocol: str, saddr: IPAddr, daddr: IPAddr, dport: int
) -> TemplateKey:
    """The key of the template a flow of persistent *svc* uses (6.1:307-337).

    ``<protocol, client net, VIP, vport>``, vport 0 for an FTP service or a
    flow caught by port zero or the FTP lookup, ``<IP, client net, fwmark, 0>``
    for a fwmark service.
    """
    proto, vaddr, vport = protocol, daddr, 0
    if dport == svc.port:
        if svc.port != FTPPORT:
            vport = dport
    elif svc.fwmark:
        proto, vaddr = "ip", svc.fwmark
    return (svc.family, proto, client_network(svc, saddr), vaddr, vport)


def template_server(director: Any, t: Template) -> Any:
    """The real server template *t* sends to, if it still exists."""
    return _dest(director, t.dest)


def _persist(
    director: Any,
    svc: Any,
    protocol: str,
    saddr: IPAddr,
    sport: int,
    daddr: IPAddr,
    dport: int,
    templates: Templates,
    one_packet: bool,
) -> Decision:
    """``ip_vs_sched_persist()``."""
    key = template_key(svc, protocol, saddr, daddr, dport)
    t = templates.get(key)
    rs = None
    replaced = False
    if t is not None:
        rs = _dest(director, t.dest)
        quiescent = rs is not None and rs.weight == 0
        if rs is None or (quiescent and director.expire_quiescent_template):
            templates.drop(key)  # ip_vs_check_template() invalidates it
            rs = None
            replaced = True
    if rs is not None:
        outcome = TEMPLATE
        why = f"follows the persistence template {format_template_key(key)}"
    else:
        rs = svc.schedule(saddr, sport, protocol)
        if rs is None:
            if svc.port == FTPPORT and dport != FTPPORT:
                return Decision(
                    FTP_PASS, svc, None, None, key, False,
                    "no destination for the FTP service's catch-all: passes",
                    replaced,
                )  # fmt: skip
            return Decision(
                NO_DESTINATION, svc, None, None, key, one_packet,
                "the scheduler found no destination (dropped, ICMP port "
                "unreachable); no template made", replaced,
            )  # fmt: skip
        tport = rs.port if (dport == svc.port and svc.port != FTPPORT) else 0
        # the template's real server as the kernel keeps it: the ip_vs_dest
        owner = _owner(director, svc, rs)
        templates.put(Template(key, dest_key(owner, rs), tport))
        outcome = SCHEDULED
        why = f"scheduled by {svc.scheduler}; new template {format_template_key(key)}"
    port = rs.port if (dport == svc.port and rs.port) else dport
    return Decision(outcome, svc, rs, port, key, one_packet, why, replaced)


def _owner(director: Any, svc: Any, rs: Any) -> Any:
    for s in director.services:
        if any(x is rs for x in s.real_servers):
            return s
    return svc


def format_template_key(key: TemplateKey) -> str:
    family, proto, client, v, vport = key
    if proto == "ip":
        return f"<fwmark {v}, client {client}>"
    va = f"[{v}]" if family == 6 else str(v)
    return f"<{proto.upper()} client {client} -> {va}:{vport}>"


def parse_fwmark(text: str, field: str = "fwmark") -> int:
    """A packet mark as written in a flow: decimal or ``0x`` hex, 0..2**32-1."""
    t = text.strip()
    if t[:2].lower() == "0x":
        if not re.fullmatch(r"[0-9A-Fa-f]{1,8}", t[2:]):
            raise MaglevxError(
                f"fwmark {text!r} is not a number 0..0xffffffff", field=field
            )
        return int(t[2:], 16)
    return parse_number(t, 0, 0xFFFFFFFF, "fwmark", field)


def templates_from_conns(director: Any, entries: Iterable[Any]) -> Templates:
    """The templates of a ``/proc/net/ip_vs_conn`` dump (client port 0).

    Each is tied to the real server of *director* it names; invalidated ones
    (virtual port 0xffff) and those whose real server the director does not
    have (the kernel would not follow them) are left out.
    """
    out = Templates()
    for e in entries:
        if e.sport != 0 or e.dport == 0xFFFF or e.raddr is None:
            continue
        family = e.saddr.version
        if e.proto == "ip":  # fwmark template: the mark is the virtual address
            mark = int(e.daddr) if family == 4 else int(e.daddr) >> 96
            key: TemplateKey = (family, "ip", e.saddr, mark, e.dport)
            candidates = [director.find_service(("fwmark", mark, family))]
        else:
            key = (family, e.proto, e.saddr, e.daddr, e.dport)
            ports = [e.dport] if e.dport else [FTPPORT, 0]
            candidates = [director.find_service((e.proto, e.daddr, p)) for p in ports]
        for svc in candidates:
            if svc is None:
                continue
            rs = next(
                (r for r in svc.real_servers
                 if r.address == e.raddr and (e.rport == 0 or r.port == e.rport)),
                None,
            )  # fmt: skip
            if rs is not None:
                out.put(Template(key, dest_key(svc, rs), e.rport))
                break
    return out


def service_notes(director: Any, svc: Any) -> list[str]:
    """What decides a flow of *svc* besides its table, one sentence each."""
    notes = []
    if persistent(svc):
        m = svc_netmask(svc)
        mask = str(ipaddress.IPv4Address(m)) if svc.family == 4 else f"/{m}"
        timeout = svc.persistent if svc.persistent is not None else "?"
        notes.append(
            f"persistent {timeout} s, client mask {mask}: the first connection of "
            "a client network picks the real server (a template), later ones "
            "follow it while that server exists"
            + (
                " and has weight > 0 (expire_quiescent_template)"
                if getattr(director, "expire_quiescent_template", False)
                else " (even at weight 0)"
            )
        )
    if not svc.fwmark and svc.port == 0:
        if persistent(svc):
            notes.append(
                "port zero: catches every port of its address that has no service "
                "of its own; connections keep the client's destination port"
            )
        else:
            notes.append(
                "port zero without persistence: the kernel never schedules its "
                "flows (dropped, ICMP port unreachable)"
            )
    if svc.port == FTPPORT and svc.protocol == "tcp":
        notes.append(
            "FTP port 21: TCP flows to port 20 or to ports >= 1024 of this address "
            "without a service of their own come here"
            + (
                ", with one template per client"
                if persistent(svc)
                else " and pass unscheduled"
            )  # fmt: skip
        )
    if svc.fwmark:
        notes.append(
            f"fwmark {svc.fwmark}: every IPv{svc.family} packet with this mark, of "
            "any protocol, address and port, before any other service"
        )
    if svc.flags & SVC_F_ONEPACKET:
        notes.append(
            "one-packet (-o): each UDP datagram is scheduled on its own; no "
            "connection entry is kept"
        )
    notes.append(f"client port {FTPDATA} (FTP data) is never scheduled")
    return notes
