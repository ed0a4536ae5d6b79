"""Kernel tests: prerequisites, the seed plan, one shared parity campaign, a summary.

Prerequisites missing and not installable (no root / no apt) -> skip saying exactly
what is missing; under ``CI=true`` the same is a failure, never a skip.

Seeds: a fixed list per kernel plus one random seed per run (``MAGLEVX_SEED`` replays
it), printed in the header and the summary. ``MAGLEVX_KERNEL_FLOWS`` sets the flows per
scenario (default 2500).
"""

from __future__ import annotations

import time

import pytest

# pytest's default "prepend" import mode puts this directory (no __init__.py) on
# sys.path before importing this file and the tests: the ipvs_vm package is found
# there, without any sys.path manipulation.
from ipvs_vm import compare, decision, kernels, kmod_build, predict, prereqs, scenarios
from ipvs_vm.suite import (
    DECISION_FLOWS,
    DECISION_SEEDS,
    FLOWS_PER_SCENARIO,
    RANDOM_SEED,
    SEEDS,
    SUMMARY,
    fail_or_skip,
)


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
        (
            kernel_env[key],
            [scenarios.generate(s, FLOWS_PER_SCENARIO) for s in seeds]
            + [decision.generate(s, DECISION_FLOWS) for s in DECISION_SEEDS[key]],
        )
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


@pytest.fixture(scope="session")
def maglevx_cli():
    """``python -m maglevx predict`` runs (or the test skips/fails saying why)."""
    why = predict.maglevx_available()
    if why:
        fail_or_skip(f"python -m maglevx predict: {why}")


@pytest.fixture(scope="session")
def kmod_build_of(kernel_env, tmp_path_factory):
    """``get(key, target="module", kcflags="")``: kmod/ built (W=1) against kernel ``key``'s
    headers, once per session and build, shared by every test file that boots it."""
    cache: dict = {}

    def get(key: str, target: str = "module", kcflags: str = "") -> kmod_build.Build:
        if (key, target, kcflags) not in cache:
            k = kernel_env[key]
            try:
                kmod_build.check_prerequisites(k.headers_dir)
            except kmod_build.BuildError as exc:
                fail_or_skip(str(exc))
            out = tmp_path_factory.mktemp(f"kmod-{key}-{target}")
            cache[(key, target, kcflags)] = kmod_build.build(
                k.headers_dir, out, target=target, kcflags=kcflags,
                make_args=k.make_args,
            )  # fmt: skip
        return cache[(key, target, kcflags)]

    return get
