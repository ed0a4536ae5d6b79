"""``maglevx consistency``: whether several directors schedule alike.

Active/active directors without connection sync must build identical
tables: same real servers, same list order (history), same weights, same
word size, same M. Every director is compared with the first (the
reference), service by service: the fraction of slots (same M only) and of
a flow sample on which they disagree, and why, with the fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from maglevx.model import Director, VirtualService
from maglevx.tools.sample import FlowSample, as_names, decide, slot_names, synthetic
from maglevx.tools.text import flags_text, percent, render_table


@dataclass
class Disagreement:
    """One director's disagreement with the reference on one service."""

    director: str
    service: str
    slots_compared: bool
    slots_differ: int = 0
    slots_differ_pct: float = 0.0
    flows: int = 0
    flows_differ: int = 0
    flows_differ_pct: float = 0.0
    reasons: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the inputs cannot tell


@dataclass
class ConsistencyReport:
    """The result of :func:`compare_directors`."""

    reference: str
    directors: list[str]
    sample: str
    results: list[Disagreement]

    @property
    def consistent(self) -> bool:
        """Whether every director agrees with the reference everywhere."""
        return not any(r.reasons or r.flows_differ or r.slots_differ
                       for r in self.results)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {**asdict(self), "consistent": self.consistent}


def _why(ref: VirtualService, other: VirtualService) -> tuple[list[str], list[str]]:
    reasons, fixes = [], []
    rd, od = ref.director, other.director
    if rd.table_size != od.table_size:
        reasons.append(f"table size M {rd.table_size} vs {od.table_size}")
        fixes.append("build both kernels with the same CONFIG_IP_VS_MH_TAB_INDEX")
    if rd.word_size != od.word_size:
        reasons.append(f"word size {rd.word_size} vs {od.word_size} bits (hsiphash)")
        fixes.append("run directors of one word size (32- and 64-bit hash apart)")
    if rd.byte_order != od.byte_order:
        reasons.append(
            f"byte order {rd.byte_order} vs {od.byte_order}-endian (hashed bytes)"
        )
        fixes.append("run directors of one byte order (s390x hashes apart from x86)")
    if rd.hash_key != od.hash_key:
        reasons.append("different module hash keys")
        fixes.append("load ip_vs_mh with the same hash_key on every director")
    if rd.variant != od.variant:
        reasons.append(f"variant {rd.variant} vs {od.variant}")
        fixes.append("load the same ip_vs_mh module everywhere")
    if ref.flags != other.flags:
        reasons.append(f"flags {flags_text(ref.flags)} vs {flags_text(other.flags)}")
        fixes.append(f"ipvsadm -E {ref.name} -s mh with the same -b flags")
    a = {rs.endpoint: rs for rs in ref.table_servers}
    b = {rs.endpoint: rs for rs in other.table_servers}
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        if only_a:
            reasons.append(f"real servers only in the reference: {', '.join(only_a)}")
        if only_b:
            reasons.append(f"real servers only here: {', '.join(only_b)}")
        fixes.append("add/delete real servers so both have the same set")
    else:
        wa, wb = dict(zip(a, ref.table_weights)), dict(zip(b, other.table_weights))
        diff_w = [f"{k} {wa[k]} vs {wb[k]}" for k in wa if wa[k] != wb[k]]
        if diff_w:
            reasons.append("table weights differ: " + "; ".join(diff_w))
            fixes.append("set the same weights (upstream: last_weight counts)")
        avail = [k for k in a if a[k].available != b[k].available]
        if avail:
            reasons.append("availability (weight 0) differs: " + ", ".join(avail))
            fixes.append("drain the same real servers on every director")
        if list(a) != list(b):  # the same servers in another list order
            reasons.append("list order differs (a different add/delete history)")
            fixes.append(
                "delete and re-add the real servers in one order on every "
                "director (newest goes to the list head), or replay one history"
            )
    return reasons, fixes


def compare_services(
    ref: VirtualService, other: VirtualService, sample: FlowSample, label: str
) -> Disagreement:
    """How *other* disagrees with *ref* on slots and on *sample*."""
    names: dict[str | None, int] = {}
    a = as_names(ref, decide(ref, sample), names)
    b = as_names(other, decide(other, sample), names)
    dis = Disagreement(label, ref.name, slots_compared=False, flows=len(sample))
    dis.flows_differ = int((a != b).sum())
    dis.flows_differ_pct = percent(dis.flows_differ, len(sample))
    m = ref.director.table_size
    if m == other.director.table_size:
        dis.slots_compared = True
        sa, sb = slot_names(ref, names), slot_names(other, names)
        dis.slots_differ = int((sa != sb).sum())
        dis.slots_differ_pct = percent(dis.slots_differ, m)
    dis.reasons, dis.fixes = _why(ref, other)
    return dis


def compare_directors(
    directors: list[tuple[str, Director]],
    *,
    samples: dict[str, FlowSample] | None = None,
    sample_size: int = 100_000,
    seed: int = 1,
) -> ConsistencyReport:
    """Compare each ``(label, director)`` with the first, service by service."""
    (ref_label, ref), *others = directors
    samples = samples or {}
    results = []
    ref_mh = {s.key: s for s in ref.services if s.scheduler == "mh"}
    for label, d in others:
        mh = {s.key: s for s in d.services if s.scheduler == "mh"}
        for key, rsvc in ref_mh.items():
            if key not in mh:
                results.append(
                    Disagreement(label, rsvc.name, False,
                                 reasons=["service missing"],
                                 fixes=[f"create {rsvc.name} with mh"])
                )  # fmt: skip
                continue
            sample = samples.get(rsvc.name) or synthetic(rsvc, sample_size, seed)
            results.append(compare_services(rsvc, mh[key], sample, label))
        for key, svc in mh.items():
            if key not in ref_mh:
                results.append(
                    Disagreement(label, svc.name, False,
                                 reasons=["service not on the reference"],
                                 fixes=[f"delete {svc.name} or create it everywhere"])
                )  # fmt: skip
    how = f"{sample_size} synthetic clients per service (seed {seed})"
    if samples:
        how = "flows from a file, else " + how
    return ConsistencyReport(ref_label, [x for x, _ in others], how, results)


def render(rep: ConsistencyReport) -> str:
    """The human-readable form of :func:`compare_directors`."""
    rows = [
        [r.director, r.service,
         f"{r.slots_differ_pct:.2f}%" if r.slots_compared else "n/a",
         f"{r.flows_differ_pct:.2f}%" if r.flows else "n/a",
         "; ".join(r.reasons) or "identical"]
        for r in rep.results
    ]  # fmt: skip
    head = ["director", "service", "slots differ", "flows differ", "why"]
    out = [
        f"reference: {rep.reference}\nsample: {rep.sample}",
        render_table(head, rows),
    ]
    notes = [f"{r.director}, {r.service}: {n}" for r in rep.results for n in r.notes]
    fixes = sorted({f for r in rep.results for f in r.fixes})
    for title, items in (("note:", notes), ("fix:", fixes)):
        if items:
            out.append("\n  - ".join([title, *items]))
    out.append("consistent" if rep.consistent else "NOT consistent")
    return "\n".join(out)
