"""Flow samples for comparing tables: synthetic clients or a flow file.

A sample holds, per flow, the folded client address and the client port;
each service decides for itself whether the port is hashed, so one sample
can be run through directors with different flags or variants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from maglevx.addresses import fold as fold_address
from maglevx.backend import core
from maglevx.errors import MaglevxError
from maglevx.ipvs import PROTOCOLS
from maglevx.model import TableSnapshot, VirtualService, parse_five_tuple

DEFAULT_SAMPLE = 100_000
DEFAULT_SEED = 1


@dataclass
class FlowSample:
    """Flows to one virtual service: folded client addresses and ports."""

    protocol: str
    folds: npt.NDArray[np.uint32]
    sports: npt.NDArray[np.uint16]

    def __len__(self) -> int:
        return int(self.folds.shape[0])


def synthetic(svc: VirtualService, n: int, seed: int = DEFAULT_SEED) -> FlowSample:
    """*n* new flows from uniformly random clients and ephemeral ports.

    The fold of a uniformly random IPv6 address is itself uniform, so one
    generator serves both families. The seed depends only on *seed* (not on
    the service), so every director sees the same flows.
    """
    rng = np.random.default_rng(seed)
    folds = rng.integers(0, 2**32, size=n, dtype=np.uint32)
    sports = rng.integers(1024, 65536, size=n, dtype=np.uint32).astype(np.uint16)
    proto = svc.protocol if svc.protocol in PROTOCOLS else "tcp"
    return FlowSample(proto, folds, sports)


def from_lines(
    lines: Iterable[str], *, source: str, limit: int | None = None
) -> dict[tuple[str, str, int], FlowSample]:
    """Flows from CSV lines ``proto,saddr,sport,daddr,dport``, by destination.

    Keys are ``(proto, daddr, dport)`` with daddr as text; *limit* caps the
    number of flows read.
    """
    acc: dict[tuple[str, str, int], tuple[list[int], list[int]]] = {}
    n = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            proto, sa, sp, da, dp = parse_five_tuple(line.split(","))
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None
        folds, ports = acc.setdefault((proto, str(da), dp), ([], []))
        folds.append(fold_address(sa))
        ports.append(sp)
        n += 1
        if limit is not None and n >= limit:
            break
    return {
        k: FlowSample(k[0], np.array(f, np.uint32), np.array(p, np.uint16))
        for k, (f, p) in acc.items()
    }


def decide(
    svc: VirtualService, sample: FlowSample, *, fallback: bool | None = None
) -> npt.NDArray[np.int32]:
    """Per flow, the index into ``svc.table_servers``, or -1 (no destination).

    *fallback* overrides the service's own ``mh-fallback`` (to ask "what if").
    """
    snap = svc.snapshot
    if fallback is not None and fallback != snap.fallback:  # the same table
        snap = TableSnapshot(
            snap.build, snap.servers, fallback, snap.hashes_port, snap.avail.tolist()
        )
    ports = None
    if snap.hashes_port and sample.protocol in PROTOCOLS:
        ports = np.ascontiguousarray(sample.sports, np.uint16)
    folds = np.ascontiguousarray(sample.folds, np.uint32)
    return snap.scheduler.lookup_many(folds, ports).view(np.int32)


def as_names(
    svc: VirtualService, idx: npt.NDArray[np.int32], names: dict[str | None, int]
) -> npt.NDArray[np.int32]:
    """Map table-server indices to ids in *names* (endpoint -> id; None: none).

    Endpoints not yet in *names* are added, so two services' results become
    comparable.
    """
    lut = np.array(
        [names.setdefault(rs.endpoint, len(names)) for rs in svc.table_servers]
        + [names.setdefault(None, len(names))],
        dtype=np.int32,
    )
    return lut[np.where(idx < 0, len(lut) - 1, idx)]


def slot_names(svc: VirtualService, names: dict[str | None, int]) -> npt.NDArray:
    """Per slot, the id (in *names*) of the real server holding it."""
    t = svc.table.astype(np.int32)
    return as_names(svc, np.where(t == core.SLOT_EMPTY, -1, t), names)
