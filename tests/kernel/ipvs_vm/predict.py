"""Ask maglevx for its choice per flow, in the format of its CLI contract:

    python -m maglevx predict --history HISTORY [--variant V] FLOWS_CSV

prints each input line ``proto,saddr,sport,daddr,dport`` with ``,raddr,rport``
appended (both empty: no destination), in input order.

By default the engine behind that CLI runs in-process
(``maglevx.predict.predict_lines`` over ``Director.from_history``): a subprocess per
phase costs ~0.3 s of interpreter start-up, minutes over a campaign. Set
``MAGLEVX_PREDICT=cli`` to go through ``python -m maglevx predict`` instead; a test
checks both paths agree.
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
    history: str,
    flows: list[Flow],
    *,
    variant: str = "upstream",
    extra_args=(),
    mode: str | None = None,
) -> list[tuple[str, int] | None]:
    """maglevx's (raddr, rport) or None per flow, for ``history`` (ipvsadm -R lines)."""
    mode = mode or os.environ.get("MAGLEVX_PREDICT", "api")
    if mode == "api" and not extra_args:
        import io

        import maglevx
        from maglevx.predict import predict_lines

        director = maglevx.Director.from_history(history, variant=variant)
        buf = io.StringIO()
        predict_lines(director, (f.csv() for f in flows), buf)
        return _parse_output(buf.getvalue(), flows)
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
    return _parse_output(r.stdout, flows)


def _parse_output(text: str, flows: list[Flow]) -> list[tuple[str, int] | None]:
    lines = text.splitlines()
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
