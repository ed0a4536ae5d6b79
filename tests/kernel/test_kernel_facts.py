"""What the real kernel + ipvsadm 1.31 showed (see docs/kernel-facts.md).

One small boot per kernel runs the commands below; each test asserts one fact.
"""

from __future__ import annotations

import subprocess
import textwrap

import pytest
from ipvs_vm import ExtraModule, boot, scenarios

pytestmark = pytest.mark.kernel

VIP = "10.1.0.1:80"
FACTS_SCRIPT = textwrap.dedent(
    f"""
    ipvsadm -A -t {VIP} -s mh -b mh-port
    ipvsadm -a -t {VIP} -r 172.16.0.9:8080 -m -w 2
    ipvsadm -a -t {VIP} -r 172.16.0.3:8080 -m
    ipvsadm -a -t {VIP} -r 172.16.0.7:9999 -g -w 3
    ipvsadm -a -t {VIP} -r 172.16.0.5:9999 -i -w 4
    ipvsadm -a -t {VIP} -r 172.16.0.1:8080 -m -w 0
    ipvsadm -Ln --nosort > /out/ln_added
    ipvsadm -Sn > /out/sn_added
    ipvsadm -S --nosort > /out/s_nosort 2>&1; echo "rc=$?" >> /out/s_nosort
    ipvsadm -d -t {VIP} -r 172.16.0.7:9999 > /out/d_written 2>&1; echo "rc=$?" >> /out/d_written
    ipvsadm -d -t {VIP} -r 172.16.0.7:80 > /out/d_stored 2>&1; echo "rc=$?" >> /out/d_stored
    ipvsadm -e -t {VIP} -r 172.16.0.5:9999 -i -w 6 > /out/e_written 2>&1
    echo "rc=$?" >> /out/e_written
    ipvsadm -a -t {VIP} -r 172.16.0.9:8080 -m -w 2 > /out/a_dup 2>&1; echo "rc=$?" >> /out/a_dup
    ipvsadm -d -t {VIP} -r 172.16.0.9:8080
    ipvsadm -a -t {VIP} -r 172.16.0.9:8080 -m -w 2
    ipvsadm -e -t {VIP} -r 172.16.0.3:8080 -m -w 0
    ipvsadm -Ln --nosort > /out/ln_readd
    ipvsadm -E -t {VIP} -s mh
    ipvsadm -Ln --nosort > /out/ln_noflags
    ipvsadm -E -t {VIP} -s mh -b mh-fallback,mh-port
    ipvsadm -Ln --nosort > /out/ln_both
    ipvsadm -E -t {VIP} -s mh -b flag-1
    ipvsadm -Ln --nosort > /out/ln_flag1
    ipvsadm -A -t [fd00:1::1]:443 -s mh
    ipvsadm -a -t [fd00:1::1]:443 -r [2001:db8::2]:8443 -g
    ipvsadm -Ln --nosort > /out/ln_v6
    """
)


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def facts(request, kernel_env):
    res = boot(kernel_env[request.param], {"run.sh": FACTS_SCRIPT})
    assert res.job_exit == 0, res.text("run.log")
    return res


def _servers(listing: str) -> list[str]:
    return [rs for rss in scenarios.parse_listing(listing).values() for rs in rss]


def test_nosort_listing_is_kernel_order_newest_first(facts):
    assert _servers(facts.text("ln_added")) == [
        "172.16.0.1:8080",
        "172.16.0.5:80",
        "172.16.0.7:80",
        "172.16.0.3:8080",
        "172.16.0.9:8080",
    ]


def test_save_sorts_real_servers(facts):
    rs = [
        ln.split()[ln.split().index("-r") + 1]
        for ln in facts.text("sn_added").splitlines()
        if ln.startswith("-a")
    ]
    assert rs == sorted(
        rs, key=lambda e: tuple(map(int, e.replace(":", ".").split(".")))
    )
    assert rs != _servers(facts.text("ln_added"))


def test_save_refuses_nosort(facts):
    out = facts.text("s_nosort")
    assert "Illegal 'nosort' option" in out and "rc=0" not in out


def test_gatewaying_and_tunnel_store_the_service_port(facts):
    listing = facts.text("ln_added")
    assert "172.16.0.7:80 " in listing and "Route" in listing
    assert "172.16.0.5:80 " in listing and "Tunnel" in listing
    assert ":9999" not in listing


def test_delete_needs_the_stored_port(facts):
    """ipvsadm swaps in the service port on -a/-e only: -d must name port 80."""
    assert "rc=0" not in facts.text("d_written")
    assert "rc=0" in facts.text("d_stored")
    assert "rc=0" in facts.text("e_written")  # -e with -i: port swapped, found


def test_add_existing_real_server_fails(facts):
    assert "rc=0" not in facts.text("a_dup")


def test_readd_goes_to_head_and_weight_defaults_to_1(facts):
    listing = facts.text("ln_readd")
    assert _servers(listing)[0] == "172.16.0.9:8080"
    line = next(ln for ln in listing.splitlines() if "172.16.0.3:8080" in ln)
    assert line.split()[3] == "0"  # edited to 0
    added = next(
        ln for ln in facts.text("ln_added").splitlines() if "172.16.0.3:8080" in ln
    )
    assert added.split()[3] == "1"  # -a without -w


def test_edit_service_flags(facts):
    assert "mh (mh-port)" in facts.text("ln_added")
    noflags = [
        ln for ln in facts.text("ln_noflags").splitlines() if ln.startswith("TCP")
    ]
    assert noflags[0].split()[2:] == ["mh"]
    assert "mh (mh-fallback,mh-port)" in facts.text("ln_both")
    assert "mh (mh-fallback)" in facts.text("ln_flag1")


def test_ipv6_listing(facts):
    assert "[2001:db8::2]:443" in facts.text("ln_v6")


HELLO_C = r"""
#include <linux/module.h>
static char *greeting = "none";
module_param(greeting, charp, 0444);
static int __init hello_init(void) { pr_info("ipvs_vm hello: %s\n", greeting); return 0; }
static void __exit hello_exit(void) {}
module_init(hello_init);
module_exit(hello_exit);
MODULE_LICENSE("GPL");
"""


@pytest.mark.parametrize("key", ["6.1", "6.12"])
def test_headers_build_a_module_that_loads(kernel_env, key, tmp_path):
    """The cached headers build an out-of-tree module; the guest loads it with params."""
    k = kernel_env[key]
    (tmp_path / "hello.c").write_text(HELLO_C)
    (tmp_path / "Kbuild").write_text("obj-m := hello.o\n")
    r = subprocess.run(
        ["make", "-C", str(k.headers_dir), f"M={tmp_path}", "modules"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = boot(
        k,
        {"run.sh": "cat /sys/module/hello/parameters/greeting > /out/param\n"},
        extra_modules=[ExtraModule(tmp_path / "hello.ko", "greeting=from-the-host")],
    )
    assert "ipvs_vm hello: from-the-host" in res.dmesg
    assert res.text("param").strip() == "from-the-host"
