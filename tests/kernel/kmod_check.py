"""Compare a :class:`kmod_vm.KmodRun` with maglevx --variant backport.

The same comparison as test_kmod.py's (every flow's real server from
/proc/net/ip_vs_conn against ``python -m maglevx predict --variant backport``, every
debugfs table dump against maglevx's table), packaged for the other boots of our
module: the debug kernel (test_debug_kernel.py) and the dkms-built module of the
Debian package (test_deb.py).
"""

from __future__ import annotations

import dataclasses
import inspect
from concurrent.futures import ThreadPoolExecutor

from ipvs_vm import predict, qemu

# The kmod helpers move into the harness package (branch "kernels"); until both
# layouts are gone, the boots of this module's users import them from here.
try:
    from ipvs_vm import kmod_build, kmod_dump, kmod_vm
except ImportError:
    import kmod_build
    import kmod_dump
    import kmod_vm

__all__ = ["kmod_build", "kmod_dump", "kmod_vm", "boot", "compare_flows"]


def boot(kernel, files: dict, *, cpus: int, timeout: float) -> qemu.BootResult:
    """``qemu.boot`` of a job with ``cpus`` vCPUs (whichever harness layout)."""
    if "cpus" in inspect.signature(qemu.boot).parameters:
        return qemu.boot(kernel, files, timeout=timeout, cpus=cpus)
    return kmod_vm._boot_smp(kernel, files, cpus, timeout)


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
    from maglevx import Director

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
