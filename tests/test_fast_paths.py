"""The fast paths of lookup() and lookup_many() give what the plain paths give."""

import ipaddress
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import maglevx
from maglevx import Director, MaglevxError, _core, _twin
from maglevx.ipvs import FLAG_FALLBACK, FLAG_PORT
from maglevx.model import parse_five_tuple

HISTORY = """
-A -t 10.0.0.1:80 -s mh -b mh-port
-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 2
-a -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 3
-A -t 10.0.0.1:0 -s mh -p 60
-a -t 10.0.0.1:0 -r 10.2.0.1 -g
-A -u [fd00::1]:53 -s mh -b mh-fallback
-a -u [fd00::1]:53 -r [fd00:1::1]:53 -m
-a -u [fd00::1]:53 -r [fd00:1::2]:53 -m -w 0
-a -u [fd00::1]:53 -r [fd00:1::3]:53 -m
-A -t 10.0.0.9:80 -s rr
-a -t 10.0.0.9:80 -r 10.1.0.9:80 -m
"""


def slow(five_tuple, d, fwmark=None):
    """lookup() as it was before any cache: every step from scratch."""
    try:
        proto, saddr, sport, daddr, dport = parse_five_tuple(five_tuple)
        svc = d.service_for(proto, daddr, dport, fwmark)
        if svc is None:
            return ("error", "no service")
        svc.require_mh()
        if saddr.version != svc.family:
            return ("error", "family")
        sched = _core.Scheduler(
            d.table_size, d.word_size, svc.table, svc.availability(), svc.fallback
        )
        idx = sched.lookup(maglevx.fold_address(saddr), svc.hashed_port(proto, sport))
    except MaglevxError as exc:
        return ("error", str(exc), exc.field)
    return None if idx == _core.NONE else svc.table_servers[idx]


def plain(five_tuple, d, fwmark=None):
    """lookup() through the plain path: a list is never taken by the fast one."""
    try:
        return maglevx.lookup(list(five_tuple), d, fwmark=fwmark)
    except MaglevxError as exc:
        return ("error", str(exc), exc.field)


def fast(five_tuple, d, fwmark=None):
    try:
        rs = maglevx.lookup(tuple(five_tuple), d, fwmark=fwmark)
    except MaglevxError as exc:
        return ("error", str(exc), exc.field)
    return rs


def random_flows(seed, n=300):
    """Mostly flows the fast path takes, some it leaves to the plain path."""
    rng = random.Random(seed)
    odd_daddrs = ["10.0.0.9", "10.0.0.2", " 10.0.0.1", "x", "fd00::1%1"]
    for _ in range(n):
        v6 = rng.random() < 0.3
        if v6:
            saddr = str(ipaddress.IPv6Address(rng.getrandbits(128)))
            daddr, proto, dport = "fd00::1", "udp", 53
        else:
            saddr = str(ipaddress.IPv4Address(rng.getrandbits(32)))
            daddr, proto, dport = "10.0.0.1", "tcp", rng.choice([80, 80, 443])
        sport = rng.randrange(65536)
        if rng.random() < 0.1:
            saddr, daddr = saddr.replace(".", ",", rng.random() < 0.5), saddr
        if rng.random() < 0.1:
            daddr = rng.choice(odd_daddrs)
        if rng.random() < 0.1:
            proto = rng.choice(["TCP", "sctp", "icmp", "udp", "tcp"])
        if rng.random() < 0.1:
            sport = rng.choice([0, "80", 65536, True, -1])
        if rng.random() < 0.3:
            saddr = ipaddress.ip_address(saddr) if "," not in saddr else saddr
            daddr = (
                ipaddress.ip_address(daddr)
                if daddr in ("10.0.0.1", "fd00::1")
                else daddr
            )
        yield (proto, saddr, sport, daddr, dport)


@pytest.mark.parametrize("seed", range(3))
def test_lookup_fast_equals_plain(seed):
    d = Director.from_history(HISTORY)
    for flow in random_flows(seed):
        assert fast(flow, d) == plain(flow, d), flow
        if not isinstance(plain(flow, d), tuple):
            assert fast(flow, d) is slow(flow, d)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.services[0].edit_server("10.1.0.3", 80, weight=0, forward="masq"),
        lambda d: d.services[0].set_overloaded("10.1.0.2", 80),
        lambda d: d.edit_service(
            d.services[0].key, scheduler="mh", flags=d.services[0].flags & ~FLAG_PORT
        ),
        lambda d: d.edit_service(
            d.services[2].key,
            scheduler="mh",
            flags=d.services[2].flags & ~FLAG_FALLBACK,
        ),
        lambda d: d.edit_service(d.services[0].key, scheduler="rr"),
        lambda d: d.remove_service(d.services[0].key),
        lambda d: d.clear(),
        lambda d: d.apply("-A -t 10.0.0.1:443 -s mh"),
        lambda d: d.apply("-d -t 10.0.0.1:80 -r 10.1.0.2:80"),
        lambda d: d.apply("-e -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 0"),
        lambda d: d.apply("-a -t 10.0.0.1:80 -r 10.1.0.7:80 -m -w 5"),
        lambda d: d.apply("-E -t 10.0.0.1:80 -s mh -b mh-fallback"),
    ],
)
def test_changes_reach_the_fast_path(change):
    d = Director.from_history(HISTORY)
    flows = list(random_flows(7, 200))
    before = [fast(f, d) for f in flows]  # fills the caches
    assert before == [plain(f, d) for f in flows]
    change(d)
    after = [fast(f, d) for f in flows]
    assert after == [plain(f, d) for f in flows]
    for f, rs in zip(flows, after):
        if not isinstance(rs, tuple):  # errors: only the plain path words them
            assert rs is slow(f, d), f


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789abcdefABCDEF:.% \t\x00é", max_size=45),
        st.ip_addresses().map(str),
        st.ip_addresses().map(lambda a: a.exploded),
        st.ip_addresses(v=6).map(lambda a: a.compressed.upper()),
        st.builds(
            lambda a, b: f"::ffff:{a}" if b else f"64:ff9b::{a}",
            st.ip_addresses(v=4),
            st.booleans(),
        ),
    ),
    st.sampled_from([4, 6]),
)
def test_inet_pton_accepts_only_what_ipaddress_accepts(text, family):
    table = _core.build_table(251, 64, [1, 2, 3], [80] * 3, [1, 1, 1])
    avail = np.ones(3, np.uint8)
    results = {
        core.Scheduler(251, 64, table, avail, False).lookup_text(family, text, 9)
        for core in (_core, _twin)
    }
    assert len(results) == 1
    (idx,) = results
    if idx == -1:
        return
    address = ipaddress.ip_address(text.strip())  # must not raise
    assert address.version == family
    fold = maglevx.fold_address(address)
    assert idx == _core.Scheduler(251, 64, table, avail, False).lookup(fold, 9)


def test_scheduler_checks_its_arrays():
    table = _core.build_table(251, 64, [1, 2, 3], [80] * 3, [1, 1, 1])
    for core in (_core, _twin):
        with pytest.raises(ValueError, match="beyond avail"):
            core.Scheduler(251, 64, table, np.ones(2, np.uint8), False)
        with pytest.raises(ValueError, match="not 509"):
            core.Scheduler(509, 64, table, np.ones(3, np.uint8), False)


def _service(family, flags):
    vip = "10.0.0.1:80" if family == 4 else "[fd00::1]:80"
    rip = "10.1.{}.{}:80" if family == 4 else "[fd00:1::{}:{}]:80"
    lines = [f"-A -t {vip} -s mh -b {flags}"]
    lines += [f"-a -t {vip} -r {rip.format(i // 200, i % 200 + 1)} -m -w {i % 4}"
              for i in range(60)]  # fmt: skip
    d = Director.from_history(lines)
    svc = d.services[0]
    rs = svc.table_servers[5]
    svc.set_overloaded(rs.address, rs.port)
    return svc


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("flags", ["mh-port", "mh-fallback", "mh-port,mh-fallback"])
@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_bulk_equals_single(family, flags, threads):
    svc = _service(family, flags)
    rng = np.random.default_rng(threads)
    n = 300_001
    shape = (n,) if family == 4 else (n, 4)
    addrs = rng.integers(0, 2**32, shape, dtype=np.uint32)
    ports = rng.integers(0, 65536, n, dtype=np.uint16)
    single = svc.lookup_many(addrs, ports)
    np.testing.assert_array_equal(
        svc.lookup_many(addrs, ports, threads=threads), single
    )
    if family == 6:
        raw = np.ascontiguousarray(addrs.astype(">u4")).view(np.uint8).reshape(n, 16)
        np.testing.assert_array_equal(
            svc.lookup_many(raw, ports, threads=threads), single
        )


@pytest.mark.parametrize("family", [4, 6])
def test_bulk_equals_scalar_lookups(family):
    svc = _service(family, "mh-port,mh-fallback")
    rng = np.random.default_rng(family)
    n = 2000
    shape = (n,) if family == 4 else (n, 4)
    addrs = rng.integers(0, 2**32, shape, dtype=np.uint32)
    ports = rng.integers(0, 65536, n, dtype=np.uint16)
    got = svc.lookup_many(addrs, ports).tolist()
    for i in range(n):
        if family == 4:
            saddr = ipaddress.IPv4Address(int(addrs[i]))
        else:
            words = [int(w) for w in addrs[i]]
            saddr = ipaddress.IPv6Address(
                sum(w << 32 * (3 - k) for k, w in enumerate(words))
            )
        rs = svc.schedule(saddr, int(ports[i]), "tcp")
        assert got[i] == (-1 if rs is None else svc.table_servers.index(rs))


def test_threads_must_be_positive():
    svc = _service(4, "mh-port")
    with pytest.raises(MaglevxError, match="threads"):
        svc.lookup_many(np.zeros(3, np.uint32), threads=0)
