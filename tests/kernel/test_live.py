"""maglevx on a live director: the host's Python runs inside the guest (9p, see
ipvs_vm/guestpy.py) against the kernel that schedules the flows.

One boot per (kernel, ip_vs_mh): 6.1 and 6.12, the in-tree module and ours
(kmod/, loaded with table_size=251 hash_port=0 so that detection has something
to find). Each boot replays random histories (the parity tests' generator, plus
fwmark, persistence, netmask, thresholds, one-packet and non-mh services, which
that generator does not write) and after every phase reads IPVS over netlink and
with ``ipvsadm -Ln --nosort`` (and ``--thresholds``): the two must agree field
for field, and the records rendered as ipvsadm prints them must equal its text.

Knobs: ``MAGLEVX_LIVE_SEEDS`` (histories per boot, default 3).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace

import pytest
from ipvs_vm import guestpy, kernels, prereqs, scenarios
from ipvs_vm.kernels import PrerequisiteError
from ipvs_vm.qemu import ExtraModule

from maglevx import netlink

pytestmark = pytest.mark.kernel

KERNELS = ("6.1", "6.12")
MODULES = ("in-tree", "kmod")
SEEDS_PER_BOOT = int(os.environ.get("MAGLEVX_LIVE_SEEDS", "3"))
KMOD_PARAMS = "table_size=251 hash_port=0"
TIMINGS: list[str] = []


def missing(why: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so this is a failure: {why}", pytrace=False)
    pytest.skip(why)


def extra_history(rng: random.Random) -> list[str]:
    """Services the parity generator does not write: every field of the reader."""
    m4, m6 = rng.randint(1, 2**32 - 1), rng.randint(1, 2**32 - 1)
    u = rng.randint(1, 2**31 - 1)
    lo = rng.randint(0, u)
    mask4 = rng.choice(["255.255.255.0", "255.255.0.0", "255.255.255.255", "255.0.0.0"])
    sched = rng.choice(["mh -b mh-port", "mh -b mh-fallback", "mh", "sh -b sh-port"])
    rs6 = [f"[2001:db8:77::{i:x}]" for i in range(1, 4)]
    lines = [
        f"-A -f {m4} -s {sched} -p {rng.randint(1, 86400)} -M {mask4}",
        f"-a -f {m4} -r 172.20.0.1:0 -g -w {rng.randint(0, 65535)} -x {u} -y {lo}",
        f"-a -f {m4} -r 172.20.0.2:0 -i -w 1",
        f"-a -f {m4} -r 172.20.0.3:0 -m -w 2",
        f"-A -f {m6} -6 -s mh -p {rng.randint(1, 600)} -M {rng.randint(1, 128)}",
        *(f"-a -f {m6} -6 -r {a}:0 -m -w {rng.randint(0, 9)}" for a in rs6),
        "-A --sctp-service 10.1.99.1:9 -s rr",
        "-a --sctp-service 10.1.99.1:9 -r 172.20.1.1:9 -m -w 4 -x 10",
        "-A -u 10.1.99.2:53 -s mh -b mh-port -o",
        "-a -u 10.1.99.2:53 -r 172.20.2.1:53 -m -w 3",
        "-a -u 10.1.99.2:53 -r 172.20.2.2:53 -m -w 5",
        f"-A -t [fd00:1:99::1]:443 -s mh -b mh-fallback,mh-port -p {rng.randint(1, 999)}",
        f"-a -t [fd00:1:99::1]:443 -r {rs6[0]}:443 -m -w 7 -x 50 -y 5",
        f"-a -t [fd00:1:99::1]:443 -r {rs6[1]}:443 -g -w 0",
        # edits: thresholds, weight to 0 and back, a re-add at the head
        f"-e -f {m4} -r 172.20.0.3:0 -m -w 0 -x 9 -y 1",
        "-e -u 10.1.99.2:53 -r 172.20.2.1:53 -m -w 0",
        "-d -u 10.1.99.2:53 -r 172.20.2.1:53",
        "-a -u 10.1.99.2:53 -r 172.20.2.1:53 -m -w 1",
        f"-E -t [fd00:1:99::1]:443 -s mh -b mh-port -p {rng.randint(1, 999)} -M 64",
    ]
    return lines


def plan(key: str, module: str) -> list[dict]:
    """The driver's steps: for each seed, clear, then restore + read per phase."""
    base = {"6.1": 100, "6.12": 200}[key] + (50 if module == "kmod" else 0)
    steps: list[dict] = [{"do": "facts"}]
    for seed in range(base, base + SEEDS_PER_BOOT):
        sc = scenarios.generate(seed, 0)
        steps.append({"do": "restore", "lines": ["-C"]})
        for ph in sc.phases:
            steps.append({"do": "restore", "lines": ph.history})
            steps.append({"do": "read"})
        steps.append({"do": "restore", "lines": extra_history(random.Random(seed))})
        steps.append({"do": "read"})
        steps.append({"do": "journal_replay"})
    return steps


@pytest.fixture(scope="session")
def live_boots(tmp_path_factory):
    """(key, module) -> (steps, driver results, BootResult), booted on demand."""
    import kmod_build

    still = prereqs.ensure()
    if still:
        missing(prereqs.explain(still))
    cache: dict = {}

    def get(key: str, module: str):
        if (key, module) not in cache:
            try:
                k = kernels.fetch_kernel(key)
            except PrerequisiteError as exc:
                missing(str(exc))
            extra = ()
            if module == "kmod":
                try:
                    kmod_build.check_prerequisites(k.headers_dir)
                except kmod_build.BuildError as exc:
                    missing(str(exc))
                b = kmod_build.build(k.headers_dir, tmp_path_factory.mktemp("kmod"))
                extra = (ExtraModule(b.ko, KMOD_PARAMS, replaces="ip_vs_mh"),)
            steps = plan(key, module)
            t0 = time.monotonic()
            res, boot = guestpy.run_steps(
                k, steps, extra_modules=extra, modules=("ip_vs_rr", "ip_vs_sh")
            )
            TIMINGS.append(
                f"live {key} {module}: {len(steps)} steps, boot {boot.boot_seconds:.1f}s,"
                f" python import {res.get('import_seconds', 0):.1f}s, total"
                f" {time.monotonic() - t0:.1f}s ({boot.accel})"
            )
            print(TIMINGS[-1])
            cache[key, module] = (steps, res["results"], boot)
        return cache[key, module]

    return get


def _normal(services):
    """What both sources show: no persistent-conn counter, and a timeout only for
    persistent services."""
    out = []
    for s in services:
        rss = tuple(replace(r, persistent_conns=0) for r in s.real_servers)
        timeout = s.timeout if s.persistent is not None else 0
        out.append(replace(s, real_servers=rss, timeout=timeout))
    return out


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("key", KERNELS)
def test_netlink_reads_equal_ipvsadm(key, module, live_boots):
    steps, results, boot = live_boots(key, module)
    assert len(results) == len(steps), boot.text("driver.log")[-3000:]
    reads = 0
    for i, (st, r) in enumerate(zip(steps, results)):
        if st["do"] == "restore":  # ipvsadm -R exits 0 even when lines fail
            assert r["rc"] == 0 and not r["stderr"], f"step {i}: {r['stderr']}"
        if st["do"] != "read":
            continue
        assert "error" not in r, f"step {i}: {r.get('error')}"
        live = netlink.services_from_json(r["records"])
        shown = netlink.parse_listing(r["listing"], r["thresholds"])
        assert _normal(live) == _normal(shown), f"step {i}"
        # and as text: the records printed the way ipvsadm prints them
        listing = r["listing"].split("\n", 1)[1]  # without the version line
        assert netlink.render_listing(live) == listing, f"step {i}"
        reads += 1
    assert reads >= SEEDS_PER_BOOT * 2


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("key", KERNELS)
def test_journal_replayed_by_the_kernel_rebuilds_the_list(key, module, live_boots):
    """The journal kept over the reads of a history (one read per phase, so one
    diff may stand for many commands), replayed with ``ipvsadm -R`` into an empty
    IPVS, gives every service, real server, list position and weight back."""
    steps, results, boot = live_boots(key, module)
    replays = 0
    last = None
    for i, (st, r) in enumerate(zip(steps, results)):
        if st["do"] == "read":
            last = netlink.services_from_json(r["records"])
        if st["do"] != "journal_replay":
            continue
        # ipvsadm -R exits 0 even when lines fail: stderr tells
        assert r["rc"] == 0 and not r["stderr"], f"step {i}: {r['stderr']}"
        listing, thresholds = r["stdout"].split("@@\n")
        replayed = netlink.parse_listing(listing, thresholds)
        # services come in the kernel's hash-table order, not creation order
        got = {s.key: s for s in _normal(replayed)}
        want = {s.key: s for s in _normal(netlink.without_counters(last))}
        assert got == want, r["journal"]
        replays += 1
    assert replays == SEEDS_PER_BOOT


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("key", KERNELS)
def test_detects_kernel_facts(key, module, live_boots):
    steps, results, boot = live_boots(key, module)
    facts = results[0]
    assert facts["release"] == boot.kernel.release
    assert facts["word_size"] == 64 and facts["byte_order"] == "little"
    assert facts["warnings"] == []
    if module == "kmod":
        assert facts["mh_module"] == "maglevx" and facts["variant"] == "backport"
        assert facts["table_size"] == 251 and facts["backport_hash_port"] is False
    else:
        assert facts["mh_module"] == "in-tree" and facts["variant"] == "upstream"
        assert facts["table_size"] == 4093
        assert "CONFIG_IP_VS_MH_TAB_INDEX=12" in facts["sources"]["table_size"]
