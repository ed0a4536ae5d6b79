"""Debian's i386 kernel as a 32-bit director, for the HalfSipHash path.

On 32-bit kernels ``hsiphash()`` is HalfSipHash-1-3, so the same history gives a
different Maglev table than on x86_64; only a real 32-bit kernel can prove
``maglevx --word-size 32``. This module is the i386 twin of kernels.py,
initramfs.py, qemu.py and compare.py, reusing them wherever they are not tied to
the host's architecture:

* kernel: ``linux-image-6.1.0-NN-686-pae(-unsigned)`` for architecture i386
  (after ``dpkg --add-architecture i386``), fetched with ``apt-get download`` and
  unpacked with ``dpkg-deb -x`` into ``<cache>/kernels/<release>/root`` like the
  amd64 ones; never installed on the host;
* userland: busybox-static, ipvsadm and its libraries (libnl-3, libnl-genl-3,
  libpopt0, libc6) for i386, unpacked into ``<cache>/i386-userland/root``; the
  library closure is read from the ELF ``NEEDED`` entries (the host's ldd cannot
  run an i386 binary);
* flow generator: ``tests/kernel/flowgen.c`` built with ``gcc -m32 -static``
  (Debian's gcc-multilib);
* guest: ``qemu-system-i386`` in TCG mode, booting the uncompressed ELF kernel
  through its PVH note (Debian's 686-pae has ``CONFIG_PVH=y``).

The guest's /init, network setup, job scripts and the flow generator's output are
exactly those of the x86_64 harness, so both architectures run the same scenarios.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import compare, initramfs, jobs, predict, qemu
from . import scenarios as scen
from .kernels import Kernel, PrerequisiteError, cache_dir

KEY = "6.1-686-pae"
FLAVOUR = "686-pae"
WORD_SIZE = 32
USERLAND_PACKAGES = (
    "busybox-static",
    "ipvsadm",
    "libnl-3-200",
    "libnl-genl-3-200",
    "libpopt0",
    "libc6",
)
# apt-get download writes into the cwd; the option silences the _apt sandbox warning.
APT_DOWNLOAD = ("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root")


def _run(cmd, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def _candidates(names) -> dict[str, str | None]:
    """{name: candidate version or None} for ``names`` (``pkg:arch``), one apt call.

    apt-cache is slow (seconds per call on a loaded machine): ask once.
    """
    r = subprocess.run(
        ["apt-cache", "policy", *names], capture_output=True, text=True, check=False
    )
    got: dict[str, str | None] = {}
    cur = None
    for line in r.stdout.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            cur = line[:-1]
        elif cur and line.strip().startswith("Candidate:"):
            v = line.split(":", 1)[1].strip()
            got[cur] = None if v == "(none)" else v
    out = {}
    for name in names:
        # apt-cache prints native-architecture packages without ":amd64"
        out[name] = got.get(name, got.get(name.split(":")[0]))
        if ":" in name and name.split(":")[0] in got and name not in got:
            out[name] = None
    return out


def _require_i386_lists() -> None:
    if shutil.which("apt-cache") is None or shutil.which("dpkg-deb") is None:
        raise PrerequisiteError("apt-cache/dpkg-deb not found (need a Debian host)")
    archs = _run(["dpkg", "--print-foreign-architectures"]).split()
    if "i386" not in archs:
        raise PrerequisiteError(
            "dpkg has no i386 architecture: run scripts/i386-prereqs.sh "
            "(dpkg --add-architecture i386 && apt-get update)"
        )
    if _candidates(["libc6:i386"])["libc6:i386"] is None:
        raise PrerequisiteError(
            "apt has no i386 package lists: run scripts/i386-prereqs.sh (apt-get update)"
        )


@dataclasses.dataclass(frozen=True)
class Release:
    release: str  # uname -r, e.g. "6.1.0-56-686-pae"
    package: str  # linux-image-...:i386
    version: str  # its Debian version
    note: str  # why this one (empty when it is the amd64 ABI)


def resolve_release() -> Release:
    """The i386 image of the 6.1 ABI that ``linux-image-amd64`` depends on.

    When apt's i386 lists do not carry that ABI (the security archive's i386 index
    can lag the amd64 one), take the ABI of ``linux-image-686-pae:i386`` instead
    and say so in ``note``: ip_vs_mh and hsiphash are the same across 6.1 stable.
    """
    _require_i386_lists()
    deps = _run(
        ["apt-cache", "depends", "linux-image-amd64", f"linux-image-{FLAVOUR}:i386"]
    )
    m = re.search(r"Depends: linux-image-(\d+\.\d+\.\d+-\d+)-amd64\b", deps)
    abi = m.group(1) if m else "(unknown)"
    m = re.search(rf"Depends: linux-image-(\S+-{FLAVOUR}):i386", deps)
    fallback = m.group(1) if m else None
    names = [
        f"linux-image-{rel}{suffix}:i386"
        for rel in (f"{abi}-{FLAVOUR}", fallback)
        if rel
        for suffix in ("-unsigned", "")
    ]
    versions = _candidates(names)
    for name in names:
        if versions[name]:
            release = (
                name[len("linux-image-") :].split(":")[0].removesuffix("-unsigned")
            )
            note = ""
            if not release.startswith(f"{abi}-"):
                note = (
                    f"linux-image-{abi}-{FLAVOUR}:i386 is not in apt's lists; "
                    f"took linux-image-{FLAVOUR}:i386's {release}"
                )
            return Release(release, name, versions[name], note)
    raise PrerequisiteError(f"no linux-image-6.1.0-*-{FLAVOUR} for i386 in apt's lists")


def _unpack(pkgs, debs: Path, root: Path) -> dict:
    """apt-get download ``pkgs`` into ``debs``, dpkg-deb -x them into ``root``."""
    debs.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([*APT_DOWNLOAD, *pkgs], cwd=debs, check=True, capture_output=True)
    versions = {}
    for pkg in pkgs:
        # "name[:arch][=version]" (a version may hold an epoch's colon)
        m = re.fullmatch(r"([^:=]+)(?::([^=]+))?(?:=.*)?", pkg)
        name, arch = m.group(1), m.group(2)
        pattern = f"{name}_*_{arch}.deb" if arch else f"{name}_*.deb"
        deb = max(debs.glob(pattern), key=lambda p: p.stat().st_mtime)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        versions[name] = _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    return versions


def _cached_kernel() -> Kernel | None:
    found = []
    for meta in (cache_dir() / "kernels").glob(f"*-{FLAVOUR}/kernel.json"):
        data = json.loads(meta.read_text())
        if data.get("key") == KEY:
            found.append(data)
    if not found:
        return None
    data = max(found, key=lambda d: [int(x) for x in re.findall(r"\d+", d["release"])])
    return _kernel(data)


def _kernel(data: dict) -> Kernel:
    return Kernel(
        key=KEY,
        release=data["release"],
        package=data["package"],
        version=data["version"],
        root=Path(data["root"]),
    )


def fetch_kernel(*, offline_ok: bool = True) -> Kernel:
    """Download and unpack the i386 kernel image (cached; idempotent)."""
    try:
        rel = resolve_release()
    except (PrerequisiteError, subprocess.CalledProcessError) as exc:
        cached = _cached_kernel() if offline_ok else None
        if cached:
            return cached
        raise PrerequisiteError(f"cannot resolve the i386 kernel: {exc}") from exc
    kdir = cache_dir() / "kernels" / rel.release
    meta = kdir / "kernel.json"
    if meta.exists():
        data = json.loads(meta.read_text())
        if data.get("key") == KEY and Path(data["root"]) == kdir / "root":
            return _kernel(data)
    root = kdir / "root"
    shutil.rmtree(root, ignore_errors=True)
    _unpack([rel.package], kdir / "debs", root)
    subprocess.run(
        ["depmod", "-b", str(root), rel.release], check=True, capture_output=True
    )
    data = {
        "key": KEY,
        "arch": "i386",
        "release": rel.release,
        "package": rel.package,
        "version": rel.version,
        "root": str(root),
        "note": rel.note,
    }
    meta.write_text(json.dumps(data, indent=1))
    return _kernel(data)


def kernel_note(kernel: Kernel) -> str:
    """Why this i386 release was taken (empty: the amd64 ABI), from kernel.json."""
    meta = kernel.root.parent / "kernel.json"
    return json.loads(meta.read_text()).get("note", "") if meta.exists() else ""


def fetch_headers(kernel: Kernel) -> Path:
    """Unpack the build headers of ``kernel`` into its root; return KDIR (cached).

    ``linux-headers-<release>:i386`` and ``linux-headers-<abi>-common`` give the
    i386 ``.config`` and headers; their ``.kernelvariables`` set ``ARCH=x86`` and
    ``CONFIG_X86_32`` makes kbuild pass ``-m32`` (gcc-12 + gcc-multilib). The
    kbuild host tools (fixdep, modpost, ...) come from the *amd64*
    ``linux-kbuild-6.1`` of the same version: the i386 package's tools are i386
    binaries that would need libc6:i386 installed on the host.
    """
    meta = kernel.root.parent / "headers.json"
    kdir = kernel.headers_dir
    if meta.exists() and kdir.exists():
        return kdir
    abi = re.sub(rf"-{FLAVOUR}$", "", kernel.release)
    pkgs = [
        f"linux-headers-{kernel.release}:i386",
        f"linux-headers-{abi}-common={kernel.version}",
        f"linux-kbuild-{'.'.join(abi.split('.')[:2])}={kernel.version}",
    ]
    got = _unpack(pkgs, kernel.root.parent / "debs", kernel.root)
    mk = kdir / "Makefile"
    text = mk.read_text()
    # the one absolute path in the headers: point it into the cache
    fixed = re.sub(
        r"^include /usr/src/", f"include {kernel.root}/usr/src/", text, flags=re.M
    )
    mk.write_text(fixed)
    meta.write_text(json.dumps(got, indent=1))
    return kdir


# -- userland -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Userland:
    root: Path
    versions: dict  # package -> Debian version

    @property
    def busybox(self) -> Path:
        return self.root / "bin" / "busybox"

    @property
    def ipvsadm(self) -> Path:
        return self.root / "sbin" / "ipvsadm"


def fetch_userland(*, offline_ok: bool = True) -> Userland:
    """busybox-static, ipvsadm and ipvsadm's libraries for i386 (cached)."""
    udir = cache_dir() / "i386-userland"
    meta = udir / "userland.json"
    try:
        _require_i386_lists()
        cands = _candidates([f"{p}:i386" for p in USERLAND_PACKAGES])
        want = {p: cands[f"{p}:i386"] for p in USERLAND_PACKAGES}
    except (PrerequisiteError, subprocess.CalledProcessError):
        if offline_ok and meta.exists():
            return Userland(udir / "root", json.loads(meta.read_text()))
        raise
    if meta.exists() and json.loads(meta.read_text()) == want:
        return Userland(udir / "root", want)
    missing = [p for p, v in want.items() if v is None]
    if missing:
        raise PrerequisiteError(f"not in apt's i386 lists: {', '.join(missing)}")
    shutil.rmtree(udir / "root", ignore_errors=True)
    shutil.rmtree(udir / "debs", ignore_errors=True)
    got = _unpack(
        [f"{p}:i386" for p in USERLAND_PACKAGES], udir / "debs", udir / "root"
    )
    meta.write_text(json.dumps(got, indent=1))
    return Userland(udir / "root", got)


_USERLAND: list[Userland] = []


def _userland() -> Userland:
    """fetch_userland() once per process (apt-cache takes seconds)."""
    if not _USERLAND:
        _USERLAND.append(fetch_userland())
    return _USERLAND[0]


def _tmp_name(out: Path) -> Path:
    """A private temporary name next to ``out`` (two boots may build it at once)."""
    return out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")


LIB_DIRS = ("lib/i386-linux-gnu", "usr/lib/i386-linux-gnu", "lib")


def library_closure(root: Path, binary: Path) -> dict[str, Path]:
    """{path in the guest: file under ``root``} for ``binary``'s loader and libraries.

    Read from the ELF program interpreter and ``NEEDED`` entries with readelf,
    recursively, because the host's ldd cannot run an i386 binary.
    """
    out: dict[str, Path] = {}
    todo = [binary]
    while todo:
        elf = todo.pop()
        text = _run(["readelf", "-d", "-l", str(elf)])
        interp = re.search(r"Requesting program interpreter: (\S+?)\]", text)
        if interp and interp.group(1) not in out:
            out[interp.group(1)] = Path(
                os.path.realpath(root / interp.group(1).lstrip("/"))
            )
        for soname in re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", text):
            for d in LIB_DIRS:
                cand = root / d / soname
                if cand.exists():
                    guest = f"/{d}/{soname}"
                    if guest not in out:
                        out[guest] = Path(os.path.realpath(cand))
                        todo.append(out[guest])
                    break
            else:
                raise PrerequisiteError(f"{soname} (needed by {elf.name}) not unpacked")
    return out


def build_flowgen() -> Path:
    """flowgen.c as a static i386 binary (cached by source hash)."""
    src = initramfs.FLOWGEN_SRC.read_bytes()
    digest = hashlib.sha256(src).hexdigest()[:12]
    out = cache_dir() / "bin" / f"flowgen-i386-{digest}"
    if out.exists():
        return out
    if shutil.which("gcc") is None:
        raise PrerequisiteError("gcc not found")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(out)
    r = subprocess.run(
        ["gcc", "-m32", "-O2", "-static", "-Wall", "-o", str(tmp)]
        + [str(initramfs.FLOWGEN_SRC)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise PrerequisiteError(
            "gcc -m32 -static failed (apt-get install gcc-multilib): "
            + r.stderr.strip()[-500:]
        )
    os.replace(tmp, out)
    return out


def base_image(kernel: Kernel, userland: Userland, extra_module_names=()) -> Path:
    """The i386 counterpart of ``initramfs.base_image`` (same /init, i386 binaries)."""
    flowgen = build_flowgen()
    modules = initramfs.module_load_order(
        kernel, (*initramfs.BASE_MODULES, *extra_module_names)
    )
    libs = library_closure(userland.root, userland.ipvsadm)
    # Whatever the x86_64 image sources besides /init (e.g. its network setup).
    scripts = {
        name.lower() + ".sh": getattr(initramfs, name)
        for name in ("NETSETUP",)
        if isinstance(getattr(initramfs, name, None), str)
    }
    h = hashlib.sha256()
    parts = [initramfs.INIT.encode(), kernel.release.encode(), flowgen.name.encode()]
    parts += [s.encode() for s in scripts.values()]
    parts += [json.dumps(userland.versions, sort_keys=True).encode()]
    parts += ["\n".join(map(str, modules)).encode()]
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    out = cache_dir() / "initramfs" / f"base-{kernel.release}-{h.hexdigest()[:12]}.cpio"
    if out.exists():
        return out
    c = initramfs.Cpio()
    dirs = "bin sbin usr/bin usr/sbin proc sys dev tmp job out lib/modules etc"
    for d in dirs.split():
        c.mkdir(d)
    c.file("bin/busybox", userland.busybox.read_bytes(), 0o755)
    c.file("init", initramfs.INIT.encode(), 0o755)
    for name, text in scripts.items():
        c.file(name, text.encode(), 0o755)
    c.file("bin/ipvsadm", userland.ipvsadm.read_bytes(), 0o755)
    for guest, real in sorted(libs.items()):
        c.file(guest, real.read_bytes(), 0o755)
    c.file("bin/flowgen", flowgen.read_bytes(), 0o755)
    names = []
    for mod in modules:
        # Debian's i386 6.1 modules are not compressed (CONFIG_MODULE_COMPRESS_NONE).
        name = mod.name.split(".ko")[0] + ".ko"
        data = mod.read_bytes()
        if mod.suffix == ".xz":
            data = subprocess.run(
                ["xz", "-dc", str(mod)], check=True, capture_output=True
            ).stdout
        c.file(f"lib/modules/{name}", data)
        names.append(f"/lib/modules/{name}")
    c.file("modules.list", ("\n".join(names) + "\n").encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(out)
    tmp.write_bytes(c.bytes())
    os.replace(tmp, out)
    return out


# -- booting --------------------------------------------------------------------


def qemu_cmd(kernel: Kernel, initrd: Path, memory_mb: int) -> list[str]:
    binary = shutil.which("qemu-system-i386")
    if binary is None:
        raise PrerequisiteError(
            "qemu-system-i386 not found (apt-get install qemu-system-x86)"
        )
    image = qemu.vmlinux(kernel) or kernel.vmlinuz
    cmd = [binary, "-nographic", "-no-reboot", "-nic", "none", "-m", str(memory_mb)]
    cmd += ["-smp", "1", "-kernel", str(image), "-initrd", str(initrd)]
    cmd += [
        "-append",
        "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off nokaslr tsc=reliable",
    ]
    if qemu.QBOOT.exists() and image != kernel.vmlinuz:
        cmd += ["-bios", str(qemu.QBOOT)]
    # TCG only: the nested KVM of these machines hangs the stock kernel.
    return cmd + ["-accel", "tcg", "-cpu", "max"]


def boot(
    kernel: Kernel,
    job_files: dict | None = None,
    *,
    extra_modules=(),
    timeout: float = 600,
    memory_mb: int = 768,
) -> qemu.BootResult:
    """``qemu.boot`` for the i386 kernel: same job protocol, same BootResult.

    768 MiB keeps the whole guest in 32-bit lowmem (no highmem bounce work).
    """
    userland = _userland()
    base = base_image(kernel, userland)
    job = qemu._job_archive(job_files or {}, extra_modules)
    with tempfile.TemporaryDirectory(prefix="ipvs-vm-i386-") as td:
        initrd = Path(td) / "initrd.cpio"
        initrd.write_bytes(base.read_bytes() + job)
        console, ready, total, timed_out = qemu._run_qemu(
            qemu_cmd(kernel, initrd, memory_mb), timeout, None
        )
    if timed_out:
        raise qemu.GuestError(f"qemu-system-i386 timed out after {timeout}s", console)
    return qemu.parse_console(kernel, console, "tcg", ready, total)


def run_scenarios(
    kernel: Kernel,
    scenarios,
    *,
    extra_modules=(),
    pre_snippet: str = "",
    post_snippet: str = "",
    timeout: float = 900,
) -> tuple[list[jobs.ScenarioResult], qemu.BootResult]:
    """``jobs.run_scenarios`` on the i386 guest: one boot, same guest script."""
    return jobs.run_scenarios(
        kernel,
        scenarios,
        extra_modules=extra_modules,
        pre_snippet=pre_snippet,
        post_snippet=post_snippet,
        timeout=timeout,
        memory_mb=768,
        boot=boot,
    )


def predict_scenarios(
    scenario_list, *, variant: str = "upstream", extra_args=()
) -> tuple[list[list[list]], float]:
    """maglevx's 32-bit choices for every phase of every scenario, and the seconds.

    Needs only the histories and flows, so it can run while the guest boots.
    """
    t0 = time.monotonic()
    args = ("--word-size", str(WORD_SIZE), *extra_args)
    out = [
        [
            predict.predict(
                sc.history_upto(j), ph.flows, variant=variant, extra_args=args
            )
            if ph.flows and not sc.meta.get("decision")  # those: one director
            else []
            for j, ph in enumerate(sc.phases)
        ]
        for sc in scenario_list
    ]
    return out, time.monotonic() - t0


def compare_results(
    kernel: Kernel,
    results,
    report: compare.Report,
    *,
    variant: str = "upstream",
    extra_args=(),
    predictions=None,
    keep_results: bool = False,
) -> None:
    """``compare.compare_results`` with ``--word-size 32`` passed to maglevx.

    ``predictions``: :func:`predict_scenarios` of the results' scenarios, if
    already computed.
    """
    if predictions is None:
        predictions, seconds = predict_scenarios(
            [r.scenario for r in results], variant=variant, extra_args=extra_args
        )
        report.predict_seconds += seconds
    compare.compare_results(
        kernel,
        results,
        report,
        keep_results=keep_results,
        predictions=predictions,
        tag="mismatch-i386",
        variant=variant,
        word_size=WORD_SIZE,
    )


# Written to /out by the guest before the scenarios: what actually ran.
GUEST_INFO = """{
echo "uname-m $(uname -m)"
echo "uname-r $(uname -r)"
echo "ipvsadm $(ipvsadm --version 2>&1 | head -n 1)"
echo "ip_vs_mh $(grep -c '^ip_vs_mh ' /proc/modules)"
echo "ip_vs_mh-version $(cat /sys/module/ip_vs_mh/version 2>/dev/null)"
} > /out/guest-info.txt
"""


@dataclasses.dataclass
class Report(compare.Report):
    guest_info: dict = dataclasses.field(default_factory=dict)  # from GUEST_INFO
    wall_seconds: float = 0.0  # boots + comparisons


def parse_guest_info(text: str) -> dict:
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def run(
    kernel: Kernel,
    scenario_list,
    *,
    max_flows_per_boot: int = 30000,
    variant: str = "upstream",
    extra_args=(),
    extra_modules=(),
    keep_results: bool = False,
    log=print,
) -> Report:
    """Run ``scenario_list`` on the i386 kernel (few boots) and compare with maglevx.

    30,000 flows fit one boot (~45 s under TCG), so the usual run boots once.
    """
    t0 = time.monotonic()
    report = Report(kernel=kernel)
    boots = scen.pack(list(scenario_list), max_flows_per_boot)
    for batch in boots:
        # maglevx's predictions need no kernel: compute them while the guest runs
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
            pending = ex.submit(
                predict_scenarios, batch, variant=variant, extra_args=extra_args
            )
            results, b = run_scenarios(
                kernel, batch, extra_modules=extra_modules, pre_snippet=GUEST_INFO
            )
            predictions, seconds = pending.result()
        report.predict_seconds += seconds
        report.guest_info = parse_guest_info(b.text("guest-info.txt"))
        report.record_boot(b, results, len(boots), log)
        compare_results(
            kernel,
            results,
            report,
            variant=variant,
            extra_args=extra_args,
            predictions=predictions,
            keep_results=keep_results,
        )
    report.wall_seconds = time.monotonic() - t0
    return report


def missing_prerequisites() -> list[str]:
    """What the host lacks for the i386 VM tests (empty: all there)."""
    missing = []
    for tool, pkg in (
        ("qemu-system-i386", "qemu-system-x86"),
        ("gcc", "gcc"),
        ("readelf", "binutils"),
        ("depmod", "kmod"),
        ("modprobe", "kmod"),
        ("dpkg-deb", "dpkg"),
        ("apt-get", "apt"),
    ):
        if shutil.which(tool) is None and not Path("/sbin", tool).exists():
            missing.append(f"{tool} (apt-get install {pkg})")
    if not Path("/usr/lib/gcc/x86_64-linux-gnu").exists() or not any(
        Path("/usr/lib/gcc/x86_64-linux-gnu").glob("*/32/libgcc.a")
    ):
        missing.append("gcc -m32 support (apt-get install gcc-multilib)")
    return missing
