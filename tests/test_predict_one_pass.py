"""predict's one C pass (FlowScanner.run, 1 or 2 threads) writes what the slow path writes.

The reference is :func:`predict_lines`, the line-by-line Python path that
``MAGLEVX_PURE_PYTHON=1`` runs; the one pass must give the same bytes, the
same counts and, on a bad line, the same one-line error after the same
output. Inputs are built to reach every branch of run(): each route kind
(mh service, no service, a service that is not mh, an address of the other
family), FTP data (client port 20), an unavailable real server with and
without mh-fallback (edited to weight 0: its slots stay, as in the
kernel), lines the C parser leaves to the slow path, blank and
padded lines, the three line ends, block and thread splits, a full output
buffer and over-long lines.
"""

from __future__ import annotations

import io
import ipaddress
import random
from pathlib import Path

import numpy as np
import pytest

from maglevx import Director, MaglevxError, predict
from maglevx.predict import PredictStats, predict_lines, predict_stream, text_lines

# C only: the pure-Python run (MAGLEVX_PURE_PYTHON=1) has no scanner, and
# tests/conftest.py does not collect this file there (nothing is skipped).
fastcsv = predict._fastcsv

ROOT = Path(__file__).resolve().parent.parent
# No templates, port zero, FTP or fwmark: director.needs_decisions() is False.
HISTORY = """
-A -t 10.0.0.1:80 -s mh -b mh-port
-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
-a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 2
-a -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 3
-e -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 0
-A -u [fd00::1]:53 -s mh -b mh-fallback
-a -u [fd00::1]:53 -r [fd00:1::1]:53 -m
-a -u [fd00::1]:53 -r [fd00:1::2]:53 -m -w 0
-a -u [fd00::1]:53 -r [2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535 -m
-e -u [fd00::1]:53 -r [fd00:1::1]:53 -m -w 0
-A -u [fd00::1]:54 -s mh
-a -u [fd00::1]:54 -r [fd00:1::1]:54 -m
-a -u [fd00::1]:54 -r [fd00:1::2]:54 -m -w 0
-e -u [fd00::1]:54 -r [fd00:1::1]:54 -m -w 0
-A --sctp-service 10.0.0.2:7 -s mh
-a --sctp-service 10.0.0.2:7 -r 10.1.0.7:7 -m
-A -t 10.0.0.3:443 -s mh
-A -t 10.0.0.9:80 -s rr
-a -t 10.0.0.9:80 -r 10.1.0.9:80 -m
"""

GOOD_DESTS = [
    ("tcp", "10.0.0.1", "80"),
    ("TCP", "10.0.0.1", "80"),
    ("udp", "fd00::1", "53"),
    ("udp", "fd00::1", "54"),
    ("udp", "[fd00::1]", "53"),
    ("sctp", "10.0.0.2", "7"),
    ("tcp", "10.0.0.3", "443"),  # an mh service with no real server
    ("tcp", "10.0.0.77", "80"),  # no service: ",," and counted
    ("udp", "fd00::99", "53"),  # no service, IPv6
    ("tcp", "10.0.0.1", "0080"),
    ("tcp", "10.0.0.1", " 80 "),
]


def director() -> Director:
    return Director.from_history(HISTORY)


def v4(rng: random.Random) -> str:
    return ".".join(str(rng.randrange(256)) for _ in range(4))


def v6(rng: random.Random) -> str:
    words = [f"{rng.randrange(65536):x}" for _ in range(8)]
    text = ":".join(words)
    if rng.random() < 0.3:
        text = f"fd00::{words[0]}"
    return text


def good_line(rng: random.Random) -> str:
    proto, daddr, dport = rng.choice(GOOD_DESTS)
    family6 = "fd00" in daddr
    saddr = v6(rng) if family6 else v4(rng)
    sport = str(rng.choice([20, 20, 1, 65535, rng.randrange(1, 65536)]))
    line = f"{proto},{saddr},{sport},{daddr},{dport}"
    r = rng.random()
    if r < 0.05:
        line = f"  {line}\t"
    elif r < 0.08:
        line = line.replace(",", " , ")
    return line


BAD_LINES = [
    "tcp,10.0.0.9,1,10.0.0.9,80",  # a service that is not mh
    "tcp,fd00::5,1,10.0.0.1,80",  # IPv6 client of an IPv4 service
    "udp,10.1.2.3,1,fd00::1,53",  # IPv4 client of an IPv6 service
    "tcp,01.2.3.4,1,10.0.0.1,80",  # inet_pton() refuses a leading zero
    "tcp,1.2.3.256,1,10.0.0.1,80",
    "tcp,1.2.3,1,10.0.0.1,80",
    "tcp,1.2.3.4,65536,10.0.0.1,80",
    "tcp,1.2.3.4,-1,10.0.0.1,80",
    "tcp,1.2.3.4,1,10.0.0.1,65536",
    "tcp,1.2.3.4,1,10.0.0.1",
    "icmp,1.2.3.4,1,10.0.0.1,80",
    "tcp,1.2.3.4,1,10.0.0.1,80,x",  # a bad fwmark field
    "tcp,1.2.3.4,1,not-an-address,80",
    "tcp,1.2.3.4\x01,1,10.0.0.1,80",
]

# accepted by the slow path but not by the C parser: decided one by one
SLOW_GOOD = [
    "6,192.0.2.1,1000,10.0.0.1,80",
    "17,fd00:9::1,1000,fd00::1,53",
    "tcp,[fd00::5],1,10.0.0.7,80",
]


def make_input(rng: random.Random, n: int, bad: str | None = None) -> bytes:
    lines = []
    for _ in range(n):
        r = rng.random()
        if r < 0.02:
            lines.append(rng.choice(["", "   ", "\t"]))
        elif r < 0.04:
            lines.append(rng.choice(SLOW_GOOD))
        else:
            lines.append(good_line(rng))
    if bad is not None:
        lines.insert(rng.randrange(len(lines) + 1), bad)
    ends = [rng.choice(["\n", "\n", "\n", "\r\n", "\r"]) for _ in lines]
    text = "".join(a + b for a, b in zip(lines, ends))
    if rng.random() < 0.3:
        text = text.rstrip("\r\n")  # an unterminated last line
    return text.encode()


def reference(data: bytes) -> tuple[bytes, str | None, PredictStats]:
    """The slow path: output, error message, stats."""
    out = io.StringIO()
    stats = PredictStats()
    error = None
    try:
        predict_lines(director(), text_lines(io.BytesIO(data), "f.csv"), out,
                      source="f.csv", stats=stats)  # fmt: skip
    except MaglevxError as exc:
        error = str(exc)
    return out.getvalue().encode(), error, stats


def one_pass(
    data: bytes, threads: int, block: int
) -> tuple[bytes, str | None, PredictStats]:
    out = io.BytesIO()
    stats = PredictStats()
    error = None
    try:
        predict_stream(director(), io.BytesIO(data), out, source="f.csv",
                       block_bytes=block, threads=threads, stats=stats)  # fmt: skip
    except MaglevxError as exc:
        error = str(exc)
    return out.getvalue(), error, stats


@pytest.fixture
def small_split(monkeypatch):
    """Split blocks between threads from 256 bytes on (many splits)."""
    monkeypatch.setattr(predict, "PARALLEL_BYTES", 256)


def check(data: bytes, threads: int, block: int) -> None:
    want, want_error, want_stats = reference(data)
    got, got_error, got_stats = one_pass(data, threads, block)
    assert got_error == want_error
    assert got == want
    assert (got_stats.flows, got_stats.no_service) == (
        want_stats.flows, want_stats.no_service,
    )  # fmt: skip


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("block", [97, 4096, 1 << 20])
@pytest.mark.parametrize("seed", range(4))
def test_generated_inputs_equal_the_slow_path(seed, block, threads, small_split):
    rng = random.Random(seed * 7 + block)
    check(make_input(rng, 3000), threads, block)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bad", BAD_LINES)
def test_a_bad_line_gives_the_same_error_after_the_same_output(
    bad, threads, small_split
):
    rng = random.Random(hash(bad) & 0xFFFF)
    data = make_input(rng, 2000, bad)
    want, want_error, _ = reference(data)
    assert want_error is not None and want_error.startswith("f.csv:")
    check(data, threads, 1024)


@pytest.mark.parametrize("threads", [1, 2])
def test_real_inputs_equal_the_slow_path(threads, small_split):
    files = sorted((ROOT / "tests/data").rglob("*.csv"))
    files += sorted((ROOT / "examples").rglob("*.csv"))
    assert files, "no CSV flow files under tests/data or examples"
    d = director()
    for path in files:
        data = path.read_bytes()
        # the real files' destinations under this director: mostly no service
        check(data, threads, 512)
    assert d.needs_decisions() is False


# Another reading of HISTORY, as PredictStats.alternative compares (a listing's
# weight-0 servers drained by an edit): both paths count the same flows.
DRAINED = """
-e -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 0
-e -u [fd00::1]:53 -r [fd00:1::1]:53 -m -w 1
-d -u [fd00::1]:54 -r [fd00:1::2]:54
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_another_reading_moves_the_same_flows_as_the_slow_path(threads, small_split):
    data = make_input(random.Random(11), 3000)
    want = PredictStats(alternative=Director.from_history(HISTORY + DRAINED))
    predict_lines(director(), text_lines(io.BytesIO(data), "f"), io.StringIO(),
                  stats=want)  # fmt: skip
    got = PredictStats(alternative=Director.from_history(HISTORY + DRAINED))
    predict_stream(director(), io.BytesIO(data), io.BytesIO(), block_bytes=1024,
                   threads=threads, stats=got)  # fmt: skip
    assert got.differ == want.differ > 300


def test_ftp_data_port_20_gets_no_destination():
    # the table sends 192.0.2.8 port 20 to 10.1.0.1:80; FTP data is never
    # scheduled (decision.py: FTPDATA), port 21 is
    svc = director().service(("tcp", ipaddress.ip_address("10.0.0.1"), 80))
    assert (
        str(svc.snapshot.lookup(int(ipaddress.ip_address("192.0.2.8")), 20).endpoint)
        == "10.1.0.1:80"
    )
    data = b"tcp,192.0.2.8,20,10.0.0.1,80\ntcp,192.0.2.8,21,10.0.0.1,80\n"
    got, error, stats = one_pass(data, 1, 1 << 16)
    assert error is None
    assert got.decode().splitlines() == [
        "tcp,192.0.2.8,20,10.0.0.1,80,,",
        "tcp,192.0.2.8,21,10.0.0.1,80,10.1.0.2,8080",
    ]
    assert stats.no_service == 0


@pytest.mark.parametrize("threads", [1, 2])
def test_long_lines_are_refused_like_the_slow_path(threads, small_split):
    pad = b" " * (predict.MAX_LINE_BYTES + 10)
    for data in (
        b"tcp,192.0.2.1,1,10.0.0.1,80\ntcp," + pad + b"192.0.2.1,1,10.0.0.1,80\n",
        b"tcp,192.0.2.1,1,10.0.0.1,80\n" + pad + b"\n",  # a long blank line
        b"tcp,192.0.2.1,1,10.0.0.1,80\n"
        + b"x" * (predict.MAX_LINE_BYTES - 1)
        + b"\r\n",
    ):
        want, want_error, _ = reference(data)
        assert want_error is not None and "line longer than" in want_error
        check(data, threads, 1 << 16)


def scanner_with_routes(data: bytes):
    """A FlowScanner whose every key in *data* has its route (as predict sets them)."""
    sink = predict._Sink(io.BytesIO())
    fast = predict._FastPredictor(director(), sink, "f")
    fast.scanner.scan(data, 0, len(data), fast.keys, fast.folds, fast.sports)
    fast._route_keys()
    return fast.scanner


def test_run_restarts_after_a_full_output_buffer():
    rng = random.Random(5)
    data = "".join(good_line(rng) + "\n" for _ in range(500)).encode()
    scanner = scanner_with_routes(data)
    big = np.empty(1 << 20, np.uint8)
    status, stop, lines, flows, _, written = scanner.run(
        data, 0, len(data), True, big, 1 << 16
    )
    assert (status, stop, lines, flows) == (fastcsv.END, len(data), 500, 500)
    whole = big[:written].tobytes()
    small = np.empty(200, np.uint8)
    parts, pos, fulls = [], 0, 0
    while pos < len(data):
        status, pos, _, _, _, written = scanner.run(
            data, pos, len(data), True, small, 1 << 16
        )
        parts.append(small[:written].tobytes())
        fulls += status == fastcsv.FULL
    assert b"".join(parts) == whole and fulls > 100


def test_run_and_set_route_check_their_arguments():
    data = b"tcp,192.0.2.1,1,10.0.0.1,80\n"
    scanner = scanner_with_routes(data)
    out = np.empty(64, np.uint8)
    for pos, end in ((-1, 5), (3, 2), (0, len(data) + 1)):
        with pytest.raises(ValueError, match="pos and end"):
            scanner.run(data, pos, end, True, out, 1 << 16)
    with pytest.raises(ValueError, match="no key"):
        scanner.set_route(99, fastcsv.ROUTE_NONE)
    with pytest.raises(ValueError, match="unknown kind"):
        scanner.set_route(0, 77)
    svc = director().service(("tcp", ipaddress.ip_address("10.0.0.1"), 80))
    sched = svc.snapshot.scheduler
    with pytest.raises(ValueError, match="family"):
        scanner.set_route(0, fastcsv.ROUTE_MH, 5, True, sched, [b",x"] * 3)
    with pytest.raises(ValueError, match="one suffix per real server"):
        scanner.set_route(0, fastcsv.ROUTE_MH, 4, True, sched, [b",x"])
    # an empty buffer and an empty output: nothing to do, no crash
    assert (
        scanner.run(b"", 0, 0, True, np.empty(0, np.uint8), 1 << 16)[0] == fastcsv.END
    )
    status, stop, *_ = scanner.run(
        data, 0, len(data), True, np.empty(0, np.uint8), 1 << 16
    )
    assert (status, stop) == (fastcsv.FULL, 0)


def test_a_key_without_a_route_stops_run():
    data = b"tcp,192.0.2.1,1,10.0.0.1,80\n"
    scanner = fastcsv.FlowScanner()
    out = np.empty(256, np.uint8)
    assert scanner.run(data, 0, len(data), True, out, 1 << 16)[:2] == (
        fastcsv.NEWKEY,
        0,
    )


@pytest.mark.parametrize("byte", [b for b in range(256) if b not in (10, 13)])
def test_every_byte_value_is_split_like_the_slow_path(byte):
    # the C splitter reads 16 bytes at a time (SSE2) and the rest one by one:
    # the byte lands in the first block, in the second, and in the tail
    line = b"tcp,192.0.2.123,40000,10.0.0.1,80"
    data = b"".join(
        line[:at] + bytes([byte]) + line[at:] + b"\n" for at in (2, 19, len(line))
    )
    check(data, 1, 1 << 16)
