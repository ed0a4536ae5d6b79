"""The extension tests again, with the extensions built under ASan and UBSan.

Issue 17: every function reachable from Python checks its buffers; this
proves it where a missing check would only read out of bounds silently.
The package is built in place in a copy of the tree with
-fsanitize=address,undefined and the tests that poke the extensions run
against that build, the sanitizer runtime preloaded into the interpreter.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/test_hostile_calls.py",
    "tests/test_core_twin.py",
    "tests/test_fast_paths.py",
    "tests/test_hsiphash.py",
    "tests/test_api.py",
    "tests/test_bounded_input.py",
]


def _runtime(name: str) -> str:
    r = subprocess.run(
        ["gcc", f"-print-file-name={name}"], capture_output=True, text=True
    )
    path = r.stdout.strip()
    if r.returncode != 0 or not os.path.isabs(path):
        pytest.fail(f"gcc has no {name} (apt-get install gcc)")
    return path


def test_extension_tests_pass_under_asan_and_ubsan(tmp_path):
    tree = tmp_path / "tree"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        if (ROOT / name).is_file() and not name.startswith("tests/data/real"):
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    flags = "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    env = dict(
        os.environ, CC="gcc", CFLAGS=flags, LDFLAGS="-fsanitize=address,undefined"
    )
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    env = dict(
        os.environ,
        LD_PRELOAD=f"{_runtime('libasan.so')}:{_runtime('libubsan.so')}",
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",  # CPython's own memory lives on
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
        PYTHONPATH=str(tree),
        MAGLEVX_PURE_PYTHON="0",
    )
    where = subprocess.run(
        [sys.executable, "-c", "import maglevx._core as c, maglevx._fastcsv as f; "
         "print(c.__file__); print(f.__file__)"],
        cwd=tree, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(str(tree) in line for line in where.stdout.split()), where.stdout
    for so in where.stdout.split():  # really instrumented
        syms = subprocess.run(["nm", "-D", so], capture_output=True, text=True).stdout
        assert "__asan_report" in syms and "__ubsan_handle" in syms, so
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "-k", "not sdist and not wheel", *TESTS],
        cwd=tree, env=env, capture_output=True, text=True,
    )  # fmt: skip
    out = run.stdout[-4000:] + run.stderr[-4000:]
    assert "AddressSanitizer" not in out and "runtime error" not in out, out
    assert run.returncode == 0, out
