"""Every listing and connection format the real kernel + ipvsadm 1.31 print (issue 12).

One small boot of Debian's 6.1 kernel applies a history, pushes IPv4 TCP and
IPv6 UDP flows, and captures what operators paste: ``ipvsadm -Ln`` (sorted),
``--nosort``, ``--stats``, ``--rate``, ``--thresholds``, ``--persistent-conn``,
``-L`` with service and host names (the guest gets netbase's /etc/services and
an /etc/hosts line), ``-S`` with names, ``-Lnc`` (plain and
``--persistent-conn``), ``/proc/net/ip_vs`` and ``/proc/net/ip_vs_conn``. Each capture must be read
as the manifest of tests/data/real says an operator expects: listings that
show the configuration give the same director as ``--nosort``, flavours
without weights are refused naming the flavour, and both connection formats
verify against the history with no difference. The captures are written to
``~/.cache/maglevx/real-formats/`` (the harness's cache) so that they can be
frozen in tests/data/real/kernel-6.1/, where the fast suite checks them too.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from ipvs_vm import boot
from ipvs_vm.kernels import cache_dir

from maglevx import cli
from maglevx.captures import parse_ip_vs_conn, parse_ipvsadm_conn
from maglevx.tools.sources import DirectorParams, load_text

pytestmark = pytest.mark.kernel

HISTORY = """\
-A -t 10.1.0.1:80 -s mh -b mh-port
-a -t 10.1.0.1:80 -r 172.16.0.9:80 -m -w 2
-a -t 10.1.0.1:80 -r 172.16.0.3:80 -m
-a -t 10.1.0.1:80 -r 172.16.0.7:80 -m -w 3 -x 100 -y 10
-a -t 10.1.0.1:80 -r 172.16.0.5:80 -m -w 4
-e -t 10.1.0.1:80 -r 172.16.0.3:80 -m -w 0
-A -u [fd00:1::1]:53 -s mh -b mh-port,mh-fallback
-a -u [fd00:1::1]:53 -r [2001:db8::7]:53 -m
-a -u [fd00:1::1]:53 -r [2001:db8::2]:53 -m -w 5
-A -t 10.1.0.2:443 -s mh -p 60
-a -t 10.1.0.2:443 -r 172.16.0.4:443 -g
"""
FLOWS = (
    "".join(f"tcp 10.2.0.{i} {40000 + i} 10.1.0.1 80\n" for i in range(1, 121))
    + "".join(f"udp fd00:c::{i:x} {30000 + i} fd00:1::1 53\n" for i in range(1, 81))
    + "".join(f"tcp 10.3.0.{i} {41000 + i} 10.1.0.2 443\n" for i in range(1, 11))
)
CAPTURES = {
    "ln": "ipvsadm -Ln",
    "ln_nosort": "ipvsadm -Ln --nosort",
    "ln_stats": "ipvsadm -Ln --stats",
    "ln_rate": "ipvsadm -Ln --rate",
    "ln_thresholds": "ipvsadm -Ln --thresholds",
    "ln_persistent_conn": "ipvsadm -Ln --nosort --persistent-conn",
    "l_names": "ipvsadm -L --nosort",
    "s_names": "ipvsadm -S",
    "sn": "ipvsadm -Sn",
    "lnc": "ipvsadm -Lnc",
    "lnc_persistent_conn": "ipvsadm -Lnc --persistent-conn",
    "ip_vs_conn": "cat /proc/net/ip_vs_conn",
    "proc_ip_vs": "cat /proc/net/ip_vs",
}
SCRIPT = "\n".join(
    [
        "cp /job/services /etc/services",
        "ipvsadm -R < /job/hist",
        "/bin/flowgen /job/flows > /out/flowgen.out",
        *(f"{cmd} > /out/{name} 2>&1" for name, cmd in CAPTURES.items()),
        "echo '172.16.0.9 rs9.example' > /etc/hosts",
        "ipvsadm -L --nosort > /out/l_hosts 2>&1",
    ]
)


@pytest.fixture(scope="module")
def captured(kernel_env, tmp_path_factory):
    services = Path("/etc/services")
    if not services.exists():
        pytest.fail("/etc/services (netbase) is needed for the guest's names")
    res = boot(
        kernel_env["6.1"],
        {
            "run.sh": SCRIPT,
            "hist": HISTORY,
            "flows": FLOWS,
            "services": services.read_text(),
        },
    )
    assert res.job_exit == 0, res.text("run.log")
    keep = cache_dir() / "real-formats"
    keep.mkdir(parents=True, exist_ok=True)
    for name in [*CAPTURES, "l_hosts"]:
        (keep / name).write_text(res.text(name))
    (keep / "history").write_text(HISTORY)
    return {name: res.text(name) for name in [*CAPTURES, "l_hosts"]}, tmp_path_factory


def _director(text: str, kind: str, **kw):
    return load_text(text, source=kind, kind=kind, params=DirectorParams(**kw))


def _servers(d) -> list[tuple[str, list[tuple[str, int]]]]:
    # services in any order: --nosort lists them in the kernel's hash order,
    # which depends on the netns address (differs per boot)
    return sorted(
        (s.name, [(r.endpoint, r.weight) for r in s.real_servers]) for s in d.services
    )


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    out = io.StringIO()
    capsys.readouterr()
    status = cli.main(argv, stdout=out)
    err = capsys.readouterr().err
    return status, out.getvalue(), err


def test_nosort_and_persistent_conn_listings_are_the_history(captured):
    cap, _ = captured
    want = _servers(_director(HISTORY, "history"))
    assert _servers(_director(cap["ln_nosort"], "snapshot")) == want
    # --persistent-conn prints no forwarding method; everything else is there
    assert _servers(_director(cap["ln_persistent_conn"], "snapshot")) == want
    fwd = sorted((r.endpoint, r.forward)
                 for s in _director(cap["ln_nosort"], "snapshot").services
                 for r in s.real_servers)  # fmt: skip
    assert fwd == sorted((r.endpoint, r.forward)
                         for s in _director(HISTORY, "history").services
                         for r in s.real_servers)  # fmt: skip


def test_names_are_read_back_as_ipvsadm_resolved_them(captured):
    cap, _ = captured
    assert ":http" in cap["l_names"] and ":domain" in cap["l_names"]
    want = _servers(_director(HISTORY, "history"))
    assert _servers(_director(cap["l_names"], "snapshot")) == want
    assert ":http" in cap["s_names"]
    names = _director(cap["s_names"], "history")
    assert _servers(names) == _servers(_director(cap["sn"], "history"))


@pytest.mark.parametrize(
    "name,flavour",
    [("ln_stats", "--stats"), ("ln_rate", "--rate"), ("ln_thresholds", "--thresholds"),
     ("l_hosts", "host name"), ("proc_ip_vs", "/proc/net/ip_vs")],
)  # fmt: skip
def test_listings_without_the_configuration_are_refused(
    captured, name, flavour, capsys
):
    cap, tmp = captured
    path = tmp.mktemp("f") / name
    path.write_text(cap[name])
    status, _, err = _cli(["table", "--snapshot", str(path)], capsys)
    assert status == 2 and err.count("\n") == 1 and flavour in err, err


def test_sorted_listing_says_it_may_be_sorted(captured, capsys):
    cap, tmp = captured
    path = tmp.mktemp("f") / "ln"
    path.write_text(cap["ln"])
    status, out, _ = _cli(["table", "--snapshot", str(path)], capsys)
    assert status == 0 and "--nosort" in out


def test_connections_verify_against_the_history(captured, capsys):
    cap, tmp = captured
    conns = list(parse_ip_vs_conn(cap["ip_vs_conn"].splitlines()))
    lnc = list(parse_ipvsadm_conn(cap["lnc"].splitlines()))
    key = sorted((c.csv(), c.real_server) for c in conns)
    assert key == sorted((c.csv(), c.real_server) for c in lnc)
    assert any(c.saddr.version == 6 for c in conns) and len(conns) >= 200
    d = tmp.mktemp("f")
    (d / "history").write_text(HISTORY)
    for name in ("ip_vs_conn", "lnc", "lnc_persistent_conn"):
        (d / name).write_text(cap[name])
        status, out, err = _cli(
            ["verify", "--history", str(d / "history"), "--conn", str(d / name),
             "--no-kmod"],
            capsys,
        )  # fmt: skip
        assert status == 0, out + err
        assert "0 differ" in out and "as predicted" in out
