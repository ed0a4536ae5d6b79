"""Kernel side of issue 7: edge cases of the real kernel, compared with maglevx.

Three boots (run two at a time): the in-tree ip_vs_mh of Debian 6.1 and 6.12
(M = 4093, upstream semantics) and our kmod/ip_vs_mh.ko with ``table_size=251`` in
6.1 (backport semantics). Each boot runs the same four scenarios, each in its own
network namespace (:func:`ipvs_vm.run_scenarios`):

* ``over-m``: M real servers, then two more (the rebuild fails: the kernel keeps
  the old table), one old server deleted and one edited to weight 0 while still
  above M, then back to M servers (the rebuild succeeds again). Besides random
  clients, each phase has clients that maglevx says land on the deleted, the
  zeroed and the new servers' slots.
* ``zero``: services whose servers are all added with ``-w 0``, and services
  whose servers are all edited to 0 after a normal start (plain and
  ``mh-fallback``), then one server back to a positive weight.
* ``huge``: weights 65535 mixed with 1 and 2 (the upstream weight shift), and a
  gcd of 2; then edits swapping huge and small weights.
* ``v6churn``: IPv6 TCP and UDP services under rapid adds, deletes, re-adds,
  weight and flag edits and service re-creation (the parity campaign's
  generator), flows between the bursts, then ``ipvsadm -C``; for kmod also
  ``rmmod ip_vs_mh``.

Every flow's real server (from /proc/net/ip_vs_conn) must equal maglevx's
prediction for the history so far, and the kernel log must stay clean. Measured
on a quiet 2-core host (TCG): the ``ipvsadm -R`` of 4094 lines takes ~6 s, the
boots ~14 s (in-tree) and ~8 s (kmod) of qemu time, two at a time.
``MAGLEVX_ROBUST_KMOD_KERNELS`` (default ``6.1``) picks the kmod kernels.
"""

from __future__ import annotations

import dataclasses
import os
import re

import pytest
from ipvs_vm import ExtraModule, compare, predict, run_scenarios
from ipvs_vm import scenarios as scen
from ipvs_vm.edges import KMOD_M, RANDOM_FLOWS, Mode, build_scenarios
from ipvs_vm.kmod_check import SPLAT
from ipvs_vm.suite import LazyBoots

pytestmark = pytest.mark.kernel

INTREE_KERNELS = ("6.1", "6.12")
KMOD_KERNELS = tuple(
    os.environ.get("MAGLEVX_ROBUST_KMOD_KERNELS", "6.1").replace(",", " ").split()
)
MODES = [Mode(k, False) for k in INTREE_KERNELS] + [Mode(k, True) for k in KMOD_KERNELS]


# -- the boots -------------------------------------------------------------------

RMMOD = r"""
n=0; rc=1
while [ $n -lt 20 ]; do
    n=$((n + 1))
    rmmod ip_vs_mh >> /out/rmmod.log 2>&1 && { rc=0; break; }
    sleep 1  # the scenarios' namespaces are torn down asynchronously
done
echo "$rc $n" > /out/rmmod
grep '^ip_vs_mh ' /proc/modules > /out/after_rmmod
true
"""


@dataclasses.dataclass
class Run:
    mode: Mode
    kernel: object
    results: dict  # scenario name -> ScenarioResult
    boot: object
    _preds: dict = dataclasses.field(default_factory=dict)

    def predictions(self, name: str) -> list[list]:
        if name not in self._preds:
            sc = self.results[name].scenario
            self._preds[name] = [
                predict.predict(
                    sc.history_upto(j),
                    ph.flows,
                    variant=self.mode.variant,
                    extra_args=self.mode.predict_args,
                )
                if ph.flows
                else []
                for j, ph in enumerate(sc.phases)
            ]
        return self._preds[name]


def _boot(mode: Mode, kernel, ko) -> Run:
    scs = build_scenarios(mode)
    extra = [ExtraModule(ko, f"table_size={KMOD_M}", replaces="ip_vs_mh")] if ko else []
    results, boot = run_scenarios(
        kernel,
        scs,
        extra_modules=extra,
        post_snippet=RMMOD if ko else "",
        timeout=600,
    )
    return Run(mode, kernel, {r.scenario.name: r for r in results}, boot)


@pytest.fixture(scope="module")
def robust_runs(kernel_env, kmod_build_of):
    """All boots, two at a time (one vCPU each on a 2-core host), started on first use."""
    boots = LazyBoots(
        lambda: {
            # the kmod boot first: it is the shortest, the in-tree ones then overlap
            mode: (_boot, mode, kernel_env[mode.key],
                   kmod_build_of(mode.key).ko if mode.kmod else None)
            for mode in sorted(MODES, key=lambda m: not m.kmod)
        }
    )  # fmt: skip
    yield boots
    boots.close()


# -- checks ----------------------------------------------------------------------


def compare_scenario(run: Run, name: str) -> tuple[int, list[str]]:
    """(flows compared, problems): every flow vs maglevx, every restore rc 0."""
    res = run.results[name]
    preds = run.predictions(name)
    n, bad = 0, []
    for j, pr in enumerate(res.phases):
        bad += [f"{name} phase {j}: {p}" for p in pr.problems]
        for r, want in zip(pr.results, preds[j]):
            n += 1
            if not predict.same_choice(r.choice, want):
                bad.append(
                    f"{name} phase {j} {r.flow.csv()}: kernel {r.choice} maglevx {want}"
                )
    if bad:
        d = compare.write_replay(run.kernel, res, preds, run.mode.id)
        bad.append(
            f"replay: {d} (add --variant {run.mode.variant} "
            f"{' '.join(run.mode.predict_args)} to its predict commands)"
        )
    print(f"\n{run.mode.id} {name}: {n} flows compared, {len(bad)} problems")
    return n, bad


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.id)
def test_more_servers_than_slots_keeps_old_table(mode, robust_runs):
    run = robust_runs(mode)
    n, bad = compare_scenario(run, "over-m")
    assert bad == [], "\n".join(bad[:20])
    res = run.results["over-m"]
    meta = res.scenario.meta
    listing = scen.parse_listing(res.phases[1].listing)
    assert [len(v) for v in listing.values()] == [meta["m"] + 1]
    # above M nothing is rebuilt: the new servers never get a flow
    chosen1 = {f"{r.raddr}:{r.rport}" for r in res.phases[1].results if r.raddr}
    assert not chosen1 & set(meta["new"])
    # back at M the table is rebuilt and includes a new server
    chosen2 = {f"{r.raddr}:{r.rport}" for r in res.phases[2].results if r.raddr}
    assert meta["new"][1] in chosen2
    # ipvsadm sees no error (every restore exits 0: checked with the flows), and
    # a server deleted above M keeps its slots in the kept table: in-tree it
    # still gets flows; kmod/ refuses it (IP_VS_DEST_F_AVAILABLE is cleared)
    if mode.kmod:
        assert meta["gone"] not in chosen1
    else:
        assert meta["gone"] in chosen1
    assert n >= 3 * RANDOM_FLOWS


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.id)
def test_all_weights_zero(mode, robust_runs):
    run = robust_runs(mode)
    n, bad = compare_scenario(run, "zero")
    assert bad == [], "\n".join(bad[:20])
    res = run.results["zero"]
    for j, vip in res.scenario.meta["all_none"]:
        got = [r.choice for r in res.phases[j].results if r.flow.daddr == vip]
        assert got and all(c is None for c in got), (j, vip)
    # one server back to weight 5: with fallback (upstream) or as the only
    # weighted server (backport) every flow of 10.1.0.5 reaches it
    last = [r.choice for r in res.phases[2].results if r.flow.daddr == "10.1.0.5"]
    assert {c for c in last} == {("172.17.3.3", 80)}


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.id)
def test_huge_weights(mode, robust_runs):
    run = robust_runs(mode)
    n, bad = compare_scenario(run, "huge")
    assert bad == [], "\n".join(bad[:20])
    res = run.results["huge"]
    for ph in res.phases:
        for vip in ("10.1.0.6", "10.1.0.7"):
            got = {r.choice for r in ph.results if r.flow.daddr == vip}
            assert len(got - {None}) >= 2, (vip, got)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.id)
def test_ipv6_churn_then_clear(mode, robust_runs):
    run = robust_runs(mode)
    n, bad = compare_scenario(run, "v6churn")
    assert bad == [], "\n".join(bad[:20])
    last = run.results["v6churn"].phases[-1]
    assert last.restore_rc == 0
    assert scen.parse_listing(last.listing) == {}
    if mode.kmod:
        rc, attempts = run.boot.text("rmmod").split()
        print(f"{mode.id}: rmmod ip_vs_mh after {attempts} attempt(s)")
        assert rc == "0", run.boot.text("rmmod.log")
        assert run.boot.text("after_rmmod").strip() == ""


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.id)
def test_kernel_log_clean(mode, robust_runs):
    run = robust_runs(mode)
    dmesg = run.boot.dmesg
    print(
        f"\n{mode.id}: qemu {run.boot.total_seconds:.1f} s ({run.boot.accel}); "
        "IPVS log lines: "
        + "; ".join(
            sorted(
                {
                    re.sub(r"\[[ 0-9.]+\] ", "", ln)
                    for ln in dmesg.splitlines()
                    if "IPVS" in ln or "mh" in ln
                }
            )[:12]
        )
    )
    assert run.boot.job_exit == 0, run.boot.text("run.log")[-2000:]
    assert not SPLAT.search(dmesg), dmesg[-4000:]
