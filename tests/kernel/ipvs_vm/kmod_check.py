"""Check a boot of our module (:class:`.kmod_vm.KmodRun`) against maglevx --variant backport.

Used by every boot of kmod/ that runs :func:`.kmod_vm.guest_job`: the stock
kernels (test_kmod.py), the debug kernel (test_debug_kernel.py) and the
dkms-built module of the Debian package (test_deb.py). Every flow's real server
(from /proc/net/ip_vs_conn) against ``maglevx predict --variant backport``, every
debugfs table dump read by maglevx's own parser (:mod:`.kmod_dump` wraps
``maglevx.tools.verify.parse_kmod_tables``) against maglevx's table, the load and
parameter checks, the churn's end state, and the kernel log.
"""

from __future__ import annotations

import dataclasses
import re
from concurrent.futures import ThreadPoolExecutor

from . import kmod_dump, kmod_vm, predict, scenarios

# What a kernel prints when something went wrong (lockups, RCU stalls, oopses,
# sanitizers, list corruption): no boot of our module may print any of it.
SPLAT = re.compile(
    r"soft lockup|WARNING:|\bBUG\b|Oops|rcu_sched self-detected stall|"
    r"rcu: INFO: rcu_|detected stall|refcount_t:|general protection|"
    r"KASAN|UBSAN|list_add corruption|list_del corruption|Call Trace|kernel BUG"
)


def splats(log: str) -> list[str]:
    """The lines of ``log`` that :data:`SPLAT` matches."""
    return [ln for ln in log.splitlines() if SPLAT.search(ln)]


def configs(
    flows: int, per_scenario: int, base_seed: int, sizes_and_hash_port
) -> list[kmod_vm.Config]:
    """Seeded scenarios for about ``flows`` flows, dealt to one configuration per
    ``(table_size, hash_port)``, packed for one boot (no client used twice)."""
    # 4% spare: scenarios lose clients to pack(), flows to unobserved entries
    n_scen = -(-flows * 104 // 100 // per_scenario)
    scs = [scenarios.generate(base_seed + i, per_scenario + 60) for i in range(n_scen)]
    scenarios.pack(scs, 10**9)
    out = [kmod_vm.Config(m, hp, []) for m, hp in sizes_and_hash_port]
    for i, sc in enumerate(scs):
        out[i % len(out)].scenarios.append(sc)
    return out


PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)


def tab_bits(m: int) -> int:
    """The kernel's tab_bits for table size ``m`` (CONFIG_IP_VS_MH_TAB_INDEX / 2)."""
    return (PRIMES.index(m) + 8) // 2


@dataclasses.dataclass
class FlowReport:
    total: int = 0  # flows whose outcome was observed and compared
    mismatches: int = 0
    none: int = 0  # compared flows without destination
    unobserved: int = 0  # scheduled, connection entry not seen
    examples: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.total} flows compared, {self.mismatches} mismatches, "
            f"{self.none} without destination; {self.unobserved} more scheduled "
            "with the entry unobserved"
        )


def _predictions(run: kmod_vm.KmodRun) -> dict:
    """maglevx's choices per (config, scenario, phase), with each config's options."""
    jobs = []
    for c, cfg in enumerate(run.configs):
        args = ["--table-size", str(cfg.table_size)] + (
            [] if cfg.hash_port else ["--no-port-hash"]
        )
        for s, sc in enumerate(cfg.scenarios):
            for p, ph in enumerate(sc.phases):
                jobs.append(((c, s, p), sc.history_upto(p), ph.flows, args))
    with ThreadPoolExecutor(max_workers=2) as ex:
        futs = {
            k: ex.submit(predict.predict, h, fl, variant="backport", extra_args=a)
            for k, h, fl, a in jobs
        }
        return {k: f.result() for k, f in futs.items()}


def compare_flows(run: kmod_vm.KmodRun) -> FlowReport:
    """Every flow of every phase against maglevx's prediction."""
    rep = FlowReport()
    for (c, s, p), model in _predictions(run).items():
        out = run.phase(c, s, p)
        sc = run.configs[c].scenarios[s]
        if out.restore_rc != 0:
            rep.problems.append(f"{sc.name} phase {p}: ipvsadm -R: {out.restore_log}")
        rep.problems += [f"{sc.name} phase {p}: {x}" for x in out.problems]
        for f, got, st, want in zip(sc.phases[p].flows, out.choices, out.status, model):
            if got is None and st in "sh":
                # scheduled (the packet left) but the entry was not seen: only
                # "has a destination" can be compared
                rep.unobserved += 1
                if want is None:
                    rep.mismatches += 1
                    rep.examples.append(
                        f"c{c} {sc.name} p{p} {f.csv()}: kernel scheduled "
                        "(entry unobserved), maglevx: no destination"
                    )
                continue
            rep.total += 1
            rep.none += got is None
            if not predict.same_choice(got, want):
                rep.mismatches += 1
                rep.examples.append(
                    f"c{c} {sc.name} p{p} {f.csv()}: kernel {got} maglevx {want}"
                )
    return rep


def compare_tables(run: kmod_vm.KmodRun) -> tuple[int, list[str]]:
    """(dumps compared, problems): every debugfs dump against maglevx's tables."""
    from maglevx import Director  # (the harness imports without maglevx)

    problems, dumped = [], 0
    for c, cfg in enumerate(run.configs):
        want_params = {
            "table_size": cfg.table_size,
            "tab_bits": tab_bits(cfg.table_size),
            "word_size": 64,
            "hash_port": int(cfg.hash_port),
            "byte_order": "little",
            "hash_key": "kernel",
        }
        for s, sc in enumerate(cfg.scenarios):
            for p in range(len(sc.phases)):
                dump = kmod_dump.parse(run.phase(c, s, p).tables)
                problems += [
                    f"c{c} {sc.name} p{p}: params {ds.params}"
                    for ds in dump
                    if ds.params != want_params
                ]
                director = Director.from_history(
                    sc.history_upto(p),
                    variant="backport",
                    table_size=cfg.table_size,
                    backport_hash_port=cfg.hash_port,
                )
                problems += [
                    f"c{c} {sc.name} p{p}: {x}"
                    for x in kmod_dump.compare_with_model(dump, director)
                ]
                dumped += len(dump)
    return dumped, problems


def load_problems(run: kmod_vm.KmodRun) -> list[str]:
    """insmod/params/rmmod of every configuration, and the refused bad parameters."""
    out = []
    for c, cfg in enumerate(run.configs):
        insmod = run.text(f"c{c}.insmod").strip()
        if insmod.splitlines()[-1:] != ["0"]:
            out.append(f"c{c}: insmod {cfg.params!r}: {insmod}")
        params = run.text(f"c{c}.params").split()
        if params != [str(cfg.table_size), "Y" if cfg.hash_port else "N"]:
            out.append(f"c{c}: parameters read back {params}")
        if run.text(f"c{c}.rmmod").strip() != "0":
            out.append(f"c{c}: rmmod failed")
    for i, param in enumerate(kmod_vm.BAD_PARAMS):
        rc, stayed, text = run.bad_param(i)
        if rc == 0 or stayed:
            out.append(f"insmod {param}: rc {rc}, loaded {stayed}: {text}")
    return out


@dataclasses.dataclass
class Churn:
    ops: int  # ipvsadm operations done during the churn
    seconds: int  # guest time it lasted
    flowruns: str
    scheduled: int  # flows scheduled meanwhile
    problems: list

    def summary(self) -> str:
        return (
            f"churn {self.ops} ipvsadm operations in {self.seconds} s guest time, "
            f"{self.flowruns} flowgen runs, {self.scheduled} flows scheduled"
        )


def churn(run: kmod_vm.KmodRun) -> Churn:
    """The churn's figures, and what is wrong after it: the last table against
    maglevx's for the kernel's own listing, ``ipvsadm -C``, ``rmmod``, leftovers."""
    from maglevx import Director  # (the harness imports without maglevx)

    ops, seconds = map(int, run.text("churn.ops").split())
    scheduled = sum(int(x) for x in run.text("churn.scheduled").split())
    director = Director.from_snapshot(run.text("churn.ln"), variant="backport")
    dump = kmod_dump.parse(run.text("churn.tables"))
    problems = [
        f"last table: {x}" for x in kmod_dump.compare_with_model(dump, director)
    ]
    for name, want in (("churn.clear", "0"), ("churn.rmmod", "0"), ("churn.after", "")):
        got = run.text(name).strip()
        if got != want:
            problems.append(f"{name}: {got[:200]!r}, expected {want!r}")
    flowruns = run.text("churn.flowruns").strip()
    return Churn(ops, seconds, flowruns, scheduled, problems)
