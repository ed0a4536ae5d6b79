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

import json
import os
import random
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from ipvs_vm import guestpy, initramfs, jobs, kernels, prereqs, scenarios
from ipvs_vm.jobs import Flow
from ipvs_vm.kernels import PrerequisiteError
from ipvs_vm.qemu import ExtraModule
from ipvs_vm.suite import fail_or_skip

from maglevx import netlink

pytestmark = pytest.mark.kernel

KERNELS = ("6.1", "6.12")
MODULES = ("in-tree", "kmod")
SEEDS_PER_BOOT = int(os.environ.get("MAGLEVX_LIVE_SEEDS", "3"))
KMOD_PARAMS = "table_size=251 hash_port=0"
TIMINGS: list[str] = []


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
        # a real server on a local address: the kernel makes masq "Local"
        "-A -t 10.1.99.3:80 -s mh",
        "-a -t 10.1.99.3:80 -r 10.9.9.9:80 -m -w 2",
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


GUEST_PORT = 9753
SIGNAL_DIR = Path("/var/tmp")  # the host's, seen by the guest through 9p
TOOLS_FLOWS = int(os.environ.get("MAGLEVX_LIVE_FLOWS", "1500"))


def tools_history(rng: random.Random) -> tuple[list[list[str]], list[Flow]]:
    """Phases of a history for the tools (adds, drains to weight 0, a delete and a
    re-add, thresholds; mh services with every flag set, one rr service), and
    flows to send after the last phase."""
    svcs = [
        ("-t", "10.1.50.1:80", "mh -b mh-port", "tcp", "10.1.50.1", 80),
        (
            "-u",
            "[fd00:1:50::1]:53",
            "mh -b mh-fallback,mh-port",
            "udp",
            "fd00:1:50::1",
            53,
        ),
        ("-t", "10.1.50.2:443", "mh", "tcp", "10.1.50.2", 443),
    ]
    rs = {}
    p1 = []
    for opt, ep, sched, _p, vip, port in svcs:
        p1.append(f"-A {opt} {ep} -s {sched}")
        v6 = ":" in vip
        rs[ep] = [
            (f"[2001:db8:50::{i:x}]:{port}" if v6 else f"172.16.50.{i}:{port}")
            for i in range(1, rng.randint(5, 9))
        ]
        for r in rs[ep]:
            p1.append(f"-a {opt} {ep} -r {r} -m -w {rng.randint(1, 20)}")
    p1.append("-A -t 10.1.50.3:8080 -s rr")
    p1.append("-a -t 10.1.50.3:8080 -r 172.16.51.1:8080 -m -w 1")
    p2, p3 = [], []
    for opt, ep, _s, _p, _v, _port in svcs:
        a, b, c = rng.sample(rs[ep], 3)
        p2.append(f"-e {opt} {ep} -r {a} -m -w 0")  # drained for good
        p2.append(f"-e {opt} {ep} -r {b} -m -w 0")  # drained, then back
        p2.append(f"-d {opt} {ep} -r {c}")
        p3.append(f"-e {opt} {ep} -r {b} -m -w {rng.randint(1, 30)} -x 100000 -y 10")
        p3.append(f"-a {opt} {ep} -r {c} -m -w {rng.randint(0, 5)}")  # re-added
    flows, seen = [], set()
    while len(flows) < TOOLS_FLOWS:
        _o, _e, _s, proto, vip, port = svcs[len(flows) % len(svcs)]
        if ":" in vip:
            saddr = f"fd00:c:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
        else:
            saddr = (
                f"10.{rng.randint(2, 250)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            )
        f = Flow(proto, saddr, rng.randint(1024, 65535), vip, port)
        if f.client_key() not in seen:
            seen.add(f.client_key())
            flows.append(f)
    return [p1, p2, p3], flows


def tools_plan(key: str, module: str, signal: str) -> list[dict]:
    """maglevx's tools on the live director: watch (journal, exporter), verify,
    table, predict and explain with --live, and their one-line errors."""
    phases, flows = tools_history(random.Random(f"{key}-{module}"))
    flowgen = str(initramfs.build_flowgen())
    params = (
        ["--variant", "backport", "--table-size", "251", "--no-port-hash"]
        if (module == "kmod")
        else []
    )
    steps: list[dict] = [
        {"do": "restore", "lines": ["-C"]},
        {
            "do": "watch_start",
            "listen": f"0.0.0.0:{GUEST_PORT}",
            "journal": "/tmp/journal.txt",
        },
    ]
    for ph in phases:
        steps += [{"do": "restore", "lines": ph}, {"do": "watch_poll"}]
    steps += [
        {
            "do": "flows",
            "flowgen": flowgen,
            "flows": "".join(
                f"{f.proto} {f.saddr} {f.sport} {f.daddr} {f.dport}\n" for f in flows
            ),
        },
        {"do": "watch_poll"},
        {"do": "maglevx", "args": ["verify", "--live", "--json"]},
        {
            "do": "maglevx",
            "args": ["verify", "--live", "--history", "/tmp/journal.txt", "--json"],
        },
        {"do": "maglevx", "args": ["table", "--live", "--json"]},
        {
            "do": "maglevx",
            "args": ["predict", "--live", "-"],
            "stdin": "".join(f.csv() + "\n" for f in flows),
        },
        {
            "do": "maglevx",
            "args": ["predict", "--history", "/tmp/journal.txt", *params, "-"],
            "stdin": "".join(f.csv() + "\n" for f in flows),
        },
        {"do": "maglevx", "args": ["explain", "--live", flows[0].csv()]},
        {
            "do": "maglevx",
            "args": ["table", "--live", "--service", "TCP 10.1.50.3:8080"],
        },
        {"do": "maglevx", "args": ["table", "--live"], "uid": 65534},
        {"do": "wait_file", "path": signal, "timeout": 600},
        {"do": "watch_stop"},
    ]
    return steps


def end_plan() -> list[dict]:
    """The errors of a director without mh services, then without IPVS at all."""
    return [
        {"do": "restore", "lines": ["-C", "-A -t 10.1.60.1:80 -s rr"]},
        {"do": "maglevx", "args": ["table", "--live"]},
        {"do": "restore", "lines": ["-C"]},
        {"do": "sh", "cmd": "rmmod ip_vs_rr ip_vs_sh ip_vs_mh ip_vs && echo unloaded"},
        {"do": "maglevx", "args": ["table", "--live"]},
    ]


def plan(key: str, module: str, signal: str = "/nonexistent") -> list[dict]:
    """The driver's steps: the tools first (a fresh connection table), then for
    each seed: clear, then restore + read per phase, then the errors."""
    base = {"6.1": 100, "6.12": 200}[key] + (50 if module == "kmod" else 0)
    steps: list[dict] = [{"do": "facts"}] + tools_plan(key, module, signal)
    for seed in range(base, base + SEEDS_PER_BOOT):
        sc = scenarios.generate(seed, 0)
        steps.append({"do": "restore", "lines": ["-C"]})
        for ph in sc.phases:
            steps.append({"do": "restore", "lines": ph.history})
            steps.append({"do": "read"})
        steps.append({"do": "restore", "lines": extra_history(random.Random(seed))})
        steps.append({"do": "read"})
        steps.append({"do": "journal_replay"})
    return steps + end_plan()


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def _scrape(port: int, polls: int, signal: Path, out: dict) -> None:
    """From the host, over qemu's user-mode network (127.0.0.1 only): wait until
    the guest's exporter has polled after the last change, take /metrics and
    /state.json, then tell the guest (a file it sees through 9p)."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and not signal.exists():
            try:
                with urllib.request.urlopen(base + "/state.json", timeout=5) as r:
                    state = json.loads(r.read())
            except (OSError, ValueError):
                time.sleep(1)
                continue
            if state.get("polls", 0) >= polls:
                with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
                    out["metrics"] = r.read().decode()
                out["state"] = state
                out["url"] = base
                return
            time.sleep(1)
        out["error"] = "the exporter never reached the last poll"
    finally:
        signal.touch()


def boot_live(key: str, module: str, kmod_dir: Path):
    """One boot of ``plan(key, module)``: (steps, driver results, BootResult, what
    the host scraped from the exporter)."""
    from ipvs_vm import kmod_build

    try:
        k = kernels.fetch_kernel(key)
    except PrerequisiteError as exc:
        fail_or_skip(str(exc))
    extra = ()
    if module == "kmod":
        try:
            kmod_build.check_prerequisites(k.headers_dir)
        except kmod_build.BuildError as exc:
            fail_or_skip(str(exc))
        b = kmod_build.build(k.headers_dir, kmod_dir)
        extra = (ExtraModule(b.ko, KMOD_PARAMS, replaces="ip_vs_mh"),)
    port = _free_port()
    signal_dir = Path(tempfile.mkdtemp(prefix="maglevx-live-", dir=SIGNAL_DIR))
    signal = signal_dir / "scraped"
    steps = plan(key, module, str(signal))
    polls = sum(st["do"] == "watch_poll" for st in steps) + 1
    scrape: dict = {}
    scraper = threading.Thread(
        target=_scrape, args=(port, polls, signal, scrape), daemon=True
    )
    t0 = time.monotonic()
    scraper.start()
    try:
        res, boot = guestpy.run_steps(
            k,
            steps,
            extra_modules=extra,
            modules=("ip_vs_rr", "ip_vs_sh"),
            forward_ports=[(port, GUEST_PORT)],
        )
    finally:
        signal.touch()  # never leave the guest waiting
        scraper.join(30)
        shutil.rmtree(signal_dir, ignore_errors=True)
    TIMINGS.append(
        f"live {key} {module}: {len(steps)} steps, boot {boot.boot_seconds:.1f}s,"
        f" python import {res.get('import_seconds', 0):.1f}s, total"
        f" {time.monotonic() - t0:.1f}s ({boot.accel})"
    )
    print(TIMINGS[-1])
    return steps, res["results"], boot, scrape


@pytest.fixture(scope="session")
def live_boots(tmp_path_factory):
    """(key, module) -> boot_live(key, module), booted once on demand."""
    still = prereqs.ensure()
    if still:
        fail_or_skip(prereqs.explain(still))
    cache: dict = {}

    def get(key: str, module: str):
        if (key, module) not in cache:
            cache[key, module] = boot_live(key, module, tmp_path_factory.mktemp("kmod"))
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
    steps, results, boot, _ = live_boots(key, module)
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
    steps, results, boot, _ = live_boots(key, module)
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
    steps, results, boot, _ = live_boots(key, module)
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


# -- the tools on the live director ------------------------------------------------


def _step(steps, results, do: str, args_prefix=None, uid=None):
    for st, r in zip(steps, results):
        if st["do"] != do:
            continue
        if args_prefix is not None and st.get("args", [])[: len(args_prefix)] != list(
            args_prefix
        ):
            continue
        if st.get("uid") != uid:
            continue
        return st, r
    raise AssertionError(f"no {do} {args_prefix} step ran")


def _params(module: str) -> dict:
    if module == "kmod":
        return {"variant": "backport", "table_size": 251, "backport_hash_port": False}
    return {"variant": "upstream", "table_size": 4093}


def _kernel_choices(steps, results):
    """(flows, {flow csv: "raddr:rport" or None}) of the tools' flows."""
    st, r = _step(steps, results, "flows")
    flows = [
        Flow(*ln.split()[:3], ln.split()[3], int(ln.split()[4]))
        for ln in st["flows"].splitlines()
    ]
    flows = [Flow(f.proto, f.saddr, int(f.sport), f.daddr, f.dport) for f in flows]
    res, _us, problems, _templates = jobs._parse_phase(
        jobs.Phase([], flows), r["stdout"]
    )
    assert not problems, problems[:5]
    out = {}
    for fr in res:
        ep = None
        if fr.raddr is not None:
            a = f"[{fr.raddr}]" if ":" in fr.raddr else fr.raddr
            ep = f"{a}:{fr.rport}"
        out[fr.flow.csv()] = ep
    return flows, out


def _history(key: str, module: str) -> str:
    phases, _ = tools_history(random.Random(f"{key}-{module}"))
    return "\n".join(ln for ph in phases for ln in ph) + "\n"


def _predicted(text: str, module: str, flows) -> dict:
    import maglevx

    d = maglevx.Director.from_history(text, **_params(module))
    out = {}
    for f in flows:
        rs = maglevx.lookup((f.proto, f.saddr, f.sport, f.daddr, f.dport), d)
        out[f.csv()] = None if rs is None else rs.endpoint
    return out


def _fingerprints(text: str, module: str) -> dict:
    import maglevx
    from maglevx import live

    d = maglevx.Director.from_history(text, **_params(module))
    return {s.name: live.fingerprint(s) for s in d.services if s.scheduler == "mh"}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("key", KERNELS)
def test_verify_live_after_real_flows(key, module, live_boots):
    steps, results, boot, _ = live_boots(key, module)
    flows, kernel = _kernel_choices(steps, results)
    sent = sum(ep is not None for ep in kernel.values())
    assert sent > len(flows) // 2
    _, r = _step(steps, results, "maglevx", ["verify", "--live", "--json"])
    rep = json.loads(r["stdout"])
    assert rep["mismatches"] == [] and r["rc"] == 0, r["stderr"]
    assert rep["checked"] == sent
    # with the journal, last_weight is known: every connection as predicted
    _, r = _step(steps, results, "maglevx", ["verify", "--live", "--history"])
    rep = json.loads(r["stdout"])
    assert r["rc"] == 0 and rep["mismatches"] == [] and rep["caveats"] == []
    assert rep["matched"] == rep["checked"] == sent
    if module == "kmod":  # the module's own tables, slot by slot, vs the journal's
        assert len(rep["kmod"]) == 3
        assert all(k["slots_differ"] == 0 and not k["notes"] for k in rep["kmod"])


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("key", KERNELS)
def test_journal_replayed_offline_gives_the_kernels_tables(key, module, live_boots):
    """The journal watch wrote (over reads after each phase, incl. edits to weight 0
    and a re-add) predicts every flow as the kernel scheduled it, refused ones too,
    and builds the tables the full history builds."""
    steps, results, boot, _ = live_boots(key, module)
    text = boot.text("journal.txt")
    assert "-e " in text and " -w 0" in text
    flows, kernel = _kernel_choices(steps, results)
    assert _predicted(text, module, flows) == kernel
    assert _fingerprints(text, module) == _fingerprints(_history(key, module), module)
    # the same prediction, made inside the guest from the journal
    _, r = _step(steps, results, "maglevx", ["predict", "--history"])
    assert r["rc"] == 0, r["stderr"]
    lines = r["stdout"].splitlines()
    assert len(lines) == len(flows)
    for f, ln in zip(flows, lines):
        want = kernel[f.csv()]
        assert ln == f.csv() + "," + ("," if want is None else _csv_endpoint(want))


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("key", KERNELS)
def test_predict_live(key, module, live_boots):
    """predict --live: exact for our module; upstream, where the listing shows no
    last_weight of drained servers, with a warning naming them."""
    steps, results, boot, _ = live_boots(key, module)
    flows, kernel = _kernel_choices(steps, results)
    _, r = _step(steps, results, "maglevx", ["predict", "--live", "-"])
    assert r["rc"] == 0, r["stderr"]
    lines = r["stdout"].splitlines()
    assert len(lines) == len(flows)
    _, ex = _step(steps, results, "maglevx", ["explain", "--live"])
    assert ex["rc"] == 0 and flows[0].saddr in ex["stdout"], ex["stderr"]
    if module == "kmod":
        for f, ln in zip(flows, lines):
            tail = ln[len(f.csv()) + 1 :]
            want = kernel[f.csv()]
            assert tail == ("," if want is None else _csv_endpoint(want)), ln
    else:
        assert "last_weight" in r["stderr"]


def _csv_endpoint(ep: str) -> str:
    host, port = ep.rsplit(":", 1)
    return f"{host.strip('[]')},{port}"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("key", KERNELS)
def test_exporter_scraped_from_the_host(key, module, live_boots):
    """Over qemu's user-mode network (forwarded to 127.0.0.1 only): the
    fingerprints equal the ones predicted from the history, verify counters saw
    every connection as predicted."""
    steps, results, boot, scrape = live_boots(key, module)
    assert "metrics" in scrape, scrape.get("error")
    assert scrape["url"].startswith("http://127.0.0.1:")
    metrics = scrape["metrics"]
    fps = dict(
        re.findall(
            r'maglevx_table_info\{fingerprint="(\w+)",service="([^"]+)"\}', metrics
        )
    )
    fps = {svc: fp for fp, svc in fps.items()}
    assert fps == _fingerprints(_history(key, module), module)
    assert "maglevx_up 1.0" in metrics
    checked = sum(
        float(v)
        for v in re.findall(
            r'maglevx_verify_connections_total\{result="checked",service="[^"]+"\} (\S+)',
            metrics,
        )
    )
    bad = re.findall(
        r'maglevx_verify_connections_total\{result="not_as_predicted",service="[^"]+"\} (\S+)',
        metrics,
    )
    flows, kernel = _kernel_choices(steps, results)
    assert checked == sum(ep is not None for ep in kernel.values())
    assert bad and all(float(b) == 0 for b in bad)
    # the refused share: drained upstream servers keep their slots
    refused = dict(
        re.findall(
            r'maglevx_refused_new_flows_ratio\{service="([^"]+)"\} (\S+)', metrics
        )
    )
    assert set(refused) == set(fps)
    if module == "in-tree":
        assert float(refused["TCP 10.1.50.1:80"]) > 0
    else:
        assert float(refused["TCP 10.1.50.1:80"]) == 0
    assert scrape["state"]["journal"]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("key", KERNELS)
def test_live_errors_are_one_line(key, module, live_boots):
    steps, results, boot, _ = live_boots(key, module)
    want = [
        (
            ["table", "--live", "--service"],
            None,
            "maglevx: error: field '--service': service TCP 10.1.50.3:8080 uses scheduler rr, not mh",
        ),
        (
            ["table", "--live"],
            65534,
            "maglevx: error: reading IPVS needs CAP_NET_ADMIN: run as root",
        ),
    ]
    for args, uid, line in want:
        _, r = _step(steps, results, "maglevx", args, uid=uid)
        assert (r["rc"], r["stderr"]) == (2, line + "\n"), args
    tail = results[-5:]
    assert tail[1]["rc"] == 2
    assert tail[1]["stderr"] == "maglevx: error: no mh service on this director\n"
    assert tail[3]["stdout"].strip() == "unloaded", tail[3]["stderr"]
    assert tail[4]["rc"] == 2
    assert tail[4]["stderr"] == (
        "maglevx: error: this kernel has no IPVS (no generic netlink family 'IPVS'): "
        "load it with modprobe ip_vs\n"
    )
