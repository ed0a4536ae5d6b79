"""Benchmarks: kept out of the normal test run.

Everything under tests/bench/ is marked ``bench`` and skipped unless
selected with ``-m bench`` (or MAGLEVX_BENCH=1). The full run, with its
report, is ``python tests/bench/report.py`` (see BENCHMARKS.md).
"""

import os

import pytest


def _selected(config):
    return "bench" in (config.getoption("-m") or "") or os.environ.get(
        "MAGLEVX_BENCH", ""
    ) not in ("", "0")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    skip = pytest.mark.skip(reason="benchmark: select with -m bench")
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.bench)
            if not _selected(config):
                item.add_marker(skip)
