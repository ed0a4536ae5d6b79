"""Run every benchmark and write BENCHMARKS.md: machine, command, targets.

    python tests/bench/report.py [--out BENCHMARKS.md] [extra pytest args]

(scripts/bench.sh installs what is needed first, then runs this.) Ratios
are taken between numbers measured in the same run, so that a busy machine
moves both sides alike; the load average is recorded at start and end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "bash scripts/bench.sh"


def _sh(*args: str) -> str:
    try:
        return subprocess.run(
            args, capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    import numpy

    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    flags = " ".join(
        [sysconfig.get_config_var("CFLAGS") or "", "-O3"]
    ).strip()  # as the extension is built
    measured = ("csrc", "maglevx", "setup.py", "bench", "tests/bench")
    changed = _sh(
        "git", "status", "--porcelain", "--untracked-files=no", "--", *measured
    )
    dirty = " (with uncommitted changes to the code measured)" if changed else ""
    return {
        "CPU": cpu or "unknown",
        "Cores": f"{os.cpu_count()} logical"
        + (f", {_sh('nproc')} available" if _sh("nproc") else ""),
        "Kernel": platform.release(),
        "Python": platform.python_version(),
        "numpy": numpy.__version__,
        "Compiler": f"{_sh(cc, '--version').splitlines()[0] if _sh(cc, '--version') else cc}",
        "C flags (extension and bare loop)": flags,
        "Commit": _sh("git", "rev-parse", "--short", "HEAD") + dirty,
    }


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run_benchmarks(json_path: Path, extra: list[str]) -> int:
    env = dict(os.environ)
    env.setdefault("MAGLEVX_BENCH_FLOWS", "2000000")  # test_bench_predict.py
    cmd = [
        sys.executable, "-m", "pytest", "-m", "bench", "tests/bench", "-q",
        "-p", "no:cacheprovider", "-p", "no:randomly",
        f"--benchmark-json={json_path}", "--benchmark-columns=min,median,rounds",
        *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def _m(x: float) -> str:
    return f"{x / 1e6:,.1f} M/s"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _growth(builds: list[dict]) -> list[str]:
    """How build time grows with M and with N, from the equal-weight rows."""
    t = {(r["m"], r["n"]): r for r in builds if r["weights"] == "equal"}
    lines = []
    steps = [((4093, 100), (65521, 100)), ((65521, 100), (131071, 100))]
    for a, b in steps:
        if a in t and b in t:
            lines.append(
                f"- M x{b[0] / a[0]:.0f} ({a[0]} to {b[0]}, N={a[1]}): C core "
                f"x{t[b]['core_s'] / t[a]['core_s']:.1f}"
            )
    a, b = (65521, 10), (65521, 5000)
    if a in t and b in t:
        lines.append(
            f"- N x{b[1] // a[1]} ({a[1]} to {b[1]}, M={a[0]}): C core "
            f"x{t[b]['core_s'] / t[a]['core_s']:.1f}, public path "
            f"x{t[b]['api_s'] / t[a]['api_s']:.1f}"
        )
    return [
        "Growth (equal weights):",
        "",
        *lines,
        "",
        "The fill visits every slot and probes more as the table fills "
        "(about M ln M probes in all), and a table that no longer fits the L1 "
        "cache (8 KiB at M=4093, 128 KiB at 65521) costs more per probe: "
        "superlinear from 4093 to 65521, about linear beyond. N costs two "
        "hashes per real server in C; on the public path it also costs turning "
        "each real server's address into a number in Python, which is what "
        "grows with N there.",
    ]


def report(data: dict, info: dict[str, str], loads: tuple[str, str]) -> str:
    rows = [b["extra_info"] | {"name": b["name"]} for b in data["benchmarks"]]
    by = {}
    for r in rows:
        by.setdefault(r.get("kind", "other"), []).append(r)
    out = ["# Benchmarks", ""]
    out += [
        "Written by `" + COMMAND + "` (runs `python tests/bench/report.py`, which "
        "runs `pytest -m bench tests/bench`). Ratios compare numbers taken in the "
        "same run; absolute numbers move with the machine's load.",
        "",
        "## Machine",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [
        f"- Date: {data.get('datetime', '')[:19]} UTC",
        f"- Load average (1, 5, 15 min): {loads[0]} at start, {loads[1]} at end",
        "",
    ]

    targets = []
    bulk = sorted(by.get("bulk", []), key=lambda r: (r["family"], r["port"], r["m"]))
    if bulk:
        worst = min(bulk, key=lambda r: r["api_per_s"] / r["bare_bulk_per_s"])
        ratio = worst["api_per_s"] / worst["bare_bulk_per_s"]
        targets.append((
            "Bulk lookup via numpy >= 0.8x the bare C loop (worst of 8 cases)",
            f"{_m(worst['api_per_s'])} vs {_m(worst['bare_bulk_per_s'])} "
            f"(IPv{worst['family']}, {'port' if worst['port'] else 'no port'}, "
            f"M={worst['m']})",
            f"{ratio:.2f}x", _verdict(ratio >= 0.8),
        ))  # fmt: skip
        twin = min(bulk, key=lambda r: r["api_per_s"] / r["twin_per_s"])
        tr = twin["api_per_s"] / twin["twin_per_s"]
        targets.append((
            ">= 100x the pure-Python twin for bulk (worst case)",
            f"{_m(twin['api_per_s'])} vs {twin['twin_per_s'] / 1e3:,.1f} k/s",
            f"{tr:,.0f}x", _verdict(tr >= 100),
        ))  # fmt: skip
    for r in by.get("threads", []):
        tr = r["two_threads_per_s"] / r["one_thread_per_s"]
        targets.append((
            "Bulk lookup, 2 threads >= 1.7x one thread",
            f"{_m(r['two_threads_per_s'])} vs {_m(r['one_thread_per_s'])} "
            f"({r['flows']:,} IPv4 flows); control: GIL-free sha256 got "
            f"{r['control_speedup']:.2f}x from a second thread at the same time",
            f"{tr:.2f}x", _verdict(tr >= 1.7),
        ))  # fmt: skip
    builds = by.get("build", [])
    target_builds = [r for r in builds if r["m"] == 65521 and r["n"] == 1000]
    if target_builds:
        worst = max(target_builds, key=lambda r: r["api_s"])
        targets.append((
            "Table build M=65521, N=1000 under 5 ms (worst of equal/mixed)",
            f"{worst['api_s'] * 1e3:.2f} ms ({worst['weights']} weights)",
            f"{worst['api_s'] * 1e3 / 5:.2f}x the limit",
            _verdict(worst["api_s"] < 5e-3),
        ))  # fmt: skip
    scalar = by.get("scalar", [])
    strs = [r for r in scalar if r["inputs"] == "str"]
    if strs:
        worst = max(strs, key=lambda r: r["us_per_call"])
        targets.append((
            "Scalar maglevx.lookup() with str inputs under 2 us (worst of v4/v6)",
            f"{worst['us_per_call']:.2f} us (IPv{worst['family']})",
            f"{worst['us_per_call'] / 2:.2f}x the limit",
            _verdict(worst["us_per_call"] < 2),
        ))  # fmt: skip
    for r in by.get("memory", []):
        targets.append((
            "Table memory ~2 bytes per slot; RSS of the largest case",
            f"{r['bytes_per_slot']:.1f} B/slot; peak RSS {r['peak_rss_mib']:.0f} MiB "
            f"(M={r['m']}, N={r['n']}, {r['flows']:,} flows; "
            f"{r['import_rss_mib']:.0f} MiB after import alone)",
            f"{r['bytes_per_slot'] / 2:.2f}x", _verdict(r["bytes_per_slot"] <= 2),
        ))  # fmt: skip

    out += [
        "## Targets",
        "",
        "| Target | Measured | Ratio | Result |",
        "|---|---|---|---|",
    ]
    out += [f"| {t} | {m} | {r} | {v} |" for t, m, r, v in targets]
    out += [""]

    if bulk:
        out += [
            "## Bulk lookup (one thread)",
            "",
            "`VirtualService.lookup_many()` on "
            f"{bulk[0]['flows']:,} random flows, 100 real servers, 64-bit hsiphash; "
            "the bare C loop (`bench/bare_loop.c`, built with the extension's "
            "compiler and flags) runs the same `csrc/` code on the same number of "
            "flows: `mx_bulk_lookup()` is what the API calls, `mx_lookup()` in a "
            "loop is the kernel's per-packet path (`%` for the slot). The twin "
            "runs 2,000 flows.",
            "",
            "| Flows | M | numpy API | bare mx_bulk_lookup | API / bare | "
            "bare mx_lookup loop | twin | API / twin |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in bulk:
            out.append(
                f"| IPv{r['family']}, {'port' if r['port'] else 'no port'} | {r['m']} "
                f"| {_m(r['api_per_s'])} | {_m(r['bare_bulk_per_s'])} "
                f"| {r['api_per_s'] / r['bare_bulk_per_s']:.2f}x "
                f"| {_m(r['bare_kernel_loop_per_s'])} "
                f"| {r['twin_per_s'] / 1e3:,.1f} k/s "
                f"| {r['api_per_s'] / r['twin_per_s']:,.0f}x |"
            )
        out += [""]
    if builds:
        out += [
            "## Table build",
            "",
            "`svc.rebuild(); svc.table` (the public path: real servers to arrays, "
            "then `mx_build_table()`), best of the rounds, in ms; in brackets the "
            "C core alone. N > M is refused by the kernel (no table).",
            "",
        ]
        ns = sorted({r["n"] for r in builds})
        for weights in ("equal", "mixed"):
            out += [
                f"{weights.capitalize()} weights:",
                "",
                "| M \\ N | " + " | ".join(str(n) for n in ns) + " |",
                "|---" * (len(ns) + 1) + "|",
            ]
            for m in sorted({r["m"] for r in builds}):
                cells = []
                for n in ns:
                    r = next(
                        (x for x in builds
                         if x["m"] == m and x["n"] == n and x["weights"] == weights),
                        None,
                    )  # fmt: skip
                    cells.append(
                        "refused" if r is None
                        else f"{r['api_s'] * 1e3:.2f} ({r['core_s'] * 1e3:.2f})"
                    )  # fmt: skip
                out.append(f"| {m} | " + " | ".join(cells) + " |")
            out += [""]
        out += _growth(builds) + [""]
    if scalar:
        out += [
            "## Scalar lookup",
            "",
            "`maglevx.lookup(five_tuple, director)` over 10,000 distinct clients "
            "of one service (100 real servers, mh-port).",
            "",
            "| Family | Inputs | Per call |",
            "|---|---|---|",
        ]
        for r in sorted(scalar, key=lambda r: (r["family"], r["inputs"])):
            out.append(
                f"| IPv{r['family']} | {r['inputs']} | {r['us_per_call']:.2f} us |"
            )
        out += [""]
    for r in by.get("uhashring", []):
        out += [
            "## Against uhashring (ketama)",
            "",
            f"{r['keys']:,} client-address keys onto {r['nodes']} nodes / real "
            "servers.",
            "",
            "| Method | Keys per second | vs uhashring |",
            "|---|---|---|",
            f"| uhashring `HashRing(hash_fn='ketama').get_node()` | "
            f"{r['uhashring_per_s'] / 1e3:,.0f} k/s | 1x |",
            f"| `maglevx.lookup()` one at a time (str) | "
            f"{r['maglevx_scalar_per_s'] / 1e3:,.0f} k/s | "
            f"{r['maglevx_scalar_per_s'] / r['uhashring_per_s']:.1f}x |",
            f"| `VirtualService.lookup_many()` (numpy) | "
            f"{_m(r['maglevx_bulk_per_s'])} | "
            f"{r['maglevx_bulk_per_s'] / r['uhashring_per_s']:,.0f}x |",
            "",
        ]
    others = by.get("other", [])
    if others:
        out += ["## Other benchmarks in tests/bench", ""]
        for r in others:
            info = ", ".join(f"{k}={v}" for k, v in r.items() if k != "name")
            out.append(f"- `{r['name']}`: {info}")
        out += [""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args, extra = ap.parse_known_args()
    json_path = ROOT / ".benchmarks" / "report.json"
    json_path.parent.mkdir(exist_ok=True)
    info = machine()
    start = load()
    rc = run_benchmarks(json_path, extra)
    end = load()
    if not json_path.exists():
        return rc or 1
    data = json.loads(json_path.read_text())
    if "datetime" not in data:
        data["datetime"] = datetime.datetime.utcnow().isoformat()
    text = report(data, info, (start, end))
    Path(args.out).write_text(text + "\n")
    print(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
