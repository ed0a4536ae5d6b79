"""``--plot FILE.png`` for ``table``, ``diff`` and ``consistency`` (matplotlib).

matplotlib is the optional ``plot`` extra; without it, ``--plot`` fails
with a one-line error saying how to install it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maglevx.errors import MaglevxError
from maglevx.model import Director
from maglevx.tools.consistency import ConsistencyReport
from maglevx.tools.diff import DiffReport
from maglevx.tools.table import ServiceTable


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MaglevxError(
            "--plot needs matplotlib: pip install 'maglevx[plot]'", field="--plot"
        ) from None
    return plt


def _save(plt: Any, fig: Any, path: str) -> None:
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as exc:
        raise MaglevxError(f"cannot write: {exc.strerror}", source=path) from None
    finally:
        plt.close(fig)


def _bar_pairs(
    ax: Any, names: list[str], a: list, b: list, a_style: dict, b_style: dict
) -> Any:
    """Per name (top to bottom) a bar of *a* above a bar of *b*; the rows' y."""
    y = np.arange(len(names))
    ax.barh(y - 0.2, a, 0.4, **a_style)
    ax.barh(y + 0.2, b, 0.4, **b_style)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    return y


def plot_tables(reports: list[ServiceTable], path: str) -> None:
    """Per service: slot share vs weight share of each real server."""
    plt = _pyplot()
    if not reports:
        raise MaglevxError("no mh services to plot", field="--plot")
    n = len(reports)
    heights = [max(1.6, 0.35 * len(r.servers) + 1.0) for r in reports]
    fig, axes = plt.subplots(n, 1, figsize=(9, sum(heights) + 0.6 * n),
                             squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    for ax, st in zip(axes[:, 0], reports):
        shares = [r.share for r in st.servers]
        weights = [r.weight_share for r in st.servers]
        colors = ["tab:blue" if r.available else "tab:red" for r in st.servers]
        y = _bar_pairs(
            ax,
            [r.endpoint for r in st.servers],
            shares,
            weights,
            {"label": "slot share", "color": colors},
            {"label": "weight share", "color": "tab:gray", "alpha": 0.6},
        )
        for yi, r in zip(y, st.servers):
            ax.text(r.share, yi - 0.2, f" {r.slots} slots ({r.share:.1f}%)"
                    + ("" if r.available else " unavailable"),
                    va="center", fontsize=8)  # fmt: skip
        ax.set_xlabel("% of slots / % of weight")
        q = st.quantization
        ax.set_title(f"{st.service}  M={st.table_size}, weights {q.weights_ratio} "
                     f"-> turns {q.turns_ratio}", fontsize=10)  # fmt: skip
        ax.set_xlim(0, max([*shares, *weights, 1]) * 1.35)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.suptitle("maglevx table: red = unavailable (weight 0) but holding slots",
                 fontsize=9)  # fmt: skip
    _save(plt, fig, path)


def plot_diff(old: Director, new: Director, rep: DiffReport, path: str) -> None:
    """Per service: slots per real server OLD vs NEW, and sampled flows."""
    plt = _pyplot()
    common = [sd for sd in rep.services if sd.status not in ("added", "removed")]
    if not common:
        raise MaglevxError("no service in both configurations to plot", field="--plot")
    fig, axes = plt.subplots(len(common), 2, figsize=(13, 2.6 + 0.5 * max(
        len(sd.servers) for sd in common) * len(common)), squeeze=False,
        layout="constrained")  # fmt: skip
    tab20 = plt.get_cmap("tab20")
    for (left, right), sd in zip(axes, common):
        servers = [
            s
            for s in sd.servers
            if s.slots_old or s.slots_new or s.flows_old or s.flows_new
        ]
        colors = {s.endpoint: tab20(i % 20)[:3] for i, s in enumerate(servers)}
        colors["(no destination)"] = (0.85, 0.2, 0.2)
        # left: the slots each real server holds, OLD and NEW, stacked
        for row, attr in ((0, "slots_old"), (1, "slots_new")):
            x = 0
            for s in servers:
                v = getattr(s, attr)
                if v:
                    left.barh(
                        row,
                        v,
                        left=x,
                        color=colors[s.endpoint],
                        edgecolor="white",
                        label=s.endpoint if row else None,
                    )
                    x += v
        if sd.slots_compared:
            left.barh(2, sd.slots_moved, color="black")
            left.text(
                sd.slots_moved,
                2,
                f"  {sd.slots_moved} slots change hands ({sd.slots_moved_pct:.1f}%)",
                va="center",
                fontsize=8,
            )
            left.set_xlim(0, old.table_size)
        left.set_yticks([0, 1, 2], ["OLD", "NEW", "moved"])
        left.invert_yaxis()
        left.set_xlabel("slots")
        left.set_title(f"{sd.service}: slots per real server", fontsize=10)
        # right: sampled flows per real server, OLD vs NEW
        _bar_pairs(
            right,
            [s.endpoint for s in servers],
            [s.flows_old for s in servers],
            [s.flows_new for s in servers],
            {"color": "tab:gray", "label": "OLD"},
            {"color": [colors[s.endpoint] for s in servers], "label": "NEW (colour)"},
        )
        right.set_xlabel("sampled flows")
        right.set_title(
            f"{sd.flows_moved_pct:.1f}% of {sd.flows} sampled flows move", fontsize=10
        )
        right.legend(fontsize=8, loc="lower right")
        left.legend(
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(0, -0.25),
            ncol=4,
            frameon=False,
        )
    fig.suptitle(f"maglevx diff\nOLD {rep.old}\nNEW {rep.new}", fontsize=9)
    _save(plt, fig, path)


def plot_consistency(
    directors: list[tuple[str, Director]], rep: ConsistencyReport, path: str
) -> None:
    """Per director and service: % of slots and flows that disagree."""
    plt = _pyplot()
    labels = [f"{r.director}\n{r.service}" for r in rep.results]
    if not labels:
        raise MaglevxError("nothing to compare", field="--plot")
    fig, ax = plt.subplots(figsize=(11, 0.7 * len(labels) + 1.5), layout="constrained")
    y = _bar_pairs(
        ax,
        labels,
        [r.slots_differ_pct for r in rep.results],
        [r.flows_differ_pct for r in rep.results],
        {"label": "slots that differ", "color": "tab:orange"},
        {"label": "sampled flows that differ", "color": "tab:purple"},
    )
    for yi, r in zip(y, rep.results):
        ax.text(max(r.slots_differ_pct, r.flows_differ_pct), yi,
                f"  {r.flows_differ_pct:.2f}% of flows: "
                + ("; ".join(r.reasons) or "identical"), va="center",
                fontsize=8)  # fmt: skip
    ax.set_xlim(0, 100 * 1.6)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.set_xlabel(f"% disagreeing with the reference {rep.reference}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("maglevx consistency", fontsize=10)
    _save(plt, fig, path)
