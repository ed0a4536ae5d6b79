"""ipvs_vm: boot Debian's real kernels under qemu and ask their IPVS what it does.

Reusable pieces (import with ``tests/kernel`` on ``sys.path``)::

    from ipvs_vm import fetch_kernel, headers_dir, boot, ExtraModule
    from ipvs_vm import Flow, Phase, Scenario, run_scenarios

    k = fetch_kernel("6.1")                  # or "6.12"; cached, no host install
    kdir = headers_dir("6.1")                # make -C $kdir M=$PWD modules
    res, boot_result = run_scenarios(
        k, [Scenario("x", [Phase(["-A -t 10.1.0.1:80 -s mh", ...], [Flow(...)])])],
        extra_modules=[ExtraModule(Path("ip_vs_mh.ko"), "hash_port=0",
                                   replaces="ip_vs_mh")])
    boot_result.dmesg

``boot(kernel, {"run.sh": "...", ...}, extra_modules=...)`` boots with any job files
and returns the guest's /out files, console and dmesg.
"""

from .compare import Report, run_campaign
from .compare import run as run_and_compare
from .jobs import (
    Flow,
    FlowResult,
    Phase,
    PhaseResult,
    Scenario,
    ScenarioResult,
    run_scenarios,
)
from .kernels import (
    KERNEL_KEYS,
    Kernel,
    PrerequisiteError,
    cache_dir,
    fetch_kernel,
    headers_dir,
)
from .qemu import BootResult, ExtraModule, GuestError, boot

__all__ = [
    "KERNEL_KEYS",
    "BootResult",
    "ExtraModule",
    "Flow",
    "FlowResult",
    "GuestError",
    "Kernel",
    "Phase",
    "PhaseResult",
    "PrerequisiteError",
    "Report",
    "Scenario",
    "ScenarioResult",
    "boot",
    "cache_dir",
    "fetch_kernel",
    "headers_dir",
    "run_and_compare",
    "run_campaign",
    "run_scenarios",
]
