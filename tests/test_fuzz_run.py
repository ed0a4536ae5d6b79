"""Bounded fuzzing runs of every target (`bash fuzz/run.sh --only T --time S`).

The csrc/ core runs under libFuzzer with ASan and UBSan against the trivial
reference in fuzz/fuzz_core.c; the parsers run under atheris with the oracle
of fuzz/oracles.py. About a minute in all; the long run is `bash fuzz/run.sh
--long` (docs/fuzzing.md). Under CI=true missing prerequisites are installed
(fuzz/prereqs.sh); elsewhere their absence skips.
"""

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECONDS = {"core": 15, "history": 5, "snapshot": 5, "flows": 5, "captures": 5, "cli": 5}


def ensure_prereqs(need_clang: bool, need_atheris: bool) -> None:
    """Install clang/libFuzzer/atheris under CI=true, else skip without them."""
    missing = (need_clang and shutil.which("clang") is None) or (
        need_atheris and importlib.util.find_spec("atheris") is None
    )
    if os.environ.get("CI") == "true":
        r = subprocess.run(
            ["bash", str(ROOT / "fuzz" / "prereqs.sh")], capture_output=True, text=True
        )
        assert r.returncode == 0, "fuzz/prereqs.sh failed:\n" + r.stdout + r.stderr
    elif missing:
        pytest.skip("fuzzing prerequisites missing: run `bash fuzz/prereqs.sh`")


@pytest.mark.parametrize("target", list(SECONDS))
def test_bounded_fuzz_run(target, tmp_path):
    ensure_prereqs(target == "core", target != "core")
    env = dict(os.environ, MAGLEVX_FUZZ_DIR=str(tmp_path))
    r = subprocess.run(
        ["bash", str(ROOT / "fuzz" / "run.sh"), "--only", target,
         "--time", str(SECONDS[target])],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    log = tmp_path / "logs" / f"{target}.log"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    assert r.returncode == 0, r.stdout + r.stderr + tail
    m = re.search(rf"^fuzz {target}: (\d+) runs, 0 crashes$", r.stdout, re.M)
    assert m and int(m.group(1)) > 0, r.stdout + r.stderr + tail
