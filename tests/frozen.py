"""Reading the frozen-vectors files of tests/vectors/ (kernel-observed decisions).

Format: ``#`` header lines (kernel, ipvsadm, date, capture command), then per
case a ``== NAME`` line, its history as ``> `` lines (ipvsadm -R syntax) and its
flows as ``proto,saddr,sport,daddr,dport,raddr,rport`` (empty raddr: the kernel
found no destination).
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path


@dataclasses.dataclass
class Case:
    name: str
    history: list[str]
    flows: list[tuple[str, str, int, str, int]]
    expected: list[tuple[str, int] | None]


def load(path: Path) -> tuple[list[str], list[Case]]:
    """(header lines, cases) of a frozen-vectors file."""
    header: list[str] = []
    cases: list[Case] = []
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        if line.startswith("#"):
            header.append(line)
        elif line.startswith("== "):
            cases.append(Case(line[3:], [], [], []))
        elif line.startswith("> "):
            cases[-1].history.append(line[2:])
        elif line:
            proto, saddr, sport, daddr, dport, raddr, rport = line.split(",")
            cases[-1].flows.append((proto, saddr, int(sport), daddr, int(dport)))
            cases[-1].expected.append((raddr, int(rport)) if raddr else None)
    return header, cases
