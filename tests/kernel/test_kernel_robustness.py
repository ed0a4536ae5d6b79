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
import ipaddress
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import fail_or_skip
from ipvs_vm import ExtraModule, compare, kmod_build, predict, run_scenarios
from ipvs_vm import scenarios as scen
from ipvs_vm.jobs import Flow, Phase, Scenario
from test_kmod import BAD_LOG

import maglevx

pytestmark = pytest.mark.kernel

INTREE_KERNELS = ("6.1", "6.12")
KMOD_KERNELS = tuple(
    os.environ.get("MAGLEVX_ROBUST_KMOD_KERNELS", "6.1").replace(",", " ").split()
)
KMOD_M = 251
RANDOM_FLOWS = 200  # random clients per service and phase


@dataclasses.dataclass(frozen=True)
class Mode:
    """One boot: a kernel with the in-tree scheduler or our module."""

    key: str  # kernel key
    kmod: bool

    @property
    def id(self) -> str:
        return f"{'kmod' if self.kmod else 'intree'}-{self.key}"

    @property
    def m(self) -> int:
        return KMOD_M if self.kmod else 4093

    @property
    def variant(self) -> str:
        return "backport" if self.kmod else "upstream"

    @property
    def predict_args(self) -> tuple:
        # through the CLI, as a user would: --variant backport --table-size 251
        return ("--table-size", str(self.m)) if self.kmod else ()


MODES = [Mode(k, False) for k in INTREE_KERNELS] + [Mode(k, True) for k in KMOD_KERNELS]


# -- scenario construction -------------------------------------------------------


class Clients:
    """New client addresses, unique within a boot (10.2-255.x.y, fd00:c::/32)."""

    def __init__(self, seed: int):
        self.rnd = random.Random(seed)
        self.seen: set = set()

    def candidate(self, proto: str, vip: str, port: int) -> Flow:
        r = self.rnd
        if ":" in vip:
            net = ipaddress.IPv6Network("fd00:c::/32")
            addr = str(net.network_address + (r.getrandbits(96) or 1))
        else:
            addr = f"10.{r.randint(2, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
        return Flow(proto, addr, r.randint(1024, 65535), vip, port)

    def take(self, f: Flow) -> bool:
        if f.client_key() in self.seen:
            return False
        self.seen.add(f.client_key())
        return True

    def random(self, proto: str, vip: str, port: int, n: int) -> list[Flow]:
        out: list[Flow] = []
        while len(out) < n:
            f = self.candidate(proto, vip, port)
            if self.take(f):
                out.append(f)
        return out

    def aimed(
        self,
        history: list[str],
        mode: Mode,
        proto: str,
        vip: str,
        port: int,
        targets: list[str],
        per_target: int = 3,
        tries: int = 200_000,
    ) -> list[Flow]:
        """Clients whose slot in maglevx's table holds each of ``targets``
        ("addr:port"), available or not, ``per_target`` each."""
        d = maglevx.Director.from_history(
            "\n".join(history) + "\n", variant=mode.variant, table_size=mode.m
        )
        svc = d.service_for(proto, ipaddress.ip_address(vip), port, None)
        servers = list(svc.table_servers)
        table = svc.table
        want = {t: [] for t in targets}
        for _ in range(tries):
            if all(len(v) >= per_target for v in want.values()):
                break
            f = self.candidate(proto, vip, port)
            rs_i = int(table[_slot_of(svc, f)])
            if rs_i >= len(servers):
                continue
            ep = servers[rs_i].endpoint
            if ep in want and len(want[ep]) < per_target and self.take(f):
                want[ep].append(f)
        return [f for v in want.values() for f in v]


def _slot_of(svc, f: Flow) -> int:
    """The table slot maglevx hashes flow ``f`` to (hash1 of client, port)."""
    from maglevx.backend import core
    from maglevx.model import fold_address

    d = svc.director
    port = svc.hashed_port(f.proto, f.sport)
    return core.slot(
        d.table_size, d.word_size, fold_address(ipaddress.ip_address(f.saddr)), port
    )


def _rs4(i: int) -> str:
    return str(ipaddress.IPv4Address("172.16.0.1") + i)


def over_m(mode: Mode, cl: Clients) -> Scenario:
    m, vip = mode.m, "10.1.0.1"
    svc = f"-t {vip}:80"
    rs = [_rs4(i) for i in range(m + 2)]
    gone, zeroed, x1, x2 = rs[0], rs[1], rs[m], rs[m + 1]
    h0 = [f"-A {svc} -s mh"] + [f"-a {svc} -r {a}:80 -m -w 1" for a in rs[:m]]
    h1 = [
        f"-a {svc} -r {x1}:80 -m -w 1",  # M+1 servers: the rebuild fails
        f"-a {svc} -r {x2}:80 -m -w 1",
        f"-d {svc} -r {gone}:80",  # still M+1: its slot stays in the old table
        f"-e {svc} -r {zeroed}:80 -m -w 0",  # still in the old table, unavailable
    ]
    h2 = [f"-d {svc} -r {x1}:80"]  # M servers: rebuilt
    olds = [f"{gone}:80", f"{zeroed}:80"]
    phases = []
    hist: list[str] = []
    for h, aim in ((h0, olds), (h1, olds), (h2, [f"{x2}:80", f"{zeroed}:80"])):
        hist += h
        flows = cl.random("tcp", vip, 80, RANDOM_FLOWS)
        flows += cl.aimed(hist, mode, "tcp", vip, 80, aim)
        phases.append(Phase(h, flows))
    return Scenario(
        "over-m",
        phases,
        meta={"m": m, "new": [f"{x1}:80", f"{x2}:80"], "gone": f"{gone}:80"},
    )


ZERO_SERVICES = {  # vip -> flags
    "10.1.0.2": "",
    "10.1.0.3": " -b mh-fallback,mh-port",
    "10.1.0.4": "",
    "10.1.0.5": " -b mh-fallback",
}


def zero_weights(cl: Clients) -> Scenario:
    added0, edited0 = ("10.1.0.2", "10.1.0.3"), ("10.1.0.4", "10.1.0.5")
    h0 = []
    for i, (vip, flags) in enumerate(ZERO_SERVICES.items()):
        h0.append(f"-A -t {vip}:80 -s mh{flags}")
        for j in range(8):
            w = 0 if vip in added0 else j + 1
            h0.append(f"-a -t {vip}:80 -r 172.17.{i}.{j + 1}:80 -m -w {w}")
    h1 = [
        f"-e -t {vip}:80 -r 172.17.{i + 2}.{j + 1}:80 -m -w 0"
        for i, vip in enumerate(edited0)
        for j in range(8)
    ]
    h2 = [
        f"-e -t {vip}:80 -r 172.17.{i + 2}.3:80 -m -w 5"
        for i, vip in enumerate(edited0)
    ]
    n = RANDOM_FLOWS // 2
    phases = [
        Phase(h0, [f for v in ZERO_SERVICES for f in cl.random("tcp", v, 80, n)]),
        Phase(h1, [f for v in ZERO_SERVICES for f in cl.random("tcp", v, 80, n)]),
        Phase(h2, [f for v in edited0 for f in cl.random("tcp", v, 80, n)]),
    ]
    # (phase, vip) whose flows must all get no destination, in both variants
    none = [(0, v) for v in added0] + [(1, v) for v in ZERO_SERVICES]
    return Scenario("zero", phases, meta={"all_none": none})


def huge_weights(cl: Clients) -> Scenario:
    e, f = "10.1.0.6", "10.1.0.7"
    we = [65535, 1, 2, 65535, 2, 1, 65535, 1, 2, 1]
    wf = [65534, 2, 65534, 4, 2, 6]  # gcd 2
    h0 = [f"-A -t {e}:80 -s mh", f"-A -t {f}:80 -s mh -b mh-port"]
    h0 += [f"-a -t {e}:80 -r 172.18.0.{i + 1}:80 -m -w {w}" for i, w in enumerate(we)]
    h0 += [f"-a -t {f}:80 -r 172.18.1.{i + 1}:80 -m -w {w}" for i, w in enumerate(wf)]
    h1 = [
        f"-e -t {e}:80 -r 172.18.0.1:80 -m -w 1",
        f"-e -t {e}:80 -r 172.18.0.2:80 -m -w 65535",
        f"-e -t {f}:80 -r 172.18.1.2:80 -m -w 65535",
        f"-e -t {f}:80 -r 172.18.1.1:80 -m -w 0",
    ]
    phases = [
        Phase(
            h,
            cl.random("tcp", e, 80, RANDOM_FLOWS)
            + cl.random("tcp", f, 80, RANDOM_FLOWS),
        )
        for h in (h0, h1)
    ]
    return Scenario("huge", phases)


def v6_churn(cl: Clients, seed: int = 14, bursts: int = 3, ops: int = 60) -> Scenario:
    gen = scen.Generator(seed)
    assert gen.theme == "churn"
    services = [
        scen.Service("tcp", "fd00:1::10", 80, (), "small", [], []),
        scen.Service("udp", "fd00:1::11", 53, ("mh-port",), "wide", [], []),
    ]
    phases = []
    for b in range(bursts + 1):
        lines: list[str] = []
        for svc in services:
            if b == 0:
                lines.append(f"-A {svc.opt} {svc.endpoint} {svc.sched()}")
                for _ in range(12):
                    rs = gen.new_rs(svc)
                    svc.servers.insert(0, rs)
                    lines.append(gen.add_line(svc, rs))
            else:
                for _ in range(ops):
                    gen.op(svc, lines)
        flows = [
            f for s in services for f in cl.random(s.proto, s.vip, s.port, RANDOM_FLOWS)
        ]
        phases.append(Phase(lines, flows))
    phases.append(Phase(["-C"], []))  # the clear must succeed on the churned state
    return Scenario("v6churn", phases)


def build_scenarios(mode: Mode) -> list[Scenario]:
    cl = Clients(7)
    return [over_m(mode, cl), zero_weights(cl), huge_weights(cl), v6_churn(cl)]


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
def robust_runs(kernel_env, tmp_path_factory):
    """All boots, two at a time (one vCPU each on a 2-core host), started on first use."""
    futures: dict = {}
    pool = ThreadPoolExecutor(max_workers=2)

    def start() -> None:
        kos = {}
        for key in KMOD_KERNELS:
            k = kernel_env[key]
            try:
                kmod_build.check_prerequisites(k.headers_dir)
            except kmod_build.BuildError as exc:
                fail_or_skip(f"cannot build kmod for {key}: {exc}")
            kos[key] = kmod_build.build(
                k.headers_dir, tmp_path_factory.mktemp(f"kmod-robust-{key}")
            ).ko
        # the kmod boot first: it is the shortest, the in-tree ones then overlap
        for mode in sorted(MODES, key=lambda m: not m.kmod):
            ko = kos[mode.key] if mode.kmod else None
            futures[mode] = pool.submit(_boot, mode, kernel_env[mode.key], ko)

    def get(mode: Mode) -> Run:
        if not futures:
            start()
        return futures[mode].result()

    yield get
    pool.shutdown(wait=True)


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
    assert not BAD_LOG.search(dmesg), dmesg[-4000:]
