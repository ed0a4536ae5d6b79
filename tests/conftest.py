import importlib
import os

import pytest

BACKENDS = ["c", "python"]


@pytest.fixture(params=BACKENDS)
def core(request):
    """Each implementation of the core: the C extension and the Python twin."""
    name = "maglevx._core" if request.param == "c" else "maglevx._twin"
    return importlib.import_module(name)


# Under CI=true nothing may skip but the benchmarks: a skipped test there is a
# prerequisite the test command failed to install, and is reported as failed.
def _ci() -> bool:
    return os.environ.get("CI") == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if (
        _ci()
        and rep.skipped
        and "bench" not in item.keywords
        and not hasattr(rep, "wasxfail")
    ):
        rep.outcome = "failed"
        rep.longrepr = (
            f"skipped under CI=true (install it in the test command): {rep.longrepr}"
        )


def pytest_collectreport(report):
    if _ci() and report.skipped and "bench" not in report.nodeid:
        report.outcome = "failed"


# The debug kernel is built once per machine (scripts/debug-kernel.sh), and on a
# first run scripts/test.sh builds it in the background while the rest runs:
# its tests go last, so that they are the only ones that may wait for it.
LAST = {"test_debug_kernel.py"}


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.path.name in LAST)  # stable: order kept
