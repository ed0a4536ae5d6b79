"""The architectures the harness boots, each described once.

An :class:`Arch` says everything the boot, initramfs and build paths need to know
about a guest architecture: the qemu binary and its machine, CPU and console, the
Debian architecture name (for packages), the C compiler for the guest's flow
generator and for modules, and what maglevx must be told (word size, byte order).
Nothing else in the harness branches on the architecture's name.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Arch:
    name: str  # Debian architecture: amd64, i386, arm64, s390x
    qemu: str  # qemu-system-* binary
    qemu_package: str  # the Debian package that ships it
    machine: tuple[str, ...]  # -M ... (and firmware options)
    cpu: tuple[str, ...]  # -cpu ...
    console: str  # the kernel's console= device
    append: str  # extra kernel command line
    memory_mb: int
    uname_m: tuple[str, ...]  # what `uname -m` may print in the guest
    triplet: str  # GNU triplet of the userland libraries (lib/<triplet>)
    cc: tuple[str, ...]  # native C compiler (+ flags) for static guest binaries
    cc_packages: tuple[str, ...]  # host packages that provide it (+ static libc)
    kbuild: tuple[str, ...]  # make arguments for modules (ARCH=)
    elf_class: int  # 1: ELF32, 2: ELF64
    elf_data: int  # 1: little-endian, 2: big-endian
    elf_machine: int  # e_machine
    word_size: int  # maglevx --word-size
    byte_order: str  # maglevx --byte-order
    boots_vmlinux: bool = False  # x86: extract the ELF vmlinux (PVH) and use qboot
    host_userland: bool = False  # busybox/ipvsadm from the host (amd64)

    @property
    def cross(self) -> bool:
        """Built with an unpacked cross toolchain (:mod:`.toolchain`)."""
        return not self.cc

    @property
    def foreign(self) -> bool:
        """Packages come from a private apt root for this architecture."""
        return not self.host_userland

    def missing(self) -> list[str]:
        """Host tools this architecture needs and lacks, with their packages."""
        out = []
        if shutil.which(self.qemu) is None:
            out.append(f"{self.qemu} (apt-get install {self.qemu_package})")
        if self.cc and shutil.which(self.cc[0]) is None:
            out.append(f"{self.cc[0]} (apt-get install {' '.join(self.cc_packages)})")
        if self.name == "i386" and not any(
            Path("/usr/lib/gcc/x86_64-linux-gnu").glob("*/32/libgcc.a")
        ):
            out.append("gcc -m32 support (apt-get install gcc-multilib)")
        return out

    def elf_ok(self, head: bytes) -> bool:
        """Whether ``head`` (first 20 bytes of a file) is an ELF for this arch."""
        order = "little" if self.elf_data == 1 else "big"
        return (
            head[:4] == b"\x7fELF"
            and head[4] == self.elf_class
            and head[5] == self.elf_data
            and int.from_bytes(head[18:20], order) == self.elf_machine
        )


# no_timer_check: a host starved of CPU makes the IO-APIC timer check fail under
# TCG ("IO-APIC + timer doesn't work!", a panic at boot; seen at load 11)
_X86_APPEND = "mitigations=off nokaslr tsc=reliable no_timer_check"

AMD64 = Arch(
    name="amd64",
    qemu="qemu-system-x86_64",
    qemu_package="qemu-system-x86",
    machine=(),
    cpu=("-cpu", "max"),
    console="ttyS0",
    append=_X86_APPEND,
    memory_mb=2048,
    uname_m=("x86_64",),
    triplet="x86_64-linux-gnu",
    cc=("gcc",),
    cc_packages=("gcc", "libc6-dev"),
    kbuild=(),
    elf_class=2,
    elf_data=1,
    elf_machine=62,
    word_size=64,
    byte_order="little",
    boots_vmlinux=True,
    host_userland=True,
)

I386 = Arch(
    name="i386",
    qemu="qemu-system-i386",
    qemu_package="qemu-system-x86",
    machine=(),
    cpu=("-cpu", "max"),
    console="ttyS0",
    append=_X86_APPEND,
    memory_mb=768,  # the whole guest in 32-bit lowmem (no highmem bounce work)
    uname_m=("i686", "i586", "i386"),
    triplet="i386-linux-gnu",
    cc=("gcc", "-m32"),
    cc_packages=("gcc", "gcc-multilib"),
    kbuild=(),  # the headers' .kernelvariables say ARCH=x86; CONFIG_X86_32 -> -m32
    elf_class=1,
    elf_data=1,
    elf_machine=3,
    word_size=32,
    byte_order="little",
    boots_vmlinux=True,
)

ARM64 = Arch(
    name="arm64",
    qemu="qemu-system-aarch64",
    qemu_package="qemu-system-arm",
    machine=("-M", "virt"),
    # pauth-impdef: QEMU's cheap pointer-authentication hash instead of QARMA,
    # which costs a lot of TCG time on every function return
    cpu=("-cpu", "max,pauth-impdef=on"),
    console="ttyAMA0",
    append="nokaslr",
    memory_mb=1024,
    uname_m=("aarch64",),
    triplet="aarch64-linux-gnu",
    cc=(),  # cross: ipvs_vm.toolchain (gcc-12-aarch64-linux-gnu, unpacked)
    cc_packages=(),
    kbuild=("ARCH=arm64",),
    elf_class=2,
    elf_data=1,
    elf_machine=183,
    word_size=64,
    byte_order="little",
)

S390X = Arch(
    name="s390x",
    qemu="qemu-system-s390x",
    qemu_package="qemu-system-misc",
    machine=("-M", "s390-ccw-virtio"),
    cpu=("-cpu", "max"),
    console="ttysclp0",
    append="nokaslr",
    memory_mb=1024,
    uname_m=("s390x",),
    triplet="s390x-linux-gnu",
    cc=(),  # cross: ipvs_vm.toolchain (gcc-12-s390x-linux-gnu, unpacked)
    cc_packages=(),
    kbuild=("ARCH=s390",),
    elf_class=2,
    elf_data=2,
    elf_machine=22,
    word_size=64,
    byte_order="big",
)

ARCHES = {a.name: a for a in (AMD64, I386, ARM64, S390X)}
