"""What a fuzzed maglevx input may do, and generators of plausible inputs.

Shared by the atheris harnesses (fuzz/fuzz_*.py) and the Hypothesis tests
(tests/test_fuzz_*.py). Each ``check_*`` function feeds one input to a
parser and raises AssertionError (or lets an unexpected exception through)
when maglevx misbehaves:

- any exception other than MaglevxError is a bug (for CLI arguments:
  argparse's exit status 2 with one line on stderr is fine too);
- a MaglevxError must render as one printable line that starts with
  ``source:line:`` of a line that exists, holds something, and after whose
  predecessors the input still applied cleanly;
- ``maglevx predict`` writes every flow before a bad line and nothing after.

Hangs are caught by the fuzzers' per-input timeouts.

KNOWN_BUGS lists bugs in files this harness's owner may not fix yet; each
has an xfail(strict=True) regression test. They are skipped while fuzzing
(so that fuzzing goes on past them) unless MAGLEVX_FUZZ_STRICT=1.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from maglevx.errors import MaglevxError
from maglevx.model import Director

T = TypeVar("T")
Choose = Callable[[Sequence[T]], T]

# (file name, function, exception type, text in the message), the xfail test.
# Empty: the bugs routed so far are fixed (docs/fuzzing.md, "Bugs found").
KNOWN_BUGS: list[tuple[str, str, type[BaseException], str, str]] = []
# MaglevxError without a line: (message, xfail test)
KNOWN_UNLOCATED: list[tuple[str, str]] = []


def _strict() -> bool:
    return os.environ.get("MAGLEVX_FUZZ_STRICT", "") not in ("", "0")


def is_known_bug(exc: BaseException) -> bool:
    """Whether *exc* is one of KNOWN_BUGS (innermost maglevx frame decides)."""
    if _strict():
        return False
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f"{os.sep}maglevx{os.sep}" in f.filename
    ]
    if not frames:
        return False
    last = frames[-1]
    for name, func, etype, text, _test in KNOWN_BUGS:
        if (
            os.path.basename(last.filename) == name
            and last.name == func
            and isinstance(exc, etype)
            and text in str(exc)
        ):
            return True
    return False


def _content_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


class KnownBug(Exception):
    """An input that hits one of KNOWN_BUGS / KNOWN_UNLOCATED."""


def check_located(
    err: MaglevxError, source: str, text: str | None = None, *, comments: bool = True
) -> None:
    """*err* is one printable line naming *source* and an existing line."""
    msg = str(err)
    if err.line is None and not _strict():
        for message, _test in KNOWN_UNLOCATED:
            if err.message == message:
                raise KnownBug(message)
    assert msg.isprintable(), f"unprintable error: {msg!r}"
    assert len(msg.splitlines()) == 1, f"not one line: {msg!r}"
    assert err.source == source, f"error names {err.source!r}, not {source!r}"
    assert err.line is not None and err.line >= 1, f"no line: {msg!r}"
    assert msg.startswith(f"{source}:{err.line}: "), f"no location: {msg!r}"
    assert err.message, "empty message"
    if text is not None:
        lines = _content_lines(text)
        assert err.line <= len(lines), f"line {err.line} of {len(lines)}: {msg!r}"
        line = lines[err.line - 1].strip()
        assert line, f"error on blank line {err.line}: {msg!r}"
        if comments:
            assert not line.startswith("#"), f"error on comment: {msg!r}"


def check_history(text: str, **params: Any) -> Director | None:
    """Apply a history; any error must be clear and at the right line."""
    try:
        return Director.from_history(text, source="h.txt", **params)
    except MaglevxError as err:
        check_located(err, "h.txt", text)
        assert err.line is not None
        # every line before the bad one applied cleanly
        prefix = "\n".join(_content_lines(text)[: err.line - 1])
        Director.from_history(prefix, source="h.txt", **params)
        return None


def check_snapshot(text: str, **params: Any) -> Director | None:
    """Load a snapshot; any error must be clear and at the right line."""
    try:
        return Director.from_snapshot(text, source="s.txt", **params)
    except MaglevxError as err:
        check_located(err, "s.txt", text, comments=False)
        return None


def check_director(d: Director) -> None:
    """Every mh table of *d* is built and well formed."""
    for svc in d.services:
        if svc.scheduler != "mh":
            continue
        table = svc.table
        assert len(table) == d.table_size
        n = len(svc.table_servers)
        assert all(t == 0xFFFF or t < n for t in set(table.tolist()))


def check_flows(
    d: Director, text: str, *, chunk_lines: int = 7, out: io.StringIO | None = None
) -> str:
    """``predict_lines`` over *text*: returns what it wrote.

    On a bad line: every non-blank line before it was written (with a
    destination appended), nothing after it, and the error names it.
    """
    from maglevx.predict import predict_lines

    out = io.StringIO() if out is None else out
    lines = list(io.StringIO(text, newline=""))
    nonblank = [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip()]
    try:
        predict_lines(d, lines, out, source="f.csv", chunk_lines=chunk_lines)
        written = nonblank
        error = None
    except MaglevxError as err:
        check_located(err, "f.csv", None)
        assert err.line is not None and err.line <= len(lines)
        assert lines[err.line - 1].strip(), "error on a blank flow line"
        written = [(i, ln) for i, ln in nonblank if i < err.line]
        error = err
    got = out.getvalue().split("\n")
    assert got[-1] == "", "output does not end with a newline"
    got = got[:-1]
    assert len(got) == len(written), f"{len(got)} lines written, {len(written)} due"
    for (_, src), line in zip(written, got):
        assert line.startswith(src.strip() + ","), (src, line)
        # 5 fields (or 6: an fwmark), then ",raddr,rport"
        assert line.count(",") == src.strip().count(",") + 2 in (6, 7), line
    if error is not None:
        raise error
    return out.getvalue()


def check_stream(d: Director, data: bytes, block_bytes: int = 64) -> None:
    """``predict_stream`` (the C scanner) agrees with ``predict_lines``.

    Same output, same error; small blocks so lines straddle block ends.
    """
    from maglevx.predict import predict_stream

    out = io.StringIO()
    try:
        predict_stream(
            d, io.BytesIO(data), out, source="f.csv", block_bytes=block_bytes
        )
        fast_err = None
    except MaglevxError as err:
        check_located(err, "f.csv", None)
        fast_err = str(err)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # the slow path reads str; the contract was checked above
    slow = io.StringIO()
    try:
        check_flows(d, text, chunk_lines=65536, out=slow)
        slow_err = None
    except MaglevxError as err:
        slow_err = str(err)
    assert fast_err == slow_err, (fast_err, slow_err)
    assert out.getvalue() == slow.getvalue()


def check_capture(d: Director, data: bytes, fmt: str) -> str:
    """``predict_capture`` over an ``ip_vs_conn`` or ``conntrack -L`` dump."""
    from maglevx.predict import predict_capture

    out, err = io.StringIO(), io.StringIO()
    try:
        predict_capture(d, io.BytesIO(data), out, fmt, source="c.txt", err=err)
    except MaglevxError as exc:
        check_located(exc, "c.txt", None)
    for line in out.getvalue().splitlines():
        assert line.count(",") == 6, line
    assert len(err.getvalue().splitlines()) <= 1, err.getvalue()
    return out.getvalue()


def check_cli(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """Run ``maglevx`` in-process: exit status 0 or 2, one-line errors."""
    from maglevx.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(
        io.BytesIO(stdin.encode("utf-8", "surrogateescape")), encoding="utf-8"
    )
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main(argv, stdout=out)
            except SystemExit as exc:  # argparse: usage errors and --help
                rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.stdin = old_stdin
    e = err.getvalue()
    assert rc in (0, 2), f"exit status {rc}"
    if rc == 0:
        assert e == "", f"stderr on success: {e!r}"
    else:
        assert e.endswith("\n") and len(e.splitlines()) == 1, f"stderr {e!r}"
        assert re.match(r"maglevx( [a-z]+)?: error: ", e), e
    return rc, out.getvalue(), e


# -- generators of plausible input --------------------------------------------

_COMMANDS = ["-A", "-E", "-D", "-C", "-a", "-e", "-d", "--add-service",
             "--edit-server", "-L", "-Z", "-x", "", "ipvsadm"]  # fmt: skip
_SERVICES = [
    "10.0.0.1:80", "10.0.0.1", "10.0.0.2:443", "10.0.0.1:0", "[2001:db8::1]:53",
    "2001:db8::1", "[2001:db8::1]", "10.0.0.1:65536", "[10.0.0.1]:80", "::1:80",
    "[fe80::1%eth0]:80", "10.0.0.1:-1", "10.0.0.1:", "10.0.0.1:٨٠", "host:80",
]  # fmt: skip
_REALS = [
    "10.1.0.1:80", "10.1.0.2:80", "10.1.0.3", "10.1.0.1:8080", "10.1.0.4:80",
    "[2001:db8:1::1]:53", "[2001:db8:1::2]:53", "2001:db8:1::3", "10.1.0.1:0",
    "0.0.0.0:80", "255.255.255.255:65535", "[::]:53",
]  # fmt: skip
_NUMBERS = ["0", "1", "2", "3", "100", "65535", "65536", "-1", "x", "",
            "00000000000000000000000001", "9" * 30, "4294967295", "1e3",
            "٣"]  # fmt: skip
_FLAGS = ["mh-port", "mh-fallback", "mh-fallback,mh-port", "flag-1", "flag-2",
          "flag-3", "sh-port", "", ",", "mh-port,mh-port", "bogus"]  # fmt: skip
_SCHEDULERS = ["mh", "mh", "mh", "wlc", "rr", "sh", "bogus", ""]


def gen_history_line(choose: Choose[Any]) -> str:
    """One ipvsadm line, usually almost valid."""
    tokens = [choose(_COMMANDS)]
    for _ in range(choose(range(7))):
        opt = choose(
            ["-t", "-u", "--sctp-service", "-f", "-s", "-b", "-p", "-r", "-w",
             "-m", "-g", "-i", "-x", "-y", "-6", "-o", "-M", "--pe", "-n",
             "--tcp-service=", "--weight=", "junk", "-t", "-r", "-s", "-w"]
        )  # fmt: skip
        if opt in ("-t", "-u", "--sctp-service", "--tcp-service="):
            val = choose(_SERVICES)
        elif opt == "-r":
            val = choose(_REALS)
        elif opt in ("-f", "-w", "-x", "-y", "-p", "--weight="):
            val = choose(_NUMBERS)
        elif opt == "-s":
            val = choose(_SCHEDULERS)
        elif opt == "-b":
            val = choose(_FLAGS)
        elif opt == "-M":
            val = "255.255.255.0"
        elif opt == "--pe":
            val = "sip"
        else:
            val = None
        if opt.endswith("="):
            tokens.append(opt + (val or ""))
        else:
            tokens.append(opt)
            if val is not None and choose([True, True, True, False]):
                tokens.append(val)
    line = " ".join(t if " " not in t else repr(t) for t in tokens)
    return choose(["", "", "", "  ", "# ", "'", "ipvsadm "]) + line


def gen_history(choose: Choose[Any], n: int) -> str:
    """A history of *n* lines; often starts by creating a service."""
    lines = []
    if choose([True, False]):
        lines.append("-A -t 10.0.0.1:80 -s mh " + choose(["", "-b mh-port"]))
        lines.append("-a -t 10.0.0.1:80 -r 10.1.0.1:80 -w 2")
    lines += [gen_history_line(choose) for _ in range(n)]
    return choose(["\n", "\r\n", "\n\n"]).join(lines) + choose(["", "\n"])


_SNAP_SERVICES = [
    "TCP  10.0.0.1:80 mh", "TCP  10.0.0.1:80 mh (mh-port)",
    "UDP  [2001:db8::1]:53 mh (mh-fallback,mh-port) persistent 300",
    "FWM  7 mh", "FWM  7 IPv6 mh (mh-port)", "TCP  10.0.0.2:443 wlc persistent 60",
    "TCP  10.0.0.1:80 mh (sh-port)", "SCTP 10.0.0.3:9 mh ops",
    "TCP  10.0.0.1:80 mh mask 255.255.255.0 pe sip", "TCP 10.0.0.1 mh",
    "TCP  10.0.0.1:80 mh persistent 99999999999999999999999", "UDP  10.0.0.1:53 rr ops",
]  # fmt: skip
_SNAP_HEADER = [
    "IP Virtual Server version 1.2.1 (size=4096)",
    "Prot LocalAddress:Port Scheduler Flags",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
]


def gen_snapshot(choose: Choose[Any], n: int) -> str:
    """``ipvsadm -Ln --nosort``-like text of about *n* lines."""
    lines = list(_SNAP_HEADER) if choose([True, False]) else []
    for _ in range(n):
        if choose([True, False, False]):
            lines.append(choose(_SNAP_SERVICES))
        else:
            lines.append(
                "  -> "
                + choose(_REALS)
                + "  "
                + choose(["Masq", "Route", "Tunnel", "Local", "Bypass", "Fwd"])
                + "  "
                + choose(_NUMBERS)
                + choose(["  0  0", "  1  2", "", "  x"])
            )
    return "\n".join(lines) + "\n"


FLOW_HISTORY = """\
-A -t 10.0.0.1:80 -s mh
-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 3
-e -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 0
-A -t 10.0.0.2:0 -s mh -b mh-fallback,mh-port -p
-a -t 10.0.0.2:0 -r 10.1.0.3:0 -m -w 1
-A -u [2001:db8::1]:53 -s mh -b mh-port
-a -u [2001:db8::1]:53 -r [2001:db8:1::1]:53 -m
-A -t 10.0.0.9:80 -s wlc
"""

_PROTOS = ["tcp", "udp", "sctp", "TCP", " tcp", "icmp", ""]
_SADDRS = ["192.0.2.1", "192.0.2.200", "2001:db8:9::1", "::ffff:1.2.3.4",
           "192.0.2.999", "", "1.2.3", "fe80::1%1", "0x1.2.3.4"]  # fmt: skip
_DADDRS = ["10.0.0.1", "10.0.0.2", "2001:db8::1", "10.0.0.9", "10.0.0.3", "x"]
_PORTS = ["80", "0", "53", "1", "65535", "65536", "-1", " 80", "8o", "", "٨٠",
          "0000000000000000080"]  # fmt: skip


def gen_flows(choose: Choose[Any], n: int) -> str:
    """CSV flow lines, mostly valid for FLOW_HISTORY."""
    lines = []
    for _ in range(n):
        fields = [
            choose(_PROTOS),
            choose(_SADDRS),
            choose(_PORTS),
            choose(_DADDRS),
            choose(_PORTS),
        ]
        if choose([False] * 6 + [True]):
            fields = fields[: choose(range(6))] + choose([[], ["x"]])
        lines.append(",".join(fields))
    return choose(["\n", "\r\n", "\n\n", "\r"]).join(lines) + choose(["", "\n"])


_CONN_STATES = ["ESTABLISHED", "SYN_RECV", "NONE", "ASSURED", "CLOSE"]
_HEX_IPS = ["0A020001", "C0000201", "0A000001", "0A000002", "0A010001",
            "GGGG0000", "2001:0db8:0000:0000:0000:0000:0000:0001", "0a000001",
            "0A00000"]  # fmt: skip
_HEX_PORTS = ["0050", "9C40", "0000", "FFFF", "0035", "50", "x", "00500"]


def gen_ip_vs_conn(choose: Choose[Any], n: int) -> str:
    """``/proc/net/ip_vs_conn``-like text."""
    lines = [
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires "
        "PEName PEData"
    ]
    for _ in range(n):
        f = [choose(["TCP", "UDP", "SCTP", "IP", "tcp", "GRE"]),
             choose(_HEX_IPS), choose(_HEX_PORTS), choose(_HEX_IPS), choose(_HEX_PORTS),
             choose(_HEX_IPS), choose(_HEX_PORTS), choose(_CONN_STATES),
             choose(["899", "0", "x", "9" * 25, ""])]  # fmt: skip
        lines.append(" ".join(f[: choose([9, 9, 9, 8, 10])]))
    return "\n".join(lines) + "\n"


def gen_conntrack(choose: Choose[Any], n: int) -> str:
    """``conntrack -L``-like text."""
    lines = []
    for _ in range(n):
        proto = choose(["tcp      6", "udp      17", "icmp     1", "sctp     132",
                        "ipv4     2 tcp      6", "bogus 9", ""])  # fmt: skip
        kv = " ".join(
            f"{k}={choose(vals)}"
            for k, vals in (("src", _SADDRS), ("dst", _DADDRS), ("sport", _PORTS),
                            ("dport", _PORTS))
            if choose([True, True, True, False])
        )  # fmt: skip
        lines.append(f"{proto} 431999 ESTABLISHED {kv} {kv} [ASSURED] mark=0 use=1")
    lines.append(
        f"conntrack v1.4.7 (conntrack-tools): {n} flow entries have been shown."
    )
    return "\n".join(lines) + "\n"
