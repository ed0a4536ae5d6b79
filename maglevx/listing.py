"""``ipvsadm -Ln --nosort`` listings into records (syntax only).

A listing shows the kernel's current state: each virtual service with its
flags, and its real servers head first (``--nosort``). This module turns
the text into :class:`ListedService` records; :mod:`maglevx.model` loads
them (``Director.from_snapshot``) and says what a listing cannot know.
What operators paste is read as ipvsadm printed it (``-L`` without ``-n``,
``--persistent-conn``, prompts, comments); what no Linux IPVS listing holds
is refused in one line naming what to give instead. ``docs/tools.md`` ("What
operators paste") lists both.
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
    numeric_endpoint,
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
    r"^(?:(?P<proto>TCP|UDP|SCTP)\s+(?P<addr>\S+)|FWM\s+(?P<mark>\d+)(?P<v6>\s+IPv6)?)"
    r"\s+(?P<sched>\S+)(?P<rest>.*)$",
    re.ASCII,
)
_RS_RE = re.compile(
    r"^->\s+(?P<addr>\S+)\s+(?P<fwd>Masq|Local|Route|Tunnel|Bypass)\s+"
    r"(?P<weight>-?\d+)(\s+\d+\s+\d+)?\s*$",
    re.ASCII,
)
# --persistent-conn: "-> addr Weight PersistConn ActiveConn InActConn"
_RS_PCONN_RE = re.compile(
    r"^->\s+(?P<addr>\S+)\s+(?P<weight>-?\d+)\s+\d+\s+\d+\s+\d+\s*$", re.ASCII
)
_RS_OTHER_FWD_RE = re.compile(r"^->\s+\S+\s+(?P<fwd>[A-Za-z()]+)\s+-?\d+")
# ipvsadm -L's header of each flavour: what it leaves out
_FLAVOURS = {
    "Conns": ("--stats", "scheduler, flags or weights"),
    "CPS": ("--rate", "scheduler, flags or weights"),
    "Uthreshold": ("--thresholds", "weights"),
}
_NUMERIC = "list with `ipvsadm -Ln --nosort`"
# /proc/net/ip_vs: "TCP  0A010001:0050 mh", "UDP  [fd00:0001:...:0001]:0035 mh"
_PROC_IP_VS_RE = re.compile(
    r"^(TCP|UDP|SCTP)\s+([0-9A-F]{8}|\[[0-9a-f]{4}(:[0-9a-f]{4}){7}\]):[0-9A-F]{4}\s"
)
# a history line: -A/-E/-D/-a/-e/-d/-C, maybe after "ipvsadm"
_HISTORY_RE = re.compile(r"^(\S*ipvsadm\s+)?-[AEDaedC](\s|$)")
# the command that printed the listing, without a prompt ("$ ipvsadm -Ln")
_COMMAND_RE = re.compile(r"^([$%]\s*)?(?P<cmd>(sudo\s+)?\S*ipvsadm(\s.*)?)$")
# a shell prompt ("[root@lb ~]#", "root@lb:~$", "user@lb ~ ❱"), maybe a command
_PROMPT_RE = re.compile(
    r"^(\[[^\]]*@[^\]]*\]\s*[#$]|[\w.-]+@[\w.-]+\S*(\s+\S+)?\s*[#$❱>%])\s*(?P<cmd>.*)$"
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
_HEADERS = ("IP Virtual Server", "-> RemoteAddress", "#")  # and comments


def parse_listing(
    text: str | Iterable[str], *, source: str = "<snapshot>"
) -> Iterator[ListedService]:
    """The services of a listing, in listed order; each with its servers.

    A service is yielded once the next service line (or the end) is read.
    """
    svc: ListedService | None = None
    persistent_conn = False  # the --persistent-conn flavour's server lines
    for lineno, raw in enumerate(split_lines(text), 1):
        line = raw.strip()
        if not line or line.startswith(_HEADERS):
            continue
        try:
            check_line_length(line)
            if line.startswith("Prot LocalAddress"):
                persistent_conn = _header(line)
                continue
            if _foreign(line, svc is not None):
                continue
            if line.startswith("->"):
                if svc is None:
                    raise MaglevxError("real server line before any service")
                svc.servers.append(_server(line, lineno, svc, persistent_conn))
                continue
            nxt = _service(line, lineno)
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None
        if svc is not None:
            yield svc
        svc = nxt
    if svc is not None:
        yield svc


def _header(line: str) -> bool:
    """Check a ``Prot LocalAddress:Port ...`` header; True for --persistent-conn."""
    words = line.split()
    for word, (flag, missing) in _FLAVOURS.items():
        if word in words:
            raise MaglevxError(
                f"this is `ipvsadm -L {flag}` output, which shows no {missing}: "
                f"{_NUMERIC}"
            )
    if "ProtoMod" in words:
        raise _not_ipvs("l7vsd's (UltraMonkey-L7 `l7vsadm -l`)")
    return "PersistConn" in words


def _not_ipvs(what: str) -> MaglevxError:
    return MaglevxError(
        f"this is {what} listing, not Linux IPVS's: maglevx models the kernel's "
        "ip_vs_mh; give `ipvsadm -Ln --nosort` of a Linux director"
    )


def _foreign(line: str, seen_service: bool) -> bool:
    """Refuse what is not a listing line; True for a line to skip (a prompt)."""
    if line.startswith(">>>"):
        raise MaglevxError(
            f"{line[:40]!r} starts another director's output: several listings "
            "are in one file; give one director's listing per file"
        )
    if line.startswith(">"):
        raise MaglevxError(
            "the line starts with '>' (mail quoting): remove the quoting, or "
            f"{_NUMERIC} on the director"
        )
    if line.startswith("Layer-7 Virtual Server"):
        raise _not_ipvs("l7vsd's (UltraMonkey-L7 `l7vsadm -l`)")
    if _PROC_IP_VS_RE.match(line):
        raise MaglevxError(
            "this is /proc/net/ip_vs (hex addresses), which shows no scheduler "
            f"flags (mh-port, mh-fallback): {_NUMERIC}"
        )
    if line.startswith("MATCH "):
        raise _not_ipvs("DPVS's (a `MATCH` SNAT service)")
    if _HISTORY_RE.match(line):
        raise MaglevxError(
            "this line is an `ipvsadm -R` command: a history (rule file) is given "
            "with --history (or FILE:kind=history)"
        )
    m = _PROMPT_RE.match(line) or _COMMAND_RE.match(line)
    if m is None:
        return False
    if not m["cmd"] or (not seen_service and "ipvsadm" in m["cmd"]):
        return True  # the prompt and command before the listing, or alone after
    raise MaglevxError(
        f"a shell prompt or command ({m['cmd'][:40]!r}) after the listing: the "
        "output of several commands is in one file; give one listing per file"
    )


def _service(line: str, lineno: int) -> ListedService:
    m = _SVC_RE.match(line)
    if m is None:
        raise MaglevxError(f"not a line of `ipvsadm -Ln --nosort`: {line!r}")
    sched, rest = m["sched"], m["rest"]
    if m["proto"]:
        protocol = m["proto"].lower()
        where = "LocalAddress:Port"
        address, port = numeric_endpoint(m["addr"], protocol, where, _NUMERIC)
        fwmark, family = 0, address.version
    else:
        protocol, address, port = "fwmark", None, 0
        fwmark = parse_number(m["mark"], 1, 0xFFFFFFFF, "fwmark", "FWM")
        family = 6 if m["v6"] else 4
    if sched not in SCHEDULERS:
        if re.fullmatch(r"\d+[KMGT]?", sched, re.ASCII):
            raise MaglevxError(
                f"a number ({sched!r}) where the scheduler goes: this is `ipvsadm "
                f"-L --stats` or `--rate` output, which shows no scheduler, flags "
                f"or weights: {_NUMERIC}",
                field="Scheduler",
            )
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


def _server(
    line: str, lineno: int, svc: ListedService, persistent_conn: bool
) -> ListedServer:
    m = (_RS_PCONN_RE if persistent_conn else _RS_RE).match(line)
    if m is None:
        other = None if persistent_conn else _RS_OTHER_FWD_RE.match(line)
        if other is not None and other["fwd"] in ("SNAT", "FNAT", "FullNat", "(null)"):
            fwd = other["fwd"]
            who = "DPVS's" if fwd in ("SNAT", "FNAT") else "a patched IPVS's"
            raise MaglevxError(
                f"forwarding method {fwd!r} is {who} (FULLNAT/SNAT), not one of "
                "Linux IPVS (Masq, Local, Route, Tunnel, Bypass): maglevx "
                "models mainline ip_vs_mh",
                field="Forward",
            )
        if re.match(r"^->\s+\S+(\s+\d+){4}\s*$", line, re.ASCII):
            raise MaglevxError(
                "real server line without a forwarding method: `ipvsadm -L "
                "--thresholds` (no weights) or `--persistent-conn` output without "
                f"its header line: {_NUMERIC}"
            )
        raise MaglevxError(f"not a real server line: {line!r}")
    protocol = "tcp" if svc.protocol == "fwmark" else svc.protocol
    where = "RemoteAddress:Port"
    address, port = numeric_endpoint(m["addr"], protocol, where, _NUMERIC)
    if m["weight"].startswith("-"):
        raise MaglevxError(
            f"weight {m['weight'][:21]} is outside 0..65535", field="Weight"
        )
    weight = parse_number(m["weight"], 0, 65535, "weight", "Weight")
    # --persistent-conn prints no forwarding method; it does not enter the
    # table (the port printed is the one the kernel stores)
    fwd = _FORWARD_NAMES[m["fwd"]] if not persistent_conn else "route"
    return ListedServer(address, port or 0, fwd, weight, lineno)
