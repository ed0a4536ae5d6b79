"""Plain-text tables for the tools' human-readable output."""

from __future__ import annotations

from collections.abc import Sequence

from maglevx.ipvs import FLAG_FALLBACK, FLAG_PORT


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned.

    >>> print(render_table(["a", "n"], [["x", 1], ["yy", 22]]))
      a    n
      x    1
      yy  22
    """
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(map(len, column)) for column in zip(headers, *cells)]
    numeric = [
        all(isinstance(row[i], (int, float)) for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        out = (
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)
        )
        return ("  " + "  ".join(out)).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return "" if v is None else str(v)


def percent(part: float, whole: float) -> float:
    """100 * part / whole, 0 when whole is 0."""
    return 100.0 * part / whole if whole else 0.0


def flags_text(flags: int) -> str:
    """The mh scheduler flags as ipvsadm spells them, e.g. ``mh-fallback,mh-port``."""
    names = [n for bit, n in ((FLAG_FALLBACK, "mh-fallback"), (FLAG_PORT, "mh-port"))
             if flags & bit]  # fmt: skip
    return ",".join(names) or "none"
