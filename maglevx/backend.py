"""Which implementation of the core runs: the C extension or the Python twin.

Set ``MAGLEVX_PURE_PYTHON=1`` to force the pure-Python twin for the core and
the line-by-line path of ``predict`` (CI runs the suite both ways). Both
modules expose the same functions and constants.
"""

from __future__ import annotations

import os
from types import ModuleType

PURE_PYTHON = os.environ.get("MAGLEVX_PURE_PYTHON", "") not in ("", "0")


def _load() -> ModuleType:
    if PURE_PYTHON:
        from maglevx import _twin

        return _twin
    try:
        from maglevx import _core
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError(_missing_extension()) from exc
    return _core


def _missing_extension() -> str:
    """Why the C extension cannot be imported, and what to do."""
    here = os.path.dirname(os.path.abspath(__file__))
    twin = "or set MAGLEVX_PURE_PYTHON=1 for the (slow) pure-Python twin"
    if not os.path.exists(os.path.join(here, "_core.pyx")):
        return (
            f"maglevx's C extension is not built; install with `pip install .` {twin}"
        )
    return (  # a source checkout first on sys.path shadows the installed package
        f"maglevx is imported from the source tree {here}, where its C "
        "extension is not built (an installed maglevx is shadowed by it, "
        "e.g. when Python runs from the repository root): run from another "
        f"directory, or build in place with `pip install -e .`, {twin}"
    )


def _load_fastcsv() -> ModuleType | None:
    """The C scanner behind ``predict``'s fast path; None for the twin."""
    if PURE_PYTHON:
        return None
    try:
        from maglevx import _fastcsv  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - not built: the slow path serves
        return None
    return _fastcsv


core = _load()
fastcsv = _load_fastcsv()
