"""Debian package lists for downloads only: the host's apt, or a private apt root.

The host's apt (bookworm, amd64) serves Debian 12's amd64 kernels and the guest
userland taken from the host. Everything else (Debian 11 and 13 kernels, and the
i386, arm64 and s390x packages of Debian 12) comes through a private apt root under
``<cache>/apt/<name>``: its own ``sources.list``, lists and package cache, the host's
keyrings. ``apt-get download`` and ``apt-cache`` run with ``-o Dir::...`` options
pointing there, so the host's sources, dpkg architectures and ``apt-get update`` are
left alone (another engineer's ``apt-get update`` does not fetch s390x indexes) and
nothing is ever installed from these lists.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .common import PrerequisiteError, cache_dir

MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Lists older than this are refreshed (the security archive moves kernel ABIs).
MAX_AGE_SECONDS = 12 * 3600
# apt-get download writes into the cwd; the option silences the _apt sandbox warning.
DOWNLOAD = ("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root")


def _suites(release: str) -> list[tuple[str, str]]:
    return [
        (MIRROR, release),
        (MIRROR, f"{release}-updates"),
        (SECURITY, f"{release}-security"),
    ]


@dataclasses.dataclass(frozen=True)
class AptSource:
    """Where packages for some kernels or userlands come from.

    ``name`` ``"host"`` is the host's own apt; any other name is a private root
    with ``release``'s suites for ``architectures`` (the first one is apt's
    native architecture there).
    """

    name: str
    release: str = ""
    architectures: tuple[str, ...] = ()

    @property
    def private(self) -> bool:
        return self.name != "host"

    @property
    def root(self) -> Path:
        return cache_dir() / "apt" / self.name

    def options(self) -> list[str]:
        """``-o`` options that point apt at this root (none for the host)."""
        if not self.private:
            return []
        r = self.root
        opts = {
            "Dir::Etc::SourceList": r / "sources.list",
            "Dir::Etc::SourceParts": r / "sources.list.d",
            "Dir::Etc::Preferences": r / "preferences",
            "Dir::Etc::PreferencesParts": r / "preferences.d",
            "Dir::State": r / "state",
            "Dir::State::Lists": r / "lists",
            "Dir::State::Status": r / "status",
            "Dir::Cache": r / "cache",
            "APT::Architecture": self.architectures[0],
            "APT::Architectures": ",".join(self.architectures),
            "APT::Sandbox::User": "root",
            "Acquire::Languages": "none",
            "APT::Get::List-Cleanup": "false",
        }
        out = []
        for k, v in opts.items():
            out += ["-o", f"{k}={v}"]
        return out

    def _layout(self) -> None:
        r = self.root
        for d in ("sources.list.d", "preferences.d", "state", "lists/partial", "cache"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "status").touch()
        (r / "preferences").touch()
        lines = [
            f"deb [arch={','.join(self.architectures)} signed-by={KEYRING}] {uri} {suite} main"
            for uri, suite in _suites(self.release)
        ]
        text = "\n".join(lines) + "\n"
        src = r / "sources.list"
        if not src.exists() or src.read_text() != text:
            src.write_text(text)
            stamp = r / "updated"
            if stamp.exists():
                stamp.unlink()

    def _lists_present(self) -> bool:
        lists = self.root / "lists"
        return lists.is_dir() and any("_Packages" in p.name for p in lists.iterdir())

    def ensure_lists(self, *, max_age: float = MAX_AGE_SECONDS) -> None:
        """Fetch (or refresh) this root's package lists. No-op for the host."""
        if shutil.which("apt-get") is None:
            raise PrerequisiteError("apt-get not found (need a Debian host with apt)")
        if not self.private:
            return
        self._layout()
        stamp = self.root / "updated"
        fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < max_age
        if fresh and self._lists_present():
            return
        # One index mid-sync makes apt-get update exit 100 while keeping the others:
        # what matters is that lists are there afterwards (and the kernel found).
        r = subprocess.run(
            ["apt-get", *self.options(), "update", "-q"],
            capture_output=True,
            text=True,
        )
        if not self._lists_present():
            raise PrerequisiteError(
                f"apt-get update of {self.root} left no package lists: "
                + (r.stderr or r.stdout).strip()[-600:]
            )
        stamp.touch()

    def cache(self, *args: str, check: bool = True) -> str:
        """``apt-cache ARGS`` against this source's lists; stdout."""
        r = subprocess.run(
            ["apt-cache", *self.options(), *args], capture_output=True, text=True
        )
        if check and r.returncode != 0:
            raise PrerequisiteError(
                f"apt-cache {' '.join(args)} failed: {r.stderr.strip()[-400:]}"
            )
        return r.stdout

    def candidates(self, names) -> dict[str, str | None]:
        """{``pkg[:arch]``: candidate version or None}, with one apt-cache call."""
        names = list(names)
        text = self.cache("policy", *names, check=False)
        got: dict[str, str | None] = {}
        cur = None
        for line in text.splitlines():
            if line and not line[0].isspace() and line.endswith(":"):
                cur = line[:-1]
            elif cur and line.strip().startswith("Candidate:"):
                v = line.split(":", 1)[1].strip()
                got[cur] = None if v == "(none)" else v
        native = self.architectures[0] if self.private else "amd64"
        out = {}
        for name in names:
            base, _, arch = name.partition(":")
            # apt-cache prints native-architecture packages without ":arch"
            out[name] = got.get(name) or (
                got.get(base) if arch in ("", native) else None
            )
        return out

    def depends(self, package: str) -> str:
        return self.cache("depends", package)

    def pkgnames(self, prefix: str) -> list[str]:
        return self.cache("pkgnames", prefix).split()

    def download(self, packages, debs: Path) -> dict[str, Path]:
        """``apt-get download`` into ``debs``; {package spec: .deb path}."""
        debs.mkdir(parents=True, exist_ok=True)
        packages = list(packages)
        r = subprocess.run(
            [*DOWNLOAD, *self.options(), *packages],
            cwd=debs,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise PrerequisiteError(
                f"apt-get download {' '.join(packages)} failed: {r.stderr.strip()[-600:]}"
            )
        out = {}
        for spec in packages:
            # "name[:arch][=version]" (a version may hold an epoch's colon)
            m = re.fullmatch(r"([^:=]+)(?::([^=]+))?(?:=(.*))?", spec)
            name, arch, version = m.group(1), m.group(2), m.group(3)
            ver = re.sub(r"^\d+:", "", version) if version else "*"
            ver = ver.replace("+", "*") if version else ver  # '+' may be %2b
            pattern = f"{name}_{ver}_{arch or '*'}.deb"
            found = sorted(debs.glob(pattern), key=lambda p: p.stat().st_mtime)
            if not found:
                raise PrerequisiteError(f"apt-get download left no {pattern} in {debs}")
            out[spec] = found[-1]
        return out


HOST = AptSource("host")
BULLSEYE = AptSource("bullseye-amd64", "bullseye", ("amd64",))
TRIXIE = AptSource("trixie-amd64", "trixie", ("amd64",))


def ports(arch: str) -> AptSource:
    """Debian 12's packages for a foreign architecture (one private root each).

    amd64 too: the kbuild host tools of the same kernel version run on the host.
    """
    return AptSource(f"bookworm-{arch}", "bookworm", (arch, "amd64"))


def unpack(deb: Path, root: Path) -> str:
    """``dpkg-deb -x deb root``; returns the package's Version."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def tmp_name(out: Path) -> Path:
    """A private temporary name next to ``out`` (two threads may build it at once)."""
    import threading

    return out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
