"""Ask maglevx for its choice per flow, through its documented CLI contract:

    python -m maglevx predict --history HISTORY [--variant V] FLOWS_CSV

prints each input line ``proto,saddr,sport,daddr,dport`` with ``,raddr,rport``
appended (both empty: no destination), in input order.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .jobs import Flow


class PredictError(RuntimeError):
    pass


def maglevx_available() -> str | None:
    """None when ``python -m maglevx predict`` works, else why not."""
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "predict", "--help"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return (r.stderr or r.stdout).strip().splitlines()[-1:] or [
            "maglevx not importable"
        ]
    return None


def predict(
    history: str, flows: list[Flow], *, variant: str = "upstream", extra_args=()
) -> list[tuple[str, int] | None]:
    """maglevx's (raddr, rport) or None per flow, for ``history`` (ipvsadm -R lines)."""
    with tempfile.TemporaryDirectory(prefix="maglevx-pred-") as td:
        hist = Path(td) / "history"
        hist.write_text(history)
        csv = Path(td) / "flows.csv"
        csv.write_text("".join(f.csv() + "\n" for f in flows))
        cmd = [
            sys.executable,
            "-m",
            "maglevx",
            "predict",
            "--history",
            str(hist),
            "--variant",
            variant,
            *extra_args,
            str(csv),
        ]
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    if r.returncode != 0:
        raise PredictError(
            f"{' '.join(cmd[1:])} failed ({r.returncode}): {r.stderr.strip()}"
        )
    lines = r.stdout.splitlines()
    if len(lines) != len(flows):
        raise PredictError(f"maglevx printed {len(lines)} lines for {len(flows)} flows")
    out = []
    for f, line in zip(flows, lines):
        parts = line.split(",")
        if len(parts) != 7 or Flow.from_csv(line) != f:
            raise PredictError(f"unexpected maglevx output line {line!r} for {f.csv()}")
        out.append(None if parts[5] == "" else (parts[5], int(parts[6])))
    return out


def same_choice(kernel: tuple[str, int] | None, model: tuple[str, int] | None) -> bool:
    if kernel is None or model is None:
        return kernel is model
    return (
        ipaddress.ip_address(kernel[0]) == ipaddress.ip_address(model[0])
        and kernel[1] == model[1]
    )
