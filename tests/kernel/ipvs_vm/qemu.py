"""Boot a kernel + initramfs + job under qemu and collect what the guest wrote.

The guest has no network device at all (``-nic none``): every packet a job sends
stays inside the guest's loopback. Results come back on the serial console: the
guest's /init tars /out, gzips and base64-encodes it between ``@@OUT-BEGIN`` and
``@@OUT-END``; that needs no virtio/9p driver and proved fast enough (~MB/s).

Acceleration: ``MAGLEVX_QEMU_ACCEL`` = ``tcg`` (default), ``kvm`` or ``auto``. On the
project's machines /dev/kvm is a nested paravirtual KVM on which the stock kernel
hangs, so ``auto`` tries KVM with a short boot deadline once per process and falls
back to TCG for good when the guest does not reach ``@@READY`` in time.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import lzma
import os
import select
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from . import initramfs
from .apt import tmp_name
from .common import PrerequisiteError
from .kernels import Kernel

_KVM_WORKS: bool | None = None


@dataclasses.dataclass
class BootResult:
    kernel: Kernel
    accel: str
    console: str  # the whole serial console text (without the base64 payload)
    files: dict  # name -> bytes, from the guest's /out
    boot_seconds: float  # qemu start -> @@READY
    total_seconds: float  # qemu start -> exit
    job_exit: int | None

    @property
    def dmesg(self) -> str:
        return self.files.get("dmesg.txt", b"").decode(errors="replace")

    def text(self, name: str) -> str:
        return self.files.get(name, b"").decode(errors="replace")


@dataclasses.dataclass
class ExtraModule:
    """An out-of-tree module to load in the guest after the in-tree closure.

    ``replaces``: in-tree module name it stands for (its insmod is skipped), e.g.
    ``"ip_vs_mh"``; defaults to the file's stem when an in-tree module of that name
    is in the closure.
    """

    path: Path
    params: str = ""
    replaces: str | None = None


class GuestError(RuntimeError):
    def __init__(self, msg: str, console: str = ""):
        super().__init__(
            msg + ("\n--- console tail ---\n" + console[-4000:] if console else "")
        )
        self.console = console


QBOOT = Path("/usr/share/qemu/qboot.rom")


def vmlinux(kernel: Kernel) -> Path | None:
    """The uncompressed ELF kernel, extracted from the bzImage once (cached).

    qemu boots an ELF with a PVH note directly: no firmware disk loader and no
    in-guest decompression, which under TCG halves the boot time (7 s -> 3 s).
    """
    out = kernel.root.parent / f"vmlinux-{kernel.release}"
    if out.exists():
        return out
    data = kernel.vmlinuz.read_bytes()
    setup_sects = data[0x1F1] or 4
    start = (setup_sects + 1) * 512
    off, length = struct.unpack_from("<II", data, 0x248)
    payload = data[start + off : start + off + length]
    try:
        if payload.startswith(b"\xfd7zXZ"):
            elf = lzma.LZMADecompressor().decompress(payload)
        elif payload.startswith(b"\x28\xb5\x2f\xfd") and shutil.which("zstd"):
            # the payload ends with the 4-byte uncompressed size, not part of the frame
            elf = subprocess.run(
                ["zstd", "-dc"], input=payload[:-4], check=True, capture_output=True
            ).stdout
        elif payload.startswith(b"\x1f\x8b"):
            elf = gzip.decompress(payload[:-4])
        else:
            return None
    except Exception:  # noqa: BLE001 - fall back to booting the bzImage
        return None
    if not elf.startswith(b"\x7fELF"):
        return None
    # two boots of one kernel (in-tree and kmod/) may extract it at once
    tmp = tmp_name(out)
    tmp.write_bytes(elf)
    os.replace(tmp, out)
    return out


def qemu_cmd(
    kernel: Kernel,
    initrd: Path,
    accel: str,
    memory_mb: int,
    extra_args=(),
    cpus: int = 1,
) -> list[str]:
    """The qemu command line that boots ``kernel`` with ``initrd`` on its arch."""
    arch = kernel.arch
    binary = shutil.which(arch.qemu)
    if binary is None:
        raise PrerequisiteError(
            f"{arch.qemu} not found (apt-get install {arch.qemu_package})"
        )
    image = (vmlinux(kernel) if arch.boots_vmlinux else None) or kernel.vmlinuz
    append = f"console={arch.console} panic=-1 quiet loglevel=4 {arch.append}"
    cmd = [binary, *arch.machine, "-nographic", "-no-reboot", "-nic", "none"]
    cmd += ["-m", str(memory_mb), "-smp", str(cpus), "-kernel", str(image)]
    cmd += ["-initrd", str(initrd), "-append", append.strip()]
    if QBOOT.exists() and image != kernel.vmlinuz:
        cmd += ["-bios", str(QBOOT)]  # minimal firmware: ~1 s less than SeaBIOS
    if accel == "kvm":
        cmd += ["-accel", "kvm", "-cpu", "host"]
    else:
        cpu = os.environ.get("MAGLEVX_QEMU_CPU")
        cmd += ["-accel", "tcg"] + (cpu.split() if cpu else list(arch.cpu))
    return cmd + list(extra_args)


def job_archive(files: dict, extra_modules) -> bytes:
    """The second cpio archive of a boot: the job's files in /job."""
    c = initramfs.Cpio()
    c.mkdir("job")
    for name, data in files.items():
        if isinstance(data, str):
            data = data.encode()
        c.file(f"job/{name}", data, 0o755 if name.endswith(".sh") else 0o644)
    lines = []
    for i, em in enumerate(extra_modules):
        path = Path(em.path)
        name = f"extra{i}-{path.name}"
        c.file(f"job/{name}", path.read_bytes())
        lines.append(f"{name} {em.params}".rstrip())
        replaces = em.replaces or path.name.split(".ko")[0]
        c.file(f"job/skip-module.{replaces}", b"")
    if lines:
        c.file("job/extra-modules.list", ("\n".join(lines) + "\n").encode())
    return c.bytes()


def _run_qemu(cmd, timeout: float, ready_deadline: float | None):
    """Run qemu, return (console_text, seconds_to_ready, total, timed_out)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    os.set_blocking(proc.stdout.fileno(), False)
    chunks = []
    ready_at = None
    tail = b""
    timed_out = False
    while True:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            data = proc.stdout.read()
            if data:
                chunks.append(data)
                if ready_at is None:
                    tail = (tail + data)[-64:]
                    if b"@@READY" in tail or b"@@READY" in b"".join(chunks[-2:]):
                        ready_at = time.monotonic() - t0
            elif proc.poll() is not None:
                break
        elif proc.poll() is not None:
            data = proc.stdout.read()
            if data:
                chunks.append(data)
            break
        el = time.monotonic() - t0
        if el > timeout or (
            ready_deadline and ready_at is None and el > ready_deadline
        ):
            timed_out = True
            proc.kill()
            proc.wait()
            break
    total = time.monotonic() - t0
    return b"".join(chunks).decode(errors="replace"), ready_at, total, timed_out


def _choose_accel() -> str:
    want = os.environ.get("MAGLEVX_QEMU_ACCEL", "tcg")
    if want in ("tcg", "kvm"):
        return want
    global _KVM_WORKS
    if _KVM_WORKS is None:
        _KVM_WORKS = False
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            _KVM_WORKS = None  # decided by the first boot
    return "kvm" if _KVM_WORKS is None or _KVM_WORKS else "tcg"


def boot(
    kernel: Kernel,
    job_files: dict | None = None,
    *,
    extra_modules=(),
    timeout: float = 600,
    memory_mb: int | None = None,
    cpus: int = 1,
    qemu_args=(),
) -> BootResult:
    """Boot ``kernel`` with the base initramfs plus ``job_files`` placed in /job.

    If ``job_files`` has ``run.sh`` the guest sources it (cwd /job) with output in
    /out/run.log; anything the job writes to /out comes back in ``files``, as does
    dmesg. Extra modules (``ExtraModule``) load after the in-tree closure; module
    parameters of in-tree modules can be given as job file ``params.<module>``.
    ``memory_mb`` defaults to the architecture's; ``cpus`` > 1 lets RCU readers
    and writers really run at once. ``qemu_args`` go at the end of qemu's command
    line (e.g. a 9p share).
    """
    global _KVM_WORKS
    memory_mb = memory_mb or kernel.arch.memory_mb
    base = initramfs.base_image(kernel)
    job = job_archive(job_files or {}, extra_modules)
    with tempfile.TemporaryDirectory(prefix="ipvs-vm-") as td:
        initrd = Path(td) / "initrd.cpio"
        initrd.write_bytes(base.read_bytes() + job)
        # KVM only for amd64 guests (on an amd64 host); the nested KVM of these
        # machines hangs the stock kernel anyway
        accel = _choose_accel() if kernel.arch.name == "amd64" else "tcg"
        console, ready, total, timed_out = _run_qemu(
            qemu_cmd(kernel, initrd, accel, memory_mb, qemu_args, cpus),
            timeout,
            ready_deadline=30 if accel == "kvm" and _KVM_WORKS is None else None,
        )
        if accel == "kvm" and _KVM_WORKS is None:
            _KVM_WORKS = ready is not None
            if not _KVM_WORKS:
                accel = "tcg"
                console, ready, total, timed_out = _run_qemu(
                    qemu_cmd(kernel, initrd, accel, memory_mb, qemu_args, cpus),
                    timeout,
                    None,
                )
    if timed_out:
        raise GuestError(
            f"{kernel.arch.qemu} timed out after {timeout}s ({kernel.release}, {accel})",
            console,
        )
    return parse_console(kernel, console, accel, ready, total)


def parse_console(kernel: Kernel, console: str, accel: str, ready, total) -> BootResult:
    """Split a guest's serial console into the job's files and the rest."""
    begin = console.find("@@OUT-BEGIN")
    end = console.find("@@OUT-END")
    if begin < 0 or end < 0:
        raise GuestError(f"guest produced no output block ({kernel.release})", console)
    payload = console[begin + len("@@OUT-BEGIN") : end]
    files = {}
    raw = gzip.decompress(base64.b64decode("".join(payload.split())))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for m in tf.getmembers():
            if m.isfile():
                files[m.name.lstrip("./")] = tf.extractfile(m).read()
    rest = console[:begin] + console[end + len("@@OUT-END") :]
    job_exit = None
    for line in rest.splitlines():
        if line.startswith("@@JOB-EXIT"):
            job_exit = int(line.split()[1])
        if line.startswith("@@INSMOD-FAIL") and "crc32c" not in line:
            raise GuestError(f"module load failed: {line}", rest)
    return BootResult(
        kernel=kernel,
        accel=accel,
        console=rest,
        files=files,
        boot_seconds=ready or 0.0,
        total_seconds=total,
        job_exit=job_exit,
    )
