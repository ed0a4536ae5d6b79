"""The module's debugfs table dump (/sys/kernel/debug/ip_vs_mh/tables, format:
kmod/README.md), read with maglevx's own parser and compared with its own checker
(``maglevx.tools.verify``: what ``maglevx verify --kmod-tables`` runs), so every
dump a real kernel produces in the tests goes through the product's code.
"""

from __future__ import annotations

from maglevx.tools.verify import compare_kmod, parse_kmod_tables

EMPTY = 0xFFFF
SOURCE = "/sys/kernel/debug/ip_vs_mh/tables"


def parse(text: str, source: str = SOURCE) -> list:
    """Every service record of a dump (maglevx's ``KmodService``), in file order.

    A malformed dump raises ``MaglevxError`` naming the line.
    """
    return parse_kmod_tables(text, source)


def compare_with_model(dump: list, director) -> list[str]:
    """Differences between the dump and a maglevx ``Director`` (empty: equal).

    Per mh service of either side: the module's parameters (M, word size) against
    the director's, the real servers the table was built from (list order and
    endpoints), and every slot; an mh service of the director missing from the
    dump is a difference too.
    """
    problems = []
    for chk in compare_kmod(director, dump):
        if chk.notes or chk.slots_differ:
            detail = "; ".join(chk.notes + chk.first_differences[:5])
            problems.append(
                f"{chk.service}: {chk.slots_differ} slots differ; {detail}".rstrip("; ")
            )
    dumped = {_name(k) for k in dump}
    for svc in director.services:
        if svc.scheduler == "mh" and svc.name not in dumped:
            problems.append(f"{svc.name}: mh service in maglevx, not in the dump")
    return problems


def _name(k) -> str:
    name = k.service
    return name + " IPv6" if name.startswith("FWM") and k.family == 6 else name
