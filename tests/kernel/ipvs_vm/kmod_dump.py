"""The module's debugfs table dump (/sys/kernel/debug/ip_vs_mh/tables, format:
kmod/README.md), read with maglevx's own parser.

Every dump a real kernel produces in the tests goes through
``maglevx.tools.verify.parse_kmod_tables`` (what ``maglevx verify --kmod-tables``
runs), which validates it and gives each service's name, family, table size,
word size, port hashing, real servers and slots. The tests also look at what
the product has no use for - the other ``params`` (``tab_bits``, ``byte_order``,
``hash_key``), each real server's live weight and overload flag, the netns -
so :func:`parse` adds those from the same records to the product's answer, and
checks that both read the same services in the same order.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from maglevx.tools.verify import KmodService as ProductService
from maglevx.tools.verify import compare_kmod, parse_kmod_tables

EMPTY = 0xFFFF
SOURCE = "/sys/kernel/debug/ip_vs_mh/tables"


class DumpFormatError(ValueError):
    pass


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


def _extras(text: str) -> list[dict]:
    """Per service record, in order: the fields the product's parser skips."""
    out: list[dict] = []
    cur: dict = {}
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "service":
            if f[1] == "FWM":
                proto, addr, port, mark, rest = "FWM", None, None, int(f[2]), f[3:]
            else:
                proto, mark, rest = f[1], None, f[3:]
                addr, port = parse_endpoint(f[2])
            attrs = dict(zip(rest[::2], rest[1::2]))
            cur = {
                "protocol": proto,
                "address": addr,
                "port": port,
                "fwmark": mark,
                "af": attrs["af"],
                "netns": int(attrs["netns"]) if "netns" in attrs else None,
                "params": {},
                "dests": [],
            }
        elif f[0] == "params":
            cur["params"] = {
                k: int(v) if v.isdigit() else v for k, v in zip(f[1::2], f[2::2])
            }
        elif f[0] == "dest":
            a, p = parse_endpoint(f[2])
            attrs = dict(zip(f[3::2], f[4::2]))
            cur["dests"].append(
                DumpDest(
                    int(f[1]), a, p, int(attrs["weight"]), attrs["overload"] == "1"
                )
            )
        elif f[0] == "end":
            out.append(cur)
            cur = {}
    return out


def parse(text: str, source: str = SOURCE) -> list[DumpService]:
    """Every service record of a dump, in file order.

    A malformed dump raises the product's ``MaglevxError`` naming the line.
    """
    product = parse_kmod_tables(text, source)
    extras = _extras(text)
    if len(extras) != len(product):
        raise DumpFormatError(
            f"maglevx read {len(product)} services, the harness {len(extras)}"
        )
    out = []
    for p, e in zip(product, extras):
        ds = DumpService(product=p, **e)
        if [f"{d.address}:{d.port}" for d in ds.dests] != [
            "{}:{}".format(*parse_endpoint(x)) for x in p.dests
        ]:
            raise DumpFormatError(f"{ds.name}: dests read differently")
        out.append(ds)
    return out


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
