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


# What kmod/ links into the module: it must need nothing from a C library.
KERNEL_SOURCES = ["mx_maglev.c", "mx_hsiphash.c"]


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("arch", ["-m64", "-m32"])
def test_kernel_objects_link_with_nothing_undefined(tmp_path, cc, arch):
    """lz4's check: link the objects together; no symbol may stay undefined.

    Compiling with -nostdlib alone proves nothing (-c does not link); a call
    the compiler inserts (memset, memcpy, __udivdi3 on 32-bit) only shows up
    as an undefined symbol of the linked objects.
    """
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    if arch == "-m32" and not _can_build_m32(cc):
        pytest.skip(f"{cc} cannot target -m32 here (no multilib)")
    objs = []
    for source in KERNEL_SOURCES:
        obj = tmp_path / (source + ".o")
        # -fno-pie as the kernel builds (PIC on i386 refers to the GOT)
        r = subprocess.run([cc, arch, "-fno-pie", *FLAGS, str(CSRC / source), "-o", str(obj)],
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0, r.stderr
        objs.append(str(obj))
    linked = tmp_path / "core.o"
    r = subprocess.run([cc, arch, "-nostdlib", "-r", *objs, "-o", str(linked)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    nm = subprocess.run(["nm", "-u", str(linked)], capture_output=True, text=True)
    assert nm.returncode == 0, nm.stderr
    assert nm.stdout.split() == [], f"undefined symbols: {nm.stdout}"
    defined = subprocess.run(["nm", "--defined-only", str(linked)],
                             capture_output=True, text=True).stdout  # fmt: skip
    assert " mx_build_table" in defined and " mx_hsiphash64" in defined


def test_only_port_header_knows_the_kernel():
    for path in [*CSRC.glob("*.c"), *CSRC.glob("*.h")]:
        if path.name != "mx_port.h":
            assert "__KERNEL__" not in path.read_text(), path.name
