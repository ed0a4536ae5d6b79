"""Debian kernels and their headers, fetched into a cache without installing them.

``apt-get download`` + ``dpkg-deb -x`` unpack the packages under
``<cache>/kernels/<release>/root``; nothing touches the host's /boot, /lib/modules
or dpkg database. Two kernels matter:

* ``"6.1"``: the ABI that ``linux-image-amd64`` depends on (Debian 12's default);
* ``"6.12"``: the newest ``linux-image-6.12.*+deb12-amd64`` (bookworm backports
  via the security archive).

The matching ``linux-headers-*`` (+ ``-common`` and ``linux-kbuild-*``) are unpacked
into the same root, so the relative symlinks between them resolve; the one absolute
``include /usr/src/...`` in the arch headers Makefile is rewritten to point into the
cache, which is all ``make -C <headers_dir> M=... modules`` needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
KERNEL_KEYS = ("6.1", "6.12")


def cache_dir() -> Path:
    """``$MAGLEVX_CACHE`` if set, else ``~/.cache/maglevx`` (outside the clone)."""
    env = os.environ.get("MAGLEVX_CACHE")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(env) if env else Path(xdg) / "maglevx"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One unpacked Debian kernel (image, modules and build headers)."""

    key: str  # "6.1" or "6.12"
    release: str  # uname -r, e.g. "6.1.0-56-amd64"
    package: str  # the linux-image package unpacked
    version: str  # its Debian version, e.g. "6.1.192-2"
    root: Path  # dpkg-deb -x target

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

    def describe(self) -> str:
        return f"{self.release} ({self.package} {self.version})"


class PrerequisiteError(RuntimeError):
    """Something needed on the host is missing and could not be obtained."""


def _run(cmd, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def _apt_lists_present() -> bool:
    lists = Path("/var/lib/apt/lists")
    # apt may keep them compressed: *_Packages, *_Packages.lz4, ...
    return lists.is_dir() and any("_Packages" in p.name for p in lists.iterdir())


def _ensure_apt_lists() -> None:
    if shutil.which("apt-cache") is None:
        raise PrerequisiteError("apt-cache not found (need a Debian host with apt)")
    if not _apt_lists_present():
        if os.geteuid() != 0:
            raise PrerequisiteError(
                "apt package lists are empty and not root: run apt-get update"
            )
        # A mirror index mid-sync makes apt-get update exit 100 while keeping
        # the other lists; what matters is that lists are there afterwards.
        subprocess.run(["apt-get", "update"], capture_output=True)
        if not _apt_lists_present():
            raise PrerequisiteError("apt-get update left no package lists")


def _pkg_exists(name: str) -> bool:
    out = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", name], capture_output=True, text=True
    )
    return out.returncode == 0 and "Package:" in out.stdout


def _version_key(release: str):
    return tuple(int(x) for x in re.findall(r"\d+", release))


def resolve_image_package(key: str) -> tuple[str, str]:
    """(release, image package) that ``key`` names today, from apt's lists."""
    _ensure_apt_lists()
    if key == "6.1":
        deps = _run(["apt-cache", "depends", "linux-image-amd64"])
        m = re.search(r"Depends: linux-image-(\d+\.\d+\.\d+-\d+-amd64)\b", deps)
        if not m:
            raise PrerequisiteError("cannot resolve linux-image-amd64's kernel ABI")
        release = m.group(1)
    elif key == "6.12":
        names = _run(["apt-cache", "pkgnames", "linux-image-6.12."]).split()
        rels = [
            m.group(1)
            for n in names
            if (
                m := re.fullmatch(
                    r"linux-image-(6\.12\.\d+\+deb12-amd64)(-unsigned)?", n
                )
            )
        ]
        if not rels:
            raise PrerequisiteError("no linux-image-6.12.*+deb12-amd64 in apt's lists")
        release = max(set(rels), key=_version_key)
    else:
        raise ValueError(f"unknown kernel key {key!r}; known: {KERNEL_KEYS}")
    for pkg in (f"linux-image-{release}-unsigned", f"linux-image-{release}"):
        if _pkg_exists(pkg):
            return release, pkg
    raise PrerequisiteError(f"no image package for {release}")


def _header_packages(release: str) -> list[str]:
    pkgs = [f"linux-headers-{release}"]
    deps = _run(["apt-cache", "depends", pkgs[0]])
    for m in re.finditer(r"Depends: (linux-headers-\S+-common|linux-kbuild-\S+)", deps):
        if m.group(1) not in pkgs:
            pkgs.append(m.group(1))
    return pkgs


def _fix_headers(root: Path, release: str) -> None:
    """Point the arch headers Makefile's absolute include into the cache."""
    mk = root / "usr" / "src" / f"linux-headers-{release}" / "Makefile"
    text = mk.read_text()
    fixed = re.sub(r"^include /usr/src/", f"include {root}/usr/src/", text, flags=re.M)
    if fixed != text:
        mk.write_text(fixed)


def _cached(key: str) -> Kernel | None:
    """The newest complete cached kernel for ``key`` (used when apt is unavailable)."""
    base = cache_dir() / "kernels"
    found = []
    for meta in base.glob("*/kernel.json"):
        data = json.loads(meta.read_text())
        if data.get("key") == key:
            found.append(data)
    if not found:
        return None
    data = max(found, key=lambda d: _version_key(d["release"]))
    return Kernel(
        key=key,
        release=data["release"],
        package=data["package"],
        version=data["version"],
        root=Path(data["root"]),
    )


def fetch_kernel(key: str, *, offline_ok: bool = True) -> Kernel:
    """Download and unpack kernel ``key`` ("6.1" or "6.12") with its headers; cached.

    Idempotent: a complete unpack (``kernel.json`` written last) is reused. When apt
    cannot be queried, the newest cached kernel for ``key`` is returned if any.
    """
    try:
        release, image_pkg = resolve_image_package(key)
    except (PrerequisiteError, subprocess.CalledProcessError) as exc:
        cached = _cached(key) if offline_ok else None
        if cached:
            return cached
        raise PrerequisiteError(f"cannot resolve kernel {key}: {exc}") from exc
    kdir = cache_dir() / "kernels" / release
    meta = kdir / "kernel.json"
    if meta.exists():
        data = json.loads(meta.read_text())
        if Path(data["root"]) == kdir / "root":
            return Kernel(
                key=key,
                release=release,
                package=data["package"],
                version=data["version"],
                root=kdir / "root",
            )
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PrerequisiteError("apt-get/dpkg-deb not found")
    debs = kdir / "debs"
    root = kdir / "root"
    shutil.rmtree(root, ignore_errors=True)
    debs.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True)
    pkgs = [image_pkg] + _header_packages(release)
    # apt-get download writes into the cwd; -o ... silences the _apt sandbox warning.
    subprocess.run(
        ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *pkgs],
        cwd=debs,
        check=True,
        capture_output=True,
    )
    version = ""
    for pkg in pkgs:
        deb = sorted(debs.glob(f"{pkg}_*.deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        if pkg == image_pkg:
            version = _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    _fix_headers(root, release)
    subprocess.run(
        ["depmod", "-b", str(root), release], check=True, capture_output=True
    )
    meta.write_text(
        json.dumps(
            {
                "key": key,
                "release": release,
                "package": image_pkg,
                "version": version,
                "root": str(root),
                "packages": pkgs,
            },
            indent=1,
        )
    )
    return Kernel(
        key=key, release=release, package=image_pkg, version=version, root=root
    )


def headers_dir(key: str) -> Path:
    """KDIR of the cached (fetched on demand) headers for kernel ``key``."""
    return fetch_kernel(key).headers_dir
