"""Parse /proc/net/ip_vs_conn.

Format (``ip_vs_conn_seq_show``): ``Pro FromIP FPrt ToIP TPrt DestIP DPrt State
Expires [PEName PEData]``; IPv4 addresses and all ports are upper-case hex in host
order (``0A050001`` = 10.5.0.1), IPv6 addresses are printed with ``%pI6``, i.e. eight
zero-padded groups (``fd00:000c:0000:...``). The client ("From") is the flow's
source, "To" the virtual service, "Dest" the real server the scheduler picked.
"""

from __future__ import annotations

import dataclasses
import ipaddress


@dataclasses.dataclass(frozen=True)
class ConnEntry:
    proto: str  # "tcp" / "udp" / ...
    caddr: ipaddress.IPv4Address | ipaddress.IPv6Address
    cport: int
    vaddr: ipaddress.IPv4Address | ipaddress.IPv6Address
    vport: int
    daddr: ipaddress.IPv4Address | ipaddress.IPv6Address
    dport: int
    state: str
    expires: int

    @property
    def client_key(self):
        return (self.proto, self.caddr, self.cport)


def _addr(text: str):
    if ":" in text:
        return ipaddress.IPv6Address(text)
    return ipaddress.IPv4Address(int(text, 16))


def parse_line(line: str) -> ConnEntry | None:
    """One table line -> ConnEntry (None for the header or blank lines)."""
    f = line.split()
    if len(f) < 9 or f[0] == "Pro":
        return None
    return ConnEntry(
        proto=f[0].lower(),
        caddr=_addr(f[1]),
        cport=int(f[2], 16),
        vaddr=_addr(f[3]),
        vport=int(f[4], 16),
        daddr=_addr(f[5]),
        dport=int(f[6], 16),
        state=f[7],
        expires=int(f[8]),
    )


def parse_table(text: str) -> list[ConnEntry]:
    return [e for e in map(parse_line, text.splitlines()) if e is not None]
