"""Ask maglevx for its choice per flow, in the format of its CLI contract:

    python -m maglevx predict --history HISTORY [--variant V] FLOWS_CSV

prints each input line ``proto,saddr,sport,daddr,dport`` with ``,raddr,rport``
appended (both empty: no destination), in input order.

By default the engine behind that CLI runs in-process
(``maglevx.predict.predict_lines`` over ``Director.from_history``): a subprocess per
phase costs ~0.3 s of interpreter start-up, minutes over a campaign. Set
``MAGLEVX_PREDICT=cli`` to go through ``python -m maglevx predict`` instead; a test
checks both paths agree.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .jobs import Flow


class PredictError(RuntimeError):
    pass


def maglevx_available() -> str | None:
    """None when ``python -m maglevx predict`` works, else why not."""
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", "predict", "--help"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return (r.stderr or r.stdout).strip().splitlines()[-1:] or [
            "maglevx not importable"
        ]
    return None


def predict(
    history: str,
    flows: list[Flow],
    *,
    variant: str = "upstream",
    extra_args=(),
    mode: str | None = None,
) -> list[tuple[str, int] | None]:
    """maglevx's (raddr, rport) or None per flow, for ``history`` (ipvsadm -R lines)."""
    mode = mode or os.environ.get("MAGLEVX_PREDICT", "api")
    if mode == "api" and not extra_args:
        import io

        import maglevx
        from maglevx.predict import predict_lines

        director = maglevx.Director.from_history(history, variant=variant)
        buf = io.StringIO()
        predict_lines(director, (f.csv() for f in flows), buf)
        return _parse_output(buf.getvalue(), flows)
    with tempfile.TemporaryDirectory(prefix="maglevx-pred-") as td:
        hist = Path(td) / "history"
        hist.write_text(history)
        csv = Path(td) / "flows.csv"
        csv.write_text("".join(f.csv() + "\n" for f in flows))
        cmd = [
            sys.executable,
            "-m",
            "maglevx",
            "predict",
            "--history",
            str(hist),
            "--variant",
            variant,
            *extra_args,
            str(csv),
        ]
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    if r.returncode != 0:
        raise PredictError(
            f"{' '.join(cmd[1:])} failed ({r.returncode}): {r.stderr.strip()}"
        )
    return _parse_output(r.stdout, flows)


def _parse_output(text: str, flows: list[Flow]) -> list[tuple[str, int] | None]:
    lines = text.splitlines()
    if len(lines) != len(flows):
        raise PredictError(f"maglevx printed {len(lines)} lines for {len(flows)} flows")
    out = []
    for f, line in zip(flows, lines):
        parts = line.split(",")
        n = 6 if f.fwmark else 5  # the 6th input field is the packet's mark
        if len(parts) != n + 2 or Flow.from_csv(",".join(parts[:n])) != f:
            raise PredictError(f"unexpected maglevx output line {line!r} for {f.csv()}")
        out.append(None if parts[n] == "" else (parts[n], int(parts[n + 1])))
    return out


def same_choice(kernel: tuple[str, int] | None, model: tuple[str, int] | None) -> bool:
    if kernel is None or model is None:
        return kernel is model
    return (
        ipaddress.ip_address(kernel[0]) == ipaddress.ip_address(model[0])
        and kernel[1] == model[1]
    )


@dataclasses.dataclass
class PhaseDecisions:
    """maglevx's decisions for one phase of a decision scenario."""

    choices: list  # (raddr, rport) or None per flow
    outcomes: list[str]  # maglevx.decision outcome per flow
    passed: list[bool]  # the packet goes on unscheduled (UDP: sendto() succeeds)
    one_packet: list[bool]  # -o UDP: no connection entry is kept
    followed: list[bool]  # a persistence template decided
    replaced: list[bool]  # a template existed but was not followed
    tags: list[frozenset]  # the decision-path branches each flow took
    templates: set  # (proto, client, vaddr, vport, daddr, dport) after the phase


def predict_scenario(
    sc, *, variant: str = "upstream", word_size: int = 64, table_size: int = 4093
) -> list[PhaseDecisions]:
    """Decide every flow of ``sc`` with one director carried across phases.

    Persistence templates outlive a phase in the kernel (the scenario's network
    namespace lives until its last phase), so the model's must too: the
    director applies each phase's lines on top of the previous ones and decides
    the flows in the order flowgen sends them.
    """
    import maglevx
    from maglevx import decision

    sysctl = sc.meta.get("sysctl", {})
    d = maglevx.Director(
        variant=variant,
        word_size=word_size,
        table_size=table_size,
        expire_quiescent_template=bool(sysctl.get("expire_quiescent_template")),
    )
    out = []
    for ph in sc.phases:
        for line in ph.history:
            d.apply(line)
        pd = PhaseDecisions([], [], [], [], [], [], [], set())
        for f in ph.flows:
            dec = decision.decide(
                d, (f.proto, f.saddr, f.sport, f.daddr, f.dport), fwmark=f.fwmark
            )
            pd.choices.append(
                None if dec.server is None else (str(dec.server.address), dec.port)
            )
            pd.outcomes.append(dec.outcome)
            pd.passed.append(dec.passed)
            pd.one_packet.append(dec.one_packet)
            pd.followed.append(dec.outcome == decision.TEMPLATE)
            pd.replaced.append(dec.replaced)
            pd.tags.append(_tags(d, f, dec))
        pd.templates = {
            (t.protocol, t.client, t.vaddr, t.vport, t.daddr, t.dport)
            for t in d.templates
        }
        out.append(pd)
    return out


def _tags(d, f: Flow, dec) -> frozenset:
    """Which branches of docs/decision-path.md this decision took."""
    svc = dec.service
    tags = set()
    if svc is None:
        return frozenset()
    daddr = ipaddress.ip_address(f.daddr)
    if svc.fwmark:
        tags.add("fwmark service")
        if d.find_service((f.proto, daddr, f.dport)) is not None:
            tags.add("fwmark over exact service")
    elif f.fwmark:
        tags.add("mark without fwmark service")
    elif svc.port == 21 and f.dport != 21:
        tags.add("FTP lookup")
    elif svc.port == 0:
        tags.add("port-zero catch-all")
    if dec.template is not None:
        key = dec.template
        tags.add(f"persistent IPv{key[0]}")
        if key[2] != ipaddress.ip_address(f.saddr):
            tags.add(f"masked client IPv{key[0]}")
        if dec.server is not None and dec.server.weight == 0:
            tags.add("template to weight 0")
    if dec.one_packet:
        tags.add("one-packet")
    return frozenset(tags)


def kernel_templates(entries) -> set:
    """Valid templates of a phase (invalidated ones have vport 0xffff) as
    (proto, client, vaddr, vport, daddr, dport)."""
    return {
        (e.proto, e.caddr, e.vaddr, e.vport, e.daddr, e.dport)
        for e in entries
        if e.vport != 0xFFFF
    }
