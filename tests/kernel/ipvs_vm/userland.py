"""The guest's programs for an architecture: busybox, ipvsadm and its libraries, and
the static flow generator built from ``tests/kernel/flowgen.c``.

* amd64: the host's own ``busybox`` (busybox-static) and ``ipvsadm`` with the
  libraries ``ldd`` names;
* any other architecture: Debian 12's ``busybox-static``, ``ipvsadm`` and its
  libraries (libnl-3, libnl-genl-3, libpopt0, libc6), and ``nftables`` with its
  libraries (the decision scenarios mark packets for fwmark services and watch
  one-packet datagrams with nft, as on amd64) for that architecture, fetched
  with ``apt-get download`` from a private apt root (:mod:`.apt`) and unpacked into
  ``<cache>/userland-<arch>/root`` - never installed. The library closure is read
  from the ELF ``NEEDED`` entries with readelf (the host's ldd cannot run a
  foreign binary);
* flowgen: the architecture's C compiler with ``-static`` (the host's gcc, ``gcc
  -m32`` for i386, the unpacked cross gcc of :mod:`.toolchain` for arm64 and
  s390x), cached by source hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

from . import apt, toolchain
from .arch import Arch
from .common import HERE, PrerequisiteError, cache_dir

FLOWGEN_SRC = HERE.parent / "flowgen.c"
PACKAGES = (
    "busybox-static",
    "ipvsadm",
    "libnl-3-200",
    "libnl-genl-3-200",
    "libpopt0",
    "libc6",
    # nft and its Depends closure (Debian 12: nftables -> libnftables1, libedit2)
    "nftables",
    "libnftables1",
    "libnftnl11",
    "libmnl0",
    "libxtables12",
    "libjansson4",
    "libgmp10",
    "libedit2",
    "libbsd0",
    "libmd0",
    "libtinfo6",
)


def _run(cmd, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def _tool(name: str) -> Path:
    for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        p = Path(d) / name
        if p.exists():
            return p
    found = shutil.which(name)
    if not found:
        raise PrerequisiteError(f"{name} not found on the host")
    return Path(found)


@dataclasses.dataclass(frozen=True)
class Userland:
    arch: Arch
    root: Path | None  # unpacked packages (None: the host's own programs)
    versions: dict  # package -> Debian version (or host file digests)

    @property
    def busybox(self) -> Path:
        return self.root / "bin" / "busybox" if self.root else _tool("busybox")

    @property
    def ipvsadm(self) -> Path:
        return self.root / "sbin" / "ipvsadm" if self.root else _tool("ipvsadm")

    @property
    def nft(self) -> Path | None:
        """nft (package nftables), or None where the host has none."""
        if self.root:
            return self.root / "usr" / "sbin" / "nft"
        found = shutil.which("nft")
        return Path(found) if found else None

    def files(self) -> dict[str, Path]:
        """{path in the guest: host file} for busybox, ipvsadm, nft and libraries."""
        out = {"bin/busybox": self.busybox, "bin/ipvsadm": self.ipvsadm}
        binaries = [self.ipvsadm]
        if self.nft is not None:
            # the decision scenarios mark packets for fwmark services and watch
            # one-packet datagrams with nft
            out["bin/nft"] = self.nft
            binaries.append(self.nft)
        for b in binaries:
            out.update(
                library_closure(self.root, b, self.arch)
                if self.root
                else _ldd_closure(b)
            )
        return out


def _ldd_closure(binary: Path) -> dict[str, Path]:
    out = {}
    text = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    for line in text.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            out[m.group(1).lstrip("/")] = Path(os.path.realpath(m.group(1)))
    return out


def library_closure(root: Path, binary: Path, arch: Arch) -> dict[str, Path]:
    """{path in the guest: file under ``root``} for ``binary``'s loader and libraries.

    Read from the ELF program interpreter and ``NEEDED`` entries with readelf,
    recursively, because the host's ldd cannot run a foreign binary.
    """
    dirs = (f"lib/{arch.triplet}", f"usr/lib/{arch.triplet}", "lib", "usr/lib")
    out: dict[str, Path] = {}
    todo = [binary]
    while todo:
        elf = todo.pop()
        text = _run(["readelf", "-d", "-l", str(elf)])
        interp = re.search(r"Requesting program interpreter: (\S+?)\]", text)
        if interp and interp.group(1).lstrip("/") not in out:
            guest = interp.group(1).lstrip("/")
            out[guest] = Path(os.path.realpath(root / guest))
        for soname in re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", text):
            for d in dirs:
                cand = root / d / soname
                if cand.exists():
                    guest = f"{d}/{soname}"
                    if guest not in out:
                        out[guest] = Path(os.path.realpath(cand))
                        todo.append(out[guest])
                    break
            else:
                raise PrerequisiteError(f"{soname} (needed by {elf.name}) not unpacked")
    return out


def fetch(arch: Arch, *, offline_ok: bool = True) -> Userland:
    """The guest userland of ``arch`` (cached; packages re-fetched when apt moves)."""
    if arch.host_userland:
        host = {"busybox": "host", "ipvsadm": "host"}
        if shutil.which("nft"):
            host["nft"] = "host"  # (in the image's cache key)
        return Userland(arch, None, host)
    # the package list in the name: checkouts with other lists keep their own
    names_digest = hashlib.sha256(" ".join(PACKAGES).encode()).hexdigest()[:8]
    udir = cache_dir() / f"userland-{arch.name}-{names_digest}"
    meta = udir / "userland.json"
    src = apt.ports(arch.name)
    names = [f"{p}:{arch.name}" for p in PACKAGES]
    try:
        src.ensure_lists()
        cands = src.candidates(names)
        want = {p: cands[f"{p}:{arch.name}"] for p in PACKAGES}
    except (PrerequisiteError, subprocess.CalledProcessError):
        if offline_ok and meta.exists():
            return Userland(arch, udir / "root", json.loads(meta.read_text()))
        raise
    if meta.exists() and json.loads(meta.read_text()) == want:
        return Userland(arch, udir / "root", want)
    missing = [p for p, v in want.items() if v is None]
    if missing:
        raise PrerequisiteError(
            f"not in apt's {arch.name} lists ({src.root}): {', '.join(missing)}"
        )
    shutil.rmtree(udir / "root", ignore_errors=True)
    shutil.rmtree(udir / "debs", ignore_errors=True)
    debs = src.download(names, udir / "debs")
    got = {p: apt.unpack(debs[f"{p}:{arch.name}"], udir / "root") for p in PACKAGES}
    meta.write_text(json.dumps(got, indent=1))
    return Userland(arch, udir / "root", got)


_CACHE: dict[str, Userland] = {}
_LOCK = threading.Lock()


def get(arch: Arch) -> Userland:
    """:func:`fetch` once per process and architecture (apt-cache takes seconds)."""
    with _LOCK:
        if arch.name not in _CACHE:
            _CACHE[arch.name] = fetch(arch)
        return _CACHE[arch.name]


def build_flowgen(arch: Arch | None = None) -> Path:
    """flowgen.c as a static binary for ``arch`` (default amd64), cached by source."""
    from .arch import AMD64

    arch = arch or AMD64
    cc = [toolchain.prefix(arch) + "gcc-12"] if arch.cross else list(arch.cc)
    src = FLOWGEN_SRC.read_bytes()
    digest = hashlib.sha256(src + " ".join(arch.cc).encode()).hexdigest()[:12]
    suffix = "" if arch.name == "amd64" else f"-{arch.name}"
    out = cache_dir() / "bin" / f"flowgen{suffix}-{digest}"
    if out.exists():
        return out
    if shutil.which(cc[0]) is None:
        raise PrerequisiteError(
            f"{cc[0]} not found (apt-get install {' '.join(arch.cc_packages)})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = apt.tmp_name(out)
    r = subprocess.run(
        [*cc, "-O2", "-static", "-Wall", "-o", str(tmp), str(FLOWGEN_SRC)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise PrerequisiteError(
            f"{' '.join(cc)} -static failed (apt-get install "
            f"{' '.join(arch.cc_packages)}): {r.stderr.strip()[-500:]}"
        )
    if not arch.elf_ok(tmp.read_bytes()[:20]):
        raise PrerequisiteError(f"{' '.join(cc)} did not build a {arch.name} ELF")
    os.replace(tmp, out)
    return out
