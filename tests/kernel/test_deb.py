"""The Debian package of the module (issue 15, item 3), for real.

``make -C kmod deb`` builds ``ip-vs-mh-dkms_<version>_all.deb`` with dh-dkms
(<version>: maglevx/_version.py's, the project's one version); lintian must have nothing
to say (``--pedantic``, info tags included). Then, on this machine (root; CI's
machine is a throw-away one, but the test cleans up after itself and can run
again): ``apt-get install ./ip-vs-mh-dkms_*.deb`` with the headers of Debian's 6.1
kernel visible to dkms as ``/lib/modules/<release>/build`` (a symlink into the
cache, removed afterwards), dkms builds and installs the module, and
``apt-get remove`` must take the module out again. The dkms-built ``.ko`` is booted
in that kernel under qemu and passes a small differential campaign against
``maglevx --variant backport``.

Knob: ``MAGLEVX_DEB_FLOWS`` (default 3000).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from ipvs_vm import (
    kernels,
    kmod_build,
    kmod_check,
    kmod_vm,
    prereqs,
    scenarios,
)
from ipvs_vm.kernels import PrerequisiteError
from ipvs_vm.suite import fail_or_skip

pytestmark = pytest.mark.kernel

REPO = kmod_build.REPO
PACKAGE = "ip-vs-mh-dkms"
MODULE = "ip_vs_mh"
KERNEL = "6.1"
FLOWS = int(os.environ.get("MAGLEVX_DEB_FLOWS", "3000"))
APT_LOCK = "/tmp/maglevx-apt.lock"  # shared with the other apt users of this machine
TOOLS = {
    "dpkg-buildpackage": "dpkg-dev",
    "dh": "debhelper",
    "dh_dkms": "dh-dkms",
    "lintian": "lintian",
    "dkms": "dkms",
}


def project_version() -> str:
    """The project's single version: maglevx/_version.py (pyproject.toml reads it)."""
    text = (REPO / "maglevx" / "_version.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    assert m, "maglevx/_version.py has no __version__"
    return m.group(1)


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    absent = [
        f"{tool} ({pkg})" for tool, pkg in TOOLS.items() if not shutil.which(tool)
    ]
    if absent:
        fail_or_skip(f"not installed: {', '.join(absent)} (scripts/debug-prereqs.sh)")
    out = tmp_path_factory.mktemp("deb")
    r = subprocess.run(
        ["make", "-s", "-C", str(REPO / "kmod"), "deb", f"DEBDIR={out}"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = out.glob("*.deb")
    return path


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_deb_name_version_and_contents(deb):
    version = project_version()
    assert deb.name == f"{PACKAGE}_{version}_all.deb"
    assert _field(deb, "Package") == PACKAGE
    assert _field(deb, "Version") == version
    assert _field(deb, "Architecture") == "all"
    assert re.match(r"dkms \(>= [\d.]+\)", _field(deb, "Depends"))
    files = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    src = f"./usr/src/{MODULE}-{version}/"
    for name in (
        "dkms.conf",
        "Kbuild",
        "Makefile",
        "ip_vs_mh_main.c",
        "csrc/mx_maglev.c",
    ):
        assert src + name in files, name
    conf = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(conf)) as tf:
        text = tf.extractfile(src + "dkms.conf").read().decode()
    assert f'PACKAGE_VERSION="{version}"' in text
    assert f'PACKAGE_NAME="{MODULE}"' in text


def test_lintian_clean(deb):
    r = subprocess.run(
        ["lintian", "--pedantic", "--display-info", "--display-experimental",
         "--fail-on", "error,warning,info,pedantic,experimental", str(deb)],
        capture_output=True, text=True,
    )  # fmt: skip
    tags = [ln for ln in r.stdout.splitlines() if re.match(r"[EWIPXO]: ", ln)]
    assert tags == [], "\n".join(tags)
    assert r.returncode == 0, r.stdout + r.stderr


# -- install, build, remove on this machine -----------------------------------------


@contextlib.contextmanager
def apt_lock():
    with open(APT_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def apt(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with apt_lock():
        return subprocess.run(
            ["apt-get", "-y", "-q", *args], capture_output=True, text=True, env=env
        )


def installed(package: str) -> bool:
    r = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return r.returncode == 0 and "install ok installed" in r.stdout


@dataclasses.dataclass
class Lifecycle:
    kernel: kernels.Kernel
    install: subprocess.CompletedProcess
    ko: Path | None  # the dkms-built module, copied out before removal
    status_installed: str  # `dkms status` while installed
    remove: subprocess.CompletedProcess
    left_after_remove: list[str]  # module files, dkms tree or sources still there
    status_removed: str


@contextlib.contextmanager
def kernel_build_link(kernel: kernels.Kernel):
    """``/lib/modules/<release>/build`` -> the cached headers, for dkms; undone after.

    Only what did not exist is created and removed again (this machine does not run
    that kernel, so normally the whole /lib/modules/<release> is ours).
    """
    moddir = Path("/lib/modules") / kernel.release
    created = [p for p in (moddir.parent, moddir) if not p.exists()]
    link = moddir / "build"
    made_link = not link.exists() and not link.is_symlink()
    moddir.mkdir(parents=True, exist_ok=True)
    if made_link:
        link.symlink_to(kernel.headers_dir)
    try:
        yield moddir
    finally:
        if made_link:
            link.unlink()
        for p in reversed(created):
            if p == moddir:
                shutil.rmtree(p, ignore_errors=True)  # depmod's files for that kernel
            else:
                with contextlib.suppress(OSError):
                    p.rmdir()


def _dkms_status() -> str:
    return subprocess.run(
        ["dkms", "status", "-m", MODULE], capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def lifecycle(deb, tmp_path_factory) -> Lifecycle:
    if os.geteuid() != 0:
        fail_or_skip("apt-get install of the .deb needs root")
    still = prereqs.ensure()
    if still:
        fail_or_skip(prereqs.explain(still))
    try:
        kernel = kernels.fetch_kernel(KERNEL)
    except PrerequisiteError as exc:
        fail_or_skip(str(exc))
    version = project_version()
    # dkms signs modules with a key it creates on first use: keep the machine as found
    mok = [p for p in (Path("/var/lib/dkms/mok.key"), Path("/var/lib/dkms/mok.pub"))
           if not p.exists()]  # fmt: skip
    if installed(PACKAGE):  # a previous run that died half-way
        apt("remove", PACKAGE)
    out = tmp_path_factory.mktemp("dkms-ko")
    try:
        with kernel_build_link(kernel) as moddir:
            install = apt("install", "--no-install-recommends", str(deb))
            kos = sorted(moddir.glob(f"updates/dkms/{MODULE}.ko*"))
            ko = None
            if kos:
                ko = out / kos[0].name
                shutil.copy(kos[0], ko)
            status_installed = _dkms_status()
            remove = apt("remove", PACKAGE)
            left = [
                str(p)
                for p in (
                    *moddir.glob(f"updates/dkms/{MODULE}.ko*"),
                    Path(f"/var/lib/dkms/{MODULE}"),
                    Path(f"/usr/src/{MODULE}-{version}"),
                )
                if p.exists()
            ]
            if installed(PACKAGE):
                left.append(f"package {PACKAGE} still installed")
            status_removed = _dkms_status()
    finally:
        if installed(PACKAGE):
            apt("remove", PACKAGE)
        for p in mok:
            p.unlink(missing_ok=True)
    return Lifecycle(
        kernel, install, ko, status_installed, remove, left, status_removed
    )


def test_apt_install_builds_the_module(lifecycle):
    lc = lifecycle
    assert lc.install.returncode == 0, lc.install.stdout + lc.install.stderr
    assert f"Building for {lc.kernel.release}" in lc.install.stdout, lc.install.stdout
    assert re.search(
        rf"{MODULE}/{re.escape(project_version())}, {re.escape(lc.kernel.release)}, "
        r"x86_64: installed",
        lc.status_installed,
    ), lc.status_installed
    assert lc.ko is not None, "dkms installed no module into updates/dkms"
    vermagic = subprocess.run(
        ["modinfo", "-F", "vermagic", str(lc.ko)], capture_output=True, text=True
    ).stdout
    assert vermagic.split()[0] == lc.kernel.release


def test_apt_remove_removes_the_module(lifecycle):
    lc = lifecycle
    assert lc.remove.returncode == 0, lc.remove.stdout + lc.remove.stderr
    assert lc.left_after_remove == []
    assert lc.status_removed == ""


@pytest.fixture(scope="module")
def dkms_run(lifecycle) -> kmod_vm.KmodRun:
    if lifecycle.ko is None:
        pytest.fail("no dkms-built module to boot")
    n_scen = -(-FLOWS * 104 // 100 // 1500)
    scs = [scenarios.generate(4000 + i, 1560) for i in range(n_scen)]
    scenarios.pack(scs, 10**9)
    configs = [kmod_vm.Config(4093, True, []), kmod_vm.Config(251, False, [])]
    for i, sc in enumerate(scs):
        configs[i % 2].scenarios.append(sc)
    return kmod_vm.run(lifecycle.kernel, lifecycle.ko, configs, churn_seconds=0)


def test_dkms_built_module_passes_campaign(dkms_run, maglevx_cli):
    assert kmod_check.load_problems(dkms_run) == []
    assert "[mh] scheduler registered" in dkms_run.boot.dmesg
    rep = kmod_check.compare_flows(dkms_run)
    print(f"\ndkms-built module, {dkms_run.boot.kernel.release}: {rep.summary()}")
    assert rep.problems == [], "\n".join(rep.problems[:20])
    assert rep.mismatches == 0, "\n".join(rep.examples[:20])
    assert rep.total >= FLOWS
    assert 0 < rep.none < rep.total
    dumped, problems = kmod_check.compare_tables(dkms_run)
    assert problems == [], "\n".join(problems[:20])
    assert dumped > 0
