"""What every kernel test shares: the run's seeds and sizes, its summary, and the
CI rule for a missing prerequisite (a failure under ``CI=true``, a skip elsewhere).

Seeds: a fixed list per kernel plus one random seed per run (``MAGLEVX_SEED``
replays it). ``MAGLEVX_KERNEL_FLOWS`` sets the flows per scenario (default 2500),
``MAGLEVX_DECISION_FLOWS`` the flows per decision scenario (default 2000).
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from .common import PrerequisiteError

RANDOM_SEED = int(
    os.environ.get("MAGLEVX_SEED") or random.SystemRandom().randrange(10**6, 10**7)
)
FLOWS_PER_SCENARIO = int(os.environ.get("MAGLEVX_KERNEL_FLOWS", "2500"))
# Seeds 1-3 run on both kernels (and the random one): their decisions must agree.
# 6.1 gives 9 random seeds' worth of flows to the decision scenarios below.
SEEDS = {
    "6.1": list(range(1, 39)) + [RANDOM_SEED],
    "6.12": [1, 2, 3] + list(range(1001, 1007)) + [RANDOM_SEED],
}
# Decision scenarios (ipvs_vm/decision.py): seeds 0..8 are one of each theme, so
# every branch of docs/decision-path.md is hit in every run on both kernels; the
# random one varies addresses, weights, masks and flags.
DECISION_FLOWS = int(os.environ.get("MAGLEVX_DECISION_FLOWS", "2000"))
DECISION_SEEDS = {key: list(range(9)) + [RANDOM_SEED] for key in SEEDS}
SUMMARY: list[str] = []  # lines for the terminal summary (conftest prints them)


def fail_or_skip(msg: str):
    """Skip saying what is missing; under ``CI=true`` the same is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so this is a failure: {msg}", pytrace=False)
    pytest.skip(msg)


class LazyBoots:
    """Boots that start together on first use, ``workers`` at a time (one vCPU
    each on a 2-core host); calling it with a key waits for that boot's result.

    ``plan()`` returns ``{key: (function, *args)}`` in the order to start them; a
    :class:`~.common.PrerequisiteError` from a boot skips (fails under CI) the
    test that asked for it.
    """

    def __init__(self, plan, workers: int = 2):
        self._plan = plan
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._futures: dict = {}

    def __call__(self, key):
        if not self._futures:
            for k, (fn, *args) in self._plan().items():
                self._futures[k] = self._pool.submit(fn, *args)
        try:
            return self._futures[key].result()
        except PrerequisiteError as exc:
            fail_or_skip(str(exc))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
