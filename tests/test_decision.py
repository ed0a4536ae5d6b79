"""The kernel's decision path beyond the scheduler (docs/decision-path.md), offline.

Each rule here was seen in Debian's real 6.1 and 6.12 kernels (the decision themes
of tests/kernel/ipvs_vm/decision.py; frozen in tests/vectors/decision-*.json.gz and
replayed by tests/test_decision_vectors.py); these tests pin each rule on its own,
so a regression names the rule.
"""

from __future__ import annotations

import ipaddress
import pickle

import pytest

import maglevx
from maglevx import decision
from maglevx.errors import MaglevxError


def director(*lines: str, **kw) -> maglevx.Director:
    d = maglevx.Director(**kw)
    for line in lines:
        d.apply(line)
    return d


def decide(d, proto, saddr, sport, daddr, dport, fwmark=0):
    return decision.decide(d, (proto, saddr, sport, daddr, dport), fwmark=fwmark)


SIMPLE = (
    "-A -t 10.1.0.1:80 -s mh -b mh-port",
    "-a -t 10.1.0.1:80 -r 172.16.0.1:8080 -m",
    "-a -t 10.1.0.1:80 -r 172.16.0.2:8080 -m",
    "-a -t 10.1.0.1:80 -r 172.16.0.3:8080 -m",
)


# -- FTP data: ip_vs_schedule() 6.1:479 --------------------------------------------
@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("persistent", [False, True])
def test_client_port_20_is_never_scheduled(proto, persistent):
    opt = "-t" if proto == "tcp" else "-u"
    d = director(
        f"-A {opt} 10.1.0.1:80 -s mh" + (" -p" if persistent else ""),
        f"-a {opt} 10.1.0.1:80 -r 172.16.0.1:80 -m",
    )
    dec = decide(d, proto, "10.2.0.1", 20, "10.1.0.1", 80)
    assert dec.outcome == decision.FTP_DATA and dec.server is None and dec.passed
    assert len(d.templates) == 0
    assert decide(d, proto, "10.2.0.1", 21, "10.1.0.1", 80).server is not None
    assert maglevx.lookup((proto, "10.2.0.1", 20, "10.1.0.1", 80), d) is None


# -- service lookup: ip_vs_service_find() -------------------------------------------
FWM = (
    "-A -f 5 -s mh",
    "-a -f 5 -r 172.16.9.9:0 -g",
    *SIMPLE,
)


def test_fwmark_service_comes_before_the_exact_service():
    d = director(*FWM)
    dec = decide(d, "tcp", "10.2.0.1", 4000, "10.1.0.1", 80, fwmark=5)
    assert dec.service.fwmark == 5
    # a -g server of a fwmark service has port 0: the flow's port is kept
    assert (str(dec.server.address), dec.port) == ("172.16.9.9", 80)
    assert decide(d, "tcp", "10.2.0.1", 4000, "10.1.0.1", 80).service.port == 80


def test_a_mark_without_its_service_or_family_falls_through():
    d = director(*FWM)
    assert (
        decide(d, "tcp", "10.2.0.1", 4000, "10.1.0.1", 80, fwmark=6).service.port == 80
    )
    d6 = director("-A -f 5 -s mh", "-A -u [fd00:1::1]:53 -s mh",
                  "-a -u [fd00:1::1]:53 -r [2001:db8::1]:53 -m")  # fmt: skip
    dec = decide(d6, "udp", "fd00:c::1", 4000, "fd00:1::1", 53, fwmark=5)
    assert not dec.service.fwmark and dec.server is not None


@pytest.mark.parametrize(
    "dport,reaches_ftp",
    [(20, True), (1024, True), (65535, True), (22, False), (1023, False)],
)
def test_ftp_lookup_takes_port_20_and_unprivileged_ports(dport, reaches_ftp):
    d = director("-A -t 10.1.0.1:21 -s mh", "-a -t 10.1.0.1:21 -r 172.16.0.1:21 -m")
    dec = decide(d, "tcp", "10.2.0.1", 4000, "10.1.0.1", dport)
    if reaches_ftp:  # not persistent: ip_vs_leave() lets it pass
        assert dec.outcome == decision.FTP_PASS and dec.service.port == 21
    else:
        assert dec.outcome == decision.NO_SERVICE and dec.service is None
    assert dec.server is None and dec.passed


def test_ftp_lookup_is_tcp_only():
    d = director("-A -t 10.1.0.1:21 -s mh", "-A -u 10.1.0.1:21 -s mh")
    assert decide(d, "udp", "10.2.0.1", 4000, "10.1.0.1", 5000).outcome == "no-service"


def test_persistent_ftp_service_schedules_data_ports_with_one_template():
    d = director(
        "-A -t 10.1.0.1:21 -s mh -p", "-a -t 10.1.0.1:21 -r 172.16.0.1:2121 -m"
    )
    a = decide(d, "tcp", "10.2.0.1", 4000, "10.1.0.1", 21)
    b = decide(d, "tcp", "10.2.0.1", 4001, "10.1.0.1", 30000)
    assert a.port == 2121 and b.port == 30000  # other ports keep the flow's port
    assert b.outcome == decision.TEMPLATE and a.template == b.template
    (t,) = d.templates
    assert t.vport == 0 and t.dport == 0  # FTP templates: <proto, caddr, 0, vaddr, 0>


PORT_ZERO = (
    "-A -t 10.1.0.1:0 -s mh -p",
    "-a -t 10.1.0.1:0 -r 172.16.0.1:8080 -m",
    "-a -t 10.1.0.1:0 -r 172.16.0.2 -g",
    "-A -t 10.1.0.1:80 -s mh",
    "-a -t 10.1.0.1:80 -r 172.16.0.9:80 -m",
)


def test_port_zero_catches_ports_without_their_own_service():
    d = director(*PORT_ZERO)
    exact = decide(d, "tcp", "10.2.0.1", 4000, "10.1.0.1", 80)
    assert str(exact.server.address) == "172.16.0.9"
    dec = decide(d, "tcp", "10.2.0.1", 4001, "10.1.0.1", 443)
    assert dec.service.port == 0 and dec.port == 443  # even to a :8080 server
    (t,) = d.templates
    assert t.key[4] == 0 and t.dport == 0
    again = decide(d, "tcp", "10.2.0.1", 4002, "10.1.0.1", 22)
    assert again.outcome == decision.TEMPLATE and again.server is dec.server


def test_port_zero_without_persistence_is_never_scheduled():
    """ipvsadm refuses it; a listing (made over netlink) can still show one."""
    with pytest.raises(MaglevxError, match="[Zz]ero port"):
        director("-A -t 10.1.0.1:0 -s mh")
    d = maglevx.Director.from_snapshot(
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  10.1.0.1:0 mh\n"
        "  -> 172.16.0.1:80                Masq    1      0          0\n"
    )
    dec = decide(d, "tcp", "10.2.0.1", 4000, "10.1.0.1", 443)
    assert dec.outcome == decision.PORT_ZERO and dec.dropped and dec.server is None


# -- persistence: ip_vs_sched_persist() ---------------------------------------------
def clients_share(d, a, b, dport=80, daddr="10.1.0.1"):
    x = decide(d, "tcp", a, 5000, daddr, dport)
    y = decide(d, "tcp", b, 6000, daddr, dport)
    return x.template == y.template and y.outcome == decision.TEMPLATE


def test_default_mask_is_the_client_address():
    d = director(*SIMPLE[:1], "-E -t 10.1.0.1:80 -s mh -b mh-port -p", *SIMPLE[1:])
    assert not clients_share(d, "10.2.0.1", "10.2.0.2")
    # one client: every connection follows the first one's server
    servers = {
        decide(d, "tcp", "10.2.0.1", p, "10.1.0.1", 80).server
        for p in range(6000, 6050)
    }
    assert len(servers) == 1


@pytest.mark.parametrize(
    "mask,a,b,shared",
    [
        ("255.255.255.0", "10.2.0.1", "10.2.0.200", True),
        ("255.255.255.0", "10.2.0.1", "10.2.1.1", False),
        ("255.0.255.0", "10.2.0.1", "10.9.0.7", True),  # any 32-bit mask
        ("0.0.0.0", "10.2.0.1", "10.200.3.4", True),
        ("24", "10.2.0.1", "10.2.0.17", False),  # inet_aton: 0.0.0.24
        ("24", "10.2.0.1", "10.9.9.1", True),
    ],
)
def test_ipv4_masks(mask, a, b, shared):
    d = director(f"-A -t 10.1.0.1:80 -s mh -b mh-port -p -M {mask}", *SIMPLE[1:])
    assert clients_share(d, a, b) == shared


@pytest.mark.parametrize(
    "plen,b,shared",
    [(64, "fd00:c::ffff", True), (127, "fd00:c::3", False), (1, "fd00:d::1", True)],
)
def test_ipv6_prefix_lengths(plen, b, shared):
    d = director(
        f"-A -t [fd00:1::1]:80 -s mh -b mh-port -p -M {plen}",
        "-a -t [fd00:1::1]:80 -r [2001:db8::1]:80 -m",
        "-a -t [fd00:1::1]:80 -r [2001:db8::2]:80 -m",
    )
    assert clients_share(d, "fd00:c::1", b, daddr="fd00:1::1") == shared


@pytest.mark.parametrize(
    "line", ["-A -t [fd00:1::1]:80 -s mh -p -M 255.255.255.0", "-A -t [fd00:1::1]:80 -s mh -p -M 129",
             "-A -t 10.1.0.1:80 -s mh -p -M banana"]
)  # fmt: skip
def test_a_mask_that_does_not_fit_the_family_is_one_error(line):
    with pytest.raises(MaglevxError, match="-M|mask"):
        director(line)


PERSIST = (
    "-A -t 10.1.0.1:80 -s mh -b mh-port -p 600",
    "-a -t 10.1.0.1:80 -r 172.16.0.1:80 -m",
    "-a -t 10.1.0.1:80 -r 172.16.0.2:80 -m",
    "-a -t 10.1.0.1:80 -r 172.16.0.3:80 -m",
)


def first(d):
    return decide(d, "tcp", "10.2.0.1", 5000, "10.1.0.1", 80).server


def test_a_deleted_server_is_not_followed_and_a_readded_one_is():
    d = director(*PERSIST)
    rs = first(d)
    d.apply(f"-d -t 10.1.0.1:80 -r {rs.endpoint}")
    d.apply(f"-a -t 10.1.0.1:80 -r {rs.endpoint} -m")  # same ip_vs_dest (trash)
    again = decide(d, "tcp", "10.2.0.1", 5001, "10.1.0.1", 80)
    assert again.outcome == decision.TEMPLATE and again.server.endpoint == rs.endpoint
    d.apply(f"-d -t 10.1.0.1:80 -r {rs.endpoint}")
    gone = decide(d, "tcp", "10.2.0.1", 5002, "10.1.0.1", 80)
    assert gone.replaced and gone.outcome == decision.SCHEDULED
    assert gone.server.endpoint != rs.endpoint


@pytest.mark.parametrize("expire", [False, True])
def test_quiescent_templates(expire):
    d = director(*PERSIST, expire_quiescent_template=expire)
    rs = first(d)
    d.apply(f"-e -t 10.1.0.1:80 -r {rs.endpoint} -m -w 0")
    dec = decide(d, "tcp", "10.2.0.1", 5001, "10.1.0.1", 80)
    if expire:
        assert dec.replaced and dec.server.endpoint != rs.endpoint
    else:
        assert dec.outcome == decision.TEMPLATE and dec.server.endpoint == rs.endpoint


def test_edit_without_p_drops_persistence_and_the_templates_come_back():
    d = director(*PERSIST)
    rs = first(d)
    d.apply("-E -t 10.1.0.1:80 -s mh -b mh-port")
    free = {
        decide(d, "tcp", "10.2.0.1", p, "10.1.0.1", 80).server.endpoint
        for p in range(6000, 6040)
    }
    assert len(free) > 1  # mh-port: each client port on its own
    d.apply("-E -t 10.1.0.1:80 -s mh -b mh-port -p")
    assert (
        decide(d, "tcp", "10.2.0.1", 7000, "10.1.0.1", 80).server.endpoint
        == rs.endpoint
    )


def test_fwmark_templates_are_keyed_by_the_mark():
    d = director(
        "-A -f 7 -s mh -b mh-port -p",
        "-a -f 7 -r 172.16.0.1:0 -g",
        "-a -f 7 -r 172.16.0.2:0 -g",
    )
    a = decide(d, "tcp", "10.2.0.1", 5000, "10.1.0.1", 80, fwmark=7)
    b = decide(d, "udp", "10.2.0.1", 5000, "10.1.0.2", 53, fwmark=7)
    assert b.outcome == decision.TEMPLATE and b.server is a.server and b.port == 53
    (t,) = d.templates
    assert t.protocol == "ip" and t.vaddr == ipaddress.ip_address("0.0.0.7")


def test_templates_reset_pickle_and_copy():
    d = director(*PERSIST)
    first(d)
    assert len(d.templates) == 1
    assert len(pickle.loads(pickle.dumps(d)).templates) == 1
    c = d.copy()
    d.reset_templates()
    assert len(d.templates) == 0 and len(c.templates) == 1


# -- one-packet ---------------------------------------------------------------------
def test_one_packet_is_for_udp():
    d = director("-A -u 10.1.0.1:53 -s mh -o", "-a -u 10.1.0.1:53 -r 172.16.0.1:53 -m")
    assert decide(d, "udp", "10.2.0.1", 5000, "10.1.0.1", 53).one_packet
    with pytest.raises(MaglevxError, match="[Oo]ne-[Pp]acket"):
        director("-A -t 10.1.0.1:80 -s mh -o")
