"""Debian kernels and their headers, fetched into a cache without installing them.

``apt-get download`` + ``dpkg-deb -x`` unpack the packages under
``<cache>/kernels/<release>/root``; nothing touches the host's /boot, /lib/modules
or dpkg database. Each kernel the tests boot has a key (:data:`KERNELS`): its
architecture, where its packages come from (:mod:`.apt`) and how its ABI is
chosen - always from the package lists at run time, never hard-coded:

* ``"6.1"``: the ABI that bookworm's ``linux-image-amd64`` depends on;
* ``"6.12"``: the newest ``linux-image-6.12.*+deb12-amd64`` (bookworm backports
  via the security archive);
* ``"5.10"``: bullseye's ``linux-image-amd64`` (Debian 11 LTS);
* ``"6.12-trixie"``: trixie's ``linux-image-amd64`` (Debian 13);
* ``"6.1-686-pae"``, ``"6.1-arm64"``, ``"6.1-s390x"``: bookworm's
  ``linux-image-686-pae``, ``-arm64`` and ``-s390x`` for those architectures.

The matching ``linux-headers-*`` (+ ``-common``) are unpacked into the same root, so
the relative symlinks between them resolve; the one absolute ``include /usr/src/...``
in the arch headers Makefile is rewritten to point into the cache. The kbuild host
tools (``linux-kbuild-*``: fixdep, modpost) must run on the host, so for a foreign
architecture the *amd64* package of the same version is taken (from a Debian release
whose C library the host has).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

from . import apt, toolchain
from .apt import AptSource
from .arch import AMD64, ARCHES, ARM64, I386, S390X, Arch
from .common import REPO_ROOT, PrerequisiteError, cache_dir

__all__ = [
    "KERNELS",
    "KERNEL_KEYS",
    "REPO_ROOT",
    "Kernel",
    "KernelSpec",
    "PrerequisiteError",
    "cache_dir",
    "fetch_kernel",
    "headers_dir",
]


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    """How to find one kernel in Debian's package lists."""

    key: str
    arch: Arch
    source: AptSource
    meta: str = ""  # metapackage whose Depends: names the ABI
    newest: str = ""  # else: regex of image package names; the newest wins
    # build with this compiler instead of the headers' own (bullseye's gcc-10 and
    # trixie's gcc-14 are not in bookworm)
    cc: str = ""
    make_args: tuple[str, ...] = ()  # more make arguments for modules
    # a kernel key of the same major version built for the host's Debian release,
    # whose kbuild programs replace this kernel's (which need a newer C library)
    host_tools_from: str = ""

    @property
    def flavour(self) -> str:
        return {"amd64": "amd64", "i386": "686-pae", "arm64": "arm64"}.get(
            self.arch.name, self.arch.name
        )


KERNELS: dict[str, KernelSpec] = {
    s.key: s
    for s in (
        KernelSpec("6.1", AMD64, apt.HOST, meta="linux-image-amd64"),
        KernelSpec(
            "6.12",
            AMD64,
            apt.HOST,
            newest=r"linux-image-(6\.12\.\d+\+deb12-amd64)(-unsigned)?",
        ),
        KernelSpec("5.10", AMD64, apt.BULLSEYE, meta="linux-image-amd64", cc="gcc-12"),
        KernelSpec(
            "6.12-trixie",
            AMD64,
            apt.TRIXIE,
            meta="linux-image-amd64",
            cc="gcc-12",
            # built with gcc-14, whose -fmin-function-alignment gcc-12 lacks:
            # kbuild then aligns with -falign-functions (same alignment); its
            # pahole options need pahole >= 1.26 (bookworm: 1.24): no module BTF
            make_args=(
                "CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT=",
                "CONFIG_DEBUG_INFO_BTF_MODULES=",
            ),
            # its kbuild tools (modpost, objtool, resolve_btfids) need glibc 2.38
            host_tools_from="6.12",
        ),
        KernelSpec("6.1-686-pae", I386, apt.ports("i386"), meta="linux-image-686-pae"),
        KernelSpec("6.1-arm64", ARM64, apt.ports("arm64"), meta="linux-image-arm64"),
        KernelSpec("6.1-s390x", S390X, apt.ports("s390x"), meta="linux-image-s390x"),
    )
}
# The kernels of the main campaign (tests/kernel/test_kernel_parity.py).
KERNEL_KEYS = ("6.1", "6.12")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One unpacked Debian kernel (image, modules and build headers)."""

    key: str  # a key of KERNELS, e.g. "6.1"
    release: str  # uname -r, e.g. "6.1.0-56-amd64"
    package: str  # the linux-image package unpacked
    version: str  # its Debian version, e.g. "6.1.192-2"
    root: Path  # dpkg-deb -x target
    arch: Arch = AMD64

    @property
    def spec(self) -> KernelSpec:
        return KERNELS[self.key]

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    @property
    def headers_dir(self) -> Path:
        """KDIR for ``make -C KDIR M=$PWD modules``."""
        return self.root / "usr" / "src" / f"linux-headers-{self.release}"

    @property
    def make_args(self) -> list[str]:
        """Arguments ``make -C KDIR`` needs for this kernel's modules on this host.

        ``ARCH=`` and an absolute ``CROSS_COMPILE=`` (the unpacked cross toolchain)
        for another architecture; ``CC=gcc-12`` where the headers ask for a gcc
        bookworm lacks; the kernel's own extras (:attr:`KernelSpec.make_args`).
        """
        args = list(self.arch.kbuild)
        spec = KERNELS.get(self.key)
        if self.arch.cross:
            cross = toolchain.prefix(self.arch)
            args += [f"CROSS_COMPILE={cross}", f"CC={cross}gcc-12"]
        elif spec and spec.cc:
            args.append(f"CC={spec.cc}")
        return args + list(spec.make_args if spec else ())

    @property
    def meta(self) -> dict:
        p = self.root.parent / "kernel.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def describe(self) -> str:
        return f"{self.release} ({self.package} {self.version}, {self.arch.name})"


def _version_key(release: str):
    return tuple(int(x) for x in re.findall(r"\d+", release))


def _qualified(spec: KernelSpec, name: str) -> str:
    return f"{name}:{spec.arch.name}" if spec.arch.foreign else name


def resolve_image_package(key: str) -> tuple[str, str, str]:
    """(release, image package, version) that ``key`` names today, from apt's lists."""
    if key not in KERNELS:
        raise ValueError(f"unknown kernel key {key!r}; known: {sorted(KERNELS)}")
    spec = KERNELS[key]
    src = spec.source
    src.ensure_lists()
    if spec.meta:
        deps = src.depends(_qualified(spec, spec.meta))
        m = re.search(rf"Depends: linux-image-(\S+-{spec.flavour})\b", deps)
        if not m:
            raise PrerequisiteError(f"cannot resolve {spec.meta}'s kernel ABI ({key})")
        release = m.group(1).split(":")[0]
    else:
        rels = [
            m.group(1)
            for n in src.pkgnames("linux-image-")
            if (m := re.fullmatch(spec.newest, n))
        ]
        if not rels:
            raise PrerequisiteError(f"no {spec.newest} in apt's lists")
        release = max(set(rels), key=_version_key)
    names = [
        _qualified(spec, f"linux-image-{release}{suffix}")
        for suffix in ("-unsigned", "")
    ]
    versions = src.candidates(names)
    for name in names:
        if versions[name]:
            return release, name, versions[name]
    raise PrerequisiteError(f"no image package for {release} ({key})")


def _header_packages(spec: KernelSpec, release: str, version: str) -> list[str]:
    """linux-headers-<release> and what it depends on from the same source package."""
    first = _qualified(spec, f"linux-headers-{release}")
    pkgs = [first]
    deps = spec.source.depends(first)
    for m in re.finditer(
        r"Depends: (linux-headers-\S+-common\S*|linux-kbuild-\S+)", deps
    ):
        name = m.group(1).split(":")[0]
        if name.startswith("linux-kbuild-"):
            if spec.arch.foreign:  # the amd64 build of the same version runs here
                name = f"{name}:amd64"
            pkgs.append(f"{name}={version}")
        elif name not in pkgs:
            pkgs.append(f"{name}={version}")
    return pkgs


def _fix_headers(root: Path, release: str) -> None:
    """Point the arch headers Makefile's absolute include into the cache."""
    mk = root / "usr" / "src" / f"linux-headers-{release}" / "Makefile"
    text = mk.read_text()
    fixed = re.sub(r"^include /usr/src/", f"include {root}/usr/src/", text, flags=re.M)
    if fixed != text:
        mk.write_text(fixed)


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def _swap_host_tools(root: Path, donor: Kernel) -> list[str]:
    """Replace the ELF programs of ``root``'s linux-kbuild tree by ``donor``'s.

    Debian 13's kbuild programs need glibc 2.38; Debian 12 has 2.36. The same
    programs of bookworm's build of the same kernel series (6.12) run here; they
    only read and write ELF objects and C sources, not the kernel's ABI.
    """
    (mine,) = (root / "usr" / "lib").glob("linux-kbuild-*")
    (theirs,) = (donor.root / "usr" / "lib").glob("linux-kbuild-*")
    swapped = []
    for f in sorted(mine.rglob("*")):
        rel = f.relative_to(mine)
        other = theirs / rel
        if f.is_file() and not f.is_symlink() and _is_elf(f) and other.is_file():
            shutil.copy2(other, f)
            swapped.append(str(rel))
    missing = [
        str(f.relative_to(mine))
        for f in mine.rglob("*")
        if f.is_file() and _is_elf(f) and not (theirs / f.relative_to(mine)).exists()
    ]
    if missing:
        raise PrerequisiteError(
            f"kbuild programs without a host build in {donor.release}: {missing}"
        )
    return swapped


def _kernel(data: dict) -> Kernel:
    return Kernel(
        key=data["key"],
        release=data["release"],
        package=data["package"],
        version=data["version"],
        root=Path(data["root"]),
        arch=ARCHES[data.get("arch", "amd64")],
    )


def _complete(data: dict) -> bool:
    """An unpack with image and headers (older caches had i386 images alone)."""
    return (
        Path(data["root"]) / "usr/src" / f"linux-headers-{data['release']}"
    ).is_dir()


def _cached(key: str) -> Kernel | None:
    """The newest complete cached kernel for ``key`` (used when apt is unavailable)."""
    found = []
    for meta in (cache_dir() / "kernels").glob("*/kernel.json"):
        data = json.loads(meta.read_text())
        if data.get("key") == key and _complete(data):
            found.append(data)
    if not found:
        return None
    return _kernel(max(found, key=lambda d: _version_key(d["release"])))


def fetch_kernel(key: str, *, offline_ok: bool = True) -> Kernel:
    """Download and unpack kernel ``key`` (see :data:`KERNELS`) with its headers.

    Idempotent: a complete unpack (``kernel.json`` written last) is reused. When apt
    cannot be queried, the newest cached kernel for ``key`` is returned if any.
    """
    spec = KERNELS.get(key)
    if spec is None:
        raise ValueError(f"unknown kernel key {key!r}; known: {sorted(KERNELS)}")
    try:
        release, image_pkg, version = resolve_image_package(key)
    except (PrerequisiteError, subprocess.CalledProcessError) as exc:
        cached = _cached(key) if offline_ok else None
        if cached:
            return cached
        raise PrerequisiteError(f"cannot resolve kernel {key}: {exc}") from exc
    kdir = cache_dir() / "kernels" / release
    meta = kdir / "kernel.json"
    if meta.exists():
        data = json.loads(meta.read_text())
        if (
            data.get("key") == key
            and Path(data["root"]) == kdir / "root"
            and _complete(data)
        ):
            return _kernel(data)
    if shutil.which("dpkg-deb") is None:
        raise PrerequisiteError("dpkg-deb not found")
    root = kdir / "root"
    shutil.rmtree(root, ignore_errors=True)
    pkgs = [image_pkg] + _header_packages(spec, release, version)
    debs = spec.source.download(pkgs, kdir / "debs")
    for pkg in pkgs:
        apt.unpack(debs[pkg], root)
    _fix_headers(root, release)
    swapped: list[str] = []
    if spec.host_tools_from:
        swapped = _swap_host_tools(root, fetch_kernel(spec.host_tools_from))
    if not (root / "lib").exists() and (root / "usr" / "lib" / "modules").is_dir():
        # trixie's packages are merged-/usr (usr/lib/modules): depmod and modprobe
        # -d look in lib/modules
        (root / "lib").symlink_to("usr/lib")
    subprocess.run(
        ["depmod", "-b", str(root), release], check=True, capture_output=True
    )
    data = {
        "key": key,
        "arch": spec.arch.name,
        "release": release,
        "package": image_pkg,
        "version": version,
        "root": str(root),
        "packages": pkgs,
        "source": spec.source.name,
        "host_tools_from": spec.host_tools_from,
        "host_tools_swapped": swapped,
    }
    meta.write_text(json.dumps(data, indent=1))
    return _kernel(data)


def headers_dir(key: str) -> Path:
    """KDIR of the cached (fetched on demand) headers for kernel ``key``."""
    return fetch_kernel(key).headers_dir
