"""Replaying ipvsadm -R histories as ipvsadm 1.31 and ip_vs_ctl.c apply them."""

import ipaddress

import numpy as np
import pytest

import maglevx
from maglevx import Director, MaglevxError
from maglevx.backend import core
from maglevx.model import FLAG_FALLBACK, FLAG_PORT

VIP = "-t 10.0.0.1:80"


def servers(d, i=0):
    return [
        (str(rs.address), rs.port, rs.weight, rs.last_weight)
        for rs in d.services[i].real_servers
    ]


def hist(*lines, **kw):
    return Director.from_history("\n".join(lines), **kw)


def test_new_real_servers_go_to_the_head():
    d = hist(
        f"-A {VIP} -s mh", f"-a {VIP} -r 10.1.0.1:80 -m", f"-a {VIP} -r 10.1.0.2:80 -m"
    )
    assert [s[0] for s in servers(d)] == ["10.1.0.2", "10.1.0.1"]


def test_readded_real_server_goes_back_to_the_head():
    d = hist(
        f"-A {VIP} -s mh",
        f"-a {VIP} -r 10.1.0.1:80 -m",
        f"-a {VIP} -r 10.1.0.2:80 -m",
        f"-d {VIP} -r 10.1.0.1:80",
        f"-a {VIP} -r 10.1.0.1:80 -m -w 4",
    )
    assert servers(d) == [("10.1.0.1", 80, 4, 4), ("10.1.0.2", 80, 1, 1)]


def test_edit_to_zero_keeps_last_weight():
    d = hist(
        f"-A {VIP} -s mh",
        f"-a {VIP} -r 10.1.0.1:80 -m -w 7",
        f"-e {VIP} -r 10.1.0.1:80 -m -w 0",
    )
    assert servers(d) == [("10.1.0.1", 80, 0, 7)]
    d = hist(f"-A {VIP} -s mh", f"-a {VIP} -r 10.1.0.1:80 -m -w 0")
    assert servers(d) == [("10.1.0.1", 80, 0, 0)]


def test_edit_without_weight_means_weight_one():
    d = hist(
        f"-A {VIP} -s mh",
        f"-a {VIP} -r 10.1.0.1:80 -m -w 7",
        f"-e {VIP} -r 10.1.0.1:80 -m",
    )
    assert servers(d) == [("10.1.0.1", 80, 1, 1)]


@pytest.mark.parametrize("fwd", ["-g", "-i", ""])
def test_route_and_tunnel_servers_get_the_service_port(fwd):
    d = hist(f"-A {VIP} -s mh", f"-a {VIP} -r 10.1.0.1:8080 {fwd}")
    assert servers(d)[0][1] == 80


def test_masq_server_keeps_its_port_and_defaults_to_service_port():
    d = hist(
        f"-A {VIP} -s mh", f"-a {VIP} -r 10.1.0.1:8080 -m", f"-a {VIP} -r 10.1.0.2 -m"
    )
    assert [s[1] for s in servers(d)] == [80, 8080]


def test_edit_service_replaces_flags_and_scheduler():
    d = hist(f"-A {VIP} -s mh -b mh-fallback,mh-port")
    assert (
        d.services[0].flags & (FLAG_FALLBACK | FLAG_PORT) == FLAG_FALLBACK | FLAG_PORT
    )
    d = hist(f"-A {VIP} -s mh -b mh-fallback,mh-port", f"-E {VIP} -s mh")
    assert d.services[0].flags == 0
    d = hist(f"-A {VIP} -s mh", f"-E {VIP}")
    assert d.services[0].scheduler == "wlc"


def test_flag_change_needs_no_rebuild_but_changes_lookups():
    base = [f"-A {VIP} -s mh"] + [f"-a {VIP} -r 10.1.0.{i}:80 -m" for i in range(1, 9)]
    d1 = hist(*base)
    d2 = hist(*base, f"-E {VIP} -s mh -b mh-port")
    np.testing.assert_array_equal(d1.services[0].table, d2.services[0].table)
    flows = [("tcp", f"192.0.2.{i}", 1000 + i, "10.0.0.1", 80) for i in range(200)]
    a = [maglevx.lookup(f, d1) for f in flows]
    b = [maglevx.lookup(f, d2) for f in flows]
    assert [str(x) for x in a] != [str(x) for x in b]


def test_upstream_drained_server_keeps_slots_and_refuses_flows():
    lines = [f"-A {VIP} -s mh"] + [f"-a {VIP} -r 10.1.0.{i}:80 -m" for i in range(1, 5)]
    before = hist(*lines)
    after = hist(*lines, f"-e {VIP} -r 10.1.0.2:80 -m -w 0")
    np.testing.assert_array_equal(before.services[0].table, after.services[0].table)
    drained = {
        i
        for i in range(300)
        if str(maglevx.lookup(("tcp", f"192.0.2.{i % 250}", i, "10.0.0.1", 80), before))
        == "10.1.0.2:80"
    }
    assert drained
    for i in drained:
        assert (
            maglevx.lookup(("tcp", f"192.0.2.{i % 250}", i, "10.0.0.1", 80), after)
            is None
        )


def test_fallback_moves_flows_off_a_drained_server():
    lines = [f"-A {VIP} -s mh -b mh-fallback"] + [
        f"-a {VIP} -r 10.1.0.{i}:80 -m" for i in range(1, 5)
    ]
    d = hist(
        *lines, f"-e {VIP} -r 10.1.0.2:80 -m -w 0", f"-E {VIP} -s mh -b mh-fallback"
    )
    picks = {
        str(maglevx.lookup(("tcp", f"192.0.2.{i}", 9, "10.0.0.1", 80), d))
        for i in range(250)
    }
    assert "10.1.0.2:80" not in picks and "None" not in picks


def test_backport_weight_zero_is_as_if_absent_but_keeps_position():
    lines = [f"-A {VIP} -s mh"] + [
        f"-a {VIP} -r 10.1.0.{i}:80 -m -w {i}" for i in range(1, 6)
    ]
    drained = hist(*lines, f"-e {VIP} -r 10.1.0.3:80 -m -w 0", variant="backport")
    absent = hist(*lines, f"-d {VIP} -r 10.1.0.3:80", variant="backport")
    restored = hist(
        *lines,
        f"-e {VIP} -r 10.1.0.3:80 -m -w 0",
        f"-e {VIP} -r 10.1.0.3:80 -m -w 3",
        variant="backport",
    )
    original = hist(*lines, variant="backport")

    def named(d):
        s = d.services[0]
        return [str(s.table_servers[i]) for i in s.table.tolist()]

    assert named(drained) == named(absent)
    assert named(restored) == named(original)


def test_backport_always_hashes_the_port():
    lines = [f"-A {VIP} -s mh"] + [f"-a {VIP} -r 10.1.0.{i}:80 -m" for i in range(1, 9)]
    up = hist(*lines, f"-E {VIP} -s mh -b mh-port")
    bp = hist(*lines, variant="backport")
    flows = [("tcp", f"192.0.2.{i}", 2000 + i, "10.0.0.1", 80) for i in range(100)]
    assert [str(maglevx.lookup(f, up)) for f in flows] == [
        str(maglevx.lookup(f, bp)) for f in flows
    ]


def test_ipv6_and_fwmark_services():
    d = hist(
        "-A -u [fd00::1]:53 -s mh",
        "-a -u [fd00::1]:53 -r [fd00:1::5]:53 -m",
        "-A -f 7 -6 -s mh",
        "-a -f 7 -6 -r fd00:1::6 -g",
    )
    assert d.services[0].family == 6 and d.services[1].key == ("fwmark", 7, 6)
    assert servers(d, 1) == [("fd00:1::6", 0, 1, 1)]
    rs = maglevx.lookup(("udp", "fd00:9::1", 5, "fd00::1", 53), d)
    assert str(rs) == "[fd00:1::5]:53"
    rs = maglevx.lookup(("tcp", "fd00:9::1", 5, "fd00::99", 22), d, fwmark=7)
    assert str(rs) == "[fd00:1::6]:0"


def test_clear_and_delete_service():
    d = hist(f"-A {VIP} -s mh", "-A -u 10.0.0.1:53 -s mh", f"-D {VIP}")
    assert [s.name for s in d.services] == ["UDP 10.0.0.1:53"]
    d = hist(f"-A {VIP} -s mh", "-C")
    assert d.services == ()


def test_accepts_ipvsadm_prefix_comments_and_long_options():
    d = hist(
        "# comment",
        "ipvsadm --add-service --tcp-service 10.0.0.1:80 --scheduler mh --sched-flags mh-port",
        "ipvsadm --add-server -t 10.0.0.1:80 --real-server 10.1.0.1:80 --masquerading --weight=3",
    )
    assert servers(d) == [("10.1.0.1", 80, 3, 3)]


def test_more_servers_than_slots_keeps_old_table():
    lines = [f"-A {VIP} -s mh"] + [
        f"-a {VIP} -r 10.1.{i // 250}.{i % 250}:80 -m" for i in range(252)
    ]
    d = hist(*lines, table_size=251)
    s = d.services[0]
    assert len(s.real_servers) == 252 and len(s.table_servers) == 251


@pytest.mark.parametrize("variant", ["upstream", "backport"])
def test_server_deleted_above_m_keeps_its_slots(variant):
    """After a refused rebuild the table still points at a deleted server.

    In-tree (docs/kernel-facts.md, test_kernel_robustness: over-m): it is
    still scheduled. kmod/ checks IP_VS_DEST_F_AVAILABLE, which the deletion
    cleared (test_kmod_hardening, failed delete): no destination there.
    """
    lines = [f"-A {VIP} -s mh"] + [
        f"-a {VIP} -r 10.1.{i // 250}.{i % 250}:80 -m" for i in range(252)
    ]
    d = hist(*lines, table_size=251, variant=variant)
    s = d.services[0]
    gone = s.table_servers[0]
    d.apply(f"-d {VIP} -r {gone.endpoint}")  # 251 left: the rebuild succeeds
    assert gone not in s.table_servers
    d = hist(*lines, table_size=251, variant=variant)
    s = d.services[0]
    gone = s.table_servers[0]
    d.apply(f"-a {VIP} -r 10.9.0.1:80 -m")  # 253: refused, old table stays
    d.apply(f"-d {VIP} -r {gone.endpoint}")  # 252: refused again
    assert s.table_servers[0] == gone and gone not in s.real_servers
    slot = int((s.table == 0).nonzero()[0][0])
    hits = [
        rs
        for port in range(20000)
        if core.slot(251, 64, 0xC0000201, port) == slot
        for rs in [s.snapshot.lookup(0xC0000201, port)]
    ]
    assert hits, "no flow of the sample hashes to the deleted server's slot"
    if variant == "upstream":
        assert all(rs == gone for rs in hits)
    else:
        assert all(rs is None for rs in hits)


ERRORS = [
    ("-A -t 10.0.0.1:80 -s mh\n-A -t 10.0.0.1:80 -s mh", 2, "already exists"),
    (
        "-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m",
        3,
        "already exists",
    ),
    (
        "-A -t 10.0.0.1:80 -s mh\n-e -t 10.0.0.1:80 -r 10.1.0.1:80 -m",
        2,
        "no such real server",
    ),
    (
        "-A -t 10.0.0.1:80 -s mh\n-d -t 10.0.0.1:80 -r 10.1.0.1:80",
        2,
        "no such real server",
    ),
    ("-a -t 10.0.0.1:80 -r 10.1.0.1:80", 1, "no such service"),
    (
        "-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -w 70000",
        2,
        "'-w': weight 70000 is outside 0..65535",
    ),
    (
        "-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -w -1",
        2,
        "'-w': weight '-1' is not a number",
    ),
    ("-A -t 10.0.0.300:80 -s mh", 1, "'-t': '10.0.0.300' is not a numeric IP address"),
    ("-A -t 10.0.0.1:99999 -s mh", 1, "'-t': port 99999 is outside 0..65535"),
    ("-A -t 10.0.0.1:80 -s maglev", 1, "'-s': unknown scheduler 'maglev'"),
    (
        "-A -t 10.0.0.1:80 -s mh -b mh-bogus",
        1,
        "'-b': invalid scheduler flag 'mh-bogus'",
    ),
    ("-A -t 10.0.0.1:80 -s rr -b mh-port", 1, "needs scheduler 'mh'"),
    ("-A -t 10.0.0.1:80 -s mh -q", 1, "unknown option '-q'"),
    ("-A -t 10.0.0.1:80 -s", 1, "'-s': option -s needs a value"),
    ("-X -t 10.0.0.1:80", 1, "must start with a command"),
    ("-L -n", 1, "does not change the configuration"),
    ("-A -t 10.0.0.1:0 -s mh", 1, "zero port"),
    ("-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -r [fd00::1]:80 -m", 2, "not IPv4"),
    ("-A -t 10.0.0.1:80 -s mh -w 3", 1, "'-w': option -w is not allowed"),
    ("-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -m", 2, "no real server given"),
    ('-A -t "10.0.0.1:80 -s mh', 1, "cannot split line"),
]


@pytest.mark.parametrize("text,line,message", ERRORS, ids=[e[2] for e in ERRORS])
def test_errors_name_file_line_and_field(text, line, message):
    with pytest.raises(MaglevxError) as err:
        Director.from_history(text, source="h.txt")
    assert err.value.source == "h.txt" and err.value.line == line
    assert str(err.value).startswith(f"h.txt:{line}: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"variant": "x"}, "variant"),
        ({"word_size": 16}, "word_size"),
        ({"table_size": 4000}, "table_size"),
    ],
)
def test_bad_director_parameters(kw, field):
    with pytest.raises(MaglevxError) as err:
        Director(**kw)
    assert err.value.field == field


def test_lookup_errors():
    d = hist(f"-A {VIP} -s mh", "-A -t 10.0.0.2:80 -s rr")
    with pytest.raises(MaglevxError, match="no virtual service"):
        maglevx.lookup(("tcp", "192.0.2.1", 1, "10.0.0.9", 80), d)
    with pytest.raises(MaglevxError, match="not mh"):
        maglevx.lookup(("tcp", "192.0.2.1", 1, "10.0.0.2", 80), d)
    with pytest.raises(MaglevxError, match="'sport'"):
        maglevx.lookup(("tcp", "192.0.2.1", 70000, "10.0.0.1", 80), d)
    with pytest.raises(MaglevxError, match="'saddr'"):
        maglevx.lookup(("tcp", "192.0.2", 1, "10.0.0.1", 80), d)
    with pytest.raises(MaglevxError, match="'proto'"):
        maglevx.lookup(("icmp", "192.0.2.1", 1, "10.0.0.1", 80), d)
    with pytest.raises(MaglevxError, match="5 fields"):
        maglevx.lookup(("tcp", "192.0.2.1", 1, "10.0.0.1"), d)


def test_lookup_accepts_ipaddress_objects_and_empty_service():
    d = hist(f"-A {VIP} -s mh")
    assert (
        maglevx.lookup(
            (
                "tcp",
                ipaddress.ip_address("192.0.2.1"),
                1,
                ipaddress.ip_address("10.0.0.1"),
                80,
            ),
            d,
        )
        is None
    )


def test_bulk_lookup_equals_scalar_lookup():
    d = hist(
        "-A -t [fd00::1]:80 -s mh -b mh-port",
        *[f"-a -t [fd00::1]:80 -r [fd00:1::{i}]:80 -m -w {i}" for i in range(1, 20)],
    )
    s = d.services[0]
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (500, 16), dtype=np.uint8)
    ports = rng.integers(0, 65536, 500, dtype=np.uint16)
    got = s.lookup_many(raw, ports)
    for row, port, idx in zip(raw, ports, got):
        addr = ipaddress.IPv6Address(bytes(row.tolist()))
        rs = maglevx.lookup(("tcp", addr, int(port), "fd00::1", 80), d)
        assert (rs is None and idx == -1) or rs is s.table_servers[idx]


def test_snapshot_keeps_kernel_order_and_flags():
    text = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:80 mh (mh-fallback,mh-port)
  -> 10.1.0.2:80                  Masq    3      0          0
  -> 10.1.0.1:80                  Route   1      0          0
UDP  [fd00::1]:53 mh persistent 300
  -> [fd00:1::5]:53               Masq    1      0          0
FWM  9 IPv6 mh
"""
    snap = Director.from_snapshot(text)
    hist_d = hist(
        f"-A {VIP} -s mh -b mh-fallback,mh-port",
        f"-a {VIP} -r 10.1.0.1:80 -g -w 1",
        f"-a {VIP} -r 10.1.0.2:80 -m -w 3",
    )
    np.testing.assert_array_equal(snap.services[0].table, hist_d.services[0].table)
    assert snap.services[0].flags == hist_d.services[0].flags
    assert snap.services[1].persistent == 300
    assert snap.services[2].key == ("fwmark", 9, 6)


def test_snapshot_errors_name_the_line():
    with pytest.raises(MaglevxError, match=r"^s:2: "):
        Director.from_snapshot(
            "TCP  10.0.0.1:80 mh\n  -> 10.1.0.2:80 Masq x 0 0\n", source="s"
        )
