"""Which implementation of the core runs: the C extension or the Python twin.

Set ``MAGLEVX_PURE_PYTHON=1`` to force the pure-Python twin (the test suite
runs both). Both modules expose the same functions and constants.
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType:
    if os.environ.get("MAGLEVX_PURE_PYTHON", "") not in ("", "0"):
        from maglevx import _twin

        return _twin
    try:
        from maglevx import _core
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError(
            "maglevx's C extension is not built; install with `pip install .` "
            "or set MAGLEVX_PURE_PYTHON=1 for the (slow) pure-Python twin"
        ) from exc
    return _core


core = _load()
