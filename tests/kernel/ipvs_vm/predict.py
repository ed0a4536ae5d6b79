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
import hashlib
import ipaddress
import os
import subprocess
import sys
import tempfile
import threading
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


# CLI option -> (Director.from_history keyword, converter); what the in-process
# path understands. Anything else goes through the CLI.
_API_OPTIONS = {
    "--word-size": ("word_size", int),
    "--table-size": ("table_size", int),
    "--byte-order": ("byte_order", str),
}


def _api_kwargs(extra_args) -> dict | None:
    """``extra_args`` as from_history keywords, or None if one has no keyword."""
    args = list(extra_args)
    out: dict = {}
    while args:
        opt = args.pop(0)
        if opt == "--no-port-hash":
            out["backport_hash_port"] = False
        elif opt in _API_OPTIONS and args:
            name, conv = _API_OPTIONS[opt]
            out[name] = conv(args.pop(0))
        else:
            return None
    return out


def model_args(arch) -> tuple[str, ...]:
    """The maglevx options that describe a director of architecture ``arch``."""
    args: tuple[str, ...] = ()
    if arch.word_size != 64:
        args += ("--word-size", str(arch.word_size))
    if arch.byte_order != "little":
        args += ("--byte-order", arch.byte_order)
    return args


_BYTE_ORDER: list[bool] = []


def supports_byte_order() -> bool:
    """Whether this maglevx models big-endian directors: ``--byte-order`` on the
    CLI and ``Director(byte_order="big")`` in the API, both."""
    if not _BYTE_ORDER:
        r = subprocess.run(
            [sys.executable, "-m", "maglevx", "predict", "--help"],
            capture_output=True,
            text=True,
        )
        ok = "--byte-order" in r.stdout
        if ok:
            import maglevx

            try:
                maglevx.Director(byte_order="big")
            except (TypeError, maglevx.MaglevxError):
                ok = False
        _BYTE_ORDER.append(ok)
    return _BYTE_ORDER[0]


_MEMO: dict[str, list] = {}
_MEMO_LOCK = threading.Lock()


def predict(
    history: str,
    flows: list[Flow],
    *,
    variant: str = "upstream",
    extra_args=(),
    mode: str | None = None,
) -> list[tuple[str, int] | None]:
    """maglevx's (raddr, rport) or None per flow, for ``history`` (ipvsadm -R lines).

    ``extra_args``: more ``maglevx predict`` options (``--word-size 32``,
    ``--byte-order big``, ``--table-size M``, ``--no-port-hash``).
    Kernels of the same director kind run the same scenarios (the edge cases'
    4095-server history costs seconds to replay): answers are remembered per
    process, keyed by everything that decides them.
    """
    mode = mode or os.environ.get("MAGLEVX_PREDICT", "api")
    h = hashlib.sha256(
        "\0".join(
            [mode, variant, *extra_args, history, *(f.csv() for f in flows)]
        ).encode()
    ).hexdigest()
    with _MEMO_LOCK:
        if h in _MEMO:
            return list(_MEMO[h])
    out = _predict(history, flows, variant=variant, extra_args=extra_args, mode=mode)
    with _MEMO_LOCK:
        _MEMO[h] = out
    return list(out)


def _predict(
    history: str, flows: list[Flow], *, variant: str, extra_args, mode: str
) -> list[tuple[str, int] | None]:
    kwargs = _api_kwargs(extra_args) if mode == "api" else None
    if kwargs is not None:
        import io

        import maglevx
        from maglevx.predict import predict_lines

        try:
            director = maglevx.Director.from_history(history, variant=variant, **kwargs)
        except TypeError:  # a keyword this maglevx lacks: its CLI says why
            director = None
        if director is not None:
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
    sc, *, variant: str = "upstream", model_args=()
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
    params = _api_kwargs(model_args)
    if params is None:
        raise PredictError(f"decision scenarios take no maglevx options {model_args}")
    d = maglevx.Director(
        variant=variant,
        expire_quiescent_template=bool(sysctl.get("expire_quiescent_template")),
        **params,
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
