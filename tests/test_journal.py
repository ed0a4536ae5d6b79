"""The change journal: diffs of consecutive reads, replayed with the kernel's list
rules (new and re-added real servers at the head), give the later read back.

The replay here is a small simulator of ip_vs_ctl.c's list handling; the kernel
itself replays journals in tests/kernel/test_live.py."""

import ipaddress
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from maglevx import journal
from maglevx.netlink import LiveRealServer, LiveService


def svc(key_port=80, servers=(), **kw):
    base = dict(
        protocol="tcp",
        address=ipaddress.ip_address("10.0.0.1"),
        port=key_port,
        fwmark=0,
        family=4,
        scheduler="mh",
        flags=0,
        timeout=0,
        netmask=0xFFFFFFFF,
    )
    base.update(kw)
    return LiveService(**base, real_servers=tuple(servers))


def rs(i, w=1, fwd="masq", u=0, lo=0):
    return LiveRealServer(ipaddress.ip_address(f"10.1.0.{i}"), 80, fwd, w, u, lo)


FWD = {"-m": "masq", "-g": "route", "-i": "tunnel"}


def replay(services, lines):
    """Apply journal lines with the kernel's rules (list head = index 0)."""
    by = {s.name: s for s in services}
    order = [s.name for s in services]
    for line in lines:
        if line.startswith("#"):
            continue
        t = line.split()
        cmd, name = t[0], f"TCP {t[2]}"
        if cmd == "-A":
            by[name] = svc(int(t[2].split(":")[1]), scheduler=t[4])
            order.append(name)
        elif cmd == "-D":
            del by[name]
            order.remove(name)
        elif cmd in ("-a", "-e", "-d"):
            s = by[name]
            host, port = t[4].rsplit(":", 1)
            addr = ipaddress.ip_address(host.strip("[]"))
            rest = s.real_servers
            cur = [r for r in rest if (r.address, r.port) == (addr, int(port))]
            if cmd == "-d":
                assert cur, line
                by[name] = replace(
                    s, real_servers=tuple(r for r in rest if r not in cur)
                )
                continue
            opts = dict(zip(t[6::2], t[7::2]))
            new = LiveRealServer(
                addr,
                int(port),
                FWD[t[5]],
                int(opts["-w"]),
                int(opts.get("-x", 0)),
                int(opts.get("-y", 0)),
            )
            if cmd == "-a":
                assert not cur, line
                by[name] = replace(s, real_servers=(new, *rest))  # the head
            else:
                assert cur, line
                by[name] = replace(
                    s, real_servers=tuple(new if r in cur else r for r in rest)
                )
    return [by[n] for n in order]


def test_baseline_builds_the_list_in_order():
    s = svc(servers=[rs(3), rs(1, 0), rs(2, 5)])
    lines = journal.baseline([s])
    assert lines[0] == "-A -t 10.0.0.1:80 -s mh"
    assert any("10.1.0.1:80 had weight 0" in ln for ln in lines)
    assert replay([], lines) == [s]


def test_readd_goes_to_the_head_and_edit_to_zero_is_an_edit():
    old = svc(servers=[rs(3), rs(2), rs(1)])
    new = svc(servers=[rs(1), rs(3), rs(2, 0)])  # 1 re-added, 2 drained
    lines = journal.diff([old], [new])
    assert lines == [
        "-d -t 10.0.0.1:80 -r 10.1.0.1:80",
        "-e -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 0",
        "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1",
    ]
    assert replay([old], lines) == [new]


def test_service_lines_carry_every_attribute():
    s = svc(
        flags=0x1 | 0x8 | 0x10 | 0x4, timeout=60, netmask=0xFFFFFF00, protocol="udp"
    )
    assert journal.service_line(s) == (
        "-A -u 10.0.0.1:80 -s mh -b mh-fallback,mh-port -p 60 -M 255.255.255.0 -o"
    )
    f6 = svc(
        protocol="fwmark",
        address=None,
        port=0,
        fwmark=7,
        family=6,
        flags=1,
        timeout=30,
        netmask=64,
    )
    assert journal.service_line(f6, "-E") == "-E -f 7 -6 -s mh -p 30 -M 64"
    r = replace(rs(1, 3, "tunnel", 10, 2), address=ipaddress.ip_address("2001:db8::1"))
    assert (
        journal.server_line(f6, r)
        == "-a -f 7 -6 -r [2001:db8::1]:80 -i -w 3 -x 10 -y 2"
    )


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_changes_replay_exactly(seed):
    rnd = random.Random(seed)
    state = [svc(80, [rs(i, rnd.randint(0, 3)) for i in range(rnd.randint(0, 5))])]
    replayed = replay([], journal.baseline(state))
    assert replayed == state
    for _ in range(8):
        s = state[0]
        servers = list(s.real_servers)
        for _ in range(rnd.randint(1, 4)):
            op = rnd.random()
            present = {r.address for r in servers}
            if op < 0.3:  # add or re-add: the head
                i = rnd.randint(1, 8)
                servers = [r for r in servers if r.address != rs(i).address]
                servers.insert(0, rs(i, rnd.randint(0, 3)))
            elif op < 0.5 and servers:
                servers.pop(rnd.randrange(len(servers)))
            elif servers:
                k = rnd.randrange(len(servers))
                servers[k] = replace(
                    servers[k], weight=rnd.randint(0, 3), u_threshold=rnd.choice([0, 9])
                )
            assert len(present) >= 0
        new = [replace(s, real_servers=tuple(servers))]
        if rnd.random() < 0.1:
            new.append(svc(81, [rs(9)]))
        replayed = replay(replayed, journal.diff(state, new))
        assert replayed == new
        state = new
