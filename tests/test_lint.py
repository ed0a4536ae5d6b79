"""The Python sources stay ruff-clean (lint and format)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff(args):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed (pip install -e '.[test]')")
    r = subprocess.run(
        [ruff, *args, "maglevx", "tests", "fuzz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_types_the_package():
    """The public API is typed: mypy over maglevx/ finds nothing."""
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "maglevx"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_stubs_match_the_extension():
    """maglevx/_core.pyi says what the built extension has (mypy's stubtest)."""
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "maglevx._core"],
        cwd=ROOT / "tests",  # import the installed package, not a shadowing tree
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
