"""Host prerequisites of the kernel tests: check, and install with apt when root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Debian 12 package -> how we know it is there
APT_PACKAGES = {
    "qemu-system-x86": lambda: shutil.which("qemu-system-x86_64"),
    "busybox-static": lambda: _static_busybox(),
    "ipvsadm": lambda: _which_any("ipvsadm"),
    "nftables": lambda: _which_any("nft"),  # marks for fwmark services in the guest
    "cpio": lambda: shutil.which("cpio"),
    "gcc": lambda: shutil.which("gcc"),
    "libc6-dev": lambda: Path("/usr/lib/x86_64-linux-gnu/libc.a").exists(),
    "make": lambda: shutil.which("make"),
    "kmod": lambda: _which_any("modprobe") and _which_any("depmod"),
    "zstd": lambda: shutil.which("zstd"),
    "xz-utils": lambda: shutil.which("xz"),
}


def _which_any(name: str):
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None
    )


def _static_busybox() -> bool:
    bb = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(bb):
        return False
    with open(bb, "rb") as f:
        head = f.read(1 << 16)
    return b"ld-linux" not in head  # the dynamic busybox names its loader in PT_INTERP


def missing() -> list[str]:
    """Debian packages whose tools are missing (plus non-package needs)."""
    out = [pkg for pkg, ok in APT_PACKAGES.items() if not ok()]
    for tool in ("apt-get", "dpkg-deb", "apt-cache"):
        if shutil.which(tool) is None:
            out.append(f"{tool} (a Debian host with apt)")
    return out


def ensure() -> list[str]:
    """Install what is missing when root with apt; return what is still missing."""
    need = [m for m in missing() if m in APT_PACKAGES]
    if need and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *need],
            env=env,
            capture_output=True,
        )
    return missing()


def explain(items) -> str:
    who = (
        "root"
        if os.geteuid() == 0
        else f"uid {os.geteuid()} (not root, cannot apt-get)"
    )
    return (
        f"kernel-test prerequisites missing: {', '.join(items)}; running as {who}. "
        f"Install with: sudo scripts/kernel-prereqs.sh"
    )
