"""The module's debugfs table dump (/sys/kernel/debug/ip_vs_mh/tables, format:
kmod/README.md), read with maglevx's own parser only.

Every dump a real kernel produces in the tests goes through
``maglevx.tools.verify.parse_kmod_tables`` (what ``maglevx verify --kmod-tables``
runs), which validates it and keeps every field of every record: service name,
family, netns, all ``params``, each real server's endpoint, live weight and
overload flag, and the slots. :class:`DumpService` only gives the tests a
handier view of that record (split service name, ints for numeric params,
normalized addresses).
"""

from __future__ import annotations

import dataclasses
import ipaddress

from maglevx.tools.verify import KmodService as ProductService
from maglevx.tools.verify import compare_kmod, parse_kmod_tables

EMPTY = 0xFFFF
SOURCE = "/sys/kernel/debug/ip_vs_mh/tables"


def parse_endpoint(text: str) -> tuple[str, int]:
    """``10.0.0.1:80`` / ``[fd00::1]:53`` -> (normalized address, port)."""
    host, _, port = text.rpartition(":")
    return str(ipaddress.ip_address(host.strip("[]"))), int(port)


@dataclasses.dataclass
class DumpDest:
    index: int
    address: str
    port: int
    weight: int
    overload: bool


@dataclasses.dataclass
class DumpService:
    """One service record: the product's ``KmodService`` plus the extra fields."""

    product: ProductService  # what maglevx's parser read
    protocol: str  # TCP / UDP / SCTP / FWM
    address: str | None  # None for FWM
    port: int | None
    fwmark: int | None
    af: str  # inet / inet6
    netns: int | None
    params: dict  # table_size, tab_bits, word_size, hash_port -> int;
    # byte_order -> "little"/"big", hash_key -> "kernel" or the key's id
    dests: list[DumpDest]

    @property
    def table(self) -> list[int]:
        """Per slot: index into dests, or EMPTY (from the product's slots)."""
        return [EMPTY if s is None else s for s in self.product.slots]

    @property
    def name(self) -> str:
        """As maglevx names services: ``TCP 10.1.0.1:80``, ``UDP [fd00::1]:53``."""
        if self.protocol == "FWM":
            return f"FWM {self.fwmark}" + (" IPv6" if self.af == "inet6" else "")
        a = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol} {a}:{self.port}"


def _view(p: ProductService) -> DumpService:
    proto, _, rest = p.service.partition(" ")
    if proto == "FWM":
        addr, port, mark = None, None, int(rest)
    else:
        (addr, port), mark = parse_endpoint(rest), None
    dests = [
        DumpDest(i, *parse_endpoint(d), w, o)
        for i, (d, w, o) in enumerate(zip(p.dests, p.weights, p.overloaded))
    ]
    # numbers as ints; hash_key (a hex id, or "kernel") and byte_order as text
    params = {
        k: v if k in ("hash_key", "byte_order") else int(v) for k, v in p.params.items()
    }
    af = "inet6" if p.family == 6 else "inet"
    return DumpService(p, proto, addr, port, mark, af, p.netns, params, dests)


def parse(text: str, source: str = SOURCE) -> list[DumpService]:
    """Every service record of a dump, in file order (maglevx's parser).

    A malformed dump raises the product's ``MaglevxError`` naming the line.
    """
    return [_view(p) for p in parse_kmod_tables(text, source)]


def compare_with_model(dump: list[DumpService], director) -> list[str]:
    """Differences between the dump and a maglevx ``Director`` (empty: equal).

    maglevx's own check (``compare_kmod``: M and word size against the
    director's, list order and endpoints of the real servers the table was
    built from, every slot), plus the live weights, and any mh service of the
    director missing from the dump.
    """
    problems = []
    for chk in compare_kmod(director, [ds.product for ds in dump]):
        if chk.notes or chk.slots_differ:
            detail = "; ".join(chk.notes + chk.first_differences[:5])
            problems.append(f"{chk.service}: {chk.slots_differ} slots differ; {detail}")
    model = {svc.name: svc for svc in director.services if svc.scheduler == "mh"}
    for ds in dump:
        svc = model.get(ds.name)
        if svc is None:
            continue  # compare_kmod said so
        ours = [rs.weight for rs in svc.table_servers]
        theirs = [d.weight for d in ds.dests]
        if ours != theirs:
            problems.append(f"{ds.name}: weights: kernel {theirs} maglevx {ours}")
    dumped = {ds.name for ds in dump}
    for name in model:
        if name not in dumped:
            problems.append(f"{name}: mh service in maglevx, not in the dump")
    return problems
