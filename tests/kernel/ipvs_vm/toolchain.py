"""Cross compilers for arm64 and s390x, unpacked into the cache, not installed.

Debian 12's ``gcc-multilib`` (which ``-m32`` builds need: the i386 guest's flow
generator, and the suite's 32-bit core tests) conflicts with every cross gcc
package: installing one removes the other. So the cross toolchains
(``gcc-12-<triplet>``, its ``cpp`` and ``binutils``, and the target's libc and
libgcc for static programs) are fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` under ``<cache>/toolchain-<arch>/root``. GCC finds its own
programs, headers and libraries relative to where it runs, so the unpacked
``usr/bin/<triplet>-gcc-12`` works as installed; kbuild gets it through an absolute
``CROSS_COMPILE``.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

from . import apt
from .arch import Arch
from .common import PrerequisiteError, cache_dir

_LOCK = threading.Lock()


def packages(arch: Arch) -> list[str]:
    """The host (amd64) packages of ``arch``'s cross toolchain."""
    t, d = arch.triplet, arch.name  # aarch64-linux-gnu, arm64
    return [
        f"binutils-{t}",
        f"cpp-12-{t}",
        f"gcc-12-{t}",
        f"gcc-12-{t}-base",
        f"libgcc-12-dev-{d}-cross",
        f"libgcc-s1-{d}-cross",
        f"libc6-{d}-cross",
        f"libc6-dev-{d}-cross",
        f"linux-libc-dev-{d}-cross",
    ]


def prefix(arch: Arch) -> str:
    """``CROSS_COMPILE`` for ``arch``: an absolute path prefix ('' for native)."""
    if not arch.cross:
        return ""
    return str(fetch(arch) / f"{arch.triplet}-")


def fetch(arch: Arch) -> Path:
    """The ``usr/bin`` of ``arch``'s unpacked cross toolchain (cached)."""
    with _LOCK:
        tdir = cache_dir() / f"toolchain-{arch.name}"
        meta = tdir / "toolchain.json"
        bindir = tdir / "root" / "usr" / "bin"
        names = packages(arch)
        if meta.exists() and sorted(json.loads(meta.read_text())) == sorted(names):
            return bindir
        src = apt.HOST
        src.ensure_lists()
        cands = src.candidates(names)
        missing = [n for n, v in cands.items() if v is None]
        if missing:
            raise PrerequisiteError(f"not in apt's lists: {', '.join(missing)}")
        shutil.rmtree(tdir / "root", ignore_errors=True)
        debs = src.download(names, tdir / "debs")
        got = {n: apt.unpack(debs[n], tdir / "root") for n in names}
        gcc = bindir / f"{arch.triplet}-gcc-12"
        if not gcc.exists():
            raise PrerequisiteError(f"{gcc} missing after unpacking {names}")
        meta.write_text(json.dumps(got, indent=1))
        return bindir
