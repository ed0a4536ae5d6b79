"""`--plot`: table, diff and consistency write PNG files."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parent.parent
H = "examples/history.txt"


@pytest.mark.parametrize(
    "args",
    [["table", "--history", H],
     ["diff", H, "--drain", "10.234.79.13:80", "--sample", "500"],
     ["consistency", H, f"{H}:word-size=32", "--sample", "500"]],
)  # fmt: skip
def test_plot_writes_a_png(tmp_path, args):
    png = tmp_path / "p.png"
    r = subprocess.run([sys.executable, "-m", "maglevx", *args, "--plot", str(png)],
                       cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
