"""`maglevx diff`: what moves, per real server, and refused flows."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maglevx import Director
from maglevx.errors import MaglevxError
from maglevx.tools.diff import Edit, apply_edits, diff_directors, parse_edit
from maglevx.tools.sample import decide, synthetic

ROOT = Path(__file__).resolve().parent.parent
VIP = "-t 10.0.0.1:80"
LINES = [f"-A {VIP} -s mh"] + [f"-a {VIP} -r 10.1.0.{i}:80 -m" for i in range(1, 6)]


def hist(*lines, **kw):
    return Director.from_history("\n".join(lines), **kw)


def test_same_configuration_moves_nothing():
    rep = diff_directors(hist(*LINES), hist(*LINES), sample_size=2000)
    assert not rep.different and rep.services[0].flows_moved == 0


def test_upstream_drain_moves_no_slots_but_refuses_its_flows():
    # ip_vs_ctl.c keeps last_weight on an edit to 0: the table is not changed,
    # the drained server's flows get no destination (kube-proxy's failure)
    old = hist(*LINES)
    new = apply_edits(old, [parse_edit("drain", "10.1.0.2:80")])
    rep = diff_directors(old, new, sample_size=5000)
    (sd,) = rep.services
    assert sd.slots_moved == 0 and sd.flows_moved > 0
    r = sd.refusals_new
    assert r.refused_without_fallback == pytest.approx(sd.flows_moved_pct)
    assert r.refused_with_fallback == 0 and r.rerouted_with_fallback > 0
    assert sd.refusals_old.refused_without_fallback == 0
    moved = {s.endpoint: s for s in sd.servers}
    assert moved["10.1.0.2:80"].flows_out == sd.flows_moved
    assert moved["(no destination)"].flows_in == sd.flows_moved


def test_backport_drain_equals_remove_for_new_flows():
    old = hist(*LINES, variant="backport")
    drained = apply_edits(old, [parse_edit("drain", "10.1.0.2:80")])
    removed = apply_edits(old, [parse_edit("remove", "10.1.0.2:80")])
    rep = diff_directors(drained, removed, sample_size=3000)
    assert not rep.different
    assert rep.services[0].refusals_new is None  # no fallback question for backport


@pytest.mark.parametrize(
    "params",
    [{"byte_order": "big"}, {"variant": "backport", "hash_key": bytes(range(16))}],
)
def test_what_if_fallback_hashes_like_the_director(params):
    # the "without/with mh-fallback" lookups must hash with the director's own
    # byte order and key: the answer of the same table whose flag is flipped
    lines = [*LINES, f"-e {VIP} -r 10.1.0.2:80 -m -w 0"]
    plain = hist(*lines, **params).services[0]
    fb = hist(lines[0] + " -b mh-fallback", *lines[1:], **params).services[0]
    sample = synthetic(plain, 5000)
    assert (decide(fb, sample, fallback=False) == decide(plain, sample)).all()
    assert (decide(plain, sample, fallback=True) == decide(fb, sample)).all()


def test_add_goes_to_the_head_and_moves_about_its_share():
    old = hist(*LINES)
    new = apply_edits(old, [parse_edit("add", "10.1.0.9:80:1")])
    assert new.services[0].real_servers[0].endpoint == "10.1.0.9:80"
    assert len(old.services[0].real_servers) == 5  # the original is untouched
    (sd,) = diff_directors(old, new, sample_size=20000).services
    assert 14 < sd.flows_moved_pct < 22  # ~1/6 plus Maglev's small disruption
    nine = next(s for s in sd.servers if s.endpoint == "10.1.0.9:80")
    assert nine.slots_out == 0 and nine.slots_in == nine.slots_new > 0


def test_different_table_sizes_compare_flows_only():
    rep = diff_directors(hist(*LINES), hist(*LINES, table_size=251), sample_size=1000)
    (sd,) = rep.services
    assert not sd.slots_compared and sd.flows_moved > 0
    # each table's own slots, no in/out (issue 12: it showed 0/0)
    one = next(s for s in sd.servers if s.endpoint == "10.1.0.1:80")
    assert 700 < one.slots_old < 950 and 40 < one.slots_new < 60
    assert (one.slots_in, one.slots_out) == (-1, -1)
    from maglevx.tools.diff import render

    row = next(x for x in render(rep).splitlines() if "10.1.0.1:80" in x)
    assert row.split()[1:5] == [str(one.slots_old), str(one.slots_new), "-", "-"]


@pytest.mark.parametrize(
    "text,weight", [("10.1.0.9:80", 1), ("10.1.0.9:80:3", 3), ("[fd00::9]:80", 1),
                    ("[fd00::9]:80:0", 0)],
)  # fmt: skip
def test_add_without_weight_means_1_as_ipvsadm(text, weight):
    assert parse_edit("add", text).weight == weight


@pytest.mark.parametrize("w", ["\u00b2", "\u0663", "70000", "x"])
def test_add_weight_is_ascii_digits_0_to_65535(w):
    # int("\u00b2") raised a bare ValueError (an internal error in the CLI)
    with pytest.raises(MaglevxError, match="is not 0..65535") as e:
        parse_edit("add", f"10.1.0.9:80:{w}")
    assert e.value.field == "--add"


def test_no_fallback_advice_for_a_service_without_servers():
    from maglevx.tools.diff import render

    old = hist(f"-A {VIP} -s mh", f"-a {VIP} -r 10.1.0.1:80 -m")
    new = apply_edits(old, [parse_edit("remove", "10.1.0.1:80")])
    text = render(diff_directors(old, new, sample_size=100))
    assert "mh-fallback cannot help" in text and "set mh-fallback" not in text


@pytest.mark.parametrize(
    "kind,text,field",
    [("add", "10.1.0.9", "--add"), ("drain", "10.9.9.9:80", "--drain"),
     ("remove", "10.1.0.1", "--remove")],
)  # fmt: skip
def test_bad_edits(kind, text, field):
    with pytest.raises(MaglevxError) as e:
        apply_edits(hist(*LINES), [parse_edit(kind, text)])
    assert e.value.field == field


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "maglevx", "diff", *args],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip


def test_cli_exit_status_and_json(tmp_path):
    h = "examples/history.txt"
    r = run(h, h, "--sample", "500")
    assert r.returncode == 0, r.stderr
    r = run(h, "--drain", "10.234.79.13:80", "--sample", "500", "--json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["different"] and data["services"][0]["refusals_new"]
    r = run(h, "--add", "10.1.1.1:80:1", "--sample", "10")
    assert r.returncode == 2 and "--service" in r.stderr
    r = run(f"{h}:table-size=4000", h)
    assert r.returncode == 2 and "table_size" in r.stderr


def test_cli_per_input_parameters_and_flows_file(tmp_path):
    flows = tmp_path / "f.csv"
    flows.write_text(
        "".join(f"tcp,192.0.2.{i},{i},203.0.113.15,80\n" for i in range(50))
    )
    h = "examples/history.txt"
    r = run(h, f"{h}:word-size=32", "--flows", str(flows), "--json")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    tcp = next(s for s in data["services"] if s["service"].startswith("TCP"))
    assert tcp["flows"] == 50


@pytest.mark.parametrize(
    "kind,endpoint,field",
    [("remove", "10.1.0.1", "--remove"), ("delete", "10.1.0.1:80", "kind")],
)
def test_a_hand_built_edit_is_checked(kind, endpoint, field):
    # apply_edits() met Edit("remove", "10.1.0.1") with a bare assert, and an
    # unknown kind was applied as an add
    with pytest.raises(MaglevxError) as e:
        Edit(kind, endpoint)
    assert e.value.field == field
