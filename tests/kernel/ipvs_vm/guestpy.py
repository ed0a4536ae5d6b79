"""Run the host's Python (with maglevx and numpy) inside the guest, over 9p.

The host's root is shared read-only with the guest (``-virtfs ... readonly=on``);
the guest loads virtio_pci/9pnet_virtio/9p (in modprobe's order, shipped in the
job archive so the cached base initramfs stays as it is), mounts the share on
/host, mounts its own proc, sys, dev and debugfs over the host's, binds its /out
on /host/tmp (writable, and it comes back with the results) and runs
``chroot /host <sys.executable> ...``: maglevx then talks to the guest kernel's
IPVS. ``-cpu max`` (the TCG default of ``qemu.py``) gives numpy the
instructions it needs.

The guest kernel's own ``/boot`` (its config) is bound over /host/boot, so
``CONFIG_IP_VS_MH_TAB_INDEX`` is found where a real director has it.

With ``forward_ports`` the guest also gets a user-mode NIC (``restrict=on``: the
guest cannot reach anything) whose ports are forwarded from 127.0.0.1 only; the
guest's address is 192.168.76.15, outside the 10.0.0.0/8 that the job setup
routes to loopback.

    script = guestpy.prologue() + "hostpy -m maglevx ... > /out/x.txt\\n"
    res = guestpy.boot(kernel, script)
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from . import initramfs, qemu
from .common import cache_dir
from .kernels import Kernel

MOUNT_TAG = "hostroot"
GUEST_NET = "192.168.76"  # user-mode network, away from the job's 10.0.0.0/8
GUEST_ADDR = f"{GUEST_NET}.15"
MODULES_9P = ("virtio_pci", "9pnet_virtio", "9p")
MODULES_NET = ("virtio_net",)


def qemu_args(forward_ports=()) -> list[str]:
    """The 9p share, and a restricted user-mode NIC for ``(host, guest)`` ports."""
    args = [
        "-virtfs",
        f"local,path=/,mount_tag={MOUNT_TAG},security_model=none,readonly=on,"
        "multidevs=remap",
    ]
    if forward_ports:
        fwd = ",".join(
            f"hostfwd=tcp:127.0.0.1:{h}-{GUEST_ADDR}:{g}" for h, g in forward_ports
        )
        args += [
            "-nic",
            f"user,model=virtio-net-pci,restrict=on,net={GUEST_NET}.0/24,"
            f"host={GUEST_NET}.2,{fwd}",
        ]
    return args


def _module_bytes(path: Path) -> bytes:
    if path.suffix == ".xz":
        return subprocess.run(
            ["xz", "-dc", str(path)], check=True, capture_output=True
        ).stdout
    if path.suffix == ".zst":
        return subprocess.run(
            ["zstd", "-dc", str(path)], check=True, capture_output=True
        ).stdout
    return path.read_bytes()


def module_files(kernel: Kernel, net: bool = False, more=()) -> dict:
    """Job files: the 9p (and NIC, and ``more``) modules not already in the base
    image, and ``guestpy.modules`` listing them in load order."""
    base = set(initramfs.module_load_order(kernel, initramfs.BASE_MODULES))
    names = MODULES_9P + (MODULES_NET if net else ()) + tuple(more)
    files, order = {}, []
    for path in initramfs.module_load_order(kernel, names):
        if path in base:
            continue
        name = "gp-" + path.name.split(".ko")[0] + ".ko"
        files[name] = _module_bytes(path)
        order.append(name)
    files["guestpy.modules"] = "\n".join(order) + "\n"
    return files


def _host_tmp_paths(python: str) -> list[str]:
    """What the guest needs from the host's /tmp (relative, shell-quoted).

    The checkout (guest_driver.py, an editable maglevx), the Python
    environment and the cache (flowgen, built modules), when they live
    there: the chroot's /tmp is the guest's.
    """
    tmp = Path("/tmp")
    need = {Path(__file__).resolve().parents[3], Path(sys.prefix).resolve()}
    need.add(Path(python).resolve().parent.parent)
    need.add(cache_dir().resolve())
    return sorted(
        shlex.quote(str(p.relative_to(tmp)))
        for p in need
        if p != tmp and p.is_relative_to(tmp)
    )


def prologue(kernel: Kernel, python: str | None = None, net: bool = False) -> str:
    """Guest shell that mounts the host and defines ``hostpy`` (the host's Python
    in the chroot, cwd /tmp = the guest's /out)."""
    python = python or sys.executable
    lines = [
        "for m in $(cat /job/guestpy.modules); do",
        '    insmod /job/$m || echo "@@INSMOD-FAIL $m"',
        "done",
        "mkdir -p /host",
        f"mount -t 9p -o trans=virtio,version=9p2000.L,ro {MOUNT_TAG} /host"
        " || echo '@@INSMOD-FAIL 9p-mount'",
        "mount -t proc proc /host/proc",
        "mount -t sysfs sys /host/sys",
        "mount -t devtmpfs dev /host/dev",
        "mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null",
        # the guest's /out becomes the chroot's /tmp; a checkout or venv that
        # lives under the host's /tmp (a CI clone) is bound back into it
        "mkdir -p /hosttmp && mount --bind /host/tmp /hosttmp",
        "mount --bind /out /host/tmp",
        *(
            f"mkdir -p /out/{rel} && mount --bind /hosttmp/{rel} /host/tmp/{rel}"
            for rel in _host_tmp_paths(python)
        ),
        f"mount --bind /host{shlex.quote(str(kernel.root / 'boot'))} /host/boot",
        "hostpy() {",
        "    chroot /host /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin"
        " HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0"
        f' sh -c \'cd /tmp && exec "$0" "$@"\' {shlex.quote(python)} "$@"',
        "}",
    ]
    if net:
        lines += [
            "ip link set eth0 up",
            f"ip addr add {GUEST_ADDR}/24 dev eth0",
        ]
    return "\n".join(lines) + "\n"


def boot(
    kernel: Kernel,
    script: str,
    *,
    files: dict | None = None,
    extra_modules=(),
    forward_ports=(),
    modules=(),
    timeout: float = 900,
    python: str | None = None,
) -> qemu.BootResult:
    """Boot ``kernel`` and run ``script`` after :func:`prologue` (cwd /job).

    ``modules``: more in-tree modules to load (e.g. other IPVS schedulers)."""
    net = bool(forward_ports)
    job = dict(files or {})
    job.update(module_files(kernel, net, modules))
    job["run.sh"] = prologue(kernel, python, net) + script
    return qemu.boot(
        kernel,
        job,
        extra_modules=extra_modules,
        timeout=timeout,
        qemu_args=qemu_args(forward_ports),
    )


DRIVER = Path(__file__).resolve().parent / "guest_driver.py"


def run_steps(
    kernel: Kernel,
    steps: list,
    *,
    extra_modules=(),
    forward_ports=(),
    modules=(),
    before: str = "",
    during: str = "",
    timeout: float = 900,
) -> tuple[dict, qemu.BootResult]:
    """Run :mod:`guest_driver` steps in one boot; its results and the boot.

    ``before``: guest shell run first (e.g. sysctls); ``during``: guest shell run
    while the driver runs in the background (e.g. wait for the host to scrape);
    the driver is waited for afterwards.
    """
    script = (
        before
        + "cp /job/steps.json /out/steps.json\n"
        + f"hostpy {shlex.quote(str(DRIVER))} /tmp/steps.json /tmp/result.json"
        + " > /out/driver.log 2>&1 &\n"
        + "DRIVER_PID=$!\n"
        + during
        + "wait $DRIVER_PID\n"
        + 'echo "driver exit $?"\n'
    )
    res = boot(
        kernel,
        script,
        files={"steps.json": json.dumps(steps)},
        extra_modules=extra_modules,
        forward_ports=forward_ports,
        modules=modules,
        timeout=timeout,
    )
    raw = res.files.get("result.json")
    if raw is None:
        raise qemu.GuestError(
            "the guest driver wrote no result.json: " + res.text("driver.log")[-3000:],
            res.console + res.text("run.log"),
        )
    return json.loads(raw), res
