"""The ``maglevx`` command line.

Exit status: 0 ok, 1 differences found (checking commands), 2 error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from maglevx.errors import MaglevxError
from maglevx.model import DEFAULT_TABLE_SIZE, PRIMES, VARIANTS, Director
from maglevx.predict import predict_lines

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line on stderr and exit status 2, like every other error."""
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
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
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default="upstream",
        help="upstream: in-tree ip_vs_mh; backport: maglevx's kmod (default: upstream)",
    )
    p.add_argument(
        "--word-size",
        type=int,
        choices=(64, 32),
        default=64,
        help="the director kernel's word size (default: 64)",
    )
    p.add_argument(
        "--table-size",
        type=_table_size,
        default=DEFAULT_TABLE_SIZE,
        metavar="M",
        help=f"table size, one of {', '.join(map(str, PRIMES))} (default: 4093)",
    )
    p.add_argument(
        "--no-port-hash",
        action="store_true",
        help="backport only: the module was loaded with hash_port=0",
    )


def _table_size(text: str) -> int:
    try:
        m = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if m not in PRIMES:
        raise argparse.ArgumentTypeError(
            f"{m} is not one of the kernel's primes ({', '.join(map(str, PRIMES))})"
        )
    return m


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise MaglevxError(f"cannot read: {exc.strerror}", source=path) from None
    except UnicodeDecodeError:
        raise MaglevxError("not UTF-8 text", source=path) from None


def load_director(args: argparse.Namespace) -> Director:
    """The director described by --history/--snapshot and the parameters."""
    if args.no_port_hash and args.variant != "backport":
        raise MaglevxError(
            "--no-port-hash applies to --variant backport only; upstream "
            "services say it with their mh-port flag"
        )
    kw = dict(
        variant=args.variant,
        word_size=args.word_size,
        table_size=args.table_size,
        backport_hash_port=not args.no_port_hash,
    )
    if args.history is not None:
        return Director.from_history(
            _read_text(args.history), source=args.history, **kw
        )
    return Director.from_snapshot(_read_text(args.snapshot), source=args.snapshot, **kw)


def _cmd_predict(args: argparse.Namespace, stdout: TextIO) -> int:
    director = load_director(args)
    if args.flows == "-":
        predict_lines(director, sys.stdin, stdout, source="<stdin>")
        return EXIT_OK
    try:
        f = open(args.flows, encoding="utf-8", newline="")
    except OSError as exc:
        raise MaglevxError(f"cannot read: {exc.strerror}", source=args.flows) from None
    with f:
        try:
            predict_lines(director, f, stdout, source=args.flows)
        except UnicodeDecodeError:
            raise MaglevxError("not UTF-8 text", source=args.flows) from None
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``maglevx`` command."""
    parser = _Parser(
        prog="maglevx",
        description="Predict which real server Linux IPVS Maglev hashing picks.",
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
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = stdout if stdout is not None else sys.stdout
    try:
        return int(args.func(args, out))
    except MaglevxError as exc:
        out.flush()
        print(f"maglevx: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
