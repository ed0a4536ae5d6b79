"""Parse /sys/kernel/debug/ip_vs_mh/tables (format: kmod/README.md) and compare
it with maglevx's model of the same director."""

from __future__ import annotations

import dataclasses
import ipaddress

EMPTY = 0xFFFF


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
    protocol: str  # TCP / UDP / SCTP / FWM
    address: str | None  # None for FWM
    port: int | None
    fwmark: int | None
    af: str  # inet / inet6
    netns: int | None
    params: dict  # table_size, tab_bits, word_size, hash_port -> int;
    # byte_order -> "little"/"big", hash_key -> "kernel" or the key's id
    dests: list[DumpDest]
    table: list[int]  # per slot: index into dests, or EMPTY

    @property
    def name(self) -> str:
        """As maglevx names services: ``TCP 10.1.0.1:80``, ``UDP [fd00::1]:53``."""
        if self.protocol == "FWM":
            return f"FWM {self.fwmark}" + (" IPv6" if self.af == "inet6" else "")
        a = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol} {a}:{self.port}"


class DumpFormatError(ValueError):
    pass


def parse(text: str) -> list[DumpService]:
    """Every service record of a dump, in the order the file lists them."""
    lines = text.splitlines()
    if not lines or lines[0].split() != ["version", "1"]:
        raise DumpFormatError(f"unknown dump version line {lines[:1]!r}")
    out: list[DumpService] = []
    cur: DumpService | None = None
    for n, line in enumerate(lines[1:], start=2):
        f = line.split()
        if not f:
            continue
        key = f[0]
        if key == "service":
            if cur is not None:
                raise DumpFormatError(f"line {n}: service before end")
            if f[1] == "FWM":
                proto, addr, port, mark, rest = "FWM", None, None, int(f[2]), f[3:]
            else:
                proto, mark, rest = f[1], None, f[3:]
                addr, port = parse_endpoint(f[2])
            attrs = dict(zip(rest[::2], rest[1::2]))
            cur = DumpService(
                proto,
                addr,
                port,
                mark,
                attrs["af"],
                int(attrs["netns"]) if "netns" in attrs else None,
                {},
                [],
                [],
            )
        elif cur is None:
            raise DumpFormatError(f"line {n}: {key!r} outside a service record")
        elif key == "params":
            cur.params = {
                k: int(v) if v.isdigit() else v for k, v in zip(f[1::2], f[2::2])
            }
        elif key == "dests":
            pass  # the count; checked against the dest lines at "end"
        elif key == "dest":
            a, p = parse_endpoint(f[2])
            attrs = dict(zip(f[3::2], f[4::2]))
            cur.dests.append(
                DumpDest(
                    int(f[1]), a, p, int(attrs["weight"]), attrs["overload"] == "1"
                )
            )
        elif key == "table":
            cur.table = [EMPTY if v == "-" else int(v) for v in f[1:]]
        elif key == "end":
            if len(cur.table) != cur.params.get("table_size"):
                raise DumpFormatError(
                    f"line {n}: {len(cur.table)} slots, "
                    f"table_size {cur.params.get('table_size')}"
                )
            if [d.index for d in cur.dests] != list(range(len(cur.dests))):
                raise DumpFormatError(f"line {n}: dest indices not 0..n-1")
            out.append(cur)
            cur = None
        else:
            raise DumpFormatError(f"line {n}: unknown record {key!r}")
    if cur is not None:
        raise DumpFormatError("last service record has no end")
    return out


def compare_with_model(dump: list[DumpService], director) -> list[str]:
    """Differences between the dump and a maglevx ``Director`` (empty: equal).

    Compares, per mh service: the real servers the table was built from (list
    order, address, port, live weight) and every slot.
    """
    problems = []
    model = {svc.name: svc for svc in director.services if svc.scheduler == "mh"}
    seen = set()
    for ds in dump:
        name = ds.name
        seen.add(name)
        svc = model.get(name)
        if svc is None:
            problems.append(
                f"{name}: in the kernel's dump, not an mh service in maglevx"
            )
            continue
        servers = [(str(rs.address), rs.port, rs.weight) for rs in svc.table_servers]
        dests = [(d.address, d.port, d.weight) for d in ds.dests]
        if servers != dests:
            problems.append(
                f"{name}: real servers differ: kernel {dests} maglevx {servers}"
            )
            continue
        table = [int(x) for x in svc.table]
        if table != ds.table:
            diff = [i for i, (a, b) in enumerate(zip(ds.table, table)) if a != b]
            problems.append(
                f"{name}: {len(diff)} of {len(table)} slots differ, first at "
                f"{diff[:5]}: kernel {[ds.table[i] for i in diff[:5]]} "
                f"maglevx {[table[i] for i in diff[:5]]}"
            )
    for name in model:
        if name not in seen:
            problems.append(f"{name}: mh service in maglevx, not in the kernel's dump")
    return problems
