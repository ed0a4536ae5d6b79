"""The debug-kernel test's own checks can fail (no boot needed).

Report lines are the kernel's own formats (lib/test_kasan, lockdep, kmemleak,
UBSAN, debugobjects, list_debug messages as printed by 6.1); the "stock kernel"
probe output is what Debian's 6.1 (no lockdep, kmemleak or debugobjects) gave
for debug_kernel.PROBE.
"""

from __future__ import annotations

import pytest
from ipvs_vm import debug_kernel

REPORTS = (
    "[   12.3] BUG: KASAN: slab-out-of-bounds in mx_table_fill+0x1d2/0x3c0 [ip_vs_mh]",
    "[   12.3] UBSAN: array-index-out-of-bounds in ip_vs_mh_main.c:210:14",
    "[   12.3] WARNING: possible recursive locking detected",
    "[   12.3] WARNING: possible circular locking dependency detected",
    "[   12.3] WARNING: suspicious RCU usage",
    "[   12.3] BUG: sleeping function called from invalid context at mm/slab.h:742",
    "[   12.3] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
    "unreferenced object 0xffff888003f3c000 (size 8192):",
    "[   12.3] ODEBUG: free active (active state 1) object type: rcu_head hint: 0x0",
    "[   12.3] list_del corruption. prev->next should be ffff8880, but was dead000000000122",
    "[   12.3] WARNING: CPU: 1 PID: 77 at net/netfilter/ipvs/ip_vs_ctl.c:1200 f+0x1/0x2",
    "[   12.3] refcount_t: underflow; use-after-free.",
    "[   12.3] rcu: INFO: rcu_sched self-detected stall on CPU",
)

BANNERS = (
    "[    0.000000] kasan: KernelAddressSanitizer initialized",
    "[    0.000000] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar",
    "[    0.000000] rcu: \tRCU lockdep checking is enabled.",
    "[    1.200000] kmemleak: Kernel memory leak detector initialized (mem pool free: 15000)",
    "[    9.100000] ip_vs_mh: loading out-of-tree module taints kernel.",
    "[    9.200000] IPVS: [mh] scheduler registered.",
    "[   10.000000] IPVS: mh: TCP 10.1.0.1:80 - no destination available",
)

GOOD_PROBE = """@lockdep present
@lockdep_stats
 lock-classes:                         1024 [max: 8192]
 direct dependencies:                  6042 [max: 32768]
 debug_locks:                             1
@kmemleak present
@debug_objects
max_chain     :7
max_checked   :30
warnings      :0
fixups        :0
pool_free     :1800
pool_max_used :512
@kallsyms
{syms}
@end
""".format(syms="\n".join(sorted(debug_kernel.KALLSYMS)))

GOOD = {
    "detectors.txt": GOOD_PROBE,
    "kmemleak.pre-rc": "0\n",
    "kmemleak.scan-rc": "0\n",
}
GOOD_DMESG = "\n".join(BANNERS)

# debug_kernel.PROBE on Debian's stock 6.1 kernel
STOCK = {
    "detectors.txt": "@lockdep absent\n@lockdep_stats\n"
    "cat: can't open '/proc/lockdep_stats': No such file or directory\n"
    "@kmemleak absent\n@debug_objects\n"
    "cat: can't open '/sys/kernel/debug/debug_objects/stats': No such file or directory\n"
    "@kallsyms\n__list_add_valid\n@end\n",
    "kmemleak.pre-rc": "1\n",
    "kmemleak.scan-rc": "1\n",
}


@pytest.mark.parametrize("line", REPORTS)
def test_every_report_kind_is_caught(line):
    assert debug_kernel.splats("boot\n" + line + "\nmore") == [line]


def test_banners_and_ipvs_messages_are_not_reports():
    assert debug_kernel.splats(GOOD_DMESG) == []


def test_all_detectors_on():
    assert debug_kernel.detector_problems(GOOD_DMESG, GOOD) == []


def test_stock_kernel_fails_every_detector():
    problems = "\n".join(debug_kernel.detector_problems("Linux version 6.1", STOCK))
    for what in (
        "KernelAddressSanitizer",
        "Lock dependency validator",
        "RCU lockdep checking",
        "memory leak detector initialized",
        "no /proc/lockdep",
        "debug_locks",
        "no /sys/kernel/debug/kmemleak",
        "kmemleak refused a scan",
        "debugobjects tracked nothing",
        "kasan_report",
        "__ubsan_handle_out_of_bounds",
    ):
        assert what in problems, what


@pytest.mark.parametrize(
    "change, why",
    [
        (("debug_locks:                             1", "debug_locks: 0"), "debug_locks"),
        (("direct dependencies:                  6042", "direct dependencies: 0"),
         "no direct dependencies"),
        (("warnings      :0", "warnings      :3"), "debugobjects warnings"),
        (("pool_max_used :512", "pool_max_used :0"), "tracked nothing"),
        (("@end\n", ""), "incomplete"),
        (("kmemleak_alloc\n", ""), "kmemleak_alloc"),
    ],
)  # fmt: skip
def test_one_detector_off_is_caught(change, why):
    files = dict(GOOD, **{"detectors.txt": GOOD_PROBE.replace(*change)})
    assert why in "\n".join(debug_kernel.detector_problems(GOOD_DMESG, files))


def test_kmemleak_disabled_is_caught():
    dmesg = GOOD_DMESG + "\nkmemleak: Kernel memory leak detector disabled"
    assert debug_kernel.detector_problems(dmesg, GOOD) == ["kmemleak disabled itself"]
