"""maglevx watch without a kernel: a scripted sequence of reads (changes, transient
netlink errors) through the Watcher, the HTTP endpoints, the journal, and
consistency over exporters' URLs. The real kernels are in tests/kernel/test_live.py."""

import ipaddress
import json
import shutil
import subprocess
import threading
import urllib.request
from dataclasses import replace

import pytest

pytest.importorskip("prometheus_client")

import maglevx  # noqa: E402
from maglevx import kernelinfo, live, netlink  # noqa: E402
from maglevx.cli import main  # noqa: E402
from maglevx.tools import watch  # noqa: E402

FACTS = kernelinfo.KernelFacts(
    release="6.1.0-test",
    word_size=64,
    byte_order="little",
    table_size=251,
    variant="upstream",
    mh_module="in-tree",
)


def rs(i, w):
    return netlink.LiveRealServer(ipaddress.ip_address(f"10.1.0.{i}"), 80, "masq", w)


def svc(*servers, flags=0x10):
    return netlink.LiveService(
        "tcp",
        ipaddress.ip_address("10.0.0.1"),
        80,
        0,
        4,
        "mh",
        flags,
        0,
        0xFFFFFFFF,
        real_servers=tuple(servers),
    )


def state(services):
    params = live.director_params(FACTS)
    d, warnings = live.build_director(services, params)
    return live.LiveDirector(d, list(services), FACTS, "test", warnings)


class Script:
    """Reads in order; an exception instance is raised instead of returned."""

    def __init__(self, *items):
        self.items = list(items)

    def __call__(self):
        item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if isinstance(item, Exception):
            raise item
        return state(item)


START = [svc(rs(3, 1), rs(2, 2), rs(1, 3))]
DRAINED = [svc(rs(3, 1), rs(2, 0), rs(1, 3))]  # 10.1.0.2 edited to weight 0
HISTORY = (
    "-A -t 10.0.0.1:80 -s mh -b mh-port\n"
    "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 3\n"
    "-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 2\n"
    "-a -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 1\n"
    "-e -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 0\n"
)


def expected():
    d = maglevx.Director.from_history(HISTORY, table_size=251)
    return d.services[0]


def test_transient_errors_are_counted_and_the_last_state_kept(tmp_path):
    j = tmp_path / "journal.txt"
    err = netlink.NetlinkError("IPVS_CMD_GET_SERVICE: No buffer space available", 105)
    w = watch.Watcher(
        journal_path=str(j),
        reader=Script(START, err, DRAINED),
        conn_path=str(tmp_path / "none"),
    )
    w.poll()
    assert w.up and w.polls == 1
    fp0 = w.fingerprints["TCP 10.0.0.1:80"]
    w.poll()
    assert not w.up and w.errors["read"] == 1 and "No buffer space" in w.last_error
    assert w.fingerprints["TCP 10.0.0.1:80"] == fp0  # kept
    w.poll()
    assert w.up and w.polls == 2
    # the journal knows the drained server keeps last_weight 2 (its slots)
    assert w.fingerprints["TCP 10.0.0.1:80"] == live.fingerprint(expected())
    assert w.fingerprints["TCP 10.0.0.1:80"] == fp0  # upstream: drain keeps the table
    text = j.read_text()
    assert "-e -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 0" in text
    d = maglevx.Director.from_history(text, table_size=251)
    assert live.fingerprint(d.services[0]) == live.fingerprint(expected())
    # upstream: the drained server's slots refuse new flows
    share = watch.slot_shares(expected())["10.1.0.2:80"]
    assert share > 0
    assert watch.refused_fraction(expected()) == pytest.approx(share)


def test_refused_fraction_with_fallback_is_sampled():
    d = maglevx.Director.from_history(
        HISTORY.replace("-b mh-port", "-b mh-fallback,mh-port"), table_size=251
    )
    assert watch.refused_fraction(d.services[0]) == 0.0  # probes find 10.1.0.1/3
    # sampled (10.1.0.2's slots are refused without fallback): flows landing on
    # them probe on and, every slot being held, find an available server
    assert watch.refused_fraction(d.services[0], sample=2000) == 0.0
    d.apply("-e -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 0")
    assert watch.refused_fraction(d.services[0], sample=2000) == 0.0  # 10.1.0.3
    d.apply("-e -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 0")
    assert watch.refused_fraction(d.services[0]) == 1.0  # nobody is available
    v6 = maglevx.Director.from_history(
        "-A -u [fd00::1]:53 -s mh -b mh-fallback\n-a -u [fd00::1]:53 -r [fd00::2]:53 -m\n"
    )
    assert watch.refused_fraction(v6.services[0]) == 0.0


def test_permission_and_no_ipvs_errors_have_their_kind(tmp_path):
    for exc, kind in [
        (
            netlink.NetlinkError("reading IPVS needs CAP_NET_ADMIN: run as root", 1),
            "permission",
        ),
        (
            netlink.NetlinkError(
                "this kernel has no IPVS (no generic netlink family "
                "'IPVS'): load it with modprobe ip_vs",
                2,
            ),
            "no_ipvs",
        ),
    ]:
        w = watch.Watcher(reader=Script(exc), conn_path=str(tmp_path / "none"))
        w.poll()
        assert w.errors[kind] == 1 and not w.up


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


@pytest.fixture
def exporter(tmp_path):
    """A running exporter on 127.0.0.1 (ephemeral port) over scripted reads."""
    started = []

    def run(items):
        w = watch.Watcher(reader=Script(*items), conn_path=str(tmp_path / "none"))
        stop = threading.Event()
        ready = threading.Event()
        addr = []

        def on_ready(a):
            addr.append(a)
            ready.set()

        t = threading.Thread(
            target=watch.serve,
            args=(w, "127.0.0.1:0", 3600, stop, on_ready),
            daemon=True,
        )
        t.start()
        assert ready.wait(30)
        started.append((stop, t))
        return w, f"http://127.0.0.1:{addr[0][1]}"

    yield run
    for stop, t in started:
        stop.set()
        t.join(10)


def test_metrics_and_state_over_http(exporter):
    w, url = exporter([DRAINED])
    metrics = _get(url + "/metrics")
    fp = live.fingerprint(w.director.services[0])
    assert (
        f'maglevx_table_info{{fingerprint="{fp}",service="TCP 10.0.0.1:80"}} 1.0'
        in metrics
    )
    assert (
        'maglevx_slot_share{server="10.1.0.2:80",service="TCP 10.0.0.1:80"}' in metrics
    )
    assert "maglevx_up 1.0" in metrics
    assert 'maglevx_read_errors_total{kind="read"} 0.0' in metrics
    state_ = json.loads(_get(url + "/state.json"))
    assert state_["fingerprints"] == {"TCP 10.0.0.1:80": fp}
    assert state_["journal"][0] == "-A -t 10.0.0.1:80 -s mh -b mh-port"


def test_consistency_over_exporters_urls(exporter, capsys):
    _, a = exporter([START])
    _, b = exporter([DRAINED])
    assert main(["consistency", a, a]) == 0
    assert main(["consistency", a, b]) == 1
    out = capsys.readouterr().out
    assert "10.1.0.2:80" in out


def test_listen_errors_are_one_line():
    with pytest.raises(maglevx.MaglevxError, match="is not HOST:PORT"):
        watch.parse_listen("9753")


def test_service_unit_runs_watch_with_a_valid_command_line(tmp_path):
    """contrib/maglevx-watch.service: its ExecStart parses as a maglevx command."""
    import shlex
    from pathlib import Path

    from maglevx.cli import build_parser

    unit = (
        Path(__file__).resolve().parents[1] / "contrib" / "maglevx-watch.service"
    ).read_text()
    exec_line = unit.split("ExecStart=", 1)[1].replace("\\\n", " ").splitlines()[0]
    argv = shlex.split(exec_line)
    assert argv[0].endswith("/maglevx") and argv[1] == "watch"
    args = build_parser().parse_args(argv[1:])
    assert args.listen == "127.0.0.1:9753" and args.journal
    if shutil.which("systemd-analyze"):  # and systemd finds nothing else to say
        copy = tmp_path / "maglevx-watch.service"
        copy.write_text(unit.replace(argv[0], "/bin/true"))
        r = subprocess.run(
            ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True
        )
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_state_round_trip():
    st = state(DRAINED)
    back = live.from_state(json.loads(json.dumps(st.to_json())))
    assert back.services == st.services
    assert live.fingerprint(back.director.services[0]) == live.fingerprint(
        st.director.services[0]
    )


def test_records_differing_only_in_counters_make_no_journal_lines():
    busy = [svc(replace(rs(3, 1), active_conns=9), rs(2, 2), rs(1, 3))]
    from maglevx import journal

    assert journal.diff(START, busy) == []


def test_watch_once_without_ipvs_is_one_line(capsys):
    """This host's kernel has no IPVS (the guests' have: tests/kernel/test_live.py)."""
    import os

    rc = main(["watch", "--once"])
    err = capsys.readouterr().err
    if os.path.exists("/proc/net/ip_vs"):  # a host with IPVS: must work as root
        assert rc == 0 or "run as root" in err
    else:
        assert rc == 2
        assert err == (
            "maglevx: error: this kernel has no IPVS (no generic netlink family "
            "'IPVS'): load it with modprobe ip_vs\n"
        )


def test_watch_interval_must_be_positive(capsys):
    assert main(["watch", "--interval", "0"]) == 2
    assert "interval 0.0 is not positive" in capsys.readouterr().err


def test_live_director_names_what_it_cannot_know():
    services = [
        svc(rs(3, 1), replace(rs(2, 0), u_threshold=10, l_threshold=2), rs(1, 3)),
        replace(svc(rs(4, 1)), port=81, scheduler="rr", flags=0),
    ]
    st = state(services)
    assert [s.name for s in st.director.services] == [
        "TCP 10.0.0.1:80",
        "TCP 10.0.0.1:81",
    ]
    mh = st.director.services[0]
    assert [r.endpoint for r in mh.real_servers] == [
        "10.1.0.3:80",
        "10.1.0.2:80",
        "10.1.0.1:80",
    ]
    assert any(
        "last_weight of 10.1.0.2:80 (weight 0) is unknown" in w for w in st.warnings
    )
    assert any("whether 10.1.0.2:80 is overloaded" in w for w in st.warnings)
    assert live.mh_services(st) == [mh]
    with pytest.raises(maglevx.MaglevxError, match="uses scheduler rr, not mh"):
        live.mh_services(st, "TCP 10.0.0.1:81")
    with pytest.raises(maglevx.MaglevxError, match="no service 'TCP 10.9.9.9:1'"):
        live.mh_services(st, "TCP 10.9.9.9:1")
    with pytest.raises(maglevx.MaglevxError, match="no mh service on this director$"):
        live.mh_services(state(services[1:]))
    no_module = live.LiveDirector(
        st.director, [], replace(FACTS, mh_module=None), "test", []
    )
    with pytest.raises(maglevx.MaglevxError, match=r"\(ip_vs_mh is not loaded\)"):
        live.mh_services(replace(no_module, director=state(services[1:]).director))


def test_detected_parameters_yield_to_explicit_ones():
    p = live.director_params(FACTS, table_size=4093, variant=None)
    assert (p.variant, p.word_size, p.table_size) == ("upstream", 64, 4093)
    kmod = replace(
        FACTS, variant="backport", mh_module="maglevx", backport_hash_port=False
    )
    assert live.director_params(kmod).backport_hash_port is False


@pytest.mark.parametrize(
    "command",
    [
        ["table"],
        ["predict", "-"],
        ["explain", "tcp,192.0.2.1,1,10.0.0.1,80"],
        ["verify"],
    ],
)
def test_live_commands_without_ipvs_are_one_line(command, capsys):
    """--live on this host (no IPVS in its kernel): one line, exit 2, no traceback."""
    import os

    if os.path.exists("/proc/net/ip_vs"):
        return  # a host with IPVS: the guests test this (tests/kernel/test_live.py)
    assert main([command[0], "--live", *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err == (
        "maglevx: error: this kernel has no IPVS (no generic netlink family "
        "'IPVS'): load it with modprobe ip_vs\n"
    )
