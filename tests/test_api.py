"""The Python API as a notebook or a script uses it (issue 16's list).

Each test names what a user hit before the redesign; each failed then.
"""

import ast
import copy
import dataclasses
import ipaddress
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import maglevx
from maglevx import Director, MaglevxError, RealServer, lookup
from maglevx.backend import core
from maglevx.model import ServiceConfig

ROOT = Path(__file__).resolve().parent.parent
VIP = "-t 10.0.0.1:80"
HISTORY = "\n".join(
    [f"-A {VIP} -s mh -b mh-port"]
    + [f"-a {VIP} -r 10.1.0.{i}:80 -m -w {i % 3 + 1}" for i in range(1, 9)]
    + ["-A -u [fd00::1]:53 -s mh -b mh-port,mh-fallback"]
    + [f"-a -u [fd00::1]:53 -r [fd00:1::{i}]:53 -m" for i in range(1, 5)]
)


def test_pickle_and_deepcopy_after_use():
    d = Director.from_history(HISTORY)
    before = lookup(("tcp", "192.0.2.1", 1234, "10.0.0.1", 80), d)
    d.services[0].lookup_many(np.arange(10, dtype=np.uint32), np.arange(10))
    for clone in (pickle.loads(pickle.dumps(d)), copy.deepcopy(d), d.copy()):
        assert clone == d and clone is not d
        assert lookup(("tcp", "192.0.2.1", 1234, "10.0.0.1", 80), clone) == before
        np.testing.assert_array_equal(clone.services[0].table, d.services[0].table)
        clone.apply(f"-d {VIP} -r 10.1.0.1:80")
        assert clone != d  # the original is untouched
        assert len(d.services[0].real_servers) == 8


def test_equal_histories_equal_directors_and_short_repr():
    a, b = Director.from_history(HISTORY), Director.from_history(HISTORY)
    assert a == b
    assert len(repr(a)) < 120 and len(repr(a.services[0])) < 120
    b.apply(f"-e {VIP} -r 10.1.0.3:80 -m -w 0")
    assert a != b
    assert Director.from_history(HISTORY, variant="backport") != a


def test_table_is_read_only_and_the_core_keeps_its_own_copy():
    svc = Director.from_history(HISTORY).services[0]
    with pytest.raises(ValueError):
        svc.table[:] = 100
    with pytest.raises(ValueError):
        svc.availability()[:] = 0
    table = np.array(svc.table)  # a writable copy
    avail = np.ones(len(svc.table_servers), np.uint8)
    sched = core.Scheduler(4093, 64, table, avail, False)
    want = sched.lookup_many(np.arange(100, dtype=np.uint32))
    table[:] = 65000  # the caller's array, not the scheduler's
    np.testing.assert_array_equal(
        sched.lookup_many(np.arange(100, dtype=np.uint32)), want
    )


def test_bulk_protocol_is_case_insensitive():
    svc = Director.from_history(HISTORY).services[0]
    a = np.arange(1000, dtype=np.uint32)
    p = np.arange(1000) % 65536
    np.testing.assert_array_equal(
        svc.lookup_many(a, p, protocol="TCP"), svc.lookup_many(a, p, protocol="tcp")
    )
    with pytest.raises(MaglevxError, match="protocol"):
        svc.lookup_many(a, p, protocol="icmp")


def test_bulk_needs_ports_when_the_service_hashes_them():
    svc = Director.from_history(HISTORY).services[0]
    with pytest.raises(MaglevxError, match="sports"):
        svc.lookup_many(np.arange(3, dtype=np.uint32))


@pytest.mark.parametrize(
    "saddrs,sports,field",
    [
        ([-1], [1], "saddrs"),
        ([2**32 + 5], [1], "saddrs"),
        ([1.5], [1], "saddrs"),
        ([float("nan")], [1], "saddrs"),
        ([1], [70000], "sports"),
        ([1], [-1], "sports"),
        ([1], [80.7], "sports"),
        ([1], [float("nan")], "sports"),
        ([1, 2], [1], "sports"),
        (["1.2.3.4", "x"], [1, 2], "saddrs"),
        ("1.2.3.4", [1], "saddrs"),
    ],
)
def test_bulk_input_is_checked(saddrs, sports, field):
    svc = Director.from_history(HISTORY).services[0]
    with pytest.raises(MaglevxError) as exc:
        svc.lookup_many(saddrs, sports)
    assert exc.value.field == field


def test_bulk_takes_address_strings_and_an_out_buffer():
    d = Director.from_history(HISTORY)
    v4, v6 = d.services
    addrs = ["192.0.2.1", "198.51.100.7", "203.0.113.9"]
    ports = [1, 1024, 65535]
    want = [
        -1 if rs is None else v4.table_servers.index(rs)
        for rs in (v4.schedule(a, p, "tcp") for a, p in zip(addrs, ports))
    ]
    out = np.full(3, 7, np.int32)
    got = v4.lookup_many(addrs, ports, out=out)
    assert got.tolist() == want and out.tolist() == want
    six = ["2001:db8::1", "2001:db8::2"]
    want6 = [v6.table_servers.index(v6.schedule(a, 9, "udp")) for a in six]
    assert v6.lookup_many(six, [9, 9], protocol="udp").tolist() == want6
    with pytest.raises(MaglevxError, match="out"):
        v4.lookup_many(addrs, ports, out=np.zeros(2, np.int32))
    with pytest.raises(MaglevxError, match="out"):
        v4.lookup_many(addrs, ports, out=np.zeros(3, np.float64))


@pytest.mark.parametrize(
    "call",
    [
        lambda d: lookup(None, d),
        lambda d: lookup(("tcp", "1.2.3.4", 1, "10.0.0.1"), d),
        lambda d: lookup(("tcp", "1.2.3.4", 1, "10.0.0.1", 80), "director"),
        lambda d: Director.from_history(Path("history.txt")),
        lambda d: Director.from_history(b"-A -t 10.0.0.1:80 -s mh"),
        lambda d: Director.from_snapshot(42),
        lambda d: d.apply(None),
        lambda d: Director(table_size="4093"),
        lambda d: Director(variant="mainline"),
    ],
)
def test_wrong_argument_types_get_one_clear_error(call):
    d = Director.from_history(HISTORY)
    with pytest.raises(MaglevxError):
        call(d)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"weight": -1}, "weight"),
        ({"weight": 70000}, "weight"),
        ({"weight": True}, "weight"),
        ({"forward": "nat"}, "forward"),
        ({"u_threshold": 1, "l_threshold": 2}, "l_threshold"),
    ],
)
def test_editing_checks_its_arguments(kwargs, field):
    svc = Director.from_history(HISTORY).services[0]
    with pytest.raises(MaglevxError) as exc:
        svc.add_server("10.9.0.1", 80, **kwargs)
    assert exc.value.field == field
    assert len(svc.real_servers) == 8  # nothing half-done


def test_constructors_check_family_and_values():
    d = Director.from_history(HISTORY)
    with pytest.raises(MaglevxError, match="IPv4"):
        d.services[0].add_server("fd00::9", 80)
    with pytest.raises(MaglevxError, match="family"):
        d.add_service("tcp", "10.0.0.2", 80, family=6, scheduler="mh")
    with pytest.raises(MaglevxError):
        RealServer("10.0.0.1", 80, weight=-3)
    with pytest.raises(MaglevxError):
        RealServer("not an address", 80)


_CONFIG = {
    "protocol": "tcp",
    "address": "10.0.0.1",
    "port": 80,
    "fwmark": 0,
    "family": 4,
    "scheduler": "mh",
    "flags": 0,
}


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"protocol": "icmp"}, "protocol"),
        ({"scheduler": "maglev"}, "scheduler"),
        ({"port": 70000}, "port"),
        ({"protocol": "fwmark", "fwmark": 0}, "fwmark"),
        ({"family": 6}, "family"),
        ({"address": None}, "address"),
        ({"persistent": -1}, "persistent"),
        ({"netmask": "255.255.255.256"}, "netmask"),
        ({"address": "fd00::1", "family": 6, "netmask": "129"}, "netmask"),
    ],
)
def test_service_config_checks_itself(changes, field):
    """ServiceConfig is public: built directly, it checks as add_service does."""
    with pytest.raises(MaglevxError) as exc:
        ServiceConfig(**{**_CONFIG, **changes})
    assert exc.value.field == field


def test_service_config_normalises_itself():
    config = ServiceConfig(**{**_CONFIG, "port": "80", "family": None})
    d = Director()
    assert d.add_service("tcp", "10.0.0.1", 80, scheduler="mh").config == config
    assert config.address == ipaddress.ip_address("10.0.0.1") and config.family == 4
    assert config.mask == 0xFFFFFFFF
    masked = dataclasses.replace(config, netmask="255.255.255.0", persistent=60)
    assert masked.mask == 0xFFFFFF00 and masked.flags == 1  # IP_VS_SVC_F_PERSISTENT
    assert pickle.loads(pickle.dumps(masked)) == masked != config


def test_parameters_cannot_be_changed_under_a_director():
    d = Director.from_history(HISTORY)
    for name, value in (
        ("variant", "backport"),
        ("word_size", 32),
        ("table_size", 251),
    ):
        with pytest.raises(AttributeError):
            setattr(d, name, value)
    with pytest.raises(AttributeError):
        d.services = ()
    with pytest.raises(AttributeError):
        d.services[0].real_servers[0].weight = 0  # frozen: edit_server instead


def test_editing_api_is_the_kernel_history():
    d = Director()
    svc = d.add_service("tcp", "10.0.0.1", 80, scheduler="mh")
    for i in range(1, 6):
        svc.add_server(f"10.1.0.{i}", 80, weight=i, forward="masq")
    svc.edit_server("10.1.0.2", 80, weight=0, forward="masq")
    svc.remove_server("10.1.0.4", 80)
    svc.add_server("10.1.0.4", 80, weight=2, forward="masq")
    d.edit_service(svc.key, scheduler="mh", flags=0x10)
    want = Director.from_history(
        ["-A -t 10.0.0.1:80 -s mh"]
        + [f"-a -t 10.0.0.1:80 -r 10.1.0.{i}:80 -m -w {i}" for i in range(1, 6)]
        + [
            "-e -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 0",
            "-d -t 10.0.0.1:80 -r 10.1.0.4:80",
            "-a -t 10.0.0.1:80 -r 10.1.0.4:80 -m -w 2",
            "-E -t 10.0.0.1:80 -s mh -b mh-port",
        ]
    )
    assert d == want
    np.testing.assert_array_equal(d.services[0].table, want.services[0].table)
    # the kernel's rules: head insertion, last_weight kept on an edit to 0
    assert [rs.endpoint for rs in svc.real_servers][:2] == [
        "10.1.0.4:80",
        "10.1.0.5:80",
    ]
    assert svc.find(ipaddress.ip_address("10.1.0.2"), 80).last_weight == 2


def test_editing_one_director_leaves_anothers_caches_alone():
    a, b = Director.from_history(HISTORY), Director.from_history(HISTORY)
    flow = ("tcp", "192.0.2.1", 1234, "10.0.0.1", 80)
    lookup(flow, b)
    snap, routes = b.services[0].snapshot, dict(b._routes)
    for i in range(20):
        a.apply(f"-a {VIP} -r 10.2.0.{i + 1}:80 -m")
    assert b.services[0].snapshot is snap and b._routes == routes


def test_threads_see_only_tables_that_existed():
    """Readers and one editor: every answer comes from a whole snapshot."""
    d = Director.from_history(HISTORY)
    svc = d.services[0]
    rng = np.random.default_rng(1)
    addrs = rng.integers(0, 2**32, 5000, dtype=np.uint32)
    ports = rng.integers(0, 65536, 5000, dtype=np.uint16)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen = 0

    def reader() -> None:
        nonlocal seen
        try:
            while not stop.is_set():
                snap = svc.snapshot
                idx = snap.lookup_many(addrs, ports, family=4)
                # recompute from this snapshot's own table and availability
                ref = core.Scheduler(4093, 64, snap.table, snap.avail, snap.fallback)
                want = ref.lookup_many(addrs, ports).view(np.int32)
                np.testing.assert_array_equal(idx, want)
                assert int(idx.max()) < len(snap.servers)
                rs = lookup(("tcp", "192.0.2.9", 999, "10.0.0.1", 80), d)
                assert rs is None or rs.address.version == 4
                seen += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    lines = []
    try:
        for i in range(200):
            lines.append(f"-a {VIP} -r 10.3.0.{i + 1}:80 -m -w {i % 5}")
            if i % 3 == 2:
                lines.append(f"-d {VIP} -r 10.3.0.{i}:80")
            d.apply(lines[-1] if i % 3 != 2 else lines[-2])
            if i % 3 == 2:
                d.apply(lines[-1])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert seen > 0
    fresh = Director.from_history("\n".join([HISTORY, *lines]))
    assert fresh == d
    np.testing.assert_array_equal(fresh.services[0].table, svc.table)


def test_no_import_cycles_even_inside_functions():
    """maglevx's modules form layers: no module imports one that imports it."""
    pkg = ROOT / "maglevx"
    graph: dict[str, set[str]] = {}
    for path in pkg.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("maglevx"):
                    for alias in node.names:
                        sub = f"{node.module}.{alias.name}"
                        deps.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).exists()
                                 or (ROOT / sub.replace(".", "/")).is_dir()
                                 else node.module)  # fmt: skip
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("maglevx"))
    for name in graph:
        graph[name].discard(name)
        graph[name].discard("maglevx")  # the package's own __init__ re-exports

    def cycle_from(start: str) -> list[str] | None:
        stack, path = [(start, iter(sorted(graph.get(start, ()))))], [start]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                continue
            if nxt == start:
                return [*path, nxt]
            if nxt not in path and nxt in graph:
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
        return None

    cycles = [c for n in sorted(graph) if (c := cycle_from(n))]
    assert not cycles, " -> ".join(cycles[0])


class EditingMachine(RuleBasedStateMachine):
    """Edits through the API equal a director rebuilt from the same lines."""

    def __init__(self) -> None:
        super().__init__()
        self.d = Director(table_size=251)
        self.d.add_service("tcp", "10.0.0.1", 80, scheduler="mh", flags=0x10)
        self.lines = ["-A -t 10.0.0.1:80 -s mh -b mh-port"]
        self.present: dict[int, int] = {}

    @rule(i=st.integers(1, 40), w=st.integers(0, 300))
    def add(self, i: int, w: int) -> None:
        svc = self.d.services[0]
        if i in self.present:
            with pytest.raises(MaglevxError, match="already exists"):
                svc.add_server(f"10.1.0.{i}", 80, weight=w, forward="masq")
            return
        svc.add_server(f"10.1.0.{i}", 80, weight=w, forward="masq")
        self.lines.append(f"-a -t 10.0.0.1:80 -r 10.1.0.{i}:80 -m -w {w}")
        self.present[i] = w

    @precondition(lambda self: self.present)
    @rule(data=st.data(), w=st.integers(0, 300))
    def edit(self, data: st.DataObject, w: int) -> None:
        i = data.draw(st.sampled_from(sorted(self.present)))
        self.d.services[0].edit_server(f"10.1.0.{i}", 80, weight=w, forward="masq")
        self.lines.append(f"-e -t 10.0.0.1:80 -r 10.1.0.{i}:80 -m -w {w}")

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.present)))
        self.d.services[0].remove_server(f"10.1.0.{i}", 80)
        self.lines.append(f"-d -t 10.0.0.1:80 -r 10.1.0.{i}:80")
        del self.present[i]

    @rule(flags=st.sampled_from(["mh-port", "mh-fallback", "mh-port,mh-fallback"]))
    def flags(self, flags: str) -> None:
        self.d.apply(f"-E -t 10.0.0.1:80 -s mh -b {flags}")
        self.lines.append(f"-E -t 10.0.0.1:80 -s mh -b {flags}")

    @invariant()
    def equals_a_fresh_director(self) -> None:
        fresh = Director.from_history(self.lines, table_size=251)
        assert fresh == self.d
        a, b = fresh.services[0], self.d.services[0]
        np.testing.assert_array_equal(a.table, b.table)
        np.testing.assert_array_equal(a.availability(), b.availability())
        flows = np.arange(0, 2**32, 2**32 // 300, dtype=np.uint64).astype(np.uint32)
        ports = np.arange(len(flows)) % 65536
        np.testing.assert_array_equal(
            a.lookup_many(flows, ports), b.lookup_many(flows, ports)
        )


TestEditingMachine = EditingMachine.TestCase
TestEditingMachine.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)


def test_public_names():
    for name in maglevx.__all__:
        assert getattr(maglevx, name) is not None


def test_director_bulk_over_columns_equals_scalar_lookups():
    d = Director.from_history(HISTORY)
    rng = np.random.default_rng(5)
    n = 400
    v6 = rng.random(n) < 0.3
    protos = ["udp" if x else rng.choice(["tcp", "TCP"]) for x in v6]
    saddrs = [
        str(ipaddress.ip_address(int(rng.integers(2**32)) + (2**100 if x else 0)))
        if x
        else str(ipaddress.IPv4Address(int(rng.integers(2**32))))
        for x in v6
    ]
    daddrs = ["fd00::1" if x else "10.0.0.1" for x in v6]
    dports = [53 if x else 80 for x in v6]
    dports[7] = 81  # no service there: None, or an error when strict
    sports = rng.integers(0, 65536, n)
    got = d.lookup_many(protos, saddrs, sports, daddrs, dports)
    for i in range(n):
        if i == 7:
            assert got[i] is None
            continue
        flow = (protos[i], saddrs[i], int(sports[i]), daddrs[i], dports[i])
        assert got[i] == lookup(flow, d), flow
    with pytest.raises(MaglevxError, match="row 7"):
        d.lookup_many(protos, saddrs, sports, daddrs, dports, strict=True)
    with pytest.raises(MaglevxError, match="sports"):
        d.lookup_many(protos, saddrs, sports[:3], daddrs, dports)
    for marks, what in (
        ([-1] * n, "-1 is outside"),
        ([2**33] * n, "is outside 0..4294967295"),
        ([0.5] * n, "expected integers"),
        ([0] * 3, "expected 400 marks"),
    ):
        with pytest.raises(MaglevxError, match=what) as e:
            d.lookup_many(protos, saddrs, sports, daddrs, dports, fwmarks=marks)
        assert e.value.field == "fwmarks"
    # marks that match no fwmark service change nothing
    again = d.lookup_many(protos, saddrs, sports, daddrs, dports, fwmarks=[7] * n)
    assert list(again) == list(got)


@pytest.mark.parametrize(
    "kw",
    [
        {"byte_order": "big"},
        {"variant": "backport", "hash_key": bytes(range(16))},
        {"variant": "backport", "hash_key": "000102030405060708090a0b0c0d0e0f",
         "byte_order": "big", "word_size": 32},
    ],
)  # fmt: skip
def test_byte_order_and_hash_key_reach_the_table_and_lookups(kw):
    from maglevx import _twin
    from maglevx.addresses import fold

    d = Director.from_history(HISTORY, **kw)
    plain = Director.from_history(HISTORY, variant=kw.get("variant", "upstream"))
    svc = d.services[0]
    key = d.hash_key
    hashing = {"byte_order": d.byte_order, "hash_key": key}
    want = _twin.build_table(
        4093, d.word_size, [fold(rs.address) for rs in svc.table_servers],
        [rs.port for rs in svc.table_servers],
        [svc.table_weight(rs) for rs in svc.table_servers], **hashing,
    )  # fmt: skip
    np.testing.assert_array_equal(svc.table, want)
    assert not np.array_equal(svc.table, plain.services[0].table)
    flow = ("tcp", "192.0.2.77", 4242, "10.0.0.1", 80)
    sched = _twin.Scheduler(
        4093, d.word_size, want, svc.availability(), False, **hashing
    )
    idx = sched.lookup(fold(ipaddress.ip_address("192.0.2.77")), 4242)
    assert lookup(flow, d) == svc.table_servers[idx]
    assert pickle.loads(pickle.dumps(d)) == d != plain


def test_hash_key_is_the_modules_only():
    with pytest.raises(MaglevxError, match="module"):
        Director(hash_key=bytes(16))
    with pytest.raises(MaglevxError, match="32 hex digits"):
        Director(variant="backport", hash_key="00ff")
    with pytest.raises(MaglevxError, match="byte order"):
        Director(byte_order="middle")
