"""Real inputs (issue 12): what operators paste works, or is refused in one line.

Every piece of ``tests/data/real/`` (listings, rule files and connection
dumps published in issue threads, mailing lists and tutorials, each copied
verbatim; see ``MANIFEST.toml`` for where and what) is run through every
subcommand that takes it, in process through :func:`maglevx.cli.main`. The
outcome must be the one the manifest states: it works (with the services
an operator sees in it), or it is refused with exit status 2 and one line
on stderr that names the line and says why. Nothing may raise.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import tomllib

from maglevx import cli
from maglevx.tools.sources import DirectorParams, load_text, read_text

DATA = Path(__file__).resolve().parent / "data" / "real"
MANIFEST = tomllib.loads((DATA / "MANIFEST.toml").read_text())["piece"]
BY_FILE = {p["file"]: p for p in MANIFEST}
# Pieces the readers do not handle yet, and why (xfail, strict: a fix shows).
PENDING: dict[str, str] = {}


def _pending_key(p: Any) -> str:
    if isinstance(p, tuple):
        return (
            p[0]["file"] + "#check"
            if p[0]["file"] + "#check" in PENDING
            else (p[0]["file"])
        )
    return p["file"]


def params(pieces: list[dict[str, Any]], ids: list[str]) -> list[Any]:
    return [
        pytest.param(
            *p if isinstance(p, tuple) else (p,),
            id=i,
            marks=[pytest.mark.xfail(reason=PENDING[f], strict=True)]
            if (f := _pending_key(p)) in PENDING
            else [],
        )
        for p, i in zip(pieces, ids)
    ]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``maglevx ARGV`` in process: (exit status, stdout, stderr)."""
    out = io.StringIO()
    capsys.readouterr()
    try:
        status = cli.main(argv, stdout=out)
    except SystemExit as exc:  # argparse: --help, usage errors
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    return status, out.getvalue() + captured.out, captured.err


def flag(piece: dict[str, Any]) -> str:
    return "--snapshot" if piece["kind"] == "listing" else "--history"


def config_of(piece: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    """(option, path) of the configuration a capture is read with."""
    if "config" in piece:
        other = BY_FILE[piece["config"]]
        return flag(other), str(DATA / other["file"])
    path = tmp_path / "config.txt"  # ours: written for this capture
    path.write_text(piece["config_history"])
    return "--history", str(path)


def sample_flows(path: str, kind: str) -> list[str]:
    """One flow to each mh service of a configuration that works."""
    d = load_text(read_text(path), source=path, kind=kind, params=DirectorParams())
    flows = []
    for svc in d.services:
        if svc.scheduler != "mh" or svc.protocol == "fwmark":
            continue
        client = "192.0.2.7" if svc.family == 4 else "2001:db8:ffff::7"
        flows.append(f"{svc.protocol},{client},40000,{svc.address},{svc.port}")
    return flows


def runs(piece: dict[str, Any], tmp_path: Path) -> list[list[str]]:
    """Every subcommand that takes the piece, as argv lists."""
    f = str(DATA / piece["file"])
    if piece["kind"] == "capture":
        opt, cfg = config_of(piece, tmp_path)
        return [
            ["predict", opt, cfg, f],
            ["verify", opt, cfg, "--conn", f, "--no-kmod"],
        ]
    out = [
        ["table", flag(piece), f],
        ["consistency", f, f, "--sample", "200"],
        ["diff", f, f, "--sample", "200"],
        ["predict", flag(piece), f, str(tmp_path / "none.csv")],
    ]
    (tmp_path / "none.csv").write_text("")
    if piece["expect"] == "works":
        kind = "snapshot" if piece["kind"] == "listing" else "history"
        flows = sample_flows(f, kind)
        if flows:
            csv = tmp_path / "flows.csv"
            csv.write_text("\n".join(flows) + "\n")
            out.append(["predict", flag(piece), f, str(csv)])
            out.append(["explain", flag(piece), f, flows[0]])
    return out


def expected_exit(piece: dict[str, Any], argv: list[str]) -> list[int]:
    if piece["expect"] == "refused":
        return [2]
    if argv[0] == "verify":
        want = piece.get("verify_exit", [0, 1])
        return want if isinstance(want, list) else [want]
    return [0, 1] if argv[0] in ("diff", "consistency") else [0]


def check_one_line_error(err: str, piece: dict[str, Any], message: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("maglevx"), err
    text = lines[0].split(piece["file"], 1)[-1]  # the file name says nothing
    assert message in text, err
    if "line" in piece and piece["expect"] == "refused":
        assert f"{piece['file']}:{piece['line']}: " in lines[0], err


@pytest.mark.parametrize("piece", params(MANIFEST, [p["file"] for p in MANIFEST]))
def test_every_subcommand_gives_the_expected_outcome(piece, tmp_path, capsys):
    for argv in runs(piece, tmp_path):
        status, out, err = run(argv, capsys)
        assert "Traceback" not in err
        assert status in expected_exit(piece, argv), (argv, status, out, err)
        if status == 2:
            message = piece.get("message", "")
            if piece["expect"] == "works" and argv[0] == "verify":
                message = piece["verify_message"]
            check_one_line_error(err, piece, message)
        elif argv[0] == "predict" and piece.get("flows"):
            for line in piece["flows"]:
                assert line in out.splitlines(), out


@pytest.mark.parametrize(
    "piece",
    params(
        [p for p in MANIFEST if "services" in p],
        [p["file"] for p in MANIFEST if "services" in p],
    ),
)
def test_services_are_read_as_listed(piece):
    path = str(DATA / piece["file"])
    kind = "snapshot" if piece["kind"] == "listing" else "history"
    d = load_text(read_text(path), source=path, kind=kind, params=DirectorParams())
    got = [f"{s.name} {s.scheduler} {len(s.real_servers)}" for s in d.services]
    assert got == piece["services"]


CHECKS = [(p, i) for p in MANIFEST for i in range(len(p.get("check", [])))]


@pytest.mark.parametrize(
    "piece,index", params(CHECKS, [f"{p['file']}-{i}" for p, i in CHECKS])
)
def test_more_checks(piece, index, tmp_path, capsys):
    chk = piece["check"][index]
    f = str(DATA / piece["file"])
    cfg = config_of(piece, tmp_path)[1] if piece["kind"] == "capture" else f
    argv = [a.format(file=f, config=cfg) for a in chk["args"]]
    status, out, err = run(argv, capsys)
    want = chk["exit"] if isinstance(chk["exit"], list) else [chk["exit"]]
    assert status in want, (status, out, err)
    for text in chk.get("stdout", []):
        assert text in out, out
    for text in chk.get("stderr", []):
        assert text in err, err


def test_manifest_names_every_file_once():
    files = sorted(
        str(p.relative_to(DATA))
        for p in DATA.rglob("*")
        if p.is_file() and p.name != "MANIFEST.toml"
    )
    assert sorted(BY_FILE) == files and len(MANIFEST) == len(files) >= 40
    for p in MANIFEST:
        assert p["source"] and p["what"] and p["kind"] in ("listing", "history",
                                                          "capture")  # fmt: skip
        assert p["expect"] in ("works", "refused")
        assert p["expect"] == "works" or p.get("message")


def test_predict_counts_the_flows_a_drain_by_edit_would_move(tmp_path, capsys):
    """issue 12, item 1: predict's summary gives the other outcome, flow by flow."""
    f = str(DATA / "lvs-devel-2021-mh-drained.txt")
    flows = tmp_path / "flows.csv"
    flows.write_text(
        "".join(
            f"tcp,10.0.{i % 256}.{i // 256},{1024 + 7 * i},172.16.42.170,2222\n"
            for i in range(2000)
        )
    )
    status, as_read, err = run(["predict", "--snapshot", f, str(flows)], capsys)
    assert status == 0
    status, drained, _ = run(
        ["predict", "--snapshot", f, "--assume-drained-by-edit", str(flows)], capsys
    )
    moved = sum(a != b for a, b in zip(as_read.splitlines(), drained.splitlines()))
    assert 800 < moved < 1200  # about half: the drained server's slots
    assert f"{moved} of 2000 flows would go elsewhere" in err
