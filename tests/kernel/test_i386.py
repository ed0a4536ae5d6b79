"""Debian's real i386 kernel against ``maglevx predict --word-size 32``.

A boot of ``linux-image-6.1.0-NN-686-pae`` under qemu-system-i386 (TCG) runs the
same seeded random ipvsadm histories and flows as the x86_64 tests
(``ipvs_vm.scenarios``); every flow's real server, read from
/proc/net/ip_vs_conn, must equal maglevx's 32-bit (HalfSipHash) prediction.
At the same time (one core each) kmod/ is built against Debian's i386 headers and a
second boot, with it in place of the in-tree ip_vs_mh, is compared with
``maglevx predict --variant backport --word-size 32``.

Prerequisites: ``scripts/i386-prereqs.sh``. Under ``CI=true`` a missing one fails
the tests; otherwise they are skipped with what is missing.

Run: ``python -m pytest -m kernel tests/kernel/test_i386.py``
Seeds: the first ten of the x86_64 campaign's fixed seeds plus its random seed
(``MAGLEVX_SEED`` replays it); ``MAGLEVX_I386_SEEDS`` (e.g. ``1-10`` or ``3,5,8``)
replaces the fixed ones. ``MAGLEVX_KERNEL_FLOWS`` sets the flows per scenario.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import time
import warnings

import pytest
from conftest import FLOWS_PER_SCENARIO, RANDOM_SEED, SUMMARY, fail_or_skip
from ipvs_vm import decision, i386, predict, qemu, scenarios
from ipvs_vm.kernels import PrerequisiteError

pytestmark = pytest.mark.kernel

MIN_FLOWS, MIN_SCENARIOS = 20000, 10
BUDGET_SECONDS = 240  # the i386 part's share of the suite
# kmod/ built for i386, against maglevx --variant backport --word-size 32
KMOD_SEEDS = list(range(3001, 3011))
KMOD_FLOWS_PER_SCENARIO = 1000
# The decision themes (docs/decision-path.md) that need no nft in the guest (the
# i386 userland has none): FTP-data, FTP lookup, port zero, persistence, -E, the
# expire_quiescent_template sysctl. Run on the in-tree module and on kmod/.
DECISION_SEEDS = [
    i for i, t in enumerate(decision.THEMES) if t not in ("fwmark", "ops")
]
DECISION_FLOWS = 800


def _seeds() -> list[int]:
    spec = os.environ.get("MAGLEVX_I386_SEEDS", "1-10")
    seeds: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        seeds += range(int(lo), int(hi or lo) + 1)
    return [*seeds, RANDOM_SEED] if RANDOM_SEED not in seeds else seeds


SEEDS = _seeds()


def _unavailable(why: str) -> None:
    fail_or_skip(f"i386 kernel tests cannot run: {why} (run scripts/i386-prereqs.sh)")


@pytest.fixture(scope="module")
def kernel():
    t0 = time.monotonic()
    missing = i386.missing_prerequisites()
    if missing:
        _unavailable("missing " + "; ".join(missing))
    why = predict.maglevx_available()
    if why:
        _unavailable(f"python -m maglevx predict does not work: {why}")
    try:
        k = i386.fetch_kernel()
        i386.fetch_userland()
        i386.build_flowgen()
    except PrerequisiteError as exc:
        _unavailable(str(exc))
    return k, time.monotonic() - t0


def _upstream_run(k) -> i386.Report:
    scs = [scenarios.generate(seed, FLOWS_PER_SCENARIO) for seed in SEEDS]
    scs += [decision.generate(s, DECISION_FLOWS) for s in DECISION_SEEDS]
    return i386.run(k, scs, keep_results=True, log=lambda *_: None)


class KmodUnavailable(Exception):
    pass


def _kmod_run(k, build_dir):
    """Build kmod/ against the i386 headers, then the backport differential."""
    try:
        import kmod_build  # helper of tests/kernel/test_kmod.py
    except ImportError as exc:
        raise KmodUnavailable(f"tests/kernel/kmod_build.py: {exc}") from exc
    try:
        kdir = i386.fetch_headers(k)
        kmod_build.check_prerequisites(kdir)
    except (PrerequisiteError, kmod_build.BuildError) as exc:
        raise KmodUnavailable(f"cannot build kmod/ for i386: {exc}") from exc
    build = kmod_build.build(kdir, build_dir)
    scs = [scenarios.generate(s, KMOD_FLOWS_PER_SCENARIO) for s in KMOD_SEEDS]
    scs += [decision.generate(s, DECISION_FLOWS) for s in DECISION_SEEDS]
    module = qemu.ExtraModule(build.ko, replaces="ip_vs_mh")
    rep = i386.run(
        k,
        scs,
        variant="backport",
        extra_modules=[module],
        keep_results=True,
        log=lambda *_: None,
    )
    return build, rep


@pytest.fixture(scope="module")
def campaign(kernel, tmp_path_factory):
    """Both i386 boots at once: the suite runs alone, so each gets one core."""
    k, fetch_seconds = kernel
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        upstream = ex.submit(_upstream_run, k)
        kmod = ex.submit(_kmod_run, k, tmp_path_factory.mktemp("kmod-i386"))
        concurrent.futures.wait([upstream, kmod])
    total = time.monotonic() - t0 + fetch_seconds
    rep = upstream.result()
    note = i386.kernel_note(k)
    lines = [
        f"i386 upstream: {rep.summary()}; seeds {SEEDS}",
        f"i386 wall {total:.1f}s (fetch/check {fetch_seconds:.1f}s)"
        + (f"; {note}" if note else ""),
    ]
    if kmod.exception() is None:
        lines.insert(1, f"i386 kmod/ backport: {kmod.result()[1].summary()}")
    SUMMARY.extend(lines)
    print("\n" + "\n".join(lines))
    if total > BUDGET_SECONDS:
        warnings.warn(
            f"i386 kernel tests took {total:.0f}s (budget {BUDGET_SECONDS}s)",
            stacklevel=1,
        )
    return {"upstream": rep, "kmod": kmod}


@pytest.fixture(scope="module")
def report(campaign):
    return campaign["upstream"]


def test_guest_is_a_32bit_kernel_with_ip_vs_mh(kernel, report):
    info = report.guest_info
    assert info.get("uname-m") in ("i686", "i586", "i386"), info
    assert info.get("uname-r") == kernel[0].release, info
    assert info.get("ip_vs_mh") == "1", info
    assert info.get("ipvsadm", "").startswith("ipvsadm v1."), info


def test_enough_flows_and_scenarios(report):
    if len(SEEDS) < MIN_SCENARIOS or FLOWS_PER_SCENARIO < 2500:
        pytest.skip("MAGLEVX_I386_SEEDS / MAGLEVX_KERNEL_FLOWS shrink the run")
    assert report.scenarios >= MIN_SCENARIOS
    assert report.flows >= MIN_FLOWS, report.summary()


def test_no_harness_problems(report):
    assert report.problems == [], "\n".join(report.problems[:20])


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
def test_every_flow_matches_word_size_32(report, seed):
    res = next(
        r
        for r in report.results
        if r.scenario.seed == seed and not r.scenario.meta.get("decision")
    )
    name = res.scenario.name
    bad = [m for m in report.mismatches if m.scenario == name]
    flows = sum(len(p.results) for p in res.phases)
    assert flows > 0
    assert bad == [], (
        f"{len(bad)}/{flows} flows of {name} differ from maglevx --word-size 32, "
        f"e.g. {bad[:5]}; replays: {[str(d) for d in report.replay_dirs]}"
    )


@pytest.mark.parametrize("which", ["upstream", "kmod"])
def test_decision_scenarios_match(campaign, which):
    """Every decision theme without nft, on i386 (in-tree and kmod/): flows and
    persistence templates equal maglevx's 32-bit decisions."""
    rep = campaign["upstream"] if which == "upstream" else _kmod(campaign)[1]
    names = {decision.generate(s, 1).name for s in DECISION_SEEDS}
    done = {r.scenario.name for r in rep.results} & names
    assert done == names
    assert [m for m in rep.mismatches if m.scenario in names] == []
    assert rep.template_mismatches == []
    assert rep.templates_compared > 100
    for branch in ("ftp-data tcp", "ftp-data udp", "FTP lookup", "port-zero catch-all",
                   "masked client IPv4", "masked client IPv6", "template replaced"):  # fmt: skip
        assert rep.branches[branch] > 0, (branch, dict(rep.branches))


def test_kernel_list_order_is_newest_first(report):
    assert report.order_mismatches == [], report.order_mismatches[:3]


def test_word_size_64_would_mispredict(report):
    """The check has teeth: the 64-bit (SipHash) model disagrees with this kernel."""
    flows = differ = 0
    for res in [r for r in report.results if not r.scenario.meta.get("decision")][:3]:
        sc = res.scenario
        for j, (ph, pr) in enumerate(zip(sc.phases, res.phases)):
            if not ph.flows:
                continue
            pred = predict.predict(
                sc.history_upto(j), ph.flows, extra_args=("--word-size", "64")
            )
            flows += len(pred)
            differ += sum(
                not predict.same_choice(r.choice, p) for r, p in zip(pr.results, pred)
            )
    assert flows > 0
    assert differ > flows // 10, f"only {differ}/{flows} flows differ at 64 bits"


# -- kmod/ (backport semantics) built against the i386 headers ----------------


def _kmod(campaign):
    try:
        return campaign["kmod"].result()
    except KmodUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="module")
def kmod_build_i386(campaign):
    return _kmod(campaign)[0]


@pytest.fixture(scope="module")
def kmod_report(campaign):
    return _kmod(campaign)[1]


def test_kmod_builds_for_i386_without_warnings(kernel, kmod_build_i386):
    b = kmod_build_i386
    assert b.warnings == [], "\n".join(b.warnings)
    head = b.ko.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 1, "not an ELF32 object"
    assert int.from_bytes(head[18:20], "little") == 3, "not EM_386"
    vermagic = subprocess.run(
        ["modinfo", "-F", "vermagic", str(b.ko)], capture_output=True, text=True
    ).stdout.split()
    assert vermagic[:1] == [kernel[0].release]


def test_kmod_is_the_module_in_use(kmod_report):
    info = kmod_report.guest_info
    assert info.get("ip_vs_mh") == "1", info
    assert info.get("ip_vs_mh-version"), f"in-tree ip_vs_mh has no version: {info}"


def test_kmod_matches_backport_word_size_32(kmod_report):
    rep = kmod_report
    assert rep.problems == [], rep.problems[:10]
    assert rep.mismatches == [], (
        f"{len(rep.mismatches)} of {rep.flows} flows differ, e.g. "
        f"{rep.mismatches[:5]}; replays: {[str(d) for d in rep.replay_dirs]}"
    )
    assert rep.flows >= 0.9 * len(KMOD_SEEDS) * KMOD_FLOWS_PER_SCENARIO
    assert 0 < rep.no_destination < rep.flows
