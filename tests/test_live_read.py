"""Live reads without a live director: the ipvsadm listing fallback, the records'
JSON round trip, the kernel-facts detection on made-up /proc, /sys and /boot
trees, and the one-line error on a host without IPVS. The reads themselves are
checked against the real kernels in tests/kernel/test_live.py."""

import errno
import gzip
import ipaddress
import os
from pathlib import Path

import pytest

from maglevx import kernelinfo, netlink
from maglevx.errors import MaglevxError

# Seen in a 6.1 guest (tests/kernel/test_live.py): `ipvsadm -Ln --nosort` and its
# --thresholds form after one history.
# Lines printed by ipvsadm 1.31 in the 6.1 guests of tests/kernel/test_live.py
# (`-Ln --nosort` and `--thresholds`), put together in one listing; the
# connection counters 4 and 2 were edited in to have non-zero ones.
DATA = Path(__file__).resolve().parent / "data"
LISTING = (DATA / "ipvsadm-Ln-nosort.txt").read_text()
THRESHOLDS = (DATA / "ipvsadm-Ln-nosort-thresholds.txt").read_text()


def test_listing_fallback_reads_every_field():
    svcs = netlink.parse_listing(LISTING, THRESHOLDS)
    assert [s.name for s in svcs] == [
        "TCP 10.1.0.1:80",
        "UDP [fd00::1]:53",
        "FWM 3638342496 IPv6",  # ipvsadm printed -656624800 (%d)
        "FWM 7",
    ]
    tcp, udp, f6, f4 = svcs
    assert tcp.flags == netlink.SVC_F_SCHED2 and tcp.persistent is None
    assert [r.endpoint for r in tcp.real_servers] == ["10.2.0.2:8080", "10.2.0.1:80"]
    assert tcp.real_servers[0].u_threshold == 100
    assert tcp.real_servers[0].l_threshold == 10
    assert (tcp.real_servers[1].active_conns, tcp.real_servers[1].inactive_conns) == (
        4,
        2,
    )
    assert udp.persistent == 60 and udp.netmask == 64
    assert udp.sched_flag_names == ("mh-fallback", "mh-port")
    assert udp.real_servers[0].forward == "route"
    assert f6.family == 6 and f6.netmask == 74 and f6.real_servers == ()
    assert f4.netmask == 0xFFFFFF00 and f4.netmask_text == "255.255.255.0"
    assert f4.real_servers[0].forward == "tunnel"


def test_render_listing_is_ipvsadms_text():
    svcs = netlink.parse_listing(LISTING, THRESHOLDS)
    assert netlink.render_listing(svcs) == LISTING.split("\n", 1)[1]


def test_json_round_trip():
    svcs = netlink.parse_listing(LISTING, THRESHOLDS)
    assert netlink.services_from_json(netlink.services_to_json(svcs)) == svcs


@pytest.mark.parametrize(
    "text, what",
    [
        ("  -> 10.0.0.1:80  Masq 1 0 0", "real server line before any service"),
        ("TCP  10.1.0.1:80 mh (mh-bogus)", "unknown scheduler flag 'mh-bogus'"),
        ("TCP  10.1.0.1:80 mh\n  -> 10.0.0.1:80 Sideways 1 0 0", "not a real server"),
        ("TCP  10.1.0.999:80 mh", "'10.1.0.999:80' is not address:port"),
        ("BOGUS line", "not a service line"),
    ],
)
def test_listing_errors_name_line_and_field(text, what):
    with pytest.raises(MaglevxError) as ei:
        netlink.parse_listing(text, source="l.txt")
    assert what in str(ei.value)
    assert str(ei.value).startswith("l.txt:")
    assert "\n" not in str(ei.value)


def test_thresholds_listing_must_match():
    with pytest.raises(MaglevxError, match="--thresholds listing disagrees"):
        netlink.parse_listing(LISTING, THRESHOLDS.replace("  -> 10.3.0.1:0", "#"))


@pytest.mark.skipif(os.path.exists("/proc/net/ip_vs"), reason="this host has IPVS")
def test_no_ipvs_is_one_clear_line():
    with pytest.raises(netlink.NetlinkError) as ei:
        netlink.read_services()
    assert ei.value.errno == errno.ENOENT
    assert str(ei.value) == (
        "this kernel has no IPVS (no generic netlink family 'IPVS'): "
        "load it with modprobe ip_vs"
    )


def test_attribute_decoding_of_a_service_and_a_real_server():
    """The byte layouts of include/uapi/linux/ip_vs.h (checked live in the guests)."""
    import struct

    a = netlink._attr
    svc = (
        a(netlink.SVC_AF, struct.pack("=H", 10))
        + a(netlink.SVC_PROTOCOL, struct.pack("=H", 17))
        + a(netlink.SVC_ADDR, ipaddress.IPv6Address("fd00::1").packed)
        + a(netlink.SVC_PORT, struct.pack("!H", 53))
        + a(netlink.SVC_SCHED_NAME, b"mh\0")
        + a(netlink.SVC_FLAGS, struct.pack("=II", 0x1 | 0x2 | 0x10, 0xFFFFFFFF))
        + a(netlink.SVC_TIMEOUT, struct.pack("=I", 60))
        + a(netlink.SVC_NETMASK, struct.pack("=I", 64))
    )
    s, key = netlink._service(svc)
    assert s.name == "UDP [fd00::1]:53" and s.flags == 0x11 and s.persistent == 60
    assert s.netmask == 64
    dest = (
        a(netlink.DEST_ADDR, ipaddress.IPv4Address("10.0.0.9").packed + b"\0" * 12)
        + a(netlink.DEST_PORT, struct.pack("!H", 8080))
        + a(netlink.DEST_FWD_METHOD, struct.pack("=I", 2))
        + a(netlink.DEST_WEIGHT, struct.pack("=i", 7))
        + a(netlink.DEST_ADDR_FAMILY, struct.pack("=H", 2))
    )
    r = netlink._dest(dest, 6)
    assert (r.endpoint, r.forward, r.weight) == ("10.0.0.9:8080", "tunnel", 7)


# -- kernel facts ------------------------------------------------------------


def _tree(
    tmp_path,
    *,
    kallsyms=None,
    config=None,
    config_gz=None,
    params=None,
    loaded=True,
    eqt=None,
):
    root = tmp_path / "root"
    (root / "proc" / "sys" / "net" / "ipv4" / "vs").mkdir(parents=True)
    (root / "boot").mkdir()
    if kallsyms is not None:
        (root / "proc" / "kallsyms").write_text(kallsyms)
    if config is not None:
        (root / "boot" / "config-9.9.9-test").write_text(config)
    if config_gz is not None:
        (root / "proc" / "config.gz").write_bytes(gzip.compress(config_gz.encode()))
    mod = root / "sys" / "module" / "ip_vs_mh"
    if loaded:
        mod.mkdir(parents=True)
    if params:
        (mod / "parameters").mkdir()
        for k, v in params.items():
            (mod / "parameters" / k).write_text(v + "\n")
        (mod / "version").write_text("0.1.0\n")
    if eqt is not None:
        (root / "proc/sys/net/ipv4/vs/expire_quiescent_template").write_text(eqt)
    return root


def test_facts_in_tree_64bit_from_boot_config(tmp_path):
    root = _tree(
        tmp_path,
        kallsyms="0000000000000000 A fixed_percpu_data\n",
        config="CONFIG_IP_VS_MH=m\nCONFIG_IP_VS_MH_TAB_INDEX=12\n",
        eqt="0\n",
    )
    f = kernelinfo.detect(root, release="9.9.9-test")
    assert (f.word_size, f.table_size, f.variant, f.mh_module) == (
        64,
        4093,
        "upstream",
        "in-tree",
    )
    assert f.expire_quiescent_template is False and f.warnings == []


def test_facts_32bit_and_proc_config_gz(tmp_path):
    root = _tree(
        tmp_path,
        kallsyms="c1000000 T _text\n",
        config_gz="CONFIG_IP_VS_MH=m\nCONFIG_IP_VS_MH_TAB_INDEX=8\n",
        eqt="1",
    )
    f = kernelinfo.detect(root, release="9.9.9-test")
    assert (f.word_size, f.table_size) == (32, 251)
    assert f.sources["table_size"].endswith("config.gz CONFIG_IP_VS_MH_TAB_INDEX=8")
    assert f.expire_quiescent_template is True


def test_facts_our_module(tmp_path):
    root = _tree(
        tmp_path,
        kallsyms="0000000000000000 A x\n",
        params={"table_size": "251", "hash_port": "N"},
    )
    f = kernelinfo.detect(root, release="9.9.9-test")
    assert (f.mh_module, f.variant, f.table_size) == ("maglevx", "backport", 251)
    assert f.backport_hash_port is False and f.mh_version == "0.1.0"
    assert f.warnings == []


def test_facts_unknown_are_named_with_their_default(tmp_path):
    root = _tree(tmp_path, loaded=False)
    f = kernelinfo.detect(root, release="9.9.9-test")
    assert f.mh_module is None and f.table_size == 4093 and f.word_size == 64
    assert any("word size unknown" in w and "taken as 64" in w for w in f.warnings)
    assert any("table size unknown" in w and "taken as 4093" in w for w in f.warnings)


def test_facts_kernel_without_mh(tmp_path):
    root = _tree(
        tmp_path,
        kallsyms="0000000000000000 A x\n",
        loaded=False,
        config="CONFIG_IP_VS=m\n# CONFIG_IP_VS_MH is not set\n",
    )
    f = kernelinfo.detect(root, release="9.9.9-test")
    assert any("has no mh scheduler" in w for w in f.warnings)
