"""The ``maglevx`` command line.

Exit status: 0 ok, 1 differences found (checking commands), 2 error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from maglevx import arrow, captures, predict
from maglevx._version import __version__
from maglevx.addresses import parse_address, quote
from maglevx.captures import parse_ip_vs_conn
from maglevx.decision import parse_fwmark, templates_from_conns
from maglevx.errors import MaglevxError
from maglevx.ipvs import BYTE_ORDERS, VARIANTS
from maglevx.ipvsadm import split_lines
from maglevx.model import (
    DEFAULT_TABLE_SIZE,
    KERNEL_REFERENCE,
    PRIMES,
    Director,
    DirectorParams,
    parse_hash_key,
)
from maglevx.predict import FORMATS
from maglevx.tools import sources, verify
from maglevx.tools.sample import DEFAULT_SAMPLE, DEFAULT_SEED, from_lines
from maglevx.tools.sources import ListingOptions, load_text, open_input, read_text
from maglevx.tools.verify import PROC_CONN

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line on stderr and exit status 2, like every other error."""
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


LIVE_HELP = (
    "read this machine's director: IPVS over netlink (ipvsadm as the "
    "fallback) and its parameters (variant, word size, table size); "
    "--variant/--word-size/--table-size given explicitly win"
)


def _add_config_args(p: argparse.ArgumentParser, *, live_apart: bool = False) -> None:
    src = p.add_mutually_exclusive_group(required=not live_apart)
    # verify: --live with --history predicts from the history; none: run ipvsadm
    (p if live_apart else src).add_argument(
        "--live", action="store_true", help=LIVE_HELP
    )
    src.add_argument(
        "--history",
        metavar="FILE",
        help="configuration as `ipvsadm -R` lines, applied top to bottom",
    )
    src.add_argument(
        "--snapshot",
        metavar="FILE",
        help="`ipvsadm -Ln --nosort` output (the kernel's list order)",
    )
    _add_params(p)


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default=None,
        help="upstream: in-tree ip_vs_mh; backport: maglevx's kmod (default: upstream)",
    )
    p.add_argument(
        "--word-size",
        type=int,
        choices=(64, 32),
        default=None,
        help="the director kernel's word size (default: 64)",
    )
    p.add_argument(
        "--table-size",
        type=_table_size,
        default=None,
        metavar="M",
        help=f"table size, one of {', '.join(map(str, PRIMES))} (default: 4093)",
    )
    p.add_argument(
        "--no-port-hash",
        action="store_true",
        help="backport only: the module was loaded with hash_port=0",
    )
    p.add_argument(
        "--byte-order",
        choices=BYTE_ORDERS,
        default="little",
        help="the director's CPU: big for s390x, whose kernel hashes other "
        "bytes (default: little)",
    )
    p.add_argument(
        "--hash-key",
        metavar="HEX|@FILE",
        help="backport only: the module's secret hash_key (32 hex digits), or "
        "@FILE to read it from a file (keeps it out of `ps`)",
    )
    p.add_argument(
        "--last-weight",
        action="append",
        metavar="ADDR:PORT=W",
        help="listings: the last_weight of a weight-0 real server (its weight "
        "before an edit drained it; a listing cannot show it)",
    )
    p.add_argument(
        "--assume-drained-by-edit",
        action="store_true",
        help="listings: every weight-0 real server was drained by an edit "
        "(keepalived inhibit_on_failure, kube-proxy) from its service's most "
        "common weight, and keeps its slots",
    )
    p.add_argument(
        "--expire-quiescent-template",
        action="store_true",
        help="the director has sysctl net.ipv4.vs.expire_quiescent_template=1: "
        "persistence templates to weight-0 real servers are not followed",
    )


def _table_size(text: str) -> int:
    s = text.strip()
    number = s.isascii() and s.isdigit() and len(s.lstrip("0")) <= 7
    if number and int(s) in PRIMES:
        return int(s)
    raise argparse.ArgumentTypeError(
        f"{int(s) if number else quote(text)} is not one of the kernel's primes "
        f"({', '.join(map(str, PRIMES))})"
    )


def _sample_size(text: str) -> int:
    s = text.strip()
    if not (s.isascii() and s.isdigit()) or len(s.lstrip("0")) > 9 or int(s) < 1:
        raise argparse.ArgumentTypeError(
            f"{quote(text)} is not a number of flows from 1 to 999999999"
        )
    return int(s)


def params_from(args: argparse.Namespace) -> DirectorParams:
    """The director parameters given by --variant/--word-size/--table-size."""
    variant = args.variant or "upstream"
    if args.no_port_hash and variant != "backport":
        raise MaglevxError(
            "--no-port-hash applies to --variant backport only; upstream "
            "services say it with their mh-port flag"
        )
    key = args.hash_key
    if key is not None and key.startswith("@"):
        key = read_text(key[1:])
    return DirectorParams(
        variant=variant,
        word_size=args.word_size or 64,
        table_size=args.table_size or DEFAULT_TABLE_SIZE,
        byte_order=args.byte_order,
        backport_hash_port=not args.no_port_hash,
        expire_quiescent_template=args.expire_quiescent_template,
        hash_key=None if key is None else parse_hash_key(key),
    )


def _live_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters given explicitly, which win over what --live reads."""
    return {
        "variant": args.variant,
        "word_size": args.word_size,
        "table_size": args.table_size,
        "backport_hash_port": False if args.no_port_hash else None,
    }


def read_live(args: argparse.Namespace, *, warn: bool = True) -> Any:
    """Read this machine's director (``--live``); warnings go to stderr."""
    from maglevx import live

    ld = live.read_live(**_live_overrides(args))
    if warn:
        _warn(ld.warnings)
    return ld


def _say(message: str, flush: TextIO | None = None) -> None:
    """``maglevx: MESSAGE`` on stderr, after what *flush* holds."""
    if flush is not None:
        flush.flush()
    print(f"maglevx: {message}", file=sys.stderr)


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        _say(f"warning: {w}")


def _no_service(source: str, no_service: int, flows: int, stdout: TextIO) -> None:
    if no_service:
        _say(
            f"{source}: {no_service} of {flows} flows go to no virtual service: "
            "written with empty fields (the kernel does not schedule them; "
            "--strict makes this an error)",
            stdout,
        )


def listing_from(args: argparse.Namespace) -> ListingOptions:
    """What --last-weight/--assume-drained-by-edit say about listings."""
    return ListingOptions(
        last_weights=tuple(
            sources.parse_last_weight(t) for t in args.last_weight or ()
        ),
        drained_by_edit=args.assume_drained_by_edit,
    )


def load_director(args: argparse.Namespace) -> Director:
    """The director described by --live/--history/--snapshot and the parameters."""
    if getattr(args, "live", False):
        return read_live(args).director  # type: ignore[no-any-return]
    params = params_from(args)
    kind = "snapshot" if args.history is None else "history"
    path = getattr(args, kind)
    return load_text(
        read_text(path), source=path, kind=kind, params=params,
        listing=listing_from(args),
    )  # fmt: skip


def listing_notes(args: argparse.Namespace, director: Director) -> dict[str, list]:
    """Per service, the weight-0 real servers whose last_weight a listing hides."""
    if getattr(args, "snapshot", None) is None:
        return {}
    out: dict[str, list] = {}
    for x in sources.listing_assumptions(director, listing_from(args)).drained:
        out.setdefault(x.service, []).append(x)
    return out


def _cmd_predict(args: argparse.Namespace, stdout: TextIO) -> int:
    director = load_director(args)
    if args.snapshot is not None:
        for name in sources.maybe_sorted(director):
            _say(f"{args.snapshot}: {name}: {sources.SORTED_NOTE}")
    elif args.history is not None:  # not --live
        for note in sources.saved_rule_file(read_text(args.history), director).values():
            _say(f"{args.history}: {note}")
    ambiguous = False
    for name, xs in listing_notes(args, director).items():
        unknown = [x for x in xs if x.last_weight is None]
        if unknown:
            ambiguous = True
            share = sum(x.share_if_drained for x in unknown)
            _say(
                f"{args.snapshot}: {name}: weight-0 real servers "
                f"{', '.join(x.endpoint for x in unknown)} read as added with "
                "weight 0 (a listing cannot show last_weight); if an edit drained "
                f"them, about {share:.1f}% of new flows to it get "
                + ("other servers" if unknown[0].fallback else "no destination")
                + " instead: --last-weight ADDR:PORT=W or --assume-drained-by-edit"
            )
    if args.flows == "-":
        stream, source = sys.stdin.buffer, "<stdin>"
    else:
        stream = open_input(args.flows, "rb")  # closed below
        source = args.flows
    try:
        fmt = args.format
        if fmt == "auto":
            fmt = _detect_columnar(stream) or predict.detect_format(stream)
        if fmt in arrow.INPUT_FORMATS or args.output_format != "csv":
            return _predict_columnar(director, stream, stdout, fmt, args, source)
        progress = predict.Progress(predict.input_size(stream))
        if fmt == "csv":
            stats = predict.PredictStats()
            if ambiguous:
                stats.alternative = sources.drained_alternative(director)
            predict.predict_stream(
                director, stream, stdout, source=source, progress=progress,
                strict=args.strict, stats=stats,
            )  # fmt: skip
            _no_service(source, stats.no_service, stats.flows, stdout)
            if stats.alternative is not None:
                _say(
                    f"{source}: {stats.differ} of {stats.flows} flows would go "
                    "elsewhere if the listing's weight-0 real servers were drained "
                    "by an edit (--assume-drained-by-edit shows which)",
                    stdout,
                )
        else:
            predict.predict_capture(director, stream, stdout, fmt, source=source)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return EXIT_OK


def _detect_columnar(stream: Any) -> str | None:
    """``parquet``/``arrow`` from the first bytes, without importing pyarrow."""
    peek = getattr(stream, "peek", None)
    return arrow.detect(bytes(peek(8)[:8]) if peek is not None else b"")


def _predict_columnar(
    director: Director, stream: Any, stdout: TextIO, fmt: str,
    args: argparse.Namespace, source: str,
) -> int:  # fmt: skip
    """Predict with Parquet / Arrow IPC input or output (maglevx.arrow)."""
    if fmt not in arrow.INPUT_FORMATS:
        raise MaglevxError(
            f"--output-format {args.output_format} needs Parquet or Arrow input "
            f"(this input is {fmt})",
            field="--output-format",
        )
    sink = getattr(stdout, "buffer", stdout)
    stats: dict[str, int] = {}
    arrow.predict_columnar(
        director, stream, sink, fmt, output_format=args.output_format,
        source=source, strict=args.strict, stats=stats,
    )  # fmt: skip
    _no_service(source, stats.get("no_service", 0), stats.get("flows", 0), stdout)
    return EXIT_OK


def _emit(args: argparse.Namespace, stdout: TextIO, obj: Any, text: str) -> None:
    if args.json:
        json.dump(obj, stdout, indent=2)
        stdout.write("\n")
    else:
        stdout.write(text + "\n")


def _cmd_table(args: argparse.Namespace, stdout: TextIO) -> int:
    from maglevx.tools import table

    if args.live:
        from maglevx import live

        ld = read_live(args, warn=False)
        live.mh_services(ld, args.service)  # one clear line: none, or not mh
        _warn(ld.warnings)
        director = ld.director
    else:
        director = load_director(args)
    service = (
        None
        if args.service is None
        else sources.resolve_service(args.service, director)
    )
    notes = {
        name: [x.text() for x in xs]
        for name, xs in listing_notes(args, director).items()
    }
    if args.snapshot is not None:
        for name in sources.maybe_sorted(director):
            note = f"{name} may be sorted: {sources.SORTED_NOTE}"
            notes.setdefault(name, []).append(note)
    elif args.history is not None:
        saved = sources.saved_rule_file(read_text(args.history), director)
        for name, note in saved.items():
            notes.setdefault(name, []).append(note)
    reports = table.table_report(director, service=service, notes=notes)
    if args.plot:
        from maglevx.tools import plot

        plot.plot_tables(reports, args.plot)
    text = table.render(reports)
    if not reports and director.services:
        used = ", ".join(sorted({s.scheduler for s in director.services}))
        text += f" (the services use {used}; maglevx predicts mh only)"
    _emit(args, stdout, [r.to_json() for r in reports], text)
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace, stdout: TextIO) -> int:
    from maglevx.tools import diff

    defaults = params_from(args)
    old_spec, old, old_unknown = _load_spec(args.old, defaults, args)
    edits = [
        diff.parse_edit(kind, text)
        for kind in diff.EDIT_KINDS
        for text in getattr(args, kind) or []
    ]
    if args.new is None and not edits:
        raise MaglevxError("give NEW or a proposed edit (--remove/--drain/--add)")
    if args.new is not None:
        new_spec, new, new_unknown = _load_spec(args.new, defaults, args)
        new_label = f"{new_spec.label} ({new_spec.params.describe()})"
    else:
        new, new_label, new_unknown = old, old_spec.label, old_unknown
    base = new  # before the edits
    service = None
    if edits:
        if args.service is not None:
            service = sources.resolve_service(args.service, new)
        new = diff.apply_edits(new, edits, service=service)
        new_label += " with " + "; ".join(map(str, edits))
    samples = _samples(args, old)
    rep = diff.diff_directors(
        old,
        new,
        samples=samples,
        sample_size=args.sample,
        seed=args.seed,
        old_label=f"{old_spec.label} ({old_spec.params.describe()})",
        new_label=new_label,
    )
    # a listing's weight-0 servers may have been drained by an edit: the
    # other outcome, where it differs
    if old_unknown or new_unknown:
        alt_old = sources.drained_alternative(old) if old_unknown else old
        alt_new = sources.drained_alternative(base) if new_unknown else base
        if edits:
            alt_new = diff.apply_edits(alt_new, edits, service=service)
        alt = diff.diff_directors(
            alt_old, alt_new, samples=samples, sample_size=args.sample, seed=args.seed
        )

        def outcome(sd: Any) -> tuple:
            refusals = (sd.refusals_old, sd.refusals_new)
            return sd.flows_moved, *(r and r.refused_without_fallback for r in refusals)

        for sd, other in zip(rep.services, alt.services):  # the same services
            if outcome(other) != outcome(sd):  # added/removed: equal, no flows
                sd.notes.append(
                    _if_drained(
                        old_unknown + new_unknown,
                        f"{other.flows_moved_pct:.2f}% of flows move; refused new "
                        f"flows OLD {diff.refusal_text(other.refusals_old)}; NEW "
                        f"{diff.refusal_text(other.refusals_new)}",
                    )
                )
    if args.plot:
        from maglevx.tools import plot

        plot.plot_diff(old, new, rep, args.plot)
    _emit(args, stdout, rep.to_json(), diff.render(rep))
    return EXIT_DIFFERENT if rep.different else EXIT_OK


def _load_spec(
    text: str, defaults: DirectorParams, args: argparse.Namespace
) -> tuple[Any, Director, list[str]]:
    """A spec, its director, and the listing's unknown-last_weight servers."""
    spec = sources.parse_spec(text, defaults, listing_from(args))
    director = sources.load_spec(spec)
    if (spec.kind or sources.detect_kind(read_text(spec.path))) != "snapshot":
        return spec, director, []
    drained = sources.listing_assumptions(director, spec.listing).unknown
    return spec, director, [x.endpoint for x in drained]


def _if_drained(unknown: list[str], outcome: str) -> str:
    """The other outcome, if a listing's weight-0 servers were drained."""
    return (
        f"if {', '.join(sorted(set(unknown)))} (weight 0 in a listing, last_weight "
        f"unknown) were drained by an edit: {outcome} (--last-weight ADDR:PORT=W "
        "or --assume-drained-by-edit decides)"
    )


def _samples(args: argparse.Namespace, director: Director) -> dict | None:
    """Flow samples per service name from --flows (None: synthetic)."""
    if args.flows is None:
        return None

    by_dest = from_lines(
        split_lines(read_text(args.flows)), source=args.flows, limit=args.sample
    )
    out: dict[str, Any] = {}
    for (proto, daddr, dport), sample in by_dest.items():
        svc = director.service_for(proto, parse_address(daddr, "daddr"), dport)
        if svc is not None and svc.scheduler == "mh":
            prev = out.setdefault(svc.name, sample)
            if prev is not sample:
                prev.folds = np.concatenate([prev.folds, sample.folds])
                prev.sports = np.concatenate([prev.sports, sample.sports])
    return out


def _cmd_consistency(args: argparse.Namespace, stdout: TextIO) -> int:
    from maglevx.tools import consistency

    if len(args.configs) < 2:
        raise MaglevxError("give at least two configurations to compare")
    defaults = params_from(args)
    directors: list[tuple[str, Director]] = []
    unknown: list[list[str]] = []  # per director
    for text in args.configs:
        if text.startswith(("http://", "https://")):  # a maglevx watch exporter
            from maglevx import live
            from maglevx.tools import watch

            d = live.from_state(watch.fetch_state(text), source=text).director
            directors.append((f"{text} ({d.params.describe()})", d))
            unknown.append([])  # its state is a read, not a listing
        else:
            spec, d, u = _load_spec(text, defaults, args)
            directors.append((f"{spec.label} ({spec.params.describe()})", d))
            unknown.append(u)
    samples = _samples(args, directors[0][1])
    rep = consistency.compare_directors(
        directors, samples=samples, sample_size=args.sample, seed=args.seed
    )
    if any(unknown):
        alt = consistency.compare_directors(
            [(label, sources.drained_alternative(d) if u else d)
             for (label, d), u in zip(directors, unknown)],
            samples=samples, sample_size=args.sample, seed=args.seed,
        )  # fmt: skip
        for r, a in zip(rep.results, alt.results):
            if (r.flows_differ, r.slots_differ) != (a.flows_differ, a.slots_differ):
                r.notes.append(
                    _if_drained(
                        sum(unknown, []),
                        f"{a.flows_differ_pct:.2f}% of flows and "
                        f"{a.slots_differ_pct:.2f}% of slots differ"
                        + (f" ({'; '.join(a.reasons)})" if a.reasons else ""),
                    )
                )
    if args.plot:
        from maglevx.tools import plot

        plot.plot_consistency(directors, rep, args.plot)
    _emit(args, stdout, rep.to_json(), consistency.render(rep))
    return EXIT_OK if rep.consistent else EXIT_DIFFERENT


def _cmd_verify(args: argparse.Namespace, stdout: TextIO) -> int:
    params = params_from(args)
    kmod_path = args.kmod_tables
    if kmod_path is None and not args.no_kmod and os.path.exists(verify.KMOD_TABLES):
        kmod_path = verify.KMOD_TABLES
    kmod_text = read_text(kmod_path) if kmod_path else None
    history = None
    if args.live:
        director = read_live(args).director
    if args.history is not None:
        history = read_text(args.history)
        if args.live:  # the history, with the live parameters
            director = Director.from_params(director.params)
            director.apply_history(history, source=args.history)
        else:
            director = load_text(
                history, source=args.history, kind="history", params=params
            )
    elif not args.live:
        path = args.snapshot
        text = verify.run_ipvsadm() if path is None else read_text(path)
        director = load_text(text, source=path or "ipvsadm -Ln --nosort",
                             kind="snapshot", params=params,
                             listing=listing_from(args))  # fmt: skip
    fmt = args.format
    if fmt == "auto":
        with open_input(args.conn, "rb") as f:
            fmt = _detect_columnar(f) or "capture"
    if fmt in arrow.INPUT_FORMATS:
        return _verify_flow_log(director, fmt, args, stdout)
    conns = read_conns(args.conn)
    rep = verify.verify(
        director,
        conns,
        history=history,
        kmod_dump=kmod_text,
        kmod_source=kmod_path or verify.KMOD_TABLES,
        from_listing=history is None,
    )

    _emit(args, stdout, rep.to_json(), verify.render(rep, show_caveats=args.caveats))
    if rep.different:
        return EXIT_DIFFERENT
    if rep.checked == 0 and not rep.kmod:
        raise MaglevxError(
            f"nothing verified: none of the {len(conns)} connections is to an mh "
            "service of the configuration (see 'skipped'); capture while clients "
            "connect, on the director whose configuration you give",
            source=args.conn,
        )
    return EXIT_OK


def _verify_flow_log(
    director: Director, fmt: str, args: argparse.Namespace, stdout: TextIO
) -> int:
    """Verify a Parquet / Arrow IPC flow log (tools.verify.verify_flow_log)."""
    observed = tuple(c.strip() for c in args.observed.split(","))
    if len(observed) != 2 or not all(observed):
        raise MaglevxError(
            f"expected two column names ADDRESS,PORT, got {args.observed!r}",
            field="--observed",
        )
    with open_input(args.conn, "rb") as f:
        rep = verify.verify_flow_log(
            director, f, fmt, source=args.conn,
            observed=(observed[0], observed[1]),
        )  # fmt: skip
    _emit(args, stdout, rep.to_json(), verify.render_flow_log(rep, args.conn))
    if rep.different:
        return EXIT_DIFFERENT
    if rep.checked == 0:
        raise MaglevxError(
            f"nothing verified: none of the {rep.flows} flows is to an mh service "
            "of the configuration",
            source=args.conn,
        )
    return EXIT_OK


def read_conns(path: str) -> list:
    """The connections of a capture file, its format detected."""
    text = read_text(path)
    fmt = captures.detect(text[:4096].encode("utf-8", "replace"))
    if fmt not in captures.PARSERS:
        raise MaglevxError(
            "not a connection listing: give /proc/net/ip_vs_conn, `ipvsadm -Lnc` "
            "or `conntrack -L` output",
            source=path,
        )
    return list(captures.PARSERS[fmt](text.splitlines(), source=path))


def _cmd_explain(args: argparse.Namespace, stdout: TextIO) -> int:
    from maglevx.tools import explain

    mark = parse_fwmark(args.fwmark, "--fwmark")
    director = load_director(args)
    if args.conns is not None:
        entries = parse_ip_vs_conn(read_text(args.conns).splitlines(),
                                   source=args.conns)  # fmt: skip
        director.templates = templates_from_conns(director, entries)
    ex = explain.explain(args.flow, director, fwmark=mark)
    _emit(args, stdout, ex.to_json(), explain.render(ex))
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace, stdout: TextIO) -> int:
    from maglevx.tools import watch

    if args.interval <= 0:
        raise MaglevxError(
            f"interval {args.interval} is not positive", field="--interval"
        )
    w = watch.Watcher(
        journal_path=args.journal,
        conn_path=args.conn,
        verify_sample=args.verify_sample,
        overrides=_live_overrides(args),
    )
    if args.once:
        w.poll()
        if not w.up:
            raise MaglevxError(w.last_error)
        stdout.write(watch.metrics_text(w))
        return EXIT_OK

    def ready(addr: Any) -> None:
        _say(f"watch serving on http://{addr[0]}:{addr[1]}/metrics")

    watch.serve(w, args.listen, args.interval, ready=ready)
    return EXIT_OK


def _add_output(p: argparse.ArgumentParser, *, plot: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    if plot:
        p.add_argument(
            "--plot",
            metavar="FILE.png",
            help="also draw the result (needs matplotlib: pip install maglevx[plot])",
        )


def _add_sample(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--flows",
        metavar="CSV",
        help="compare on these flows (proto,saddr,sport,daddr,dport) instead of "
        "synthetic clients",
    )
    p.add_argument(
        "--sample",
        type=_sample_size,
        default=DEFAULT_SAMPLE,
        metavar="N",
        help="synthetic flows per service, or the most flows read from --flows "
        f"(default: {DEFAULT_SAMPLE})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the synthetic flows (default: {DEFAULT_SEED})",
    )


SPEC_HELP = (
    "a history or `ipvsadm -Ln --nosort` listing (detected from the content), "
    "optionally with its own parameters: "
    "FILE[:kind=snapshot,variant=backport,word-size=32,table-size=8191]"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``maglevx`` command."""
    parser = _Parser(
        prog="maglevx",
        description="Predict which real server Linux IPVS Maglev hashing picks.",
        epilog="Exit status: 0 ok, 1 differences found, 2 error.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"maglevx {__version__} (reproduces {KERNEL_REFERENCE})",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser(
        "predict",
        help="append the kernel's real server to each flow of a CSV",
        description="Read flows `proto,saddr,sport,daddr,dport` (CSV, no header) "
        "and print each with `,raddr,rport` appended (empty: no destination).",
    )
    _add_config_args(p)
    p.add_argument(
        "flows", nargs="?", default="-", metavar="FLOWS", help="CSV file or - (stdin)"
    )
    p.add_argument(
        "--format",
        choices=("auto", *FORMATS, "pcap", *arrow.INPUT_FORMATS),
        default="auto",
        help="input format (default: detected): csv, /proc/net/ip_vs_conn, "
        "`ipvsadm -Lnc` (ipvsadm_conn) or `conntrack -L`. Captures are turned "
        "into flow lines `proto,saddr,sport,daddr,dport` and only flows to mh "
        "services are kept",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="a CSV flow to no virtual service is an error (default: written "
        "with empty fields and counted on stderr)",
    )
    p.add_argument(
        "--output-format",
        choices=arrow.OUTPUT_FORMATS,
        default="csv",
        help="output format for Parquet/Arrow input (default: csv lines); "
        "parquet and arrow (an IPC stream) keep every input column and add "
        "raddr, rport",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "table",
        help="slots per real server vs weights, quantization, warnings",
        description="For each mh service: the slots each real server holds, its "
        "share vs its weight share, turns and weight shift, servers with no "
        "slots, drained servers that keep slots, and whether M is too small.",
    )
    _add_config_args(p)
    p.add_argument("--service", metavar="NAME", help="only this service, e.g. "
                   "'TCP 10.0.0.1:80'")  # fmt: skip
    _add_output(p, plot=True)
    p.set_defaults(func=_cmd_table)

    p = sub.add_parser(
        "diff",
        help="what moves between two configurations or a proposed edit",
        description="Compare OLD with NEW, or with OLD (or NEW) after proposed "
        "edits: slots and sampled flows that move, per real server, and new "
        "flows refused on weight-0 slots (upstream) with/without mh-fallback. "
        "Exit 1 when anything moves.",
    )
    p.add_argument("old", metavar="OLD", help=SPEC_HELP)
    p.add_argument("new", metavar="NEW", nargs="?", help="same form as OLD")
    for kind, metavar, what in (
        ("remove", "RIP:PORT", "delete this real server (ipvsadm -d)"),
        ("drain", "RIP:PORT", "set its weight to 0 (ipvsadm -e -w 0)"),
        ("add", "RIP:PORT:W", "add a real server with weight W (ipvsadm -a)"),
    ):
        p.add_argument(
            f"--{kind}", action="append", metavar=metavar, help=f"proposed: {what}"
        )
    p.add_argument(
        "--service",
        metavar="NAME",
        help="the service the edits apply to, e.g. 'TCP 10.0.0.1:80'",
    )
    _add_params(p)
    _add_sample(p)
    _add_output(p, plot=True)
    p.set_defaults(func=_cmd_diff)

    p = sub.add_parser(
        "consistency",
        help="do several directors build the same tables?",
        description="Compare directors (histories or listings, each with its "
        "own parameters) with the first: slots and sampled flows on which they "
        "disagree, why (servers, list order, weights, flags, M, word size), "
        "and the fix. Exit 1 when they disagree.",
    )
    p.add_argument(
        "configs",
        metavar="CONFIG",
        nargs="+",
        help=SPEC_HELP + "; or the URL of a `maglevx watch` exporter "
        "(http://HOST:PORT)",
    )
    _add_params(p)
    _add_sample(p)
    _add_output(p, plot=True)
    p.set_defaults(func=_cmd_consistency)

    p = sub.add_parser(
        "verify",
        help="compare a live director's connections with the predictions",
        description="Read the configuration (default: run `ipvsadm -Ln "
        "--nosort`) and /proc/net/ip_vs_conn, report every connection whose "
        "real server differs from the prediction (persistence and connections "
        "older than a change are caveats), and with maglevx's module loaded "
        "compare its tables slot by slot. Exit 1 when something differs.",
    )
    _add_config_args(p, live_apart=True)
    p.add_argument(
        "--conn",
        default=PROC_CONN,
        metavar="FILE",
        help=f"connections: {PROC_CONN} (default), `ipvsadm -Lnc` or "
        "`conntrack -L` output (detected), or a flow log as Parquet or Arrow "
        "IPC (see --format)",
    )
    p.add_argument(
        "--format",
        choices=("auto", "capture", *arrow.INPUT_FORMATS),
        default="auto",
        help="--conn's format: a capture (ip_vs_conn, ipvsadm -Lnc, conntrack), "
        "or a flow log as parquet or arrow (IPC file or stream), read one row "
        "group at a time: the flow columns of `predict` plus the real server "
        "the director chose (--observed); flows are new connections in log "
        "order (default: detected)",
    )
    p.add_argument(
        "--observed",
        default="raddr,rport",
        metavar="ADDRESS,PORT",
        help="a flow log's columns of the chosen real server: its address (the "
        "type of saddr, or text; null for none) and port (default: raddr,rport)",
    )
    p.add_argument(
        "--kmod-tables",
        metavar="FILE",
        help="the module's table dump (default: "
        "/sys/kernel/debug/ip_vs_mh/tables when it exists)",
    )
    p.add_argument(
        "--no-kmod", action="store_true", help="do not compare the module's tables"
    )
    p.add_argument(
        "--caveats", action="store_true", help="also list connections a caveat explains"
    )
    _add_output(p)
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "explain",
        help="every step of one decision: service, template, hash, slot, probes",
        description="Show how the director decides one new flow: which "
        "service (fwmark, exact, FTP, port zero), whether the kernel schedules "
        "it at all (client port 20, port zero without -p), the persistence "
        "template it follows or makes, and the scheduler's steps: the hashed "
        "address and port, the hash input v, the hash, the slot, the real "
        "server and, with mh-fallback, every probe.",
    )
    _add_config_args(p)
    p.add_argument("flow", metavar="FLOW", help="proto,saddr,sport,daddr,dport")
    p.add_argument(
        "--fwmark",
        default="0",
        help="the packet's firewall mark (decimal or 0x hex; default: none)",
    )
    p.add_argument(
        "--conns",
        metavar="FILE",
        help="a /proc/net/ip_vs_conn dump: its persistence templates (client "
        "port 0) are the director's, so the flow may follow one",
    )
    _add_output(p)
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser(
        "watch",
        help="Prometheus exporter and change journal of this machine's director",
        description="Read this machine's IPVS every --interval seconds and serve "
        "per mh service its table fingerprint, slot shares, refused new flows, "
        "verify counters and last change on /metrics (and /state.json for "
        "`maglevx consistency URL`); with --journal, append every change as "
        "ipvsadm -R lines (a history the other commands read). Read errors are "
        "counted, never fatal.",
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:9753",
        metavar="HOST:PORT",
        help="where to serve (default: 127.0.0.1:9753; :PORT for all addresses)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between reads (default: 5)",
    )
    p.add_argument(
        "--journal", metavar="FILE", help="append every change as ipvsadm -R lines"
    )
    p.add_argument(
        "--conn",
        default="/proc/net/ip_vs_conn",
        metavar="FILE",
        help="connections to verify (default: /proc/net/ip_vs_conn)",
    )
    p.add_argument(
        "--verify-sample",
        type=int,
        default=10000,
        metavar="N",
        help="connections read per check (default: 10000)",
    )
    p.add_argument(
        "--once", action="store_true", help="read once, print the metrics, exit"
    )
    _add_params(p)
    p.set_defaults(func=_cmd_watch)
    return parser


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = stdout if stdout is not None else sys.stdout
    try:
        return int(args.func(args, out))
    except MaglevxError as exc:
        _say(f"error: {exc}", out)
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except MemoryError:
        _say("error: out of memory", out)
    except Exception as exc:  # a bug of maglevx, never the input's fault
        _say(
            f"internal error: {type(exc).__name__}: {quote(str(exc), 200)} "
            "(a bug: please report it with the command line)",
            out,
        )
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
