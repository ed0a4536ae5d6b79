"""`maglevx consistency`: disagreement between directors, and why."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maglevx import Director
from maglevx.tools.consistency import compare_directors

ROOT = Path(__file__).resolve().parent.parent
VIP = "-t 10.0.0.1:80"
SERVERS = [f"-a {VIP} -r 10.1.0.{i}:80 -m" for i in range(1, 7)]


def hist(lines, **kw):
    return Director.from_history("\n".join([f"-A {VIP} -s mh", *lines]), **kw)


def test_identical_histories_agree():
    rep = compare_directors(
        [("a", hist(SERVERS)), ("b", hist(SERVERS))], sample_size=2000
    )
    assert rep.consistent and rep.results[0].flows_differ == 0


@pytest.mark.parametrize(
    "other,kw,reason",
    [
        (SERVERS[::-1], {}, "list order differs"),
        (SERVERS, {"word_size": 32}, "word size 64 vs 32"),
        (SERVERS, {"table_size": 8191}, "table size M 4093 vs 8191"),
        (SERVERS[:-1], {}, "only in the reference: 10.1.0.6:80"),
        ([*SERVERS, f"-e {VIP} -r 10.1.0.2:80 -m -w 3"], {}, "table weights differ"),
        ([*SERVERS, f"-e {VIP} -r 10.1.0.2:80 -m -w 0"], {}, "availability"),
    ],
)
def test_reasons(other, kw, reason):
    rep = compare_directors([("ref", hist(SERVERS)), ("x", hist(other, **kw))],
                            sample_size=3000)  # fmt: skip
    (r,) = rep.results
    assert not rep.consistent
    assert any(reason in x for x in r.reasons), r.reasons
    assert r.fixes
    assert r.slots_compared == ("table_size" not in kw)


def test_upstream_drain_differs_only_in_refusals():
    # last_weight: the drained server keeps its slots, so slots agree but flows not
    drained = hist([*SERVERS, f"-e {VIP} -r 10.1.0.2:80 -m -w 0"])
    (r,) = compare_directors([("ref", hist(SERVERS)), ("x", drained)],
                             sample_size=6000).results  # fmt: skip
    assert r.slots_differ == 0 and 10 < r.flows_differ_pct < 24


def test_cli_json_and_exit_status(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("\n".join([f"-A {VIP} -s mh", *SERVERS]))
    b = tmp_path / "b.txt"
    b.write_text("\n".join([f"-A {VIP} -s mh", *SERVERS[::-1]]))
    run = [sys.executable, "-m", "maglevx", "consistency", "--sample", "1000"]
    r = subprocess.run([*run, str(a), str(a)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "consistent" in r.stdout
    r = subprocess.run([*run, "--json", str(a), str(b), f"{a}:word-size=32"],
                       cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert not data["consistent"] and len(data["results"]) == 2
    r = subprocess.run([*run, str(a), f"{a}:colour=red"], cwd=ROOT,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "unknown key 'colour'" in r.stderr
