"""What every part of the harness shares: the cache directory and the error for a
missing prerequisite."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


class PrerequisiteError(RuntimeError):
    """Something needed on the host is missing and could not be obtained."""


def cache_dir() -> Path:
    """``$MAGLEVX_CACHE`` if set, else ``~/.cache/maglevx`` (outside the clone)."""
    env = os.environ.get("MAGLEVX_CACHE")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(env) if env else Path(xdg) / "maglevx"
    path.mkdir(parents=True, exist_ok=True)
    return path
