"""Connection captures: ``ipvsadm -Lnc``, ``conntrack -L``, and verify on them."""

import io
import ipaddress

import pytest

from maglevx import Director, MaglevxError
from maglevx.captures import (
    detect,
    parse_conntrack,
    parse_ip_vs_conn,
    parse_ipvsadm_conn,
)
from maglevx.cli import main
from maglevx.tools.verify import verify

# ipvsadm 1.31 print_conn(): "%-3s %-6s %-11s %-18s %-18s %s"
LNC = """\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 192.0.2.1:40000    10.0.0.1:80        10.1.0.1:80
UDP 04:59  UDP         [fd00:9::1]:4096   [fd00::1]:53       [fd00:1::5]:53
IP  05:00  NONE        192.0.2.1:0        0.0.0.10:0         10.1.0.7:0
"""
LNC_PERSISTENT_CONN = """\
IPVS connection entries
pro expire state       source             virtual            destination        pe name          pe_data
TCP 01:00  ESTABLISHED 192.0.2.1:40000    10.0.0.1:80        10.1.0.1:80        sip              abc
"""


def test_lnc_entries():
    a, b, t = parse_ipvsadm_conn(LNC.splitlines())
    assert (a.proto, str(a.saddr), a.sport, a.real_server) == (
        "tcp", "192.0.2.1", 40000, "10.1.0.1:80"
    )  # fmt: skip
    assert a.expires == 899 and a.state == "ESTABLISHED"
    assert (str(b.daddr), b.dport, b.real_server) == ("fd00::1", 53, "[fd00:1::5]:53")
    assert t.template and t.proto == "ip"
    (p,) = parse_ipvsadm_conn(LNC_PERSISTENT_CONN.splitlines())
    assert p.real_server == "10.1.0.1:80"
    assert detect(LNC.encode()) == detect(LNC_PERSISTENT_CONN.encode()) == (
        "ipvsadm_conn"
    )  # fmt: skip


@pytest.mark.parametrize(
    "line,message",
    [
        ("TCP 14:59  ESTABLISHED client.example:40000 10.0.0.1:80 10.1.0.1:80",
         "field 'source': 'client.example' is not a numeric address: capture "
         "with `ipvsadm -Lnc`"),
        ("TCP 14:59  ESTABLISHED 192.0.2.1:40000 10.0.0.1:http 10.1.0.1:80",
         "field 'virtual': port 'http' is not a number"),
        ("TCP 00:01  C0A8C86D    192.168.0.109:36519 192.168.0.120:8080 "
         "192.168.200.108:23536", "field 'state': 'C0A8C86D' is not an IPVS"),
        ("TCP 14h  ESTABLISHED 192.0.2.1:1 10.0.0.1:80 10.1.0.1:80",
         "field 'expire': '14h' is not minutes:seconds"),
    ],
)  # fmt: skip
def test_lnc_refusals_say_why(line, message):
    with pytest.raises(MaglevxError) as e:
        list(parse_ipvsadm_conn(["IPVS connection entries", line], source="c"))
    assert str(e.value).startswith(f"c:2: {message}")


def test_conntrack_reply_direction_names_a_masquerading_real_server():
    nat, dr = parse_conntrack(
        [
            "tcp      6 431999 ESTABLISHED src=192.0.2.1 dst=10.0.0.1 sport=40000 "
            "dport=80 src=10.1.0.1 dst=192.0.2.1 sport=8080 dport=40000 [ASSURED] "
            "mark=0 use=1",
            "[NEW] tcp      6 120 SYN_SENT src=192.0.2.1 dst=10.0.0.1 sport=40001 "
            "dport=80 [UNREPLIED] src=10.0.0.1 dst=192.0.2.1 sport=80 dport=40001",
        ]
    )
    assert nat.real_server == "10.1.0.1:8080" and nat.state == "ESTABLISHED"
    assert dr.real_server is None  # direct routing: the reply is the VIP's


def test_conntrack_cut_line_gives_a_hint():
    with pytest.raises(MaglevxError, match=r"protocol number 6 is tcp: is the line"):
        list(parse_conntrack(["cp      6 86205 ESTABLISHED src=10.0.0.1 dst=10.0.0.2"]))


V6 = "-A -u [fd00::1]:53 -s mh -b mh-port\n" + "".join(
    f"-a -u [fd00::1]:53 -r [fd00:1::{i}]:53 -m\n" for i in range(1, 5)
)


def _ip_vs_conn_lines(director, n, wrong=False):
    """/proc/net/ip_vs_conn lines with the servers maglevx predicts (IPv6)."""
    svc = director.services[0]
    lines = ["Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires"]
    for i in range(n):
        client = ipaddress.IPv6Address(f"2001:db8:9::{i + 1:x}")
        rs = svc.schedule(client, 40000 + i, "udp")
        dest = rs.address
        if wrong and i == 0:
            others = [r for r in svc.real_servers if r.address != dest]
            dest = others[0].address
        lines.append(
            f"UDP {client.exploded} {40000 + i:04X} {svc.address.exploded} 0035 "
            f"{dest.exploded} 0035 UDP             299"
        )
    return lines


def test_verify_checks_ipv6_connections():
    # issue 12: "field 'saddrs': IPv6 addresses must have shape (n, 4)"
    d = Director.from_history(V6)
    conns = list(parse_ip_vs_conn(_ip_vs_conn_lines(d, 50)))
    rep = verify(d, conns)
    assert (rep.checked, rep.matched, rep.different) == (50, 50, False)
    bad = list(parse_ip_vs_conn(_ip_vs_conn_lines(d, 50, wrong=True)))
    rep = verify(d, bad)
    assert [c.line for c in rep.mismatches] == [2]


def test_verify_with_nothing_checked_is_not_as_predicted(tmp_path, capsys):
    h = tmp_path / "h.txt"
    h.write_text("-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m\n")
    c = tmp_path / "c.txt"
    c.write_text(
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires\n"
        "TCP C0000201 9C40 0A000009 0050 0A010001 0050 ESTABLISHED     899\n"
    )
    out = io.StringIO()
    status = main(["verify", "--history", str(h), "--conn", str(c), "--no-kmod"], out)
    err = capsys.readouterr().err
    assert status == 2 and "as predicted" not in out.getvalue()
    assert "skipped 1: to no virtual service of the configuration\n" in out.getvalue()
    assert "fwmark" not in out.getvalue()
    assert err.count("\n") == 1 and "nothing verified" in err


@pytest.mark.parametrize(
    "text,fmt",
    [("# captured on lb1\n" + LNC, "ipvsadm_conn"),
     ("# lb1, 12:00\nPro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires\n"
      "TCP C0000201 9C40 0A000001 0050 0A010001 0050 ESTABLISHED     899\n",
      "ip_vs_conn"),
     ("# conntrack -L on lb1\ntcp      6 431999 ESTABLISHED src=192.0.2.1 "
      "dst=10.0.0.1 sport=40000 dport=80 src=10.1.0.1 dst=192.0.2.1 sport=80 "
      "dport=40000 [ASSURED] mark=0 use=1\n", "conntrack")],
)  # fmt: skip
def test_a_comment_line_keeps_the_format(text, fmt):
    from maglevx.captures import PARSERS

    assert detect(text.encode()) == fmt
    (flow, *_) = [f for f in PARSERS[fmt](text.splitlines()) if not f.template]
    line = {"ipvsadm_conn": 4, "ip_vs_conn": 3, "conntrack": 2}[fmt]
    assert str(flow.saddr) == "192.0.2.1" and flow.line == line
