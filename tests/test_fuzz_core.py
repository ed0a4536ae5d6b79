"""The libFuzzer harness's decoder and reference, tied to the Python twin.

fuzz/fuzz_core.c checks the C core against a trivial C reference at native
speed. Here the same decoder, built with -DMX_FUZZ_REPLAY (and ASan/UBSan),
prints each input's scenario and the core's table and decisions, and the
pure-Python twin (maglevx._twin) must compute the same: a differential
replay that ties the three implementations together.
"""

import json
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_fuzz_run import ensure_prereqs

from maglevx import _twin

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    ensure_prereqs(need_clang=True, need_atheris=False)
    out = tmp_path_factory.mktemp("replay") / "replay"
    r = subprocess.run(
        ["clang", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-DMX_FUZZ_REPLAY",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         f"-I{ROOT / 'csrc'}", str(ROOT / "fuzz" / "fuzz_core.c"),
         *map(str, sorted((ROOT / "csrc").glob("*.c"))), "-o", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


def inputs(tmp_path):
    """Seeded random inputs, plus a sample of the fuzzing corpus if present."""
    rng = random.Random(7)
    paths = []
    for i in range(120):
        p = tmp_path / f"r{i}"
        p.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))))
        paths.append(p)
    corpus = (
        Path(os.environ.get("MAGLEVX_FUZZ_DIR", ROOT / ".cache" / "maglevx" / "fuzz"))
        / "corpus"
        / "core"
    )
    if corpus.is_dir():
        paths += sorted(corpus.iterdir())[:200]
    return paths


def test_replay_matches_python_twin(replay, tmp_path):
    paths = inputs(tmp_path)
    r = subprocess.run(
        [str(replay), *map(str, paths)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    checked = 0
    for line in r.stdout.splitlines():
        s = json.loads(line)
        if s["m"] > 8191:
            continue  # the twin is slow; the C reference covers these
        args = (s["m"], s["word_size"], s["folds"], s["ports"], s["weights"])
        if s["rc"] != 0:
            with pytest.raises(ValueError):
                _twin.build_table(*args)
            continue
        table = _twin.build_table(*args)
        assert table.tolist() == s["table"]
        avail = np.array(s["avail"], np.uint8)
        sched = _twin.Scheduler(
            s["m"], s["word_size"], table, avail, bool(s["fallback"])
        )
        got = sched.lookup_many(
            np.array(s["flow_folds"], np.uint32), np.array(s["flow_ports"], np.uint16)
        )
        assert got.tolist() == s["result"]
        checked += 1
    assert checked >= 50
