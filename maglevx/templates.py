"""Persistence templates: the director state ``ip_vs_sched_persist()`` keeps.

A template is what ``ip_vs_ct_in_get()`` finds: keyed by (family, protocol,
masked client address, virtual address or fwmark, virtual port or 0), it names
the real server (``ip_vs_dest``) the client network's connections go to. The
rules that make and follow them are in :mod:`maglevx.decision`; this module only
holds them (it imports nothing of maglevx, so the model can own a table).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
TemplateKey = tuple[int, str, IPAddr, Any, int]
DestKey = tuple[Any, IPAddr, int]


@dataclass(frozen=True)
class Template:
    """One persistence template as ``/proc/net/ip_vs_conn`` lists it.

    ``key``: (family, protocol, client network, virtual address or fwmark,
    virtual port); the client port is always 0. ``dest``: (service key, real
    server address, port) of the real server it sends to. ``dport``: the
    template's destination port (0 for FTP, port-zero and fwmark templates).
    """

    key: TemplateKey
    dest: DestKey
    dport: int

    @property
    def protocol(self) -> str:
        """The template's protocol (``ip`` for fwmark templates)."""
        return self.key[1]

    @property
    def client(self) -> IPAddr:
        """The masked client address."""
        return self.key[2]

    @property
    def vaddr(self) -> IPAddr:
        """The virtual address as ip_vs_conn prints it (a fwmark as an address)."""
        family, proto, _, v, _ = self.key
        if proto == "ip":  # fwmark template: vaddr.ip = htonl(mark)
            if family == 4:
                return ipaddress.IPv4Address(v)
            return ipaddress.IPv6Address(v << 96)
        return v

    @property
    def vport(self) -> int:
        """The virtual port (0 for FTP, port-zero and fwmark templates)."""
        return self.key[4]

    @property
    def daddr(self) -> IPAddr:
        """The real server's address."""
        return self.dest[1]


class Templates:
    """A director's persistence templates, in creation order."""

    def __init__(self) -> None:
        self._t: dict[TemplateKey, Template] = {}

    def __len__(self) -> int:
        return len(self._t)

    def __iter__(self) -> Iterator[Template]:
        return iter(list(self._t.values()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Templates) and self._t == other._t

    def __repr__(self) -> str:
        return f"Templates({len(self._t)})"

    def get(self, key: TemplateKey) -> Template | None:
        """The template with this key, if any."""
        return self._t.get(key)

    def put(self, t: Template) -> None:
        """Add (or replace) a template, as the newest."""
        self._t.pop(t.key, None)
        self._t[t.key] = t

    def drop(self, key: TemplateKey) -> None:
        """``ip_vs_check_template()`` failed: the kernel invalidates it."""
        self._t.pop(key, None)

    def reset(self) -> None:
        """Forget every template (as a director whose templates all expired)."""
        self._t.clear()

    def copy(self) -> Templates:
        """An independent copy (for what-if decisions)."""
        t = Templates()
        t._t = dict(self._t)
        return t
