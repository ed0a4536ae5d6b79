"""Predicting many flows: the engine behind ``maglevx predict``.

Flows are read as CSV lines ``proto,saddr,sport,daddr,dport`` and written
back with ``,raddr,rport`` appended (both empty when the kernel finds no
destination), in input order. Input is processed in chunks, so memory stays
flat for any input size.

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
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO, TextIO, cast

import numpy as np

from maglevx.addresses import fold_int, parse_port
from maglevx.backend import core, fastcsv
from maglevx.errors import MaglevxError
from maglevx.ipvs import PROTOCOLS
from maglevx.model import Director, TableSnapshot, VirtualService

CHUNK_LINES = 65536
# No flow or capture line comes near this; a longer one is refused before it
# is buffered whole (memory stays bounded on any input).
MAX_LINE_BYTES = 65536
_TEXT_BLOCK = 1 << 16


def _fold_text(text: str, family: int) -> int:
    """The fold of an address as inet_pton() reads it (OSError if it does not)."""
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    return fold_int(int.from_bytes(socket.inet_pton(af, text), "big"), family)


def _mh_service(
    director: Director, proto: str, daddr: str, dport: str
) -> VirtualService:
    """The mh service a flow line goes to (the director's one resolver)."""
    port = parse_port(dport, "dport")
    svc = director.resolve(proto, daddr, port)
    if svc is None:
        raise MaglevxError(
            f"no virtual service for {proto} {daddr} port {port}", field="daddr"
        )
    svc.require_mh()
    return svc


def _parse_chunk(
    lines: list[str], director: Director
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
            svc = _mh_service(director, p, daddr, dport)
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
        snap = svcs[idx[0]].snapshot
        ia = np.array(idx, dtype=np.intp)
        res = snap.scheduler.lookup_many(
            np.ascontiguousarray(fa[ia]), np.ascontiguousarray(pa[ia])
        )
        suffix = [f",{rs.address},{rs.port}" for rs in snap.servers]
        for i, r in zip(idx, res.tolist()):
            out[i] = ",," if r == core.NONE else suffix[r]
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
    A MaglevxError raised by *lines* itself (a capture parser, a line that
    is not UTF-8) is raised after the lines before it are written.
    """
    count = 0
    lineno_of: list[int] = []
    input_error: MaglevxError | None = None

    def numbered() -> Iterator[str]:
        # An error reading *lines* (see text_lines()) ends the input: the
        # lines before it are still predicted and written, then it is raised.
        nonlocal input_error
        try:
            for n, line in enumerate(lines, 1):
                if line.strip():
                    lineno_of.append(n)
                    yield line
        except MaglevxError as exc:
            input_error = exc.located(source)

    for chunk in _chunks(numbered(), chunk_lines):
        base = len(lineno_of) - len(chunk)
        try:
            kept, svcs, folds, ports, _, _ = _parse_chunk(chunk, director)
            error = None
        except _ChunkError as exc:
            kept, svcs, folds, ports, _, _ = _parse_chunk(chunk[: exc.index], director)
            error = exc.error.located(source, lineno_of[base + exc.index])
        suffixes = _decide(svcs, folds, ports)
        out.write("".join(f"{a}{b}\n" for a, b in zip(kept, suffixes)))
        count += len(kept)
        if error is not None:
            out.flush()
            raise error
        del lineno_of[:-1]
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
                raise MaglevxError(
                    f"line longer than {MAX_LINE_BYTES} bytes; not a flow",
                    source=source,
                    line=n + len(lines) + 1,
                )
        for raw in lines:
            n += 1
            if len(raw) > MAX_LINE_BYTES:
                raise MaglevxError(
                    f"line longer than {MAX_LINE_BYTES} bytes; not a flow",
                    source=source,
                    line=n,
                )
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MaglevxError("not UTF-8 text", source=source, line=n) from None
        if not block:
            return


# -- the fast path ---------------------------------------------------------

_fastcsv: Any = fastcsv  # None under MAGLEVX_PURE_PYTHON: the slow path serves

BLOCK_BYTES = 8 << 20
SCAN_FLOWS = 1 << 18
_NEWLINE = re.compile(rb"\r\n|\r|\n")


class _Sink:
    """Writes bytes to a text stream's buffer, or text to a text-only one."""

    def __init__(self, out: IO) -> None:
        self.out = out
        self.binary: BinaryIO | None = None
        if isinstance(out, (io.RawIOBase, io.BufferedIOBase)):
            self.binary = out  # type: ignore[assignment]
        elif hasattr(out, "buffer"):
            out.flush()
            self.binary = out.buffer
        self.encoding = getattr(out, "encoding", None) or "utf-8"

    def write(self, data: bytes | bytearray) -> None:
        if self.binary is not None:
            self.binary.write(data)
        else:
            self.out.write(data.decode("ascii"))

    def write_text(self, text: str) -> None:
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
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self.last:
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
    """Per-run state of the fast path: key resolution and output suffixes."""

    def __init__(self, director: Director, sink: _Sink, source: str) -> None:
        assert _fastcsv is not None
        self.scanner = _fastcsv.FlowScanner()
        self.director = director
        self.sink = sink
        self.source = source
        # per key id: service (None: the key is an error), family, port hashed
        self.key_service: list[VirtualService | None] = []
        self.key_snapshot: list[TableSnapshot | None] = []
        self.key_family = np.zeros(0, np.uint8)
        self.key_hashes_port: list[bool] = []
        # output suffixes: id 0 is ",," (no destination)
        self.suffix_parts: list[bytes] = [b",,"]
        self.suffix_base: dict[int, int] = {}
        self.suffix_blob = np.frombuffer(b",,", np.uint8)
        self.suffix_offsets = np.array([0, 2], np.int64)
        cap = SCAN_FLOWS
        self.starts = np.empty(cap, np.int64)
        self.ends = np.empty(cap, np.int64)
        self.keys = np.empty(cap, np.int32)
        self.folds = np.empty(cap, np.uint32)
        self.sports = np.empty(cap, np.uint16)
        self.families = np.empty(cap, np.uint8)
        self.count = 0

    def _resolve_keys(self) -> None:
        keys = self.scanner.keys
        if len(self.key_service) == len(keys):
            return
        fam = list(self.key_family.tolist())
        for proto, daddr, dport in keys[len(self.key_service) :]:
            try:
                svc: VirtualService | None = _mh_service(
                    self.director, proto, daddr, dport
                )
            except MaglevxError:
                svc = None  # the slow path raises it, for the first such line
            self.key_service.append(svc)
            snap = svc.snapshot if svc is not None else None
            self.key_snapshot.append(snap)
            fam.append(svc.family if svc is not None else 0)
            self.key_hashes_port.append(
                svc is not None and svc.hashed_port(proto, 1) != 0
            )
            if snap is not None and id(snap) not in self.suffix_base:
                self.suffix_base[id(snap)] = len(self.suffix_parts)
                self.suffix_parts += [
                    f",{rs.address},{rs.port}".encode() for rs in snap.servers
                ]
                lens = [len(x) for x in self.suffix_parts]
                self.suffix_offsets = np.concatenate([[0], np.cumsum(lens)]).astype(
                    np.int64
                )
                self.suffix_blob = np.frombuffer(b"".join(self.suffix_parts), np.uint8)
        self.key_family = np.array(fam, np.uint8)

    def _suffix_ids(self, n: int) -> np.ndarray:
        """Per flow, the id of its ``,raddr,rport`` suffix."""
        keys = self.keys[:n]
        out = np.zeros(n, np.int32)
        present = np.flatnonzero(np.bincount(keys, minlength=len(self.key_service)))
        groups: list[tuple[int, Any]]
        if len(present) == 1:
            groups = [(int(present[0]), slice(0, n))]
        else:
            order = np.argsort(keys, kind="stable")
            bounds = np.searchsorted(keys[order], present, side="left").tolist()
            bounds.append(n)
            groups = [
                (int(k), order[bounds[i] : bounds[i + 1]])
                for i, k in enumerate(present.tolist())
            ]
        for k, sel in groups:
            snap = self.key_snapshot[k]
            assert snap is not None
            folds = np.ascontiguousarray(self.folds[:n][sel])
            ports = None
            if self.key_hashes_port[k]:
                ports = np.ascontiguousarray(self.sports[:n][sel])
            res = snap.scheduler.lookup_many(folds, ports).view(np.int32)
            base = self.suffix_base[id(snap)]
            out[sel] = np.where(res < 0, 0, res + base)
        return out

    def _write(self, buf: bytes, n: int) -> None:
        if n == 0:
            return
        ids = self._suffix_ids(n)
        self.sink.write(
            _fastcsv.assemble(
                buf, self.starts[:n], self.ends[:n], ids,
                self.suffix_blob, self.suffix_offsets,
            )
        )  # fmt: skip
        self.count += n

    def slow_line(self, raw: bytes, lineno: int) -> None:
        """Decide one line with the slow path; raise its error, located."""
        if len(raw) > MAX_LINE_BYTES:
            self.sink.flush()
            raise MaglevxError(
                f"line longer than {MAX_LINE_BYTES} bytes; not a flow",
                source=self.source,
                line=lineno,
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.sink.flush()
            raise MaglevxError(
                "not UTF-8 text", source=self.source, line=lineno
            ) from None
        if not text.strip():
            return
        try:
            kept, svcs, folds, ports, _, _ = _parse_chunk([text], self.director)
        except _ChunkError as exc:
            self.sink.flush()
            raise exc.error.located(self.source, lineno) from None
        (suffix,) = _decide(svcs, folds, ports)
        self.sink.write_text(f"{kept[0]}{suffix}\n")
        self.count += 1

    def feed(self, buf: bytes, final: bool, lineno: int) -> tuple[int, int]:
        """Predict the complete lines of *buf*; returns (bytes used, lines)."""
        pos, end, lines = 0, len(buf), 0
        while True:
            status, n, stop, nl = self.scanner.scan(
                buf, pos, end, final, self.starts, self.ends, self.keys,
                self.folds, self.sports, self.families,
            )  # fmt: skip
            self._resolve_keys()
            if n:
                bad = self.key_family[self.keys[:n]] != self.families[:n]
                if bad.any():
                    e = int(np.argmax(bad))
                    self._write(buf, e)
                    before = len(_NEWLINE.findall(buf, pos, int(self.starts[e])))
                    s, t = int(self.starts[e]), int(self.ends[e])
                    self.slow_line(buf[s:t], lineno + lines + before + 1)
                    # not reached: a bad key or family is an error
                    raise AssertionError(
                        "slow path accepted a line the fast path refused"
                    )
                self._write(buf, n)
            lines += nl
            pos = stop
            if status == _fastcsv.FULL:
                continue
            if status == _fastcsv.SLOW:
                le, nxt = _fastcsv.line_end(buf, pos, end)
                lines += 1
                self.slow_line(buf[pos:le], lineno + lines)
                pos = nxt
                continue
            return pos, lines


def predict_stream(
    director: Director,
    stream: BinaryIO,
    out: IO,
    *,
    source: str = "<flows>",
    block_bytes: int = BLOCK_BYTES,
    progress: Progress | None = None,
) -> int:
    """Like :func:`predict_lines`, for CSV bytes from *stream*, much faster.

    Reads *block_bytes* at a time (memory stays flat), writes to *out* (a
    text stream, written through its binary buffer when it has one, or a
    binary stream). Returns the number of flows written.
    """
    if _fastcsv is None:
        return predict_lines(
            director, text_lines(stream, source), cast(TextIO, out), source=source
        )
    sink = _Sink(out)
    fast = _FastPredictor(director, sink, source)
    pending = b""
    lineno = done = 0
    while True:
        block = stream.read(block_bytes)
        final = not block
        buf = pending + block if pending else block
        used, lines = fast.feed(buf, final, lineno)
        lineno += lines
        done += len(block)
        pending = buf[used:]
        if len(pending) > MAX_LINE_BYTES:
            sink.flush()
            raise MaglevxError(
                f"line longer than {MAX_LINE_BYTES} bytes; not a flow",
                source=source,
                line=lineno + 1,
            )
        if progress is not None:
            progress.update(done, fast.count)
        if final:
            break
    sink.flush()
    if progress is not None:
        progress.close()
    return fast.count


def input_size(stream: IO) -> int | None:
    """The size of a regular file behind *stream*, else None."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    import stat

    return st.st_size if stat.S_ISREG(st.st_mode) else None


FORMATS = ("csv", "ip_vs_conn", "conntrack")


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
            "pcap input is not supported; convert it, e.g. `tshark -r FILE -Y "
            "'tcp.flags.syn==1 && tcp.flags.ack==0' -T fields -E separator=, -e "
            "ip.proto ...`, or read /proc/net/ip_vs_conn or `conntrack -L`",
            source=source,
        )
    parse = {"ip_vs_conn": captures.parse_ip_vs_conn,
             "conntrack": captures.parse_conntrack}[fmt]  # fmt: skip
    text = text_lines(stream, source)
    skipped = 0

    def flows() -> Iterator[str]:
        nonlocal skipped
        for f in parse(text, source=source):
            svc = None
            if f.proto in PROTOCOLS:
                svc = director.resolve(f.proto, f.daddr, f.dport)
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
