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


def test_sdist_builds_installs_and_predicts(tmp_path):
    """python -m build --sdist on a clean clone; install it in a fresh venv; predict.

    The venv sees the system's numpy and Cython (no downloads here); the sdist
    itself must carry everything the build needs (csrc/, the .pyx and .pxd).
    """
    clone = tmp_path / "clone"
    _copy_tracked(clone)
    r = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o",
         str(tmp_path / "dist"), str(clone)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (sdist,) = (tmp_path / "dist").glob("maglevx-*.tar.gz")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)  # fmt: skip
    py = venv / "bin" / "python"
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", str(sdist)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # run from an empty directory, so the installed package is the one imported
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run(
        [str(venv / "bin" / "maglevx"), "predict", "--history",
         str(ROOT / "examples/history.txt"), str(ROOT / "examples/flows.csv")],
        capture_output=True, text=True, cwd=work,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == (
        "tcp,198.51.100.83,63143,203.0.113.15,80,10.234.79.13,80"
    )
    where = subprocess.run(
        [str(py), "-c", "import maglevx, sys; print(maglevx.__file__, maglevx.__version__)"],
        capture_output=True, text=True, cwd=work,
    )  # fmt: skip
    assert str(venv) in where.stdout, where.stdout + where.stderr


def test_one_version_everywhere():
    """maglevx --version, the package metadata and __version__ agree."""
    from importlib.metadata import version

    import maglevx

    r = subprocess.run([sys.executable, "-m", "maglevx", "--version"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0
    assert r.stdout.split()[1] == maglevx.__version__ == version("maglevx")


def _copy_tracked(dest: Path) -> None:
    """The working tree's files git tracks or would track (a clean clone)."""
    r = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True,
    )  # fmt: skip
    if r.returncode != 0:  # not a git checkout
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".cache", "build", "*.egg-info", "*.so", "__pycache__", ".*cache"))  # fmt: skip
        return
    for name in filter(None, r.stdout.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def test_module_version_is_the_projects():
    """kmod's Makefile, dkms.conf and an installed dkms tree carry __version__."""
    import re

    import maglevx

    r = subprocess.run(["make", "-s", "-C", str(ROOT / "kmod"), "version"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == maglevx.__version__
    conf = (ROOT / "kmod/dkms.conf").read_text()
    assert (
        re.search(r'^PACKAGE_VERSION="([^"]+)"', conf, re.M)[1] == maglevx.__version__
    )
