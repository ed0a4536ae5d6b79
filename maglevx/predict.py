"""Predicting many flows: the engine behind ``maglevx predict``.

Flows are read as CSV lines ``proto,saddr,sport,daddr,dport`` and written
back with ``,raddr,rport`` appended (both empty when the kernel finds no
destination), in input order. Input is processed in chunks, so memory stays
flat for any input size.

What operators paste is read too: a header line naming the columns (any
order, other named columns ignored; echoed with ``,raddr,rport``), a UTF-8
byte order mark, protocol numbers (``6``, ``17``, ``132``, as ``tshark -e
ip.proto`` prints them) and bracketed IPv6 addresses. A flow to no virtual
service is written with empty fields too (the kernel does not schedule it)
and counted in :class:`PredictStats`; ``strict=True`` makes it an error.

On a bad line, every line before it has been written, nothing after it is,
and MaglevxError names the file, line and field.

Two implementations keep that contract: :func:`predict_lines`, line by line
in Python over any iterable of str (the *slow path*, the reference), and
:func:`predict_stream` over a binary stream, which scans blocks with the
C scanner of :mod:`maglevx._fastcsv` and hands every line the scanner is not
sure of to the slow path, so that errors name the same line and field.
:func:`predict_capture` reads ``/proc/net/ip_vs_conn`` and ``conntrack -L``
dumps and pcap files (see :mod:`maglevx.captures`).
"""

from __future__ import annotations

import io
import itertools
import os
import re
import socket
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, TextIO, cast

import numpy as np

from maglevx import decision
from maglevx.addresses import fold_int, parse_address, parse_port
from maglevx.backend import core, fastcsv
from maglevx.errors import MaglevxError
from maglevx.ipvs import PROTOCOLS
from maglevx.model import Director, VirtualService

CHUNK_LINES = 65536
# protocol numbers (IANA; tshark -e ip.proto prints them) for the names
PROTOCOL_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp"}
COLUMNS = ("proto", "saddr", "sport", "daddr", "dport")
# header names of each column: ours, and tshark's field names
HEADER_NAMES = {
    "proto": "proto", "protocol": "proto", "ip.proto": "proto",
    "ipv6.nxt": "proto",
    "saddr": "saddr", "src": "saddr", "ip.src": "saddr", "ipv6.src": "saddr",
    "sport": "sport", "tcp.srcport": "sport", "udp.srcport": "sport",
    "sctp.srcport": "sport",
    "daddr": "daddr", "dst": "daddr", "ip.dst": "daddr", "ipv6.dst": "daddr",
    "dport": "dport", "tcp.dstport": "dport", "udp.dstport": "dport",
    "sctp.dstport": "dport",
}  # fmt: skip
BOM = "\ufeff"


@dataclass
class PredictStats:
    """What a run of predict saw beyond the flows it wrote.

    *alternative*: another reading of the same configuration (a listing's
    weight-0 servers drained by an edit, see tools/sources.py); *differ*
    counts the flows it decides otherwise.
    """

    flows: int = 0
    no_service: int = 0  # flows to no virtual service (written with empty fields)
    header: bool = False
    alternative: Director | None = None
    differ: int = 0

    def compare(self, svc: VirtualService, folds: Any, ports: Any, res: Any) -> None:
        """Count the flows *alternative* sends elsewhere than *res* says."""
        if self.alternative is None:
            return
        alt = self.alternative.find_service(svc.key)
        if alt is None:
            return
        theirs = {rs.endpoint: i for i, rs in enumerate(alt.snapshot.servers)}
        # per index in *res* (-1: none), the same server's index in *alt*
        same = [theirs.get(rs.endpoint, -2) for rs in svc.snapshot.servers]
        mine = np.array([*same, -1], np.int32)[np.asarray(res).view(np.int32)]
        got = alt.snapshot.scheduler.lookup_many(folds, ports).view(np.int32)
        self.differ += int((mine != got).sum())


@dataclass(frozen=True)
class Columns:
    """Where each flow field is, from a header line; *width* fields a line."""

    index: tuple[int, int, int, int, int]
    width: int

    @property
    def canonical(self) -> bool:
        """The five columns in our order and nothing else."""
        return self.index == (0, 1, 2, 3, 4) and self.width == 5


def parse_header(line: str) -> Columns | None:
    """The columns a header line names, or None when *line* is a flow.

    A header is a line whose fields are names, one of them a column name
    (``proto``, ``saddr``, ... or tshark's ``ip.src``, ``tcp.srcport``, ...).
    """
    fields = [f.strip().strip('"').lower() for f in line.lstrip(BOM).split(",")]
    if not any(f in HEADER_NAMES for f in fields):
        return None
    where: dict[str, int] = {}
    for i, f in enumerate(fields):
        col = HEADER_NAMES.get(f)
        if col is None:
            continue  # another column (a mark, a count, ...): ignored
        if col in where:
            raise MaglevxError(
                f"header names two columns for {col}: {fields[where[col]]!r} and {f!r}",
                field="header",
            )
        where[col] = i
    missing = [c for c in COLUMNS if c not in where]
    if missing:
        raise MaglevxError(
            f"header names no column for {', '.join(missing)} (a header names "
            "proto,saddr,sport,daddr,dport)",
            field="header",
        )
    index = tuple(where[c] for c in COLUMNS)
    return Columns(index, len(fields))  # type: ignore[arg-type]


def _unbracket(text: str) -> str:
    """``[2001:db8::1]`` as ``2001:db8::1`` (other text unchanged)."""
    if len(text) > 2 and text[0] == "[" and text[-1] == "]":
        return text[1:-1]
    return text


# No flow or capture line comes near this; a longer one is refused before it
# is buffered whole (memory stays bounded on any input).
MAX_LINE_BYTES = 65536
_TEXT_BLOCK = 1 << 16


def _too_long(source: str, line: int) -> MaglevxError:
    return MaglevxError(
        f"line longer than {MAX_LINE_BYTES} bytes; not a flow",
        source=source,
        line=line,
    )


def _fold_text(text: str, family: int) -> int:
    """The fold of an address as inet_pton() reads it (OSError if it does not)."""
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    return fold_int(int.from_bytes(socket.inet_pton(af, text), "big"), family)


def _mh_service(
    director: Director, proto: str, daddr: str, dport: str, strict: bool = False
) -> VirtualService | None:
    """The mh service a flow line goes to (the director's one resolver).

    None for a destination with no virtual service (an error when *strict*).
    """
    port = parse_port(dport, "dport")
    svc = director.resolve(proto, _unbracket(daddr), port)
    if svc is None:
        if strict:
            raise MaglevxError(
                f"no virtual service for {proto} {daddr} port {port}",
                field="daddr",
            )
        return None
    svc.require_mh()
    return svc


class _Parsed:
    """A chunk's lines, each with its suffix, and the lookups they still need.

    A line decided on its own (templates, FTP data, a flow to no service)
    has its suffix; the others are grouped by service (lines, folds, hashed
    ports) for :func:`_decide`. *error*: the first bad line (its index in
    the chunk) and its error; the lines before it are kept.
    """

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.suffixes: list[str] = []
        self.bulk: dict[int, tuple[VirtualService, list[int], list[int], list[int]]]
        self.bulk = {}
        self.no_service = 0
        self.error: tuple[int, MaglevxError] | None = None

    def add(self, line: str, suffix: str = ",,") -> None:
        self.kept.append(line)
        self.suffixes.append(suffix)

    def add_bulk(self, line: str, svc: VirtualService, fold: int, port: int) -> None:
        group = self.bulk.get(id(svc))
        if group is None:
            group = self.bulk[id(svc)] = (svc, [], [], [])
        group[1].append(len(self.kept))
        group[2].append(fold)
        group[3].append(port)
        self.add(line)


def _parse_chunk(
    lines: list[str],
    director: Director,
    columns: Columns | None = None,
    strict: bool = False,
) -> _Parsed:
    """Parse (and decide) lines until the first bad one, kept as ``error``.

    What was parsed before it is kept (decisions change templates, so
    nothing is parsed twice). A flow to no virtual service gets ``,,`` (an
    error when *strict*).
    """
    out = _Parsed()
    decisions = director.needs_decisions()
    for i, raw in enumerate(lines):
        line = raw.strip().lstrip(BOM)
        fields = line.split(",")
        try:
            mark = 0
            if columns is not None:
                if len(fields) != columns.width:
                    raise MaglevxError(
                        f"expected {columns.width} fields as the header names, "
                        f"got {len(fields)}"
                    )
                fields = [fields[j] for j in columns.index]
            elif len(fields) == 6:  # without a header, a 6th field: the fwmark
                mark = decision.parse_fwmark(fields[5])
            elif len(fields) != 5:
                raise MaglevxError(
                    "expected 5 fields proto,saddr,sport,daddr,dport (and an "
                    f"optional fwmark), got {len(fields)}"
                )
            proto, saddr, sport, daddr, dport = (f.strip() for f in fields[:5])
            saddr = _unbracket(saddr)
            p = proto.lower()
            p = PROTOCOL_NUMBERS.get(p, p)
            if p not in PROTOCOLS:
                raise MaglevxError(
                    f"unknown protocol {proto!r}; expected tcp, udp or sctp "
                    "(or 6, 17, 132)",
                    field="proto",
                )
            if mark or decisions:
                dec = decision.decide(director, (p, saddr, sport, _unbracket(daddr),
                                                 dport), fwmark=mark)  # fmt: skip
                if dec.service is None:
                    _mh_service(director, p, daddr, dport, strict)  # error?
                    out.no_service += 1
                else:
                    dec.service.require_mh()
                out.add(
                    line,
                    ",," if dec.server is None else f",{dec.server.address},{dec.port}",
                )
                continue
            svc = _mh_service(director, p, daddr, dport, strict)
            if svc is None:  # no service: any address, hashed by nobody
                fold = 0
                parse_address(saddr, "saddr")
            else:
                try:
                    fold = _fold_text(saddr, svc.family)
                except (OSError, ValueError):  # ValueError: embedded NUL
                    raise MaglevxError(
                        f"{saddr!r} is not an IPv{svc.family} address like {svc.name}",
                        field="saddr",
                    ) from None
            # the common case inline (no int() of thousands of digits: it
            # raises ValueError); parse_port decides and explains the rest
            if len(sport) <= 5 and sport.isascii() and sport.isdigit():
                port = int(sport)
                if port > 65535:
                    port = parse_port(sport, "sport")
            else:
                port = parse_port(sport, "sport")
        except MaglevxError as exc:
            out.error = (i, exc)
            return out
        if svc is None:
            out.no_service += 1
            out.add(line)
        elif port == decision.FTPDATA:
            out.add(line)  # FTP data (client port 20): never scheduled
        else:
            out.add_bulk(line, svc, fold, svc.hashed_port(p, port))
    return out


def _decide(parsed: _Parsed, stats: PredictStats) -> str:
    """The lines with ``,raddr,rport``, one bulk lookup per service; counted."""
    out = parsed.suffixes
    for svc, idx, folds, ports in parsed.bulk.values():
        snap = svc.snapshot
        f, p = np.array(folds, np.uint32), np.array(ports, np.uint16)
        res = snap.scheduler.lookup_many(f, p)
        stats.compare(svc, f, p, res)
        suffix = [f",{rs.address},{rs.port}" for rs in snap.servers]
        for i, r in zip(idx, res.tolist()):
            out[i] = ",," if r == core.NONE else suffix[r]
    stats.flows += len(parsed.kept)
    stats.no_service += parsed.no_service
    return "".join(f"{a}{b}\n" for a, b in zip(parsed.kept, out))


def predict_lines(
    director: Director,
    lines: Iterable[str],
    out: TextIO,
    *,
    source: str = "<flows>",
    chunk_lines: int = CHUNK_LINES,
    strict: bool = False,
    stats: PredictStats | None = None,
) -> int:
    """Write each flow line with ``,raddr,rport`` appended; return the count.

    Blank lines are skipped. Line numbers in errors count every input line.
    A header line (the first line) is written back with ``,raddr,rport``.
    A MaglevxError raised by *lines* itself (a capture parser, a line that
    is not UTF-8) is raised after the lines before it are written.
    *strict*: a flow to no virtual service is an error. *stats*: filled in.
    """
    stats = stats if stats is not None else PredictStats()
    count = 0
    lineno_of: list[int] = []
    input_error: MaglevxError | None = None
    columns: Columns | None = None

    def numbered() -> Iterator[str]:
        # An error reading *lines* (see text_lines()) ends the input: the
        # lines before it are still predicted and written, then it is raised.
        nonlocal input_error, columns
        try:
            for n, line in enumerate(lines, 1):
                if n == 1:
                    try:
                        columns = parse_header(line)
                    except MaglevxError as exc:
                        input_error = exc.located(source, 1)
                        return
                    if columns is not None:
                        head = line.strip().lstrip(BOM)
                        out.write(f"{head},raddr,rport\n")
                        stats.header = True
                        continue
                if line.strip():
                    lineno_of.append(n)
                    yield line
        except MaglevxError as exc:
            input_error = exc.located(source)

    flows = numbered()
    while chunk := list(itertools.islice(flows, chunk_lines)):
        parsed = _parse_chunk(chunk, director, columns, strict)
        out.write(_decide(parsed, stats))
        count += len(parsed.kept)
        if parsed.error is not None:
            out.flush()
            i, error = parsed.error
            raise error.located(source, lineno_of[i])
        lineno_of.clear()
    if input_error is not None:
        out.flush()
        raise input_error
    return count


def text_lines(stream: IO[bytes], source: str) -> Iterator[str]:
    r"""The lines of a binary stream as UTF-8 text, each with its line end.

    Lines end at ``\n``, ``\r\n`` or ``\r``, as for ``open(newline="")``
    and the C scanner. Each line is decoded on its own, so that text that
    is not UTF-8 raises MaglevxError naming its line (no UTF-8 sequence
    holds a CR or LF byte, so this decodes as the whole would).
    """
    n = 0
    pending = b""
    while True:
        block = stream.read(_TEXT_BLOCK)
        buf = pending + block if pending else block
        if not buf:
            return
        lines = buf.splitlines(keepends=True)  # bytes: \n, \r\n, \r
        pending = b""
        if block and lines and not lines[-1].endswith(b"\n"):
            # an unterminated last line, or a \r whose \n may come next
            pending = lines.pop()
            if len(pending) > MAX_LINE_BYTES:
                raise _too_long(source, n + len(lines) + 1)
        for raw in lines:
            n += 1
            if len(raw) > MAX_LINE_BYTES:
                raise _too_long(source, n)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MaglevxError("not UTF-8 text", source=source, line=n) from None
        if not block:
            return


# -- the fast path ---------------------------------------------------------

_fastcsv: Any = fastcsv  # None under MAGLEVX_PURE_PYTHON: the slow path serves

BLOCK_BYTES = 8 << 20
# A block at least this big is split at a line end between two threads
# (run() releases the GIL); 1 thread on a 1-core machine.
PARALLEL_BYTES = 1 << 20
THREADS = 2 if (os.cpu_count() or 1) >= 2 else 1
SCAN_FLOWS = 1 << 18
_NEWLINE = re.compile(rb"\r\n|\r|\n")


class _Sink:
    """Writes bytes to a text stream's buffer, or text to a text-only one.

    Its write() and flush() serve :func:`predict_lines` as a text stream.
    """

    def __init__(self, out: IO) -> None:
        self.out = out
        self.binary: BinaryIO | None = None
        if isinstance(out, (io.RawIOBase, io.BufferedIOBase)):
            self.binary = out  # type: ignore[assignment]
        elif hasattr(out, "buffer"):
            out.flush()
            self.binary = out.buffer
        self.encoding = getattr(out, "encoding", None) or "utf-8"

    def write_bytes(self, data: bytes | bytearray | memoryview) -> None:
        if self.binary is not None:
            self.binary.write(data)
        else:
            self.out.write(bytes(data).decode("ascii"))

    def write(self, text: str) -> None:
        if self.binary is not None:
            self.binary.write(text.encode(self.encoding, "surrogateescape"))
        else:
            self.out.write(text)

    def flush(self) -> None:
        (self.binary or self.out).flush()


class Progress:
    """A one-line progress report on stderr, only for a terminal.

    Shown once the input has run for *delay* seconds, so short inputs
    print nothing; cleared when done.
    """

    def __init__(
        self, total_bytes: int | None, *, stream: TextIO | None = None,
        delay: float = 1.0,
    ) -> None:  # fmt: skip
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total_bytes
        self.start = time.monotonic()
        self.last = self.start + delay
        self.shown = False

    def update(self, done_bytes: int, flows: int) -> None:
        """Report progress (rate-limited to a few updates a second)."""
        now = time.monotonic()
        if not self.enabled or now < self.last:
            return
        self.last = now + 0.25
        rate = flows / max(now - self.start, 1e-9)
        pct = f"{100 * done_bytes / self.total:5.1f}% " if self.total else ""
        self.stream.write(
            f"\rmaglevx predict: {pct}{flows:,} flows, {rate / 1e6:.2f} M flows/s"
        )
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        """Erase the progress line."""
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


class _FastPredictor:
    """Per-run state of the fast path: destinations resolved once, per key id.

    :meth:`feed` parses, looks up and formats in one C pass
    (``FlowScanner.run()``). When another reading of the director is
    compared (see :class:`PredictStats`), :meth:`compare` scans the lines a
    pass wrote again into arrays and looks them up in bulk under both.
    """

    def __init__(
        self, director: Director, sink: _Sink, source: str, *,
        strict: bool = False, stats: PredictStats | None = None,
        block_bytes: int = BLOCK_BYTES, threads: int = 1,
    ) -> None:  # fmt: skip
        assert _fastcsv is not None
        self.scanner = _fastcsv.FlowScanner()
        self.director = director
        self.strict = strict
        self.sink = sink
        self.source = source
        self.stats = stats if stats is not None else PredictStats()
        # per key id: its mh service (None: no service, or the key is an error)
        self.key_service: list[VirtualService | None] = []
        # what scan() fills: key ids, folds, client ports
        types = (np.int32, np.uint32, np.uint16)
        self.arrays = [np.empty(SCAN_FLOWS, t) for t in types]
        self.keys, self.folds, self.sports = self.arrays
        self.count = 0
        # an output buffer per thread; run() leaves a line of more than
        # MAX_LINE_BYTES to the slow path, so any line and its suffix fit
        out_bytes = max(block_bytes, 1 << 16) + (1 << 12)
        self.outs = [np.empty(out_bytes, np.uint8) for _ in range(max(threads, 1))]
        self.pool: ThreadPoolExecutor | None = None
        if threads > 1:
            self.pool = ThreadPoolExecutor(threads - 1, "maglevx-predict")

    def close(self) -> None:
        """Stop the helper thread."""
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def _scan(self, buf: bytes, pos: int, end: int, size: int) -> tuple[int, ...]:
        """scan() of ``buf[pos:end]`` into the first *size* slots of the arrays."""
        return self.scanner.scan(buf, pos, end, *(a[:size] for a in self.arrays))

    def slow_line(self, raw: bytes, lineno: int) -> None:
        """Decide one line with the slow path; raise its error, located."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.sink.flush()
            raise MaglevxError(
                "not UTF-8 text", source=self.source, line=lineno
            ) from None
        if not text.strip():
            return
        parsed = _parse_chunk([text], self.director, None, self.strict)
        if parsed.error is not None:
            self.sink.flush()
            raise parsed.error[1].located(self.source, lineno)
        self.sink.write(_decide(parsed, self.stats))
        self.count += 1

    def _route_keys(self) -> None:
        """Give run() a route for every key the scanner has seen."""
        for k in range(len(self.key_service), len(self.scanner.keys)):
            proto, daddr, dport = self.scanner.keys[k]
            try:
                svc = _mh_service(self.director, proto, daddr, dport, self.strict)
            except MaglevxError:  # the slow path raises it, for its line
                self.key_service.append(None)
                self.scanner.set_route(k, _fastcsv.ROUTE_SLOW)
                continue
            self.key_service.append(svc)
            if svc is None:
                self.scanner.set_route(k, _fastcsv.ROUTE_NONE)
                continue
            snap = svc.snapshot
            self.scanner.set_route(
                k, _fastcsv.ROUTE_MH, svc.family, snap.hashes_port, snap.scheduler,
                [f",{rs.address},{rs.port}".encode() for rs in snap.servers],
            )  # fmt: skip

    def compare(self, buf: bytes, end: int) -> None:
        """Count for :meth:`PredictStats.compare` the flows of ``buf[:end]``.

        *end* is where a pass stopped: every line before it was written.
        The lines the scanner leaves to the slow path were compared there.
        """
        pos = 0
        while pos < end:
            status, n, pos, _ = self._scan(buf, pos, end, SCAN_FLOWS)
            keys, sports = self.keys[:n], self.sports[:n]
            for k in np.flatnonzero(np.bincount(keys)).tolist():
                svc = self.key_service[k]
                if svc is None:  # no virtual service
                    continue
                # FTP data is never scheduled, under any reading
                sel = (keys == k) & (sports != decision.FTPDATA)
                folds = self.folds[:n][sel]
                ports = sports[sel] if svc.snapshot.hashes_port else None
                res = svc.snapshot.scheduler.lookup_many(folds, ports)
                self.stats.compare(svc, folds, ports, res)
            if status == _fastcsv.SLOW:
                pos = _fastcsv.line_end(buf, pos, end)[1]

    def _drive(
        self, buf: bytes, pos: int, end: int, final: bool, lineno: int,
        started: tuple[np.ndarray, tuple[int, ...]] | None = None,
    ) -> tuple[int, int]:  # fmt: skip
        """run() over ``buf[pos:end]`` until it ends; (stop, lines consumed).

        *started*: (output buffer, result) of a run() from *pos* already
        made, to write and carry on from.
        """
        lines = 0
        while True:
            if started is None:
                out = self.outs[0]
                result = self.scanner.run(buf, pos, end, final, out, MAX_LINE_BYTES)
            else:
                out, result = started
            status, pos, nl, flows, none, written = result
            if written:
                self.sink.write_bytes(out[:written].data)
            self.count += flows
            self.stats.flows += flows
            self.stats.no_service += none
            lines += nl
            started = None
            if status == _fastcsv.END:
                return pos, lines
            if status == _fastcsv.NEWKEY:
                self._scan(buf, pos, end, 1)
                self._route_keys()
            elif status == _fastcsv.SLOW:
                le, nxt = _fastcsv.line_end(buf, pos, end)
                lines += 1
                if nxt - pos > MAX_LINE_BYTES:  # as text_lines() counts
                    self.sink.flush()
                    raise _too_long(self.source, lineno + lines)
                self.slow_line(buf[pos:le], lineno + lines)
                pos = nxt

    def feed(self, buf: bytes, final: bool, lineno: int) -> tuple[int, int]:
        """Predict the complete lines of *buf*; returns (bytes used, lines).

        A big block is cut after a newline near its middle; the second half
        runs in the helper thread while this one runs the first half, and
        each half's output is written in input order. A half that stops
        early (a new destination, a line for the slow path, a full output
        buffer) is carried on here, the first half before anything of the
        second is written: errors and their line numbers are as in one pass.
        """
        end = len(buf)
        split = buf.find(b"\n", end // 2) + 1
        if self.pool is None or end < PARALLEL_BYTES or not 0 < split < end:
            pos, lines = self._drive(buf, 0, end, final, lineno)
        else:
            second = self.pool.submit(
                self.scanner.run, buf, split, end, final, self.outs[-1],
                MAX_LINE_BYTES,
            )  # fmt: skip
            try:
                first = self.scanner.run(
                    buf, 0, split, True, self.outs[0], MAX_LINE_BYTES
                )
            finally:
                later = second.result()
            # out[0] is free again once the first half's result is written
            start = (self.outs[0], first)
            _, lines = self._drive(buf, 0, split, True, lineno, start)
            start = (self.outs[-1], later)
            pos, more = self._drive(buf, split, end, final, lineno + lines, start)
            lines += more
        if self.stats.alternative is not None:
            self.compare(buf, pos)
        return pos, lines


def predict_stream(
    director: Director,
    stream: BinaryIO,
    out: IO,
    *,
    source: str = "<flows>",
    block_bytes: int = BLOCK_BYTES,
    progress: Progress | None = None,
    strict: bool = False,
    stats: PredictStats | None = None,
    threads: int | None = None,
) -> int:
    """Like :func:`predict_lines`, for CSV bytes from *stream*, much faster.

    Reads *block_bytes* at a time (memory stays flat), writes to *out* (a
    text stream, written through its binary buffer when it has one, or a
    binary stream). *threads*: 1 or 2 (default :data:`THREADS`) for blocks
    of at least :data:`PARALLEL_BYTES`. Returns the number of flows written.
    """
    stats = stats if stats is not None else PredictStats()
    sink = _Sink(out)
    lineno = None
    if _fastcsv is not None and not director.needs_decisions():
        if not hasattr(stream, "peek"):
            stream = cast(BinaryIO, io.BufferedReader(cast(Any, stream)))
        lineno = _first_line(stream, sink, source, stats)
    if lineno is None:
        # templates and the like are decided flow by flow, in input order;
        # a header in another order: the slow path reads it all
        flows = text_lines(stream, source)
        kw: dict[str, Any] = dict(source=source, strict=strict, stats=stats)
        n = predict_lines(director, flows, cast(TextIO, sink), **kw)
        sink.flush()
        return n
    fast = _FastPredictor(
        director, sink, source, strict=strict, stats=stats,
        block_bytes=block_bytes, threads=THREADS if threads is None else threads,
    )  # fmt: skip
    try:
        # block by block, carrying a partial last line over
        pending, done = b"", 0
        while True:
            block = stream.read(block_bytes)
            buf = pending + block if pending else block
            used, lines = fast.feed(buf, not block, lineno)
            lineno += lines
            done += len(block)
            pending = buf[used:]
            if len(pending) > MAX_LINE_BYTES:
                sink.flush()
                raise _too_long(source, lineno + 1)
            if progress is not None:
                progress.update(done, fast.count)
            if not block:
                break
    finally:
        fast.close()
    sink.flush()
    if progress is not None:
        progress.close()
    return fast.count


def _first_line(
    stream: BinaryIO, sink: _Sink, source: str, stats: PredictStats
) -> int | None:
    """Handle a byte order mark and a header line before the fast path.

    Returns the number of the line the fast path starts after; ``None``
    when a header names the columns in another order (nothing is consumed
    then, the slow path reads it all).
    """
    head = cast(io.BufferedReader, stream).peek(1 << 16)
    m = _NEWLINE.search(head)
    first = head[: m.end()] if m else head
    if not first.startswith(BOM.encode()) and not first[:1].isalpha():
        return 0
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        return 0  # the scanner reports it at its line
    try:
        columns = parse_header(text)
    except MaglevxError as exc:
        raise exc.located(source, 1) from None
    if columns is None:
        if text.startswith(BOM):  # before a flow: dropped, the line stays line 1
            stream.read(len(BOM.encode()))
        return 0
    if not columns.canonical or not m:
        return None
    stream.read(len(first))
    sink.write(text.strip().lstrip(BOM) + ",raddr,rport\n")
    stats.header = True
    return 1


def input_size(stream: IO) -> int | None:
    """The size of a regular file behind *stream*, else None."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


FORMATS = ("csv", "ip_vs_conn", "ipvsadm_conn", "conntrack")


def detect_format(stream: IO[bytes]) -> str:
    """The format of a buffered binary stream, from its first bytes."""
    from maglevx.captures import detect

    peek = getattr(stream, "peek", None)
    head = peek(4096)[:4096] if peek is not None else b""
    return detect(head)


def predict_capture(
    director: Director,
    stream: IO[bytes],
    out: TextIO,
    fmt: str,
    *,
    source: str = "<capture>",
    err: TextIO | None = None,
) -> int:
    """Predict the flows of a capture (``ip_vs_conn`` or ``conntrack``).

    Writes each flow to an ``mh`` service as a CSV flow line with
    ``,raddr,rport`` appended, in capture order; flows to other
    destinations are skipped and counted on *err* (stderr). Persistence
    templates in ``ip_vs_conn`` dumps are skipped too. Returns the number
    of flows written.
    """
    from maglevx import captures

    if fmt == "pcap":
        raise MaglevxError(
            "pcap input is not supported; convert the new TCP flows to CSV: "
            "`tshark -r FILE -Y 'tcp.flags.syn==1 && tcp.flags.ack==0' -T fields "
            "-E separator=, -E header=y -e ip.proto -e ip.src -e tcp.srcport "
            "-e ip.dst -e tcp.dstport > flows.csv` (IPv6: ipv6.src, ipv6.dst), "
            "or read /proc/net/ip_vs_conn, `ipvsadm -Lnc` or `conntrack -L`",
            source=source,
        )
    parse = captures.PARSERS[fmt]
    text = text_lines(stream, source)
    skipped = 0

    def flows() -> Iterator[str]:
        nonlocal skipped
        for f in parse(text, source=source):
            ok = f.proto in PROTOCOLS
            svc = director.resolve(f.proto, f.daddr, f.dport) if ok else None
            if svc is not None and svc.scheduler == "mh" and not f.template:
                yield f.csv()
            else:
                skipped += 1

    n = predict_lines(director, flows(), out, source=source)
    if skipped:
        print(
            f"maglevx: {source}: skipped {skipped} entries that are not new "
            "connections to an mh service",
            file=err if err is not None else sys.stderr,
        )
    return n
