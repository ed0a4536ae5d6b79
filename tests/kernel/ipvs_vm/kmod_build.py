"""Build kmod/ip_vs_mh.ko against the cached Debian headers, as a user would.

Each build runs ``make W=1 KDIR=...`` in a private copy of ``kmod/`` and ``csrc/``
laid out as in the repository (so Kbuild's ``../csrc`` is exercised), leaving the
checkout clean and letting 6.1 and 6.12 objects coexist. The dkms variant lays the
tree out with ``make dkms-install`` (``csrc/`` inside) and builds it with the
``MAKE[0]`` line of ``dkms.conf``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
KMOD = REPO / "kmod"
CSRC = REPO / "csrc"


class BuildError(RuntimeError):
    pass


@dataclasses.dataclass
class Build:
    ko: Path
    log: str  # make's stdout + stderr

    @property
    def warnings(self) -> list[str]:
        """Compiler/modpost warnings and errors in the log."""
        return [
            ln
            for ln in self.log.splitlines()
            if re.search(r"\b(warning|error)\b", ln, re.I)
            and "Skipping BTF generation" not in ln
        ]


def ensure_pahole() -> None:
    """BTF for modules needs pahole (Debian: dwarves); install it when root."""
    if shutil.which("pahole") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "dwarves"],
            env=env,
            capture_output=True,
        )


def check_prerequisites(headers_dir: Path) -> None:
    """Raise BuildError naming what is missing to build against ``headers_dir``."""
    ensure_pahole()
    for tool in ("make", "gcc"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} not found")
    # Kernels with BTF ship vmlinux in their headers; modules then need pahole.
    if (headers_dir / "vmlinux").exists() and shutil.which("pahole") is None:
        raise BuildError(
            "pahole not found (apt-get install dwarves): needed for BTF "
            f"of modules built against {headers_dir.name}"
        )


def _copy_tree(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(
        "*.o",
        "*.ko",
        "*.mod",
        "*.mod.c",
        ".*.cmd",
        "modules.order",
        "Module.symvers",
        ".tmp_versions",
    )
    shutil.copytree(KMOD, dest / "kmod", ignore=ignore)
    shutil.copytree(CSRC, dest / "csrc", ignore=ignore)
    return dest / "kmod"


def _make(args: list[str], cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run(
        ["make", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise BuildError(
            f"make {' '.join(args)} failed ({proc.returncode}):\n{log[-6000:]}"
        )
    return log


def build(
    headers_dir: Path,
    out_dir: Path,
    *,
    target: str = "module",
    kcflags: str = "",
    make_args=(),
) -> Build:
    """``make W=1 KDIR=headers_dir [target]`` in a copy of the checkout under ``out_dir``.

    ``target``: ``module`` or ``debug`` (the self-test and fault injection);
    ``kcflags``: extra compiler flags (``KCFLAGS``), e.g. ``-DMX_NO_RESCHED``;
    ``make_args``: what the kernel needs besides (``Kernel.make_args``: ``CC=gcc-12``
    for headers that ask for a compiler bookworm lacks, ``ARCH=`` and
    ``CROSS_COMPILE=`` for another architecture).
    """
    check_prerequisites(headers_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    kmod = _copy_tree(out_dir)
    args = [target, f"KDIR={headers_dir}", "W=1", *make_args]
    if kcflags:
        args.append(f"KCFLAGS={kcflags}")
    log = _make(args, kmod)
    ko = kmod / "ip_vs_mh.ko"
    if not ko.exists():
        raise BuildError(f"no ip_vs_mh.ko after make:\n{log[-4000:]}")
    return Build(ko, log)


def dkms_conf_value(conf: str, name: str) -> str:
    m = re.search(rf'^{re.escape(name)}="(.*)"\s*$', conf, re.M)
    if not m:
        raise BuildError(f"dkms.conf has no {name}")
    return m.group(1)


def build_dkms_layout(headers_dir: Path, out_dir: Path) -> Build:
    """Install the dkms source tree into ``out_dir`` and build it as dkms would.

    With a ``dkms`` binary on the host this runs ``dkms build`` against private
    trees; otherwise it runs dkms.conf's ``MAKE[0]`` with dkms's variables.
    """
    check_prerequisites(headers_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    conf = (KMOD / "dkms.conf").read_text()
    name = dkms_conf_value(conf, "PACKAGE_NAME")
    version = dkms_conf_value(conf, "PACKAGE_VERSION")
    with tempfile.TemporaryDirectory(prefix="kmod-src-") as td:
        kmod = _copy_tree(Path(td))
        src = out_dir / "src" / f"{name}-{version}"
        _make(["dkms-install", f"DKMSDIR={src}"], kmod)
    # dkms copies the source tree to $dkms_tree/<name>/<version>/build
    build_dir = out_dir / "dkms" / name / version / "build"
    shutil.copytree(src, build_dir)
    if (build_dir.parent / "csrc").exists():
        raise BuildError("the dkms build tree must not have a ../csrc to fall back on")
    variables = {
        "kernel_source_dir": str(headers_dir),
        "dkms_tree": str(out_dir / "dkms"),
        "PACKAGE_NAME": name,
        "PACKAGE_VERSION": version,
    }
    cmd = dkms_conf_value(conf, "MAKE[0]")
    for k, v in variables.items():
        cmd = cmd.replace("${" + k + "}", v)
    args = shlex.split(cmd)
    if args[0] != "make":
        raise BuildError(f"MAKE[0] does not run make: {cmd}")
    log = _make(args[1:] + ["W=1"], build_dir)
    ko = build_dir / "ip_vs_mh.ko"
    if not ko.exists():
        raise BuildError(f"no ip_vs_mh.ko after dkms MAKE[0]:\n{log[-4000:]}")
    return Build(ko, log)


def checkpatch_script(cache: Path) -> Path:
    """scripts/checkpatch.pl: $CHECKPATCH, or unpacked from Debian's linux-source.

    Debian's linux-kbuild packages do not ship checkpatch.pl; linux-source-6.1
    does, inside its tarball. The .deb is fetched with ``apt-get download`` into
    ``cache`` (never installed) and only checkpatch and its data files unpacked.
    """
    env = os.environ.get("CHECKPATCH")
    if env:
        if not Path(env).exists():
            raise BuildError(f"CHECKPATCH={env} does not exist")
        return Path(env)
    dest = cache / "checkpatch"
    found = sorted(dest.glob("linux-source-*/scripts/checkpatch.pl"))
    if found:
        return found[-1]
    tars = sorted(Path("/usr/src").glob("linux-source-*.tar.xz"))
    if not tars:
        debs = cache / "checkpatch" / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            [
                "apt-get",
                "download",
                "-q",
                "-o",
                "APT::Sandbox::User=root",
                "linux-source-6.1",
            ],
            cwd=debs,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise BuildError(
                f"no checkpatch.pl: apt-get download linux-source-6.1 failed: "
                f"{r.stderr.strip()}"
            )
        root = debs / "root"
        for deb in debs.glob("linux-source-6.1_*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        tars = sorted(root.glob("usr/src/linux-source-*.tar.xz"))
        if not tars:
            raise BuildError("linux-source-6.1 has no tarball")
    top = tars[-1].name[: -len(".tar.xz")]
    members = [
        f"{top}/scripts/checkpatch.pl",
        f"{top}/scripts/spelling.txt",
        f"{top}/scripts/const_structs.checkpatch",
    ]
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["tar", "-C", str(dest), "-xJf", str(tars[-1]), *members],
        check=True,
        capture_output=True,
    )
    return dest / top / "scripts" / "checkpatch.pl"
