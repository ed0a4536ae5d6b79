"""`maglevx predict` fast path: same output and errors as the slow path."""

import io
import random

import pytest

from maglevx import Director, MaglevxError
from maglevx.predict import Progress, predict_capture, predict_lines, predict_stream

HISTORY = (
    "-A -t 10.0.0.1:80 -s mh\n"
    + "".join(f"-a -t 10.0.0.1:80 -r 10.1.0.{i}:80 -m -w 1\n" for i in range(1, 6))
    + "-e -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 0\n"
    "-A -u [fd00::1]:53 -s mh -b mh-port,mh-fallback\n"
    "-a -u [fd00::1]:53 -r [fd00:1::5]:53 -m\n-a -u [fd00::1]:53 -r [fd00:1::6]:53 -m\n"
    "-e -u [fd00::1]:53 -r [fd00:1::6]:53 -m -w 0\n"
    "-A -t 10.0.0.2:0 -s mh -p\n-a -t 10.0.0.2:0 -r 10.1.0.7:0 -g\n"
)

GOOD = [
    "tcp,192.0.2.{i},{p},10.0.0.1,80",
    " TCP , 192.0.2.{i} ,{p}, 10.0.0.1 ,80 ",
    "udp,fd00:9::{i:x},{p},fd00::1,53",
    "Udp,::ffff:1.2.3.{i},{p},fd00:0::1,053",
    "tcp,198.51.100.{i},{p},10.0.0.2,443",
    "sctp\t,192.0.2.{i},0000{p},10.0.0.1,80",
]
BAD = [
    "tcp,192.0.2.1,1,10.0.0.1",
    "tcp,192.0.2.1,1,10.0.0.1,80,x",
    "gre,192.0.2.1,1,10.0.0.1,80",
    "tcp,192.0.2.01,1,10.0.0.1,80",
    "tcp,192.0.2.1,65536,10.0.0.1,80",
    "tcp,192.0.2.1,-1,10.0.0.1,80",
    "tcp,192.0.2.1,,10.0.0.1,80",
    "tcp,fd00::1,1,10.0.0.1,80",
    "udp,192.0.2.1,1,fd00::1,53",
    "tcp,192.0.2.1,1,10.0.0.1,99999",
    "tcp,192.0.2.1,1,10.0.0.1,8o",
    "tcp,192.0.2.1\x00,1,10.0.0.1,80",
    "tcp,192.0.2.1,١,10.0.0.1,80",
    "tcp,fe80::1%eth0,1,fd00::1,53",
]
ODD_BUT_GOOD = [
    "\u00a0tcp,192.0.2.5,7,10.0.0.1,80\u2003",
    "tcp,192.0.2.5,7,10.0.0.1,\u200980",
    "tcp,192.0.2.1,1,10.0.0.9,80",  # no virtual service: empty fields
    "udp,fd00:9::1,1,10.0.0.9,53",
    "6,192.0.2.5,7,10.0.0.1,80",  # protocol numbers, as tshark prints them
    "17,[fd00:9::7],7,[fd00::1],53",  # bracketed IPv6
]


@pytest.fixture(scope="module")
def director():
    return Director.from_history(HISTORY)


def slow(director, text):
    out = io.StringIO()
    try:
        predict_lines(director, io.StringIO(text, newline=""), out, source="f")
        return out.getvalue(), None
    except MaglevxError as exc:
        return out.getvalue(), str(exc)


def fast(director, text, block_bytes=1 << 20):
    out = io.BytesIO()
    try:
        predict_stream(
            director,
            io.BytesIO(text.encode()),
            out,
            source="f",
            block_bytes=block_bytes,
        )
        return out.getvalue().decode(), None
    except MaglevxError as exc:
        return out.getvalue().decode(), str(exc)


def corpus(seed, n, bad_rate):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        r = rng.random()
        if r < bad_rate:
            lines.append(rng.choice(BAD))
        elif r < bad_rate * 2:
            lines.append(rng.choice(ODD_BUT_GOOD + ["", "  ", "\x0b"]))
        else:
            t = rng.choice(GOOD)
            lines.append(t.format(i=rng.randrange(1, 250), p=rng.randrange(1, 65536)))
    eol = rng.choice(["\n", "\r\n", "\r"])
    return eol.join(lines) + rng.choice(["", eol])


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("block_bytes", [7, 100, 1 << 20])
def test_fast_path_equals_slow_path(director, seed, block_bytes):
    text = corpus(seed, 300, bad_rate=0.004 if seed % 3 else 0.0)
    assert fast(director, text, block_bytes) == slow(director, text)


@pytest.mark.parametrize("bad", BAD)
def test_each_bad_line_gives_the_slow_paths_error(director, bad):
    text = "tcp,192.0.2.1,1,10.0.0.1,80\n\n" + bad + "\ntcp,192.0.2.2,1,10.0.0.1,80\n"
    got = fast(director, text)
    assert got == slow(director, text)
    assert got[1].startswith("f:3: ") and got[0].count("\n") == 1


def test_invalid_utf8_is_one_error(director):
    out = io.BytesIO()
    with pytest.raises(MaglevxError, match="not UTF-8"):
        predict_stream(director, io.BytesIO(b"tcp,1.2.3.4,1,10.0.0.1,80\n\xff\n"), out)
    assert out.getvalue().count(b"\n") == 1


def test_text_output_without_buffer(director):
    out = io.StringIO()
    predict_stream(director, io.BytesIO(b"tcp,192.0.2.1,1,10.0.0.1,80\n"), out)
    assert out.getvalue().startswith("tcp,192.0.2.1,1,10.0.0.1,80,")


def test_progress_only_on_a_terminal():
    err = io.StringIO()
    p = Progress(100, stream=err, delay=0)
    p.update(50, 10)
    p.close()
    assert err.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    p = Progress(100, stream=tty, delay=0)
    p.update(50, 10)
    p.close()
    assert "50.0%" in tty.getvalue() and tty.getvalue().endswith("\r\033[K")


# /proc/net/ip_vs_conn as ip_vs_conn_seq_show() prints it (Linux 6.1)
IP_VS_CONN = """\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C0000201 9C40 0A000001 0050 0A010001 0050 ESTABLISHED     899
UDP fd00:0009:0000:0000:0000:0000:0000:0001 1000 fd00:0000:0000:0000:0000:0000:0000:0001 0035 fd00:0001:0000:0000:0000:0000:0000:0005 0035 UDP             299
TCP C0000202 0000 0A000002 0000 0A010007 0000 NONE            299
TCP C0000203 9C41 0A000009 0050 0A010001 0050 SYN_RECV         59
"""

CONNTRACK = """\
tcp      6 431999 ESTABLISHED src=192.0.2.1 dst=10.0.0.1 sport=40000 dport=80 src=10.1.0.1 dst=192.0.2.1 sport=80 dport=40000 [ASSURED] mark=0 use=1
ipv6     10 udp      17 29 src=fd00:9::1 dst=fd00::1 sport=4096 dport=53 [UNREPLIED] src=fd00:1::5 dst=fd00:9::1 sport=53 dport=4096 mark=0 use=1
icmp     1 29 src=192.0.2.1 dst=10.0.0.1 type=8 code=0 id=1 src=10.0.0.1 dst=192.0.2.1 type=0 code=0 id=1 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.
"""


@pytest.mark.parametrize(
    "fmt,text", [("ip_vs_conn", IP_VS_CONN), ("conntrack", CONNTRACK)]
)
def test_captures_become_flow_lines(director, fmt, text):
    out, err = io.StringIO(), io.StringIO()
    n = predict_capture(director, io.BytesIO(text.encode()), out, fmt, err=err)
    lines = out.getvalue().splitlines()
    assert n == 2 and lines[0].startswith("tcp,192.0.2.1,40000,10.0.0.1,80,")
    assert lines[1].startswith("udp,fd00:9::1,4096,fd00::1,53,fd00:1::5,53")
    assert "skipped" in err.getvalue() or fmt == "conntrack"


def test_bad_capture_line_names_line_and_field(director):
    text = IP_VS_CONN.replace("9C41", "9G41")
    with pytest.raises(MaglevxError, match=r"^c:5: field 'FPrt'"):
        predict_capture(director, io.BytesIO(text.encode()), io.StringIO(), "ip_vs_conn",
                        source="c", err=io.StringIO())  # fmt: skip


@pytest.mark.parametrize(
    "head,fmt",
    [(IP_VS_CONN, "ip_vs_conn"), (CONNTRACK, "conntrack"),
     ("tcp,1.2.3.4,1,10.0.0.1,80\n", "csv"), ("\xd4\xc3\xb2\xa1", "pcap")],
)  # fmt: skip
def test_detect(head, fmt):
    from maglevx.captures import detect

    assert detect(head.encode("latin-1" if fmt == "pcap" else "utf-8")) == fmt


def test_no_service_is_empty_fields_and_counted(director):
    from maglevx.predict import PredictStats

    text = "tcp,192.0.2.1,1,10.0.0.9,80\ntcp,192.0.2.1,1,10.0.0.1,80\n"
    for run in (predict_stream, predict_lines):
        stats = PredictStats()
        out = io.BytesIO() if run is predict_stream else io.StringIO()
        src = io.BytesIO(text.encode()) if run is predict_stream else io.StringIO(text)
        run(director, src, out, stats=stats)
        got = out.getvalue()
        got = got.decode() if isinstance(got, bytes) else got
        assert got.splitlines()[0] == "tcp,192.0.2.1,1,10.0.0.9,80,,"
        assert (stats.flows, stats.no_service) == (2, 1)
        with pytest.raises(MaglevxError, match="^f:1: field 'daddr': no virtual"):
            src = (
                io.BytesIO(text.encode())
                if run is predict_stream
                else io.StringIO(text)
            )
            run(director, src, out, strict=True, source="f")


@pytest.mark.parametrize(
    "head",
    ["proto,saddr,sport,daddr,dport", "\ufeffproto,saddr,sport,daddr,dport",
     "ip.proto,ip.src,tcp.srcport,ip.dst,tcp.dstport",
     "saddr,sport,daddr,dport,proto,mark"],
)  # fmt: skip
def test_header_is_echoed_and_names_the_columns(director, head):
    from maglevx.predict import PredictStats

    row = {"proto": "6", "saddr": "192.0.2.1", "sport": "1", "daddr": "10.0.0.1",
           "dport": "80", "mark": "0x1"}  # fmt: skip
    names = head.lstrip("\ufeff").split(",")
    line = ",".join(row[n.split(".")[-1].replace("srcport", "sport").replace(
        "dstport", "dport").replace("src", "saddr").replace("dst", "daddr")]
        for n in names)  # fmt: skip
    text = f"{head}\n{line}\n"
    want = slow(director, "tcp,192.0.2.1,1,10.0.0.1,80\n")[0].split(",", 5)[5].strip()
    for got, _ in (fast(director, text), slow(director, text)):
        lines = got.splitlines()
        assert lines[0] == head.lstrip("\ufeff") + ",raddr,rport"
        assert lines[1] == f"{line},{want}"
    stats = PredictStats()
    predict_stream(director, io.BytesIO(text.encode()), io.BytesIO(), stats=stats)
    assert stats.header and stats.flows == 1


def test_bom_before_a_flow(director):
    text = "\ufefftcp,192.0.2.1,1,10.0.0.1,80\n"
    assert fast(director, text) == slow(director, text)
    assert fast(director, text)[0].startswith("tcp,192.0.2.1,1,10.0.0.1,80,10.")


def test_header_without_a_column_is_one_error(director):
    got = fast(director, "proto,saddr,daddr,dport\ntcp,1.2.3.4,10.0.0.1,80\n")
    assert got == ("", "f:1: field 'header': header names no column for sport "
                   "(a header names proto,saddr,sport,daddr,dport)")  # fmt: skip
