"""ipvs_vm: boot Debian's real kernels under qemu and ask their IPVS what it does.

The one kernel harness, a package under tests/kernel (pytest puts that directory
on ``sys.path``; elsewhere ``PYTHONPATH=tests/kernel python -m ipvs_vm ...``), with
an architecture parameter (:class:`Arch`) and the module's helpers inside it
(``kmod_build``, ``kmod_vm``, ``kmod_check``, ``kmod_dump``: debugfs dumps read
with maglevx's own parser, ``kmod_hardening``, ``debug_kernel``)::

    from ipvs_vm import fetch_kernel, boot, ExtraModule, campaign
    from ipvs_vm import Flow, Phase, Scenario, run_scenarios

    k = fetch_kernel("6.1")          # any key of KERNELS: "6.12", "5.10",
                                     # "6.12-trixie", "6.1-686-pae", "6.1-arm64",
                                     # "6.1-s390x"; cached, no host install
    k.arch                           # Arch: qemu, console, word size, byte order...
    rep = campaign.run(k, [scenarios.generate(1)])   # boot, compare with maglevx
    b = kmod_build.build(k.headers_dir, out, make_args=k.make_args)
    rep = campaign.run(k, scs, variant="backport",
                       extra_modules=[ExtraModule(b.ko, replaces="ip_vs_mh")])

``boot(kernel, {"run.sh": "...", ...}, extra_modules=...)`` boots with any job files
and returns the guest's /out files, console and dmesg, whatever the architecture.
"""

# (kmod_dump imports maglevx: ``from ipvs_vm import kmod_dump`` where needed)
from . import campaign, kmod_build, kmod_vm
from .arch import AMD64, ARCHES, ARM64, I386, S390X, Arch
from .common import PrerequisiteError, cache_dir
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
from .kernels import KERNEL_KEYS, KERNELS, Kernel, fetch_kernel, headers_dir
from .qemu import BootResult, ExtraModule, GuestError, boot

__all__ = [
    "AMD64",
    "ARCHES",
    "ARM64",
    "I386",
    "KERNELS",
    "KERNEL_KEYS",
    "S390X",
    "Arch",
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
    "campaign",
    "fetch_kernel",
    "headers_dir",
    "kmod_build",
    "kmod_vm",
    "run_and_compare",
    "run_campaign",
    "run_scenarios",
]
