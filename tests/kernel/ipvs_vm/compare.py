"""Boot, run scenarios, compare every flow with maglevx, write replays on mismatch."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import ipaddress
import json
import time
from pathlib import Path

from . import decision, jobs, predict
from . import scenarios as scen
from .kernels import Kernel, cache_dir


@dataclasses.dataclass
class Mismatch:
    scenario: str
    phase: int
    flow: str
    kernel: tuple | None
    maglevx: tuple | None


@dataclasses.dataclass
class Report:
    kernel: Kernel
    flows: int = 0
    scenarios: int = 0
    boots: int = 0
    boot_seconds: list = dataclasses.field(default_factory=list)  # qemu start -> ready
    guest_seconds: list = dataclasses.field(default_factory=list)  # whole qemu run
    predict_seconds: float = 0.0
    no_destination: int = 0
    mismatches: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)  # harness inconsistencies
    order_mismatches: list = dataclasses.field(default_factory=list)
    replay_dirs: list = dataclasses.field(default_factory=list)
    results: list = dataclasses.field(default_factory=list)  # ScenarioResult, if kept
    # decision scenarios (ipvs_vm/decision.py): which kernel branches the flows
    # took (as maglevx decided them, and agreed), and the templates compared
    branches: collections.Counter = dataclasses.field(
        default_factory=collections.Counter
    )
    templates_compared: int = 0
    template_mismatches: list = dataclasses.field(default_factory=list)

    def record_boot(self, boot, results, of: int, log=print) -> None:
        """Count one finished boot (``of`` boots in all) and log a line about it."""
        self.boots += 1
        self.boot_seconds.append(boot.boot_seconds)
        self.guest_seconds.append(boot.total_seconds)
        n = sum(r.scenario.n_flows for r in results)
        log(
            f"[{self.kernel.key}] boot {self.boots}/{of} ({boot.accel}): "
            f"{len(results)} scenarios, {n} flows, ready {boot.boot_seconds:.1f}s, "
            f"total {boot.total_seconds:.1f}s, backlog drops {softnet_dropped(boot)}"
        )

    def faults(self, name: str) -> tuple[list, list, list, list[str]]:
        """Scenario ``name``'s (mismatches, template differences, harness
        problems, replay directories)."""
        return (
            [m for m in self.mismatches if m.scenario == name],
            [t for t in self.template_mismatches if t.startswith(name + " ")],
            [p for p in self.problems if p.startswith(name + " ")],
            [str(d) for d in self.replay_dirs if f"-{name}-" in d.name],
        )

    def summary(self) -> str:
        boots = ", ".join(
            f"{b:.1f}/{g:.1f}s" for b, g in zip(self.boot_seconds, self.guest_seconds)
        )
        return (
            f"kernel {self.kernel.describe()}: {self.flows} flows in "
            f"{self.scenarios} scenarios over {self.boots} boots "
            f"(boot/total per boot: {boots}); {self.no_destination} got no destination; "
            f"{len(self.mismatches)} mismatches; {len(self.problems)} harness problems; "
            f"maglevx time {self.predict_seconds:.1f}s"
            + (
                f"; decision branches {dict(sorted(self.branches.items()))}, "
                f"{self.templates_compared} templates compared, "
                f"{len(self.template_mismatches)} template mismatches"
                if self.branches
                else ""
            )
        )


def replay_root() -> Path:
    return cache_dir() / "replays"


def write_replay(
    kernel: Kernel, res: jobs.ScenarioResult, preds: list, tag: str
) -> Path:
    """Everything needed to replay a scenario offline, one directory per scenario."""
    sc = res.scenario
    d = replay_root() / f"{time.strftime('%Y%m%d-%H%M%S')}-{kernel.key}-{sc.name}-{tag}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "scenario.json").write_text(json.dumps(sc.to_json(), indent=1))
    cmds = []
    for j, (ph, pr) in enumerate(zip(sc.phases, res.phases)):
        (d / f"phase{j}.history").write_text(sc.history_upto(j))
        (d / f"phase{j}.flows.csv").write_text(
            "".join(f.csv() + "\n" for f in ph.flows)
        )
        (d / f"phase{j}.kernel.csv").write_text(
            "".join(
                f"{r.flow.csv()},{r.raddr or ''},{'' if r.rport is None else r.rport},{r.status}\n"
                for r in pr.results
            )
        )
        (d / f"phase{j}.maglevx.csv").write_text(
            "".join(
                f"{r.flow.csv()},{p[0] if p else ''},{p[1] if p else ''}\n"
                for r, p in zip(pr.results, preds[j])
            )
        )
        (d / f"phase{j}.ipvsadm-Ln-nosort.txt").write_text(pr.listing)
        cmds.append(
            f"python -m maglevx predict --history {d}/phase{j}.history "
            f"{d}/phase{j}.flows.csv | diff - <(cut -d, -f1-7 {d}/phase{j}.kernel.csv)"
        )
    (d / "README").write_text(
        f"kernel {kernel.describe()}\nscenario {sc.name} (seed {sc.seed})\n"
        f"replay offline (bash):\n" + "\n".join(cmds) + "\n"
        f"re-run in the VM: PYTHONPATH=tests/kernel python -m ipvs_vm --kernel {kernel.key} "
        f"--seeds {sc.seed}\n"
    )
    return d


def compare_results(
    kernel: Kernel,
    results,
    report: Report,
    variant: str = "upstream",
    keep_results: bool = False,
    *,
    predictions=None,
    tag: str = "mismatch",
    model_args=None,
) -> None:
    """Compare every flow of ``results`` with maglevx and add it up in ``report``.

    ``predictions``: per scenario, per phase, maglevx's choices if already
    computed (e.g. with other maglevx options); otherwise ``variant`` is predicted
    here. ``tag`` names the replay directory of a scenario that went wrong.
    Decision scenarios are always decided here, with one director across phases
    described by ``variant`` and ``model_args`` (default: the kernel's
    architecture's, e.g. ``--word-size 32`` on i386).
    """
    if model_args is None:
        model_args = predict.model_args(kernel.arch)
    for k, res in enumerate(results):
        sc = res.scenario
        if sc.meta.get("decision"):
            _compare_decisions(kernel, res, report, variant, model_args, keep_results)
            continue
        preds = []
        bad = []
        orders = scen.expected_order(sc)
        for j, (ph, pr) in enumerate(zip(sc.phases, res.phases)):
            if predictions is not None:
                pred = predictions[k][j]
            else:
                t0 = time.monotonic()
                pred = (
                    predict.predict(sc.history_upto(j), ph.flows, variant=variant)
                    if ph.flows
                    else []
                )
                report.predict_seconds += time.monotonic() - t0
            preds.append(pred)
            report.problems += [f"{sc.name} phase {j}: {p}" for p in pr.problems]
            for r, p in zip(pr.results, pred):
                report.flows += 1
                report.no_destination += r.choice is None
                if not predict.same_choice(r.choice, p):
                    bad.append(Mismatch(sc.name, j, r.flow.csv(), r.choice, p))
            want = orders[j] if j < len(orders) else {}
            got = scen.parse_listing(pr.listing)
            if want and got != want:
                report.order_mismatches.append(
                    f"{sc.name} phase {j}: kernel {got} model {want}"
                )
        report.scenarios += 1
        if bad or any(pr.problems for pr in res.phases):
            report.replay_dirs.append(write_replay(kernel, res, preds, tag))
        report.mismatches += bad
        if keep_results:
            report.results.append(res)


def _compare_decisions(
    kernel: Kernel, res, report: Report, variant: str, model_args, keep: bool
) -> None:
    """A decision scenario: one director across phases (templates persist), every
    flow's choice, pass-vs-drop for UDP, one-packet datagrams seen by nft, and the
    templates in /proc/net/ip_vs_conn after each phase."""
    sc = res.scenario
    t0 = time.monotonic()
    decs = predict.predict_scenario(sc, variant=variant, model_args=model_args)
    report.predict_seconds += time.monotonic() - t0
    bad = []
    for j, (pr, pd) in enumerate(zip(res.phases, decs)):
        report.problems += [f"{sc.name} phase {j}: {p}" for p in pr.problems]
        ops = decision.observed_ops(pr.files)
        for i, r in enumerate(pr.results):
            f = r.flow
            got = r.choice
            if pd.one_packet[i] and got is None:  # never in ip_vs_conn: ask nft
                got = ops.get((ipaddress.ip_address(f.saddr), f.sport))
                report.branches["one-packet seen by nft"] += got is not None
            want = pd.choices[i]
            ok = predict.same_choice(got, want)
            if ok and want is None and f.proto == "udp":
                # a UDP datagram IPVS lets pass is sent; one it drops gets EPERM
                ok = (r.status == "s") == pd.passed[i]
            report.flows += 1
            report.no_destination += got is None
            if not ok:
                bad.append(
                    Mismatch(sc.name, j, f.csv(), got, want or (pd.outcomes[i], None))
                )
                continue
            out = pd.outcomes[i]
            report.branches[f"{out} {f.proto}"] += 1
            report.branches["template replaced"] += pd.replaced[i]
            report.branches.update(pd.tags[i])
            if f.fwmark:
                report.branches["marked flow"] += 1
            if f.sport < 1024:
                report.branches["client port < 1024"] += 1
        kt = predict.kernel_templates(pr.templates)
        report.templates_compared += len(kt)
        for t in kt:
            report.branches[f"template {t[0]} IPv{t[1].version}"] += 1
            report.branches["template vport 0"] += t[3] == 0
        if kt != pd.templates:
            report.template_mismatches.append(
                f"{sc.name} phase {j}: kernel only {sorted(kt - pd.templates)[:3]}, "
                f"maglevx only {sorted(pd.templates - kt)[:3]}"
            )
    report.scenarios += 1
    report.mismatches += bad
    if bad or report.template_mismatches:
        report.replay_dirs.append(_write_decision_replay(kernel, res, bad))
    if keep:
        report.results.append(res)


def _write_decision_replay(kernel: Kernel, res, bad) -> Path:
    sc = res.scenario
    d = (
        replay_root()
        / f"{time.strftime('%Y%m%d-%H%M%S')}-{kernel.key}-{sc.name}-decision"
    )
    d.mkdir(parents=True, exist_ok=True)
    (d / "scenario.json").write_text(json.dumps(sc.to_json(), indent=1))
    (d / "mismatches.txt").write_text("".join(f"{m}\n" for m in bad))
    for j, pr in enumerate(res.phases):
        (d / f"phase{j}.templates.txt").write_text(
            "".join(f"{e}\n" for e in pr.templates)
        )
        for name, text in pr.files.items():
            (d / f"phase{j}.{name}").write_text(text)
    (d / "README").write_text(
        f"kernel {kernel.describe()}\nscenario {sc.name} (seed {sc.seed})\n"
        "re-run in the VM: PYTHONPATH=tests/kernel python -m ipvs_vm replay "
        f"{d} -k {kernel.key}\n"
    )
    return d


def run(
    kernel: Kernel,
    scenario_list,
    *,
    max_flows_per_boot: int = 25000,
    parallel: int = 1,
    variant: str = "upstream",
    extra_modules=(),
    keep_results: bool = False,
    log=print,
) -> Report:
    """Run ``scenario_list`` on ``kernel`` (packed into boots), compare with maglevx."""
    return run_campaign(
        [(kernel, scenario_list)],
        parallel=parallel,
        max_flows_per_boot=max_flows_per_boot,
        variant=variant,
        extra_modules=extra_modules,
        keep_results=keep_results,
        log=log,
    )[kernel.key]


def run_campaign(
    plan,
    *,
    parallel: int = 2,
    max_flows_per_boot: int = 25000,
    variant: str = "upstream",
    extra_modules=(),
    keep_results: bool = False,
    log=print,
) -> dict:
    """Run several kernels' scenario lists with one pool of ``parallel`` qemu workers.

    ``plan``: list of (Kernel, scenarios). Boots of all kernels share the pool, so a
    2-core machine keeps both cores busy; comparisons with maglevx happen as boots
    finish. Returns {kernel.key: Report}.
    """
    reports = {k.key: Report(kernel=k) for k, _ in plan}
    work = []
    for kernel, scs in plan:
        for batch in scen.pack(list(scs), max_flows_per_boot):
            work.append((kernel, batch))
    # biggest boots first, so the last one to finish is short
    work.sort(key=lambda kb: -sum(s.n_flows for s in kb[1]))
    totals = {k.key: sum(1 for kk, _ in work if kk.key == k.key) for k, _ in plan}
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as ex:
        futs = {
            ex.submit(jobs.run_scenarios, k, b, extra_modules=extra_modules): k
            for k, b in work
        }
        for fut in concurrent.futures.as_completed(futs):
            kernel = futs[fut]
            results, boot = fut.result()
            report = reports[kernel.key]
            report.record_boot(boot, results, totals[kernel.key], log)
            compare_results(kernel, results, report, variant, keep_results)
    return reports


def softnet_dropped(boot) -> int:
    """Packets the guest dropped at the backlog (column 2 of softnet_stat)."""
    return sum(
        int(line.split()[1], 16)
        for line in boot.text("softnet_stat").splitlines()
        if len(line.split()) > 1
    )
