"""csrc/ must build unchanged without a C library (kernel-style)."""

import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
FLAGS = ["-ffreestanding", "-nostdlib", "-Wall", "-Wextra", "-Werror", "-O2", "-c"]


def _can_build_m32(cc):
    probe = subprocess.run(
        [cc, "-m32", "-ffreestanding", "-x", "c", "-c", "-o", "/dev/null", "-"],
        input="int x;\n",
        text=True,
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.parametrize("source", sorted(p.name for p in CSRC.glob("*.c")))
@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("arch", ["-m64", "-m32"])
def test_freestanding_build(tmp_path, source, cc, arch):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    if arch == "-m32" and not _can_build_m32(cc):
        pytest.skip(f"{cc} cannot target -m32 here (no multilib)")
    result = subprocess.run(
        [cc, arch, *FLAGS, str(CSRC / source), "-o", str(tmp_path / "out.o")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_only_port_header_knows_the_kernel():
    for path in [*CSRC.glob("*.c"), *CSRC.glob("*.h")]:
        if path.name != "mx_port.h":
            assert "__KERNEL__" not in path.read_text(), path.name
