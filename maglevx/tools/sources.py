"""Reading configurations: files, their kind, and per-input parameters.

Tools that compare several directors (``diff``, ``consistency``) take each
configuration as a *spec*, ``PATH[:key=value,...]`` (``docs/tools.md``), e.g.
``lb2-listing.txt:kind=snapshot,word-size=32``. Keys: ``kind`` (``history`` or
``snapshot``; by default the content decides), ``variant``, ``word-size``,
``table-size``, ``hash-port`` (backport only, 0 or 1); the command's
``--variant/--word-size/--table-size`` give the others.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import IO, Any

from maglevx.addresses import format_endpoint, parse_number
from maglevx.errors import MaglevxError
from maglevx.ipvsadm import parse_endpoint, split_lines
from maglevx.model import Director, DirectorParams

KINDS = ("history", "snapshot")
_OPTS_RE = re.compile(r"^[a-z_-]+=[^,=]*(,[a-z_-]+=[^,=]*)*$")


@dataclass(frozen=True)
class ListingOptions:
    """What a listing cannot show, as the user gives it.

    *last_weights*: (``ADDR:PORT``, weight) pairs, the last_weight of
    weight-0 real servers (``--last-weight``); *drained_by_edit*: every
    weight-0 real server was drained by an edit (``--assume-drained-by-edit``).
    """

    last_weights: tuple[tuple[str, int], ...] = ()
    drained_by_edit: bool = False

    def __bool__(self) -> bool:
        return bool(self.last_weights) or self.drained_by_edit


@dataclass(frozen=True)
class ConfigSpec:
    """One configuration to load: a file, its kind and director parameters."""

    path: str
    kind: str | None = None
    params: DirectorParams = DirectorParams()
    listing: ListingOptions = ListingOptions()

    @property
    def label(self) -> str:
        """The path, as reports name the configuration."""
        return self.path


def parse_spec(
    text: str,
    defaults: DirectorParams | None = None,
    listing: ListingOptions = ListingOptions(),
) -> ConfigSpec:
    """Parse ``PATH[:key=value,...]`` (see the module docstring)."""
    params = defaults or DirectorParams()
    head, sep, tail = text.rpartition(":")
    path, opts = (head, tail) if sep and _OPTS_RE.match(tail) else (text, "")
    kind = None
    changes: dict[str, Any] = {}
    for item in filter(None, opts.split(",")):
        key, value = item.split("=", 1)
        key = key.replace("_", "-")
        if key == "kind":
            if value not in KINDS:
                raise MaglevxError(
                    f"kind {value!r} is not history or snapshot",
                    source=text,
                    field="kind",
                )
            kind = value
        elif key in ("word-size", "table-size"):
            if not value.isdigit():
                raise MaglevxError(f"{value!r} is not a number", source=text, field=key)
            changes[key.replace("-", "_")] = int(value)
        elif key == "hash-port":
            if value not in ("0", "1"):
                raise MaglevxError("hash-port is 0 or 1", source=text, field=key)
            changes["backport_hash_port"] = value == "1"
        elif key in ("variant", "byte-order", "hash-key"):
            changes[key.replace("-", "_")] = value  # DirectorParams checks it
        else:
            raise MaglevxError(
                f"unknown key {key!r} (known: kind, variant, word-size, "
                "table-size, hash-port, byte-order, hash-key)",
                source=text,
                field=key,
            )
    try:
        params = replace(params, **changes)
    except MaglevxError as exc:
        raise exc.located(text) from None
    if not path:
        raise MaglevxError("empty file name", source=text)
    return ConfigSpec(path, kind, params, listing)


def open_input(path: str, mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """open() for reading; MaglevxError naming the file when it cannot be.

    open() raises OSError, and ValueError for a name holding a NUL byte
    (no file can have one).
    """
    try:
        return open(path, mode, **kwargs)  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise MaglevxError(f"cannot read: {exc.strerror}", source=path) from None
    except ValueError:
        raise MaglevxError(
            "cannot read: the file name holds a NUL byte", source=path
        ) from None


def read_text(path: str) -> str:
    """The file's text; MaglevxError naming the file when it cannot be read."""
    try:
        with open_input(path, "r", encoding="utf-8") as f:
            return f.read()
    except OSError as exc:  # reading, after a successful open()
        raise MaglevxError(f"cannot read: {exc.strerror}", source=path) from None
    except UnicodeDecodeError:
        raise MaglevxError("not UTF-8 text", source=path) from None


def detect_kind(text: str) -> str:
    """``snapshot`` for ``ipvsadm -L`` output, else ``history``.

    The first line that tells decides: a command (``-A ...``, ``ipvsadm -a
    ...``) is a history; a listing's header, service or real server line
    (also quoted, indented or after other text) is a listing.
    """
    for raw in list(split_lines(text))[:1000]:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^(\S*ipvsadm\s+)?-[AEDaedCZ]\b", line):
            return "history"
        if re.search(r"Virtual Server|RemoteAddress|LocalAddress|(^|\s)->\s", line) or (
            re.match(r"^(TCP|UDP|SCTP|FWM)\s", line)
        ):
            return "snapshot"
    return "history"


def load_text(
    text: str,
    *,
    source: str,
    kind: str | None,
    params: DirectorParams,
    listing: ListingOptions = ListingOptions(),
) -> Director:
    """A director from configuration text (history or snapshot).

    For a snapshot, the last_weight of weight-0 real servers is taken from
    *listing*, else as 0.
    """
    kw = asdict(params)
    if (kind or detect_kind(text)) == "snapshot":
        d = Director.from_snapshot(text, source=source, **kw)
        return assume_last_weights(d, listing, source=source)
    if listing:
        raise MaglevxError(
            "--last-weight and --assume-drained-by-edit are for listings: a "
            "history knows every last_weight",
            source=source,
        )
    return Director.from_history(text, source=source, **kw)


# -- what a listing cannot show: last_weight of weight-0 real servers -------


@dataclass
class Drained:
    """A weight-0 real server of an upstream mh service read from a listing.

    The in-tree kernel builds tables from ``last_weight``, which a listing
    does not show: 0 when the server was added with weight 0 (it holds no
    slots), its previous weight when an edit drained it (keepalived's
    inhibit_on_failure, kube-proxy: it keeps its slots, whose new flows get
    no destination without mh-fallback).
    """

    service: str
    endpoint: str
    last_weight: int | None  # given or assumed; None: unknown, read as 0
    slots_if_drained: int = 0  # slots it holds if an edit drained it
    share_if_drained: float = 0.0  # percent of the slots
    fallback: bool = False

    def text(self) -> str:
        """The warning an operator must not miss."""
        fate = (
            "they fall back to other servers (mh-fallback)"
            if self.fallback
            else "their new flows get no destination"
        )
        if self.last_weight is not None:
            return (
                f"{self.endpoint} has weight 0 in a listing: last_weight taken as "
                f"{self.last_weight} (drained by an edit), so it keeps "
                f"{self.slots_if_drained} slots ({self.share_if_drained:.1f}%) and "
                f"{fate}"
            )
        return (
            f"{self.endpoint} has weight 0, and a listing cannot show its "
            "last_weight: as read (added with weight 0) it holds no slots; if an "
            "edit drained it (keepalived inhibit_on_failure, kube-proxy) it keeps "
            f"{self.slots_if_drained} slots ({self.share_if_drained:.1f}%) and "
            f"{fate}. Say which: --last-weight {self.endpoint}=W, or "
            "--assume-drained-by-edit"
        )


@dataclass
class ListingAssumptions:
    """The weight-0 real servers of a listing and what was assumed for them."""

    drained: list[Drained] = field(default_factory=list)

    @property
    def unknown(self) -> list[Drained]:
        """Those whose last_weight nobody gave."""
        return [x for x in self.drained if x.last_weight is None]


def _weight_zero(director: Director) -> list[tuple[Any, Any]]:
    """(service, real server) pairs whose table weight a listing cannot know."""
    if director.variant != "upstream":
        return []  # the backport builds from the live weight
    return [
        (svc, rs)
        for svc in director.services
        if svc.scheduler == "mh"
        for rs in svc.real_servers
        if rs.weight == 0
    ]


def _usual_weight(svc: Any) -> int:
    """The most common non-zero weight of *svc* (1 when there is none)."""
    weights = Counter(rs.weight for rs in svc.real_servers if rs.weight > 0)
    return max(weights, key=lambda w: (weights[w], w)) if weights else 1


def _set_last_weight(svc: Any, rs: Any, weight: int) -> None:
    """Give a weight-0 real server *weight* as last_weight, as an edit would.

    The kernel keeps last_weight on an edit to 0: editing to *weight* and
    back to 0 leaves the server where it is with last_weight = *weight*.
    """
    kw = dict(
        forward=rs.forward, u_threshold=rs.u_threshold, l_threshold=rs.l_threshold
    )
    svc.edit_server(rs.address, rs.port, weight=weight, **kw)
    svc.edit_server(rs.address, rs.port, weight=0, **kw)


def assume_last_weights(
    director: Director, listing: ListingOptions, *, source: str = "<snapshot>"
) -> Director:
    """Apply ``--last-weight`` / ``--assume-drained-by-edit`` to a listing."""
    given = dict(listing.last_weights)
    pairs = _weight_zero(director)
    endpoints = {rs.endpoint for _, rs in pairs}
    for ep in given:
        if ep not in endpoints:
            known = ", ".join(sorted(endpoints)) or "none"
            raise MaglevxError(
                f"{ep} is no weight-0 real server of an upstream mh service "
                f"(those of the listing: {known})",
                source=source,
                field="--last-weight",
            )
    for svc, rs in pairs:
        w = given.get(rs.endpoint)
        if w is None and listing.drained_by_edit:
            w = _usual_weight(svc)
        if w is not None:
            _set_last_weight(svc, rs, w)
    return director


def listing_assumptions(
    director: Director, listing: ListingOptions
) -> ListingAssumptions:
    """The weight-0 real servers of a listing's director, and both outcomes."""
    out = ListingAssumptions()
    given = dict(listing.last_weights)
    pairs = _weight_zero(director)
    if not pairs:
        return out
    drained = drained_alternative(director)
    for svc, rs in pairs:
        alt = drained.find_service(svc.key)
        assert alt is not None
        i = [r.endpoint for r in alt.table_servers].index(rs.endpoint)
        slots = int((alt.table == i).sum())
        assumed = given.get(rs.endpoint)
        if assumed is None and listing.drained_by_edit:
            assumed = _usual_weight(svc)
        out.drained.append(
            Drained(
                service=svc.name,
                endpoint=rs.endpoint,
                last_weight=assumed,
                slots_if_drained=slots,
                share_if_drained=100.0 * slots / director.table_size,
                fallback=svc.fallback,
            )
        )
    return out


def drained_alternative(director: Director) -> Director:
    """A copy in which every weight-0 real server was drained by an edit."""
    d = director.copy()
    for svc, rs in _weight_zero(d):
        if rs.last_weight == 0:
            _set_last_weight(svc, rs, _usual_weight(svc))
    return d


def maybe_sorted(director: Director) -> list[str]:
    """The mh services of a listing whose real servers are in sorted order.

    Plain ``ipvsadm -Ln`` sorts real servers by address and port
    (``ipvs_cmp_dests()``); only ``--nosort`` shows the kernel's list order,
    which the table is built in. Servers in sorted order may be either.
    """
    return [svc.name for svc, keys in _server_orders(director) if keys == sorted(keys)]


def _server_orders(director: Director) -> Iterator[tuple[Any, list[tuple[int, int]]]]:
    """Each mh service of two or more real servers, their (address, port) in order."""
    for svc in director.services:
        if svc.scheduler == "mh" and len(svc.real_servers) >= 2:
            yield svc, [(int(rs.address), rs.port) for rs in svc.real_servers]


def saved_rule_file(text: str, director: Director) -> dict[str, str]:
    """Per mh service, a note when a history looks like ``ipvsadm -S`` output.

    ``ipvsadm -S`` writes only ``-A``/``-a`` lines, real servers sorted by
    address, and a drained server as added with ``-w 0``: restoring it builds
    a table the original director may not have (its list order and the
    last_weight of weight-0 servers are lost).
    """
    commands = [
        line.split()[1] if line.startswith("ipvsadm ") else line.split()[0]
        for raw in split_lines(text)
        if (line := raw.strip()) and not line.startswith("#")
    ]
    if not commands or any(c not in ("-A", "-a") for c in commands):
        return {}
    out = {}
    for svc, keys in _server_orders(director):
        if keys != sorted(keys, reverse=True):  # -a puts each at the head
            continue
        note = (
            f"{svc.name}: this history looks like `ipvsadm -S` output, which "
            "sorts real servers: it builds the table of a director restored from "
            "it; the original director's list order may differ (list it with "
            "`ipvsadm -Ln --nosort`)"
        )
        zero = [rs.endpoint for rs in svc.real_servers if rs.weight == 0]
        if zero:
            note += (
                f"; {', '.join(zero)} added with weight 0, as -S writes a drained "
                "server: if an edit drained it, the original keeps its slots"
            )
        out[svc.name] = note
    return out


SORTED_NOTE = (
    "its real servers are in address order, as plain `ipvsadm -Ln` sorts them: "
    "the kernel's list order, which the table depends on, may differ; capture "
    "the real order with `ipvsadm -Ln --nosort`"
)


def parse_last_weight(text: str) -> tuple[str, int]:
    """``ADDR:PORT=W`` (``[v6]:PORT=W``) as (endpoint, weight)."""
    ep, sep, w = text.rpartition("=")
    if not sep or not w.isascii() or not w.isdigit() or int(w) > 65535:
        raise MaglevxError(
            f"{text!r} is not ADDR:PORT=WEIGHT (weight 0..65535)", field="--last-weight"
        )
    address, port = parse_endpoint(ep, "--last-weight")
    if port is None:
        raise MaglevxError(
            f"{ep!r} has no port (ADDR:PORT=WEIGHT)", field="--last-weight"
        )
    return format_endpoint(address, port), int(w)


def resolve_service(text: str, director: Director, *, field: str = "--service") -> str:
    """The name of *director*'s mh service that *text* names.

    Accepts what ipvsadm prints (``TCP  10.0.0.1:80``, ``FWM  3``,
    ``FWM 3 IPv6``) in any case and spacing, and ``tcp:10.0.0.1:80``. The
    error lists the mh services there are.
    """
    words = text.replace("\t", " ").strip().split()
    if len(words) == 1 and words[0].count(":") >= 2 and "[" not in words[0][:4]:
        head, _, rest = words[0].partition(":")  # tcp:10.0.0.1:80
        words = [head, rest]
    names = [s.name for s in director.services if s.scheduler == "mh"]
    want = None
    try:
        if len(words) >= 2 and words[0].upper() in ("TCP", "UDP", "SCTP"):
            address, port = parse_endpoint(words[1], field)
            if len(words) == 2:
                want = f"{words[0].upper()} {format_endpoint(address, port or 0)}"
        elif len(words) >= 2 and words[0].upper() == "FWM":
            want = f"FWM {parse_number(words[1], 0, 0xFFFFFFFF, 'fwmark', field)}"
            if words[2:] and words[2].upper() == "IPV6":
                want += " IPv6"
    except MaglevxError:
        want = None
    if want is not None and want in names:
        return want
    listed = ", ".join(repr(n) for n in names) or "none"
    raise MaglevxError(f"no mh service {text!r} (mh services: {listed})", field=field)


def load_spec(spec: ConfigSpec) -> Director:
    """The director *spec* describes."""
    return load_text(
        read_text(spec.path),
        source=spec.path,
        kind=spec.kind,
        params=spec.params,
        listing=spec.listing,
    )
