"""Flows from ``/proc/net/ip_vs_conn``, ``ipvsadm -Lnc`` and ``conntrack -L``.

Each parser yields :class:`CapturedFlow` records naming their source line, so
errors can point at it. The formats, with examples, are in ``docs/tools.md``
("Capture formats"): ``ip_vs_conn_seq_show()``'s hex fields, ipvsadm's
``print_conn()``, and conntrack's original and reply directions (the reply's
source is the real server for masquerading only).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from maglevx.addresses import (
    IPAddress,
    format_endpoint,
    parse_address,
    parse_number,
    parse_port,
)
from maglevx.errors import MaglevxError

CONN_HEADER = "Pro FromIP"
LNC_HEADERS = ("IPVS connection entries", "pro expire state")
ULONG_MAX = 2**64 - 1  # Expires: %lu seconds


@dataclass(frozen=True)
class CapturedFlow:
    """A connection seen in a capture."""

    proto: str  # tcp, udp, sctp, or another name in lower case ("ip", ...)
    saddr: IPAddress
    sport: int
    daddr: IPAddress
    dport: int
    line: int
    # the real server the kernel chose (ip_vs_conn, ipvsadm -Lnc, conntrack
    # of masquerading servers), the connection's state and expiry
    raddr: IPAddress | None = None
    rport: int | None = None
    state: str = ""
    expires: int | None = None

    @property
    def template(self) -> bool:
        """A persistence template (client port 0), not a connection."""
        return self.sport == 0 or self.proto == "ip"

    @property
    def real_server(self) -> str | None:
        """``raddr:rport`` of the chosen real server, when the capture shows it."""
        if self.raddr is None or self.rport is None:
            return None
        return format_endpoint(self.raddr, self.rport)

    def csv(self) -> str:
        """The flow as a ``predict`` input line."""
        return f"{self.proto},{self.saddr},{self.sport},{self.daddr},{self.dport}"


def _conn_addr(text: str, field: str) -> IPAddress:
    try:
        if ":" in text:
            return ipaddress.IPv6Address(text)
        if len(text) != 8:
            raise ValueError
        return ipaddress.IPv4Address(int(text, 16))
    except ValueError:
        raise MaglevxError(f"{text!r} is not an address", field=field) from None


def _hex_port(text: str, field: str) -> int:
    if not re.fullmatch(r"[0-9A-Fa-f]{1,4}", text):
        raise MaglevxError(f"{text!r} is not a hex port", field=field)
    return int(text, 16)


def parse_ip_vs_conn(
    lines: Iterable[str], *, source: str = "<ip_vs_conn>"
) -> Iterator[CapturedFlow]:
    """Entries of a ``/proc/net/ip_vs_conn`` dump (header and blanks skipped)."""
    for lineno, raw in enumerate(lines, 1):
        f = raw.split()
        if not f or raw.startswith(CONN_HEADER) or f[0].startswith("#"):
            continue
        try:
            if len(f) < 9:
                raise MaglevxError(
                    f"expected at least 9 fields (Pro FromIP FPrt ToIP TPrt DestIP "
                    f"DPrt State Expires), got {len(f)}"
                )
            expires = parse_number(f[8], 0, ULONG_MAX, "", "Expires")
            yield CapturedFlow(
                proto=f[0].lower(),
                saddr=_conn_addr(f[1], "FromIP"),
                sport=_hex_port(f[2], "FPrt"),
                daddr=_conn_addr(f[3], "ToIP"),
                dport=_hex_port(f[4], "TPrt"),
                raddr=_conn_addr(f[5], "DestIP"),
                rport=_hex_port(f[6], "DPrt"),
                state=f[7],
                expires=expires,
                line=lineno,
            )
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None


_CT_KV = re.compile(r"(?<![\w-])(src|dst|sport|dport)=(\S+)")
# conntrack prints each protocol's name and number (``tcp      6``)
_CT_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "136": "udplite",
               "1": "icmp", "58": "icmpv6", "33": "dccp", "47": "gre"}  # fmt: skip
_CT_PROTOS = set(_CT_NUMBERS.values())
_CT_EVENT = re.compile(r"^\s*\[(NEW|UPDATE|DESTROY)\]\s*")


def parse_conntrack(
    lines: Iterable[str], *, source: str = "<conntrack>"
) -> Iterator[CapturedFlow]:
    """Flows of ``conntrack -L`` output (original direction).

    Entries without ports (ICMP, ...) are skipped, as are lines that are
    not entries (the "N flow entries have been shown" summary). When the
    reply direction comes from another address or port than the original
    one went to (masquerading), that is the real server (``raddr``).
    """
    for lineno, raw in enumerate(lines, 1):
        text = _CT_EVENT.sub("", raw)
        tokens = text.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if tokens[0] in ("ipv4", "ipv6"):
            tokens = tokens[2:]
        if not tokens or tokens[0] not in _CT_PROTOS:
            if "src=" in raw:
                name = tokens[0] if tokens else ""
                hint = ""
                if len(tokens) > 1 and tokens[1] in _CT_NUMBERS:
                    hint = (
                        f" (protocol number {tokens[1]} is "
                        f"{_CT_NUMBERS[tokens[1]]}: is the line cut?)"
                    )
                raise MaglevxError(
                    f"unknown protocol {name!r}{hint}",
                    source=source, line=lineno, field="proto",
                )  # fmt: skip
            continue
        groups: list[dict[str, str]] = [{}]
        for key, value in _CT_KV.findall(text):
            if key in groups[-1]:
                if len(groups) == 2:
                    break
                groups.append({})  # the reply direction starts
            groups[-1][key] = value
        first = groups[0]
        if "sport" not in first:
            continue
        try:
            if "src" not in first or "dst" not in first:
                raise MaglevxError("no src=/dst= in the original direction")
            sa = parse_address(first["src"], "src")
            da = parse_address(first["dst"], "dst")
            dport = parse_port(first.get("dport", ""), "dport")
            raddr = rport = None
            reply = groups[1] if len(groups) > 1 else {}
            if "src" in reply and "sport" in reply:
                ra = parse_address(reply["src"], "src")
                rp = parse_port(reply["sport"], "sport")
                if (ra, rp) != (da, dport):
                    raddr, rport = ra, rp
            yield CapturedFlow(
                proto=tokens[0],
                saddr=sa,
                sport=parse_port(first["sport"], "sport"),
                daddr=da,
                dport=dport,
                line=lineno,
                raddr=raddr,
                rport=rport,
                state=_ct_state(tokens),
            )
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None


def _ct_state(tokens: list[str]) -> str:
    """The TCP/SCTP state word of a conntrack entry, if it has one."""
    for tok in tokens[3:5]:
        if tok.isalpha() and tok.isupper():
            return tok
    return ""


# ipvsadm's print_conn(): "%-3s %-6s %-11s %-18s %-18s %s" (+ pe name, pe_data)
_LNC_EXPIRE = re.compile(r"^(\d{1,10}):([0-5]\d)$", re.ASCII)
_LNC_STATE = re.compile(r"^[A-Z][A-Z_]*[A-Z12]?!?$")


def parse_ipvsadm_conn(
    lines: Iterable[str], *, source: str = "<ipvsadm -Lnc>"
) -> Iterator[CapturedFlow]:
    """Entries of ``ipvsadm -Lnc`` output (headers and blanks skipped)."""
    for lineno, raw in enumerate(lines, 1):
        f = raw.split()
        if not f or raw.strip().startswith(LNC_HEADERS) or f[0].startswith("#"):
            continue
        try:
            if len(f) < 6:
                raise MaglevxError(
                    f"expected at least 6 fields (pro expire state source virtual "
                    f"destination), got {len(f)}: {raw.strip()[:60]!r}"
                )
            m = _LNC_EXPIRE.match(f[1])
            if m is None:
                raise MaglevxError(
                    f"{f[1][:20]!r} is not minutes:seconds", field="expire"
                )
            if not _LNC_STATE.match(f[2]):
                raise MaglevxError(
                    f"{f[2][:20]!r} is not an IPVS connection state (output of a "
                    "patched IPVS, e.g. FULLNAT? maglevx reads mainline Linux's)",
                    field="state",
                )
            saddr, sport = _lnc_endpoint(f[3], "source")
            daddr, dport = _lnc_endpoint(f[4], "virtual")
            raddr, rport = _lnc_endpoint(f[5], "destination")
            yield CapturedFlow(
                proto=f[0].lower(),
                saddr=saddr,
                sport=sport,
                daddr=daddr,
                dport=dport,
                raddr=raddr,
                rport=rport,
                state=f[2],
                expires=int(m[1]) * 60 + int(m[2]),
                line=lineno,
            )
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None


def _lnc_endpoint(text: str, field: str) -> tuple[IPAddress, int]:
    """``addr:port`` or ``[v6addr]:port`` as ipvsadm -n prints them."""
    if text.startswith("["):
        addr, sep, port = text[1:].partition("]:")
    else:
        addr, sep, port = text.rpartition(":")
    if not sep:
        raise MaglevxError(f"{text!r} is not address:port", field=field)
    numeric = "capture with `ipvsadm -Lnc` (-n: no host or service names)"
    try:
        address = ipaddress.ip_address(addr)
    except ValueError:
        raise MaglevxError(
            f"{addr!r} is not a numeric address: {numeric}", field=field
        ) from None
    if not (port.isascii() and port.isdigit()):
        raise MaglevxError(f"port {port!r} is not a number: {numeric}", field=field)
    return address, parse_port(port, field)


def detect(head: bytes) -> str:
    """``ip_vs_conn``, ``ipvsadm_conn``, ``conntrack``, ``pcap`` or ``csv``.

    Decided from the first bytes of the input.
    """
    if head[:4] in (
        b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a",
    ):  # fmt: skip
        return "pcap"
    lines = head.decode("utf-8", "replace").splitlines()
    first = next((ln for ln in lines if ln.strip() and ln.lstrip()[0] != "#"), "")
    if first.startswith(CONN_HEADER) or re.match(
        r"^(TCP|UDP|SCTP|IP)\s+[0-9A-F]{8}\s+[0-9A-F]{4}\s", first
    ):
        return "ip_vs_conn"
    if first.strip().startswith(LNC_HEADERS) or re.match(
        r"^(TCP|UDP|SCTP|IP)\s+\d+:\d\d\s+\S+\s+\S+:\d+\s", first
    ):
        return "ipvsadm_conn"
    if re.match(
        r"^\s*(\[(NEW|UPDATE|DESTROY)\]\s*)?(ipv[46]\s+\d+\s+)?[a-z]+\s+\d+\s+.*"
        r"\bsrc=",
        first,
    ):
        return "conntrack"
    return "csv"


PARSERS = {
    "ip_vs_conn": parse_ip_vs_conn,
    "ipvsadm_conn": parse_ipvsadm_conn,
    "conntrack": parse_conntrack,
}
