"""`maglevx verify` against connections the real kernel made (tests/data/tools)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maglevx import Director, MaglevxError
from maglevx.captures import parse_ip_vs_conn
from maglevx.tools.verify import compare_kmod, parse_kmod_tables, verify

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "tools"
HISTORY = (DATA / "seed0.history").read_text()
LISTING = (DATA / "seed0.ipvsadm-Ln-nosort.txt").read_text()
CONN = (DATA / "seed0.ip_vs_conn").read_text()


def conns(text=CONN):
    return list(parse_ip_vs_conn(text.splitlines(), source="conn"))


def test_kernel_connections_are_all_predicted_or_older_than_a_change():
    rep = verify(Director.from_history(HISTORY), conns(), history=HISTORY)
    assert rep.checked == len(conns()) == 318
    assert rep.mismatches == [] and not rep.different
    assert rep.matched > 200
    assert {c.verdict for c in rep.caveats} == {"older"}


def test_listing_caveats_last_weight_and_older_connections():
    # The kernel built its tables from last_weight, which a listing does not
    # show for the weight-0 servers: those differences are caveats, and what a
    # listing still cannot explain must be the flows older than a change.
    with_history = verify(Director.from_history(HISTORY), conns(), history=HISTORY)
    older = {c.flow for c in with_history.caveats}
    rep = verify(Director.from_snapshot(LISTING), conns(), from_listing=True)
    assert {c.verdict for c in rep.caveats} <= {"older", "last_weight"}
    assert {c.flow for c in rep.mismatches} <= older
    strict = verify(Director.from_snapshot(LISTING), conns())
    assert len(strict.mismatches) > len(rep.mismatches)


def test_a_wrong_real_server_is_reported():
    lines = CONN.splitlines()
    n = max(i for i, ln in enumerate(lines) if ln.startswith("TCP"))
    last = lines[n].split()
    other = next(ln.split()[5] for ln in lines[1:] if ln.startswith("TCP")
                 and ln.split()[5] not in (last[5], "AC102FB9"))  # fmt: skip
    lines[n] = lines[n].replace(last[5], other)
    rep = verify(Director.from_history(HISTORY), conns("\n".join(lines)),
                 history=HISTORY)  # fmt: skip
    assert [c.line for c in rep.mismatches] == [n + 1]


PERSISTENT = (
    "-A -t 10.0.0.1:80 -s mh -p 60\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m\n"
    "-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m\n"
)


def test_persistent_connections_follow_their_template():
    """The dump's templates are the director's state (docs/decision-path.md)."""
    d = Director.from_history(PERSISTENT)
    text = (  # 192.0.2.1 hashes (port 0, full mask) to 10.1.0.1
        "TCP C0000201 0000 0A000001 0050 0A010001 0050 NONE            59\n"
        "TCP C0000201 9C40 0A000001 0050 0A010001 0050 ESTABLISHED    899\n"
        "TCP C0000201 9C41 0A000001 0050 0A010001 0050 ESTABLISHED    899\n"
    )
    rep = verify(d, conns(text))
    assert rep.mismatches == [] and rep.caveats == []
    assert rep.checked == rep.matched == 3
    bad = text + "TCP C0000201 9C42 0A000001 0050 0A010002 0050 ESTABLISHED    899\n"
    rep = verify(d, conns(bad))
    assert [c.line for c in rep.mismatches] == [4]


def test_a_template_of_another_server_and_a_connection_without_one():
    d = Director.from_history(PERSISTENT)
    text = (
        "TCP C0000201 0000 0A000001 0050 0A010002 0050 NONE            59\n"
        "TCP C0000202 9C41 0A000001 0050 0A010002 0050 ESTABLISHED    899\n"
        "TCP C0000203 0000 0A000001 0050 0A010002 0050 NONE            59\n"
    )
    rep = verify(d, conns(text))
    # the first template contradicts its client's hash; the connection of
    # 192.0.2.2 has no template in the dump (a caveat)
    assert [c.line for c in rep.mismatches] == [1]
    assert [(c.line, c.verdict) for c in rep.caveats] == [(2, "persistence")]


def test_invalidated_templates_are_skipped_and_counted():
    # docs/tools.md, docs/decision-path.md: a template whose real server was
    # deleted stays listed with vport and dport FFFF (ip_vs_conn.c); it is
    # skipped, and the count must survive the connections' own skips
    text = (
        "TCP C0000201 0000 0A000001 FFFF 0A010001 FFFF NONE            59\n"
        "TCP C0000202 9C41 0A000002 0050 0A010002 0050 ESTABLISHED    899\n"
    )
    rep = verify(Director.from_history(PERSISTENT), conns(text))
    assert rep.skipped == {
        "invalidated templates (real server gone)": 1,
        "to no virtual service of the configuration": 1,
    }


def kmod_dump(director, corrupt=False):
    (svc,) = [s for s in director.services if s.name == "TCP 10.1.144.36:80"]
    slots = svc.table.tolist()
    if corrupt:
        slots[7] = (slots[7] + 1) % len(svc.table_servers)
    dests = "".join(f"dest {i} {rs.endpoint} weight {rs.weight} overload 0\n"
                    for i, rs in enumerate(svc.table_servers))  # fmt: skip
    return (
        "version 1\nservice TCP 10.1.144.36:80 af inet netns 4026531840\n"
        f"params table_size {director.table_size} tab_bits 6 word_size 64 hash_port 1\n"
        f"dests {len(svc.table_servers)}\n{dests}table "
        + " ".join("-" if x == 0xFFFF else str(x) for x in slots)
        + "\nend\n"
    )


def test_kmod_tables_slot_by_slot():
    d = Director.from_history(HISTORY, variant="backport")
    (ok,) = compare_kmod(d, parse_kmod_tables(kmod_dump(d)))
    assert ok.slots_differ == 0 and ok.notes == []
    (bad,) = compare_kmod(d, parse_kmod_tables(kmod_dump(d, corrupt=True)))
    assert bad.slots_differ == 1 and bad.first_differences[0].startswith("slot 7:")


README_DUMP = (
    """version 1
service TCP [fd00::1]:80 af inet6 netns 4026531840
params table_size 251 tab_bits 4 word_size 32 hash_port 0 byte_order little hash_key 1a2b3c4d
dests 2
dest 0 [2001:db8::3]:80 weight 0 overload 1
dest 1 [2001:db8::2]:80 weight 2 overload 0
table """
    + " ".join(["1", "-"] * 125 + ["0"])
    + "\nend\n"
)


def test_kmod_dump_keeps_every_field():
    """The kernel tests read dumps with this parser only: nothing is dropped."""
    (svc,) = parse_kmod_tables(README_DUMP)
    assert (svc.service, svc.family, svc.netns) == ("TCP [fd00::1]:80", 6, 4026531840)
    assert (svc.table_size, svc.word_size, svc.hash_port) == (251, 32, False)
    assert svc.params["tab_bits"] == "4" and svc.params["hash_key"] == "1a2b3c4d"
    assert svc.params["byte_order"] == "little"
    assert svc.dests == ["[2001:db8::3]:80", "[2001:db8::2]:80"]
    assert svc.weights == [0, 2] and svc.overloaded == [True, False]
    assert svc.slots[:3] == [1, None, 1] and svc.slots[-1] == 0


@pytest.mark.parametrize(
    "text,where",
    [("version 2\n", "t:1: field 'version'"),
     ("version 1\nservice TCP 1.2.3.4:80 af inet\nparams x\n", "t:3: field 'params'"),
     (README_DUMP.replace(" weight 2", ""), "t:6: field 'dest'")],
)  # fmt: skip
def test_bad_kmod_dump(text, where):
    with pytest.raises(MaglevxError, match=where):
        parse_kmod_tables(text, "t")


def test_cli_verify_files(tmp_path):
    run = [sys.executable, "-m", "maglevx", "verify", "--conn",
           str(DATA / "seed0.ip_vs_conn"), "--no-kmod"]  # fmt: skip
    r = subprocess.run([*run, "--history", str(DATA / "seed0.history"), "--json"],
                       cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["checked"] == 318
    r = subprocess.run([*run, "--snapshot", str(DATA / "seed0.ipvsadm-Ln-nosort.txt")],
                       cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert r.returncode in (0, 1) and "connections checked" in r.stdout
    bad = tmp_path / "conn"
    bad.write_text("TCP C0000201 9C40 0A000001\n")
    r = subprocess.run([*run, "--history", str(DATA / "seed0.history"), "--conn",
                        str(bad)], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith(f"maglevx: error: {bad}:1:")


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s.replace("table_size 4093", "table_size 4000"), "primes"),
        (lambda s: s.replace("\nend", " 0\nend"), "slots for a table"),
        (lambda s: s.replace("table -", "table 999", 1).replace("table 0", "table 999", 1),
         "dests are listed"),
    ],
)  # fmt: skip
def test_kmod_dump_tables_are_checked_whole(change, message):
    d = Director.from_history(HISTORY, variant="backport")
    with pytest.raises(MaglevxError, match=message):
        parse_kmod_tables(change(kmod_dump(d)), "t")
