"""The ceiling: bench/bare_loop.c, built as the extension is built.

Same compiler and flags as setuptools uses for maglevx._core (Python's
CC and CFLAGS, then setup.py's -O3), same csrc/ sources.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sysconfig
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["bench/bare_loop.c", "csrc/mx_maglev.c", "csrc/mx_bulk.c"]
EXTRA_COMPILE_ARGS = ["-O3"]  # setup.py's extra_compile_args


def command(exe: Path) -> list[str]:
    """The compiler command line that builds the bare loop into *exe*."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    cflags = shlex.split(sysconfig.get_config_var("CFLAGS") or "")
    return [*cc, *cflags, *EXTRA_COMPILE_ARGS, "-Icsrc", *SOURCES, "-o", str(exe)]


@cache
def build(out_dir: str) -> Path:
    """Compile the bare loop into *out_dir*; returns the executable."""
    exe = Path(out_dir) / "bare_loop"
    subprocess.run(command(exe), cwd=ROOT, check=True)
    return exe


def run(
    exe: Path, m: int, word_size: int, family: int, port: bool, n: int, reps: int
) -> dict[str, float]:
    """Lookups per second of each loop (best of *reps* passes of *n* flows)."""
    out = subprocess.run(
        [str(exe), str(m), str(word_size), str(family), str(int(port)), str(n),
         str(reps)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)
