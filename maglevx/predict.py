"""Predicting many flows: the engine behind ``maglevx predict``.

Flows are read as CSV lines ``proto,saddr,sport,daddr,dport`` and written
back with ``,raddr,rport`` appended (both empty when the kernel finds no
destination), in input order. Input is processed in chunks, so memory stays
flat for any input size.

On a bad line, every line before it has been written, nothing after it is,
and MaglevxError names the file, line and field.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from typing import TextIO

import numpy as np

from maglevx.errors import MaglevxError
from maglevx.model import (
    PROTOCOLS,
    Director,
    VirtualService,
    parse_address,
    parse_port,
)

CHUNK_LINES = 65536


def _fold4(text: str) -> int:
    return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")


def _fold6(text: str) -> int:
    n = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    return (n >> 96 ^ n >> 64 ^ n >> 32 ^ n) & 0xFFFFFFFF


class _ServiceCache:
    """Resolves (proto, daddr, dport) to a service once per distinct value."""

    def __init__(self, director: Director) -> None:
        self.director = director
        self.cache: dict[tuple[str, str, str], VirtualService] = {}

    def get(self, proto: str, daddr: str, dport: str) -> VirtualService:
        key = (proto, daddr, dport)
        svc = self.cache.get(key)
        if svc is None:
            address = parse_address(daddr, "daddr")
            port = parse_port(dport, "dport")
            found = self.director.service_for(proto, address, port)
            if found is None:
                raise MaglevxError(
                    f"no virtual service for {proto} {daddr} port {port}",
                    field="daddr",
                )
            found._require_mh()
            svc = self.cache[key] = found
        return svc


def _parse_chunk(
    lines: list[str], services: _ServiceCache
) -> tuple[list[str], list[VirtualService], list[int], list[int], list[str], int]:
    """Parse lines until the first bad one; returns it as the last value."""
    kept: list[str] = []
    svcs: list[VirtualService] = []
    folds: list[int] = []
    ports: list[int] = []
    protos: list[str] = []
    for i, raw in enumerate(lines):
        line = raw.strip()
        fields = line.split(",")
        if len(fields) != 5:
            raise _ChunkError(
                i,
                MaglevxError(
                    f"expected 5 fields proto,saddr,sport,daddr,dport, "
                    f"got {len(fields)}"
                ),
            )
        proto, saddr, sport, daddr, dport = (f.strip() for f in fields)
        try:
            p = proto.lower()
            if p not in PROTOCOLS:
                raise MaglevxError(
                    f"unknown protocol {proto!r}; expected tcp, udp or sctp",
                    field="proto",
                )
            svc = services.get(p, daddr, dport)
            try:
                fold = _fold4(saddr) if svc.family == 4 else _fold6(saddr)
            except OSError:
                raise MaglevxError(
                    f"{saddr!r} is not an IPv{svc.family} address like {svc.name}",
                    field="saddr",
                ) from None
            if sport.isdigit() and sport.isascii() and int(sport) <= 65535:
                port = int(sport)
            else:
                port = parse_port(sport, "sport")
        except MaglevxError as exc:
            raise _ChunkError(i, exc) from None
        kept.append(line)
        svcs.append(svc)
        folds.append(fold)
        ports.append(svc.hashed_port(p, port))
        protos.append(p)
    return kept, svcs, folds, ports, protos, len(lines)


class _ChunkError(Exception):
    def __init__(self, index: int, error: MaglevxError) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


def _decide(
    svcs: list[VirtualService], folds: list[int], ports: list[int]
) -> list[str]:
    """``,raddr,rport`` per flow, grouped by service for bulk lookups."""
    out = [""] * len(svcs)
    by_service: dict[int, list[int]] = {}
    for i, svc in enumerate(svcs):
        by_service.setdefault(id(svc), []).append(i)
    fa = np.array(folds, dtype=np.uint32)
    pa = np.array(ports, dtype=np.uint16)
    for idx in by_service.values():
        svc = svcs[idx[0]]
        ia = np.array(idx, dtype=np.intp)
        d = svc.director
        from maglevx.backend import core

        res = core.lookup_many(
            d.table_size,
            d.word_size,
            svc.table,
            svc.availability(),
            svc.fallback,
            np.ascontiguousarray(fa[ia]),
            np.ascontiguousarray(pa[ia]),
        )
        suffix = [f",{rs.address},{rs.port}" for rs in svc.table_servers]
        for i, r in zip(idx, res.tolist()):
            out[i] = ",," if r == 0xFFFFFFFF else suffix[r]
    return out


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_lines(
    director: Director,
    lines: Iterable[str],
    out: TextIO,
    *,
    source: str = "<flows>",
    chunk_lines: int = CHUNK_LINES,
) -> int:
    """Write each flow line with ``,raddr,rport`` appended; return the count.

    Blank lines are skipped. Line numbers in errors count every input line.
    """
    services = _ServiceCache(director)
    count = 0
    lineno_of: list[int] = []

    def numbered() -> Iterator[str]:
        for n, line in enumerate(lines, 1):
            if line.strip():
                lineno_of.append(n)
                yield line

    for chunk in _chunks(numbered(), chunk_lines):
        base = len(lineno_of) - len(chunk)
        try:
            kept, svcs, folds, ports, _, _ = _parse_chunk(chunk, services)
            error = None
        except _ChunkError as exc:
            kept, svcs, folds, ports, _, _ = _parse_chunk(chunk[: exc.index], services)
            error = exc.error.located(source, lineno_of[base + exc.index])
        suffixes = _decide(svcs, folds, ports)
        out.write("".join(f"{a}{b}\n" for a, b in zip(kept, suffixes)))
        count += len(kept)
        if error is not None:
            out.flush()
            raise error
        del lineno_of[:-1]
    return count
