"""What `pip install .` installs: every module of the package, the stubs and py.typed.

The rest of the suite runs against an editable install, which would not notice a
subpackage missing from the wheel.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_has_every_module(tmp_path):
    # a clean copy: an in-tree build/ would hide a package missing from the config
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".cache", "build", "*.egg-info", "*.so", "__pycache__", ".*cache"
        ),
    )
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path), str(src)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = tmp_path.glob("maglevx-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "maglevx").rglob("*")
        if p.suffix in (".py", ".pyi") or p.name == "py.typed"
    }
    assert sources - names == set()
    assert any(n.startswith("maglevx/_core.") and n.endswith(".so") for n in names)
    assert any(n.startswith("maglevx/_fastcsv.") and n.endswith(".so") for n in names)
