"""Reading flows from captures: ``/proc/net/ip_vs_conn`` and ``conntrack -L``.

Both yield :class:`CapturedFlow` records, each naming its source line so
errors can point at it.

``/proc/net/ip_vs_conn`` (``ip_vs_conn_seq_show()``)::

    Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
    TCP 0A020001 9C40 0A010001 0050 AC100001 0050 ESTABLISHED     899

IPv4 addresses and all ports are upper-case hex in host order, IPv6
addresses are ``%pI6`` (eight zero-padded groups). *From* is the client,
*To* the virtual service, *Dest* the real server the kernel chose.
Persistence templates have client port 0 (protocol ``IP`` for fwmark
services) and state ``NONE`` or ``ASSURED``.

``conntrack -L`` (also ``-o extended``)::

    tcp      6 431999 ESTABLISHED src=10.2.0.1 dst=10.1.0.1 sport=40000 dport=80 \
src=172.16.0.1 dst=10.2.0.1 sport=80 dport=40000 [ASSURED] mark=0 use=1

The first ``src/dst/sport/dport`` group is the original direction: the
client and the virtual service.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from maglevx.addresses import IPAddress, format_endpoint, parse_number, parse_port
from maglevx.errors import MaglevxError

CONN_HEADER = "Pro FromIP"
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
    # ip_vs_conn only: the real server the kernel chose, its state, expiry
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
        """``raddr:rport`` of the chosen real server (ip_vs_conn only)."""
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
        if not f or raw.startswith(CONN_HEADER):
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


_CT_KV = re.compile(r"(src|dst|sport|dport)=(\S+)")
_CT_PROTOS = {"tcp", "udp", "sctp", "udplite", "icmp", "icmpv6", "dccp", "gre"}


def parse_conntrack(
    lines: Iterable[str], *, source: str = "<conntrack>"
) -> Iterator[CapturedFlow]:
    """Original-direction flows of ``conntrack -L`` output.

    Entries without ports (ICMP, ...) are skipped, as are lines that are
    not entries (the "N flow entries have been shown" summary).
    """
    for lineno, raw in enumerate(lines, 1):
        tokens = raw.split()
        if not tokens:
            continue
        if tokens[0] in ("ipv4", "ipv6"):
            tokens = tokens[2:]
        if not tokens or tokens[0] not in _CT_PROTOS:
            if "src=" in raw:
                raise MaglevxError(
                    f"unknown protocol {tokens[0] if tokens else ''!r}",
                    source=source, line=lineno, field="proto",
                )  # fmt: skip
            continue
        first: dict[str, str] = {}
        for key, value in _CT_KV.findall(raw):
            if key in first:
                break  # the reply direction starts
            first[key] = value
        if "sport" not in first:
            continue
        try:
            if "src" not in first or "dst" not in first:
                raise MaglevxError("no src=/dst= in the original direction")
            sa = _ip(first["src"], "src")
            da = _ip(first["dst"], "dst")
            yield CapturedFlow(
                proto=tokens[0],
                saddr=sa,
                sport=parse_port(first["sport"], "sport"),
                daddr=da,
                dport=parse_port(first.get("dport", ""), "dport"),
                line=lineno,
            )
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None


def _ip(text: str, field: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise MaglevxError(f"{text!r} is not an IP address", field=field) from None


def detect(head: bytes) -> str:
    """``ip_vs_conn``, ``conntrack``, ``pcap`` or ``csv`` from the first bytes."""
    if head[:4] in (
        b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a",
    ):  # fmt: skip
        return "pcap"
    text = head.decode("utf-8", "replace")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if first.startswith(CONN_HEADER) or re.match(
        r"^(TCP|UDP|SCTP|IP)\s+[0-9A-F]{8}\s+[0-9A-F]{4}\s", first
    ):
        return "ip_vs_conn"
    if re.match(r"^\s*(ipv[46]\s+\d+\s+)?[a-z]+\s+\d+\s+.*\bsrc=", first):
        return "conntrack"
    return "csv"
