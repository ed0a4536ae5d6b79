"""What offline predictions must be told, detected on a live director.

- the kernel's word size (``hsiphash`` is SipHash on 64-bit kernels,
  HalfSipHash on 32-bit ones): the width of the addresses in
  ``/proc/kallsyms`` (printed as zeros to non-root users, but at full width),
  else the machine ``uname`` reports;
- the byte order: the running Python's, which is the kernel's;
- which ``ip_vs_mh`` is loaded: maglevx's module (``kmod/``) has the
  ``table_size`` and ``hash_port`` parameters in
  ``/sys/module/ip_vs_mh/parameters``; the in-tree one has no parameters;
- the table size: our module's ``table_size``, or the in-tree
  ``CONFIG_IP_VS_MH_TAB_INDEX`` from ``/boot/config-$(uname -r)`` or
  ``/proc/config.gz``;
- ``expire_quiescent_template`` (``/proc/sys/net/ipv4/vs/``).

What cannot be known is named with the default taken, in
:attr:`KernelFacts.warnings`. Every path is read below *root* so that tests
can give a made-up tree.
"""

from __future__ import annotations

import gzip
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from maglevx._twin import PRIMES

DEFAULT_TAB_INDEX = 12  # Kconfig default of CONFIG_IP_VS_MH_TAB_INDEX
_MACHINES_64 = re.compile(
    r"^(x86_64|aarch64|arm64|ppc64(le)?|s390x|riscv64|"
    r"mips64(el)?|loongarch64|sparc64|alpha|ia64)$"
)
_MACHINES_32 = re.compile(r"^(i[3-6]86|armv\d.*|arm|ppc|s390|riscv32|mips(el)?|sparc)$")


@dataclass
class KernelFacts:
    """The parameters a :class:`maglevx.Director` needs, as this kernel has them."""

    release: str
    word_size: int
    byte_order: str
    table_size: int
    variant: str  # "upstream" (in-tree ip_vs_mh) or "backport" (maglevx's module)
    mh_module: str | None  # "in-tree", "maglevx", or None: not loaded
    mh_version: str | None = None
    backport_hash_port: bool = True
    expire_quiescent_template: bool = False
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)

    def describe(self) -> str:
        """One line: ``6.1.0-57-amd64: in-tree ip_vs_mh, 64-bit, M=4093``."""
        mod = {"in-tree": "in-tree ip_vs_mh", "maglevx": "maglevx's ip_vs_mh"}.get(
            self.mh_module or "", "no ip_vs_mh loaded"
        )
        return (
            f"{self.release}: {mod}, {self.word_size}-bit {self.byte_order}-"
            f"endian, M={self.table_size}"
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def detect_word_size(root: Path, warnings: list[str]) -> tuple[int, str]:
    """The kernel's word size and where it was learned."""
    kallsyms = root / "proc" / "kallsyms"
    try:
        with open(kallsyms, "rb") as f:
            first = f.readline().split()
        if first and len(first[0]) in (8, 16):
            return len(first[0]) * 4, str(kallsyms)
    except OSError:
        pass
    machine = os.uname().machine if root == Path("/") else ""
    if _MACHINES_64.match(machine):
        return 64, f"uname machine {machine}"
    if _MACHINES_32.match(machine):
        return 32, f"uname machine {machine}"
    warnings.append(
        f"word size unknown (no {kallsyms}, machine {machine!r}): taken as 64; "
        "give --word-size 32 for a 32-bit kernel"
    )
    return 64, "default"


def kernel_config(root: Path, release: str) -> tuple[str | None, str]:
    """The kernel's .config text and where it came from (None: not found)."""
    boot = root / "boot" / f"config-{release}"
    text = _read(boot)
    if text is not None:
        return text, str(boot)
    gz = root / "proc" / "config.gz"
    try:
        return gzip.decompress(gz.read_bytes()).decode(errors="replace"), str(gz)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None, f"{boot} or {gz}"


def detect(root: str | Path = "/", release: str | None = None) -> KernelFacts:
    """Detect the director parameters of the running kernel (see the module doc)."""
    root = Path(root)
    release = release or os.uname().release
    warnings: list[str] = []
    sources: dict[str, str] = {}
    word_size, sources["word_size"] = detect_word_size(root, warnings)
    mod = root / "sys" / "module" / "ip_vs_mh"
    params = mod / "parameters"
    mh_module: str | None = None
    version = None
    hash_port = True
    table_size = None
    if (params / "table_size").exists() or (params / "hash_port").exists():
        mh_module = "maglevx"
        version = (_read(mod / "version") or "").strip() or None
        ts = (_read(params / "table_size") or "").strip()
        if ts.isdigit() and int(ts) in PRIMES:
            table_size = int(ts)
            sources["table_size"] = str(params / "table_size")
        hp = (_read(params / "hash_port") or "Y").strip()
        hash_port = hp not in ("N", "n", "0")
        sources["hash_port"] = str(params / "hash_port")
    elif mod.exists():
        mh_module = "in-tree"
    sources["mh_module"] = str(mod)
    if table_size is None:
        config, where = kernel_config(root, release)
        index = None
        if config is not None:
            m = re.search(r"^CONFIG_IP_VS_MH_TAB_INDEX=(\d+)\s*$", config, re.M)
            if m and 8 <= int(m.group(1)) <= 17:
                index = int(m.group(1))
                sources["table_size"] = f"{where} CONFIG_IP_VS_MH_TAB_INDEX={index}"
            elif re.search(r"^CONFIG_IP_VS_MH=[ym]\s*$", config, re.M) is None:
                warnings.append(
                    f"{where}: the kernel has no mh scheduler "
                    "(CONFIG_IP_VS_MH is not set)"
                )
        if index is None:
            index = DEFAULT_TAB_INDEX
            sources["table_size"] = "default"
            if config is None:
                warnings.append(
                    f"table size unknown (no {where}): taken as "
                    f"{PRIMES[index - 8]} (CONFIG_IP_VS_MH_TAB_INDEX={index}, the "
                    "default); give --table-size"
                )
        table_size = PRIMES[index - 8]
    eqt_path = (
        root / "proc" / "sys" / "net" / "ipv4" / "vs" / "expire_quiescent_template"
    )
    eqt = (_read(eqt_path) or "").strip()
    sources["expire_quiescent_template"] = str(eqt_path) if eqt else "default"
    return KernelFacts(
        release=release,
        word_size=word_size,
        byte_order=sys.byteorder,
        table_size=table_size,
        variant="backport" if mh_module == "maglevx" else "upstream",
        mh_module=mh_module,
        mh_version=version,
        backport_hash_port=hash_port,
        expire_quiescent_template=eqt not in ("", "0"),
        sources=sources,
        warnings=warnings,
    )
