"""Kernel tests: prerequisites, the seed plan, one shared parity campaign, a summary.

Prerequisites missing and not installable (no root / no apt) -> skip saying exactly
what is missing; under ``CI=true`` the same is a failure, never a skip.

Seeds: a fixed list per kernel plus one random seed per run (``MAGLEVX_SEED`` replays
it), printed in the header and the summary. ``MAGLEVX_KERNEL_FLOWS`` sets the flows per
scenario (default 2500).
"""

from __future__ import annotations

import os
import random
import sys
import time

import pytest

# pytest's default "prepend" import mode puts this directory (no __init__.py) on
# sys.path before importing this file and the tests: the ipvs_vm package is found
# there, without any sys.path manipulation.
from ipvs_vm import compare, kernels, kmod_build, kmod_vm, predict, prereqs, scenarios

# Compatibility: the kmod helpers were top-level modules of tests/kernel before
# they moved into ipvs_vm; ``import kmod_build`` (kmod_vm, kmod_dump) still gets
# the same module objects. New code: ``from ipvs_vm import kmod_build``.
sys.modules.setdefault("kmod_build", kmod_build)
sys.modules.setdefault("kmod_vm", kmod_vm)
try:
    from ipvs_vm import kmod_dump
except ImportError:  # maglevx itself missing: kernel_env says so
    pass
else:
    sys.modules.setdefault("kmod_dump", kmod_dump)

RANDOM_SEED = int(
    os.environ.get("MAGLEVX_SEED") or random.SystemRandom().randrange(10**6, 10**7)
)
FLOWS_PER_SCENARIO = int(os.environ.get("MAGLEVX_KERNEL_FLOWS", "2500"))
# Seeds 1-3 run on both kernels (and the random one): their decisions must agree.
SEEDS = {
    "6.1": list(range(1, 48)) + [RANDOM_SEED],
    "6.12": [1, 2, 3] + list(range(1001, 1007)) + [RANDOM_SEED],
}
SUMMARY: list[str] = []


def pytest_report_header(config):
    return (
        f"maglevx kernel tests: random seed {RANDOM_SEED} (replay: MAGLEVX_SEED={RANDOM_SEED}),"
        f" {FLOWS_PER_SCENARIO} flows/scenario"
    )


def pytest_terminal_summary(terminalreporter):
    if SUMMARY:
        terminalreporter.section("maglevx kernel parity")
        for line in SUMMARY:
            terminalreporter.write_line(line)


def fail_or_skip(msg: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so this is a failure: {msg}", pytrace=False)
    pytest.skip(msg)


class KernelEnv(dict):
    """{key: Kernel}: the main campaign's kernels up front, any other key of
    ``kernels.KERNELS`` fetched on first use (skip/fail naming why it cannot be)."""

    def __missing__(self, key: str) -> kernels.Kernel:
        if key not in kernels.KERNELS:
            raise KeyError(key)
        try:
            k = kernels.fetch_kernel(key)
        except Exception as exc:  # noqa: BLE001 - any failure to obtain a kernel
            fail_or_skip(f"cannot fetch Debian kernel {key}: {exc}")
        missing = k.arch.missing()
        if missing:
            fail_or_skip(f"cannot boot {key}: missing {'; '.join(missing)}")
        self[key] = k
        return k


@pytest.fixture(scope="session")
def kernel_env():
    """{key: Kernel}, with host prerequisites installed or the test skipped/failed."""
    missing = prereqs.ensure()
    if missing:
        fail_or_skip(prereqs.explain(missing))
    why = predict.maglevx_available()
    if why:
        fail_or_skip(f"python -m maglevx predict does not run: {why}")
    out = KernelEnv()
    for key in kernels.KERNEL_KEYS:
        out[key]  # noqa: B018 - fetch the main campaign's kernels now
    return out


@pytest.fixture(scope="session")
def campaign(kernel_env):
    """Every seed's scenario on its kernels, both kernels' boots sharing 2 workers."""
    plan = [
        (kernel_env[key], [scenarios.generate(s, FLOWS_PER_SCENARIO) for s in seeds])
        for key, seeds in SEEDS.items()
    ]
    t0 = time.monotonic()
    reports = compare.run_campaign(plan, parallel=2, keep_results=True)
    wall = time.monotonic() - t0
    for rep in reports.values():
        SUMMARY.append(rep.summary())
        for d in rep.replay_dirs:
            SUMMARY.append(f"  replay dir: {d}")
    SUMMARY.append(f"campaign wall time {wall:.1f}s; random seed {RANDOM_SEED}")
    print("\n" + "\n".join(SUMMARY))
    return reports
