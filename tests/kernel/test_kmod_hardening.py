"""The module's hardening (issue 17) and load-time self-test (issue 15), in real kernels.

Per kernel (6.1 and 6.12) one boot (:mod:`kmod_hardening_vm`) of three builds of
kmod/: the normal one, ``make debug`` (self-test, ``fail_alloc``), and on 6.1 a
``-DMX_NO_RESCHED`` one that shows the soft-lockup test can fail. What each test
asserts, and what it measured, is in its docstring and printed with ``-s``.

Knob: ``MAGLEVX_KMOD_TWINS`` (real servers sharing one permutation, default 6000).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from functools import partial

import pytest
from ipvs_vm import kmod_build, kmod_check, kmod_dump, kmod_keyed, kmod_selftest_kat
from ipvs_vm import kmod_hardening as hv
from ipvs_vm.suite import LazyBoots

KERNELS = ("6.1", "6.12")
NEGATIVE_CONTROL = "6.1"  # the kernel that also boots the -DMX_NO_RESCHED build
TWINS = int(os.environ.get("MAGLEVX_KMOD_TWINS", "6000"))


# -- without a VM ----------------------------------------------------------------


def test_selftest_answers_come_from_the_vectors():
    """kmod/ip_vs_mh_selftest_kat.h is exactly what the generator makes of tests/vectors."""
    assert kmod_selftest_kat.HEADER.read_text() == kmod_selftest_kat.render()


def test_keyed_reference_matches_kernel_vectors():
    """kmod_keyed's SipHash/HalfSipHash (from the papers) give lib/test_siphash.c's answers."""
    vec = kmod_selftest_kat.hsiphash_vectors()
    for n in range(64):
        assert kmod_keyed.siphash13_32(bytes(range(n)), bytes(range(16))) == vec[64][n]
        assert kmod_keyed.halfsiphash13(bytes(range(n)), bytes(range(8))) == vec[32][n]


def test_rebuild_bound_userspace():
    """Twins make the C core's fill take ~m * n steps; distinct servers do not.

    Measures mx_build_table() (through maglevx._core) at M = 131071 with 1,000 and
    4,000 twins 10.0.0.k:(60000 - k) and with 4,000 ordinary servers.
    """
    core = pytest.importorskip("maglevx._core")
    times = {}
    for n, twins in ((1000, True), (4000, True), (4000, False)):
        folds = [0x0A000000 + k for k in range(1, n + 1)]
        ports = [(60000 - k) if twins else 80 for k in range(1, n + 1)]
        t0 = time.perf_counter()
        core.build_table(131071, 64, folds, ports, [1] * n)
        times[(n, twins)] = time.perf_counter() - t0
    print(
        "\nuserspace fill at M=131071: "
        + ", ".join(
            f"{n} {'twins' if t else 'distinct'} {s:.3f} s"
            for (n, t), s in times.items()
        )
    )
    # about linear in the number of twins, and far above distinct servers
    assert times[(4000, True)] > 2 * times[(1000, True)]
    assert times[(4000, True)] > 20 * times[(4000, False)]


# -- builds ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def hardening_builds(kmod_build_of):
    """(normal, debug, noresched or None) builds per kernel, each with W=1."""

    def get(key: str):
        nr = (
            kmod_build_of(key, kcflags="-DMX_NO_RESCHED")
            if key == NEGATIVE_CONTROL
            else None
        )
        return (kmod_build_of(key), kmod_build_of(key, "debug"), nr)

    return get


@pytest.mark.kernel
@pytest.mark.parametrize("key", KERNELS)
def test_builds_clean_and_leave_csrc_alone(key, hardening_builds):
    """W=1 clean for all variants; objects in kmod/, none in csrc/ (issue 16)."""
    for b in hardening_builds(key):
        if b is None:
            continue
        assert b.warnings == [], "\n".join(b.warnings)
        assert list((b.ko.parent.parent / "csrc").glob("*.o")) == []
        assert (b.ko.parent / "ip_vs_mh_core_maglev.o").exists()
    debug = hardening_builds(key)[1]
    assert (debug.ko.parent / "ip_vs_mh_selftest.o").exists()
    names = subprocess.run(
        ["modinfo", "-F", "parm", str(debug.ko)], capture_output=True, text=True
    ).stdout
    assert "fail_alloc" in names and "hash_key" in names
    normal = subprocess.run(
        ["modinfo", "-F", "parm", str(hardening_builds(key)[0].ko)],
        capture_output=True,
        text=True,
    ).stdout
    assert "fail_alloc" not in normal  # no fault injection outside DEBUG builds


def test_dkms_conf_has_build_exclusive_kernel():
    conf = (kmod_build.KMOD / "dkms.conf").read_text()
    rx = re.compile(kmod_build.dkms_conf_value(conf, "BUILD_EXCLUSIVE_KERNEL"))
    for release in (
        "5.10.0-35-amd64",
        "6.1.0-57-amd64",
        "6.12.117+deb12-amd64",
        "4.19.0-27-amd64",
    ):
        assert rx.search(release), release
    for release in ("3.10.0-1160.el7.x86_64", "4.3.0-1-amd64", "2.6.32-5-amd64"):
        assert not rx.search(release), release


# -- the boot --------------------------------------------------------------------


@pytest.fixture(scope="session")
def hardening_runs(hardening_builds, kernel_env):
    """One boot per kernel; both boots run at once (one vCPU each, 2 host cores)."""

    def plan() -> dict:
        out = {}
        for key in KERNELS:
            normal, debug, nr = hardening_builds(key)
            out[key] = (partial(hv.run, twins=TWINS), kernel_env[key], normal.ko,
                        debug.ko, nr.ko if nr else None)  # fmt: skip
        return out

    boots = LazyBoots(plan)
    yield boots
    boots.close()


def _compare(
    run: hv.HardeningRun, name: str, flows, expected
) -> tuple[int, int, list[str]]:
    """(compared, unobserved, problems) of a flowgen file against expectations."""
    choices, status, problems = run.flows(name, flows)
    compared = unobserved = 0
    for f, got, st, want in zip(flows, choices, status, expected):
        if got is None and st in "sh":
            unobserved += 1  # scheduled, entry not seen (see kmod_vm.parse_phase)
            if want is None:
                problems.append(f"{f.csv()}: scheduled, expected no destination")
            continue
        compared += 1
        if (None if got is None else (str(got[0]), int(got[1]))) != want:
            problems.append(f"{f.csv()}: kernel {got}, expected {want}")
    return compared, unobserved, problems


@pytest.mark.kernel
@pytest.mark.parametrize("key", KERNELS)
def test_debug_build_selftest_passes_at_load(key, hardening_runs):
    """make debug: insmod succeeds and the kernel log has the self-test's pass line."""
    run = hardening_runs(key)
    assert run.text("dbg.insmod").split()[-1:] == ["0"], run.text("dbg.insmod")
    m = re.search(
        r"mh: self-test: (\d+) tables and 128 hsiphash vectors pass",
        run.text("dmesg.main"),
    )
    assert m and int(m.group(1)) == 3, run.text("dmesg.main")[-3000:]
    assert run.text("dbg.rmmod").strip() == "0"


@pytest.mark.kernel
@pytest.mark.parametrize("key", KERNELS)
def test_failed_delete_never_schedules_the_deleted_server(key, hardening_runs):
    """ENOMEM during a delete: the old table stays, but flows that land on the
    deleted server's slots get no destination (IP_VS_DEST_F_AVAILABLE); the others
    keep their server. The next successful rebuild drops it from the table."""
    run = hardening_runs(key)
    three = hv.FI_SERVERS
    two = [s for s in three if (s[0], s[1]) != hv.FI_DELETED]
    t3 = kmod_keyed.build_table(three, 4093, key=None)
    t2 = kmod_keyed.build_table(two, 4093, key=None)

    def expect(table, servers, flows, refuse=None):
        out = []
        for f in flows:
            rs = kmod_keyed.schedule(table, servers, f.saddr, f.sport, key=None)
            out.append(None if rs == refuse else rs)
        return out

    fl = run.plan.fi_flows
    results = {}
    for ph, (table, servers, refuse) in {
        "before": (t3, three, None),
        "failed": (t3, three, hv.FI_DELETED),
        "rebuilt": (t2, two, None),
    }.items():
        results[ph] = _compare(
            run, f"fi.{ph}.out", fl[ph], expect(table, servers, fl[ph], refuse)
        )
    on_deleted = sum(
        kmod_keyed.schedule(t3, three, f.saddr, f.sport, key=None) == hv.FI_DELETED
        for f in fl["failed"]
    )
    print(
        f"\n{key}: fault injection: delete rc {run.text('fi.del.rc').strip()}, "
        f"{on_deleted} of {len(fl['failed'])} flows on the deleted server's slots refused; "
        + ", ".join(
            f"{ph} {c} compared {u} unobserved" for ph, (c, u, _) in results.items()
        )
    )
    assert run.text("fi.left").strip() == "0"  # the injected failure was consumed
    failed = kmod_dump.parse(run.text("fi.failed.tables"))
    assert [(d.address, d.port) for d in failed[0].dests] == [
        (a, p) for a, p, _ in three
    ]
    assert "172.16.254.2" not in run.text("fi.failed.ln")  # IPVS did delete it
    rebuilt = kmod_dump.parse(run.text("fi.rebuilt.tables"))
    assert [(d.address, d.port) for d in rebuilt[0].dests] == [
        (a, p) for a, p, _ in two
    ]
    assert rebuilt[0].table == [0xFFFF if x is None else x for x in t2]
    assert on_deleted > 50
    for ph, (compared, _unobserved, problems) in results.items():
        assert problems == [], f"{ph}: " + "\n".join(problems[:10])
        assert compared > 0.95 * len(fl[ph]), ph
    # a service whose first table cannot be allocated is not created
    addsvc = run.text("fi.addsvc").strip().splitlines()
    assert addsvc[-1] != "0", addsvc
    assert "10.1.254.2" not in run.text("fi.addsvc.ln")


@pytest.mark.kernel
@pytest.mark.parametrize("key", KERNELS)
def test_debugfs_mode_0400(key, hardening_runs):
    run = hardening_runs(key)
    assert run.text("dbg.mode").strip() == "400"
    assert run.text("key.mode").strip() == "400"


@pytest.mark.kernel
@pytest.mark.parametrize("key", KERNELS)
def test_namespace_sees_only_its_own_tables(key, hardening_runs):
    """Two network namespaces with mh services: each dump lists only its own."""
    run = hardening_runs(key)
    parent = kmod_dump.parse(run.text("ns.parent"))
    child = kmod_dump.parse(run.text("ns.child"))
    inum = lambda name: int(re.search(r"\[(\d+)\]", run.text(name))[1])  # noqa: E731
    assert inum("ns.parent.inum") != inum("ns.child.inum")
    assert [s.name for s in child] == ["TCP 10.9.9.9:80"]
    assert {s.netns for s in child} == {inum("ns.child.inum")}
    assert sorted(s.name for s in parent) == sorted(
        f"{svc.vip[0].upper()} {svc.vip_text}" for svc in hv.KEYED
    )
    assert {s.netns for s in parent} == {inum("ns.parent.inum")}


@pytest.mark.kernel
@pytest.mark.parametrize("key", KERNELS)
def test_secret_key_matches_prediction(key, hardening_runs):
    """hash_key=K: every flow and every slot equal an independent prediction with K
    (kmod_keyed, from the SipHash paper); the kernel's default keys would disagree."""
    run = hardening_runs(key)
    k = bytes.fromhex(hv.KEY)
    assert run.text("key.insmod").split()[-1:] == ["0"], run.text("key.insmod")
    assert "hash_key" not in run.text("key.params").split()  # not in sysfs
    assert run.text("key.restore").strip().splitlines()[-1] == "0"
    pred = hv.keyed_prediction(k)
    default = hv.keyed_prediction(None)
    flows = [f for fl in run.plan.keyed_flows for f in fl]
    expected, unkeyed = [], []
    for (table, servers), (dtable, _), fl in zip(pred, default, run.plan.keyed_flows):
        for f in fl:
            expected.append(
                kmod_keyed.schedule(table, servers, f.saddr, f.sport, key=k)
            )
            unkeyed.append(
                kmod_keyed.schedule(dtable, servers, f.saddr, f.sport, key=None)
            )
    compared, unobserved, problems = _compare(run, "key.out", flows, expected)
    differ = sum(a != b for a, b in zip(expected, unkeyed))
    print(
        f"\n{key}: hash_key: {compared} flows compared, {len(problems)} mismatches, "
        f"{unobserved} unobserved; the kernel's keys would send {differ} of {len(flows)} elsewhere"
    )
    assert problems == [], "\n".join(problems[:20])
    assert compared > 0.95 * len(flows)
    assert differ > 0.3 * len(flows)
    dump = kmod_dump.parse(run.text("key.tables"))
    key_id = kmod_keyed.siphash13_32(bytes(4), k)
    assert len(dump) == len(hv.KEYED)
    for ds, svc, (table, servers) in zip(dump, hv.KEYED, pred):
        assert ds.name == f"{svc.vip[0].upper()} {svc.vip_text}"
        assert ds.params["hash_key"] == f"{key_id:08x}"
        assert ds.params["byte_order"] == "little"
        assert [(d.address, d.port, d.weight) for d in ds.dests] == servers
        assert ds.table == [0xFFFF if x is None else x for x in table]
    for i in range(4):
        text = run.text(f"badkey{i}")
        assert "rc 0" not in text and "loaded" not in text, text
    assert (
        run.text("dmesg.main").count("mh: invalid hash_key: must be 32 hex digits") >= 3
    )
    assert hv.KEY not in run.text("dmesg.main")  # the key is never logged


@pytest.mark.kernel
@pytest.mark.parametrize("key", KERNELS)
def test_adversarial_rebuild_yields_under_watchdog(key, hardening_runs):
    """TWINS real servers sharing one permutation at M = 131071, soft-lockup
    watchdog at 2 s: the rebuilds take seconds, yet a shell loop keeps ticking,
    the kernel log stays clean, and the table equals the C core's."""
    core = pytest.importorskip("maglevx._core")
    run = hardening_runs(key)
    assert run.text("watchdog").split() == ["1", "1"]
    assert run.text("tw.insmod").split()[-1:] == ["0"]
    assert run.text("tw.restore").strip().splitlines()[-1:] == ["0"], run.text(
        "tw.restore"
    )[-2000:]
    rc_c, create = run.rebuild_seconds("tw", "create")
    rc_d, delete = run.rebuild_seconds("tw", "delete")
    gap = run.longest_tick_gap("tw")
    print(
        f"\n{key}: {TWINS} twins at M=131071: rebuild on -E {create:.2f} s, on -d "
        f"{delete:.2f} s (guest clock); longest gap between 0.1 s ticks {gap:.2f} s"
    )
    assert rc_c == 0 and rc_d == 0
    bad = kmod_check.splats(run.text("dmesg.main"))
    assert bad == [], "\n".join(bad[:40])
    # The CPU was given away: the loop ticked all along. (Relative, not the 2 s
    # threshold: a loaded host that stops the whole guest stretches both.)
    assert gap < 0.5 * max(create, delete)
    dump = kmod_dump.parse(run.text("tw.tables"))
    servers = [hv.twin(k) for k in range(TWINS, 1, -1)]  # head first, twin 1 deleted
    assert [(d.address, d.port) for d in dump[0].dests] == servers
    table = core.build_table(
        131071,
        64,
        [kmod_keyed.fold(a) for a, _ in servers],
        [p for _, p in servers],
        [1] * len(servers),
    )
    assert dump[0].table == [int(x) for x in table]
    assert run.text("tw.rmmod").strip() == "0"


@pytest.mark.kernel
def test_watchdog_fires_without_resched_points(hardening_runs):
    """Negative control on 6.1: the same rebuild built with -DMX_NO_RESCHED makes
    the watchdog report a soft lockup, so the test above can fail."""
    run = hardening_runs(NEGATIVE_CONTROL)
    _, create = run.rebuild_seconds("nr", "create")
    gap = run.longest_tick_gap("nr")
    log = run.text("dmesg.noresched")
    print(
        f"\n{NEGATIVE_CONTROL}: without mx_cond_resched(): rebuild {create:.2f} s, "
        f"longest tick gap {gap:.2f} s; soft lockup reported: {'soft lockup' in log}"
    )
    assert "BUG: soft lockup" in log, log[-3000:]
    assert gap > 2.0 and gap > 0.9 * create  # nothing ran during the rebuild
