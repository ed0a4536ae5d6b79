"""A differential run on any architecture: boot, run scenarios, compare every flow.

:func:`run` packs scenarios into boots of ``kernel`` (its :class:`~.arch.Arch` says
how to boot it), has maglevx predict every phase with the options that describe
that director (``--word-size 32`` on i386, ``--byte-order big`` on s390x, and the
caller's, e.g. ``--variant backport --table-size 251``) while the guest runs, and
compares with :func:`.compare.compare_results`. Each boot also reports what really
ran (:data:`GUEST_INFO`), so a test can check it booted the architecture it meant.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time

from . import compare, jobs, predict
from . import scenarios as scen
from .kernels import Kernel

# Written to /out by the guest before the scenarios: what actually ran.
GUEST_INFO = """{
echo "uname-m $(uname -m)"
echo "uname-r $(uname -r)"
echo "ipvsadm $(ipvsadm --version 2>&1 | head -n 1)"
echo "ip_vs_mh $(grep -c '^ip_vs_mh ' /proc/modules)"
echo "ip_vs_mh-version $(cat /sys/module/ip_vs_mh/version 2>/dev/null)"
} > /out/guest-info.txt
"""


def parse_guest_info(text: str) -> dict:
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


@dataclasses.dataclass
class Report(compare.Report):
    guest_info: dict = dataclasses.field(default_factory=dict)  # from GUEST_INFO
    wall_seconds: float = 0.0  # boots + comparisons
    model_args: tuple = ()  # the maglevx options the flows were predicted with
    variant: str = "upstream"


def predict_scenarios(
    scenario_list, *, variant: str = "upstream", model_args=()
) -> tuple[list[list[list]], float]:
    """maglevx's choices for every phase of every scenario, and the seconds taken.

    Needs only the histories and flows, so it can run while the guest boots.
    Decision scenarios get none here: their director carries templates across
    phases, so :func:`.compare.compare_results` decides them in flow order.
    """
    t0 = time.monotonic()
    out = [
        [
            predict.predict(
                sc.history_upto(j), ph.flows, variant=variant, extra_args=model_args
            )
            if ph.flows and not sc.meta.get("decision")
            else []
            for j, ph in enumerate(sc.phases)
        ]
        for sc in scenario_list
    ]
    return out, time.monotonic() - t0


def run(
    kernel: Kernel,
    scenario_list,
    *,
    variant: str = "upstream",
    model_args=None,
    extra_args=(),
    extra_modules=(),
    max_flows_per_boot: int = 30000,
    keep_results: bool = False,
    timeout: float = 1500,
    log=print,
) -> Report:
    """Run ``scenario_list`` on ``kernel`` (few boots) and compare with maglevx.

    ``model_args``: the options describing the director (default: from the
    kernel's architecture, :func:`.predict.model_args`); ``extra_args`` are added
    to them (``--table-size``, ``--no-port-hash`` for a module's parameters).
    """
    t0 = time.monotonic()
    args = tuple(predict.model_args(kernel.arch) if model_args is None else model_args)
    args += tuple(extra_args)
    report = Report(kernel=kernel, model_args=args, variant=variant)
    boots = scen.pack(list(scenario_list), max_flows_per_boot)
    tag = "mismatch" + ("" if kernel.arch.name == "amd64" else f"-{kernel.arch.name}")
    for batch in boots:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
            pending = ex.submit(
                predict_scenarios, batch, variant=variant, model_args=args
            )
            results, b = jobs.run_scenarios(
                kernel,
                batch,
                extra_modules=extra_modules,
                pre_snippet=GUEST_INFO,
                timeout=timeout,
            )
            predictions, seconds = pending.result()
        report.predict_seconds += seconds
        report.guest_info = parse_guest_info(b.text("guest-info.txt"))
        report.record_boot(b, results, len(boots), log)
        compare.compare_results(
            kernel,
            results,
            report,
            variant=variant,
            keep_results=keep_results,
            predictions=predictions,
            tag=tag,
            model_args=args,
        )
    report.wall_seconds = time.monotonic() - t0
    return report


def disagreement(report: Report, *, variant: str, model_args=()) -> tuple[int, int]:
    """(flows, flows whose kernel choice differs from maglevx with ``model_args``).

    Shows a check has teeth: e.g. the 64-bit model on an i386 kernel, or the
    little-endian model on s390x, must disagree with a large share of flows.
    """
    flows = differ = 0
    for res in report.results:
        sc = res.scenario
        if sc.meta.get("decision"):  # one director across phases, templates kept
            decided = predict.predict_scenario(
                sc, variant=variant, model_args=model_args
            )
            for pr, pd in zip(res.phases, decided):
                for r, want, ops in zip(pr.results, pd.choices, pd.one_packet):
                    if not ops:  # -o datagrams are never in ip_vs_conn
                        flows += 1
                        differ += not predict.same_choice(r.choice, want)
            continue
        for j, (ph, pr) in enumerate(zip(sc.phases, res.phases)):
            if not ph.flows:
                continue
            pred = predict.predict(
                sc.history_upto(j), ph.flows, variant=variant, extra_args=model_args
            )
            flows += len(pred)
            differ += sum(
                not predict.same_choice(r.choice, p) for r, p in zip(pr.results, pred)
            )
    return flows, differ
