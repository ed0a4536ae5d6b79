"""maglevx on a live director: the :class:`~maglevx.model.Director` the kernel has.

:func:`read_live` reads the services over netlink (:mod:`maglevx.netlink`;
``ipvsadm -Ln --nosort`` as the fallback), the parameters offline use has to be
told (:mod:`maglevx.kernelinfo`) and builds the model through its API, real
servers added tail first so that the list order is the kernel's.

What the kernel exports nowhere is named in :attr:`LiveDirector.warnings` with
the default taken:

- ``last_weight`` (upstream ``ip_vs_mh`` builds tables from it): a real server
  shown with weight 0 is taken as added with weight 0 (no slots). If it was
  drained from a non-zero weight it still holds its slots in the kernel: the
  change journal of ``maglevx watch`` (a history) knows it.
- whether a real server with thresholds is overloaded: taken as not.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maglevx import kernelinfo, netlink
from maglevx.captures import CapturedFlow, parse_ip_vs_conn
from maglevx.errors import MaglevxError
from maglevx.model import Director, DirectorParams, VirtualService

PROC_CONN = "/proc/net/ip_vs_conn"
SOURCES = ("auto", "netlink", "ipvsadm")
_MODEL_FORWARD = {
    "masq": "masq",
    "local": "masq",
    "route": "route",
    "tunnel": "tunnel",
    "bypass": "route",
}


@dataclass
class LiveDirector:
    """A live director as read: the model, the records and what is uncertain."""

    director: Director
    services: list[netlink.LiveService]
    facts: kernelinfo.KernelFacts
    source: str  # "netlink" or "ipvsadm -Ln --nosort"
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """What an exporter serves for ``maglevx consistency URL``."""
        return {
            "version": 1,
            "facts": self.facts.to_json(),
            "params": {
                "variant": self.director.variant,
                "word_size": self.director.word_size,
                "table_size": self.director.table_size,
                "byte_order": self.director.byte_order,
                "backport_hash_port": self.director.backport_hash_port,
                "expire_quiescent_template": self.director.expire_quiescent_template,
            },
            "source": self.source,
            "services": netlink.services_to_json(self.services),
            "warnings": self.warnings,
        }


def read_services(source: str = "auto") -> tuple[list[netlink.LiveService], str]:
    """The live records and where they came from.

    ``auto`` uses netlink and falls back to ipvsadm only when netlink itself
    is unusable (not when the kernel has no IPVS or the caller is not root:
    ipvsadm would fail the same way, less clearly).
    """
    if source not in SOURCES:
        raise MaglevxError(f"live source {source!r} is not one of {', '.join(SOURCES)}")
    if source in ("auto", "netlink"):
        try:
            return netlink.read_services(), "netlink"
        except netlink.NetlinkError as exc:
            if source == "netlink" or exc.errno in (0, 1, 2, 13):
                raise  # EPERM, ENOENT, EACCES: ipvsadm cannot do better
    return netlink.read_services_ipvsadm(), "ipvsadm -Ln --nosort"


def director_params(facts: kernelinfo.KernelFacts, **overrides: Any) -> DirectorParams:
    """The detected parameters, with any given explicitly taking precedence."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return DirectorParams(
        variant=given.get("variant", facts.variant),
        word_size=given.get("word_size", facts.word_size),
        table_size=given.get("table_size", facts.table_size),
        byte_order=facts.byte_order,
        backport_hash_port=given.get("backport_hash_port", facts.backport_hash_port),
        expire_quiescent_template=facts.expire_quiescent_template,
    )


def build_director(
    services: Iterable[netlink.LiveService], params: DirectorParams
) -> tuple[Director, list[str]]:
    """The model of *services* through the model's API, and what is uncertain."""
    d = Director.from_params(params)
    warnings: list[str] = []
    for s in services:
        netmask = None
        if s.persistent is not None and s.netmask != (
            128 if s.family == 6 else 0xFFFFFFFF
        ):
            netmask = s.netmask_text
        try:
            svc = d.add_service(
                s.protocol,
                s.address,
                s.port,
                fwmark=s.fwmark,
                family=s.family,
                scheduler=s.scheduler,
                flags=s.flags & ~netlink.SVC_F_PERSISTENT,
                persistent=s.persistent,
                netmask=netmask,
            )
        except MaglevxError as exc:
            warnings.append(f"{s.name}: not modelled: {exc.message}")
            continue
        for rs in reversed(s.real_servers):  # tail first: each add goes to the head
            svc.add_server(
                rs.address,
                rs.port,
                weight=rs.weight,
                forward=_MODEL_FORWARD.get(rs.forward, "route"),
                u_threshold=rs.u_threshold,
                l_threshold=rs.l_threshold,
            )
            if s.scheduler != "mh":
                continue
            if rs.weight == 0 and params.variant == "upstream":
                warnings.append(
                    f"{s.name}: last_weight of {rs.endpoint} (weight 0) is unknown, "
                    "taken as 0 (no slots); drained from a non-zero weight it "
                    "still holds its slots: use the journal of maglevx watch"
                )
            if rs.u_threshold:
                warnings.append(
                    f"{s.name}: whether {rs.endpoint} is overloaded (thresholds "
                    f"{rs.u_threshold}/{rs.l_threshold}) is unknown, taken as not"
                )
    return d, warnings


def read_live(
    source: str = "auto", *, root: str = "/", **overrides: Any
) -> LiveDirector:
    """Read this machine's director (see the module doc).

    *overrides*: any of ``variant``, ``word_size``, ``table_size``,
    ``backport_hash_port``, given explicitly.
    """
    facts = kernelinfo.detect(root)
    services, where = read_services(source)
    director, warnings = build_director(services, director_params(facts, **overrides))
    return LiveDirector(director, services, facts, where, facts.warnings + warnings)


def from_state(state: dict[str, Any], *, source: str = "<state>") -> LiveDirector:
    """A :class:`LiveDirector` from an exporter's ``/state.json``."""
    try:
        if state.get("version") != 1:
            raise MaglevxError(f"state version {state.get('version')!r} is not 1")
        facts = kernelinfo.KernelFacts(**state["facts"])
        services = netlink.services_from_json(state["services"])
        params = DirectorParams(**state["params"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, MaglevxError):
            raise exc.located(source) from None
        raise MaglevxError(f"not a maglevx watch state: {exc}", source=source) from None
    director, warnings = build_director(services, params)
    return LiveDirector(
        director,
        services,
        facts,
        state.get("source", source),
        list(state.get("warnings", warnings)),
    )


def mh_services(live: LiveDirector, service: str | None = None) -> list[VirtualService]:
    """The mh services, or the one named; one clear error when there are none."""
    svcs = list(live.director.services)
    if service is not None:
        named = [s for s in svcs if s.name == service]
        if not named:
            raise MaglevxError(
                f"no service {service!r} on this director", field="--service"
            )
        if named[0].scheduler != "mh":
            raise MaglevxError(
                f"service {service} uses scheduler {named[0].scheduler}, not mh",
                field="--service",
            )
        return named
    mh = [s for s in svcs if s.scheduler == "mh"]
    if not mh:
        why = "" if live.facts.mh_module else " (ip_vs_mh is not loaded)"
        raise MaglevxError(f"no mh service on this director{why}")
    return mh


def read_connections(
    path: str = PROC_CONN, limit: int | None = None
) -> list[CapturedFlow]:
    """Entries of ``/proc/net/ip_vs_conn`` (at most *limit*, from the top)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = itertools.islice(f, None if limit is None else limit + 1)
            return list(parse_ip_vs_conn(list(lines), source=path))
    except FileNotFoundError:
        raise MaglevxError(
            f"{path} does not exist: this kernel has no IPVS (modprobe ip_vs)"
        ) from None
    except PermissionError:
        raise MaglevxError(f"cannot read {path}: run as root") from None


def fingerprint(svc: VirtualService) -> str:
    """A short hash of the table exactly as the kernel builds it.

    Slot by slot, the real server (``addr:port``) it points at, with M: equal
    on two directors exactly when every slot goes to the same real server,
    whatever the order the servers are listed in.
    """
    snap = svc.snapshot
    names = [rs.endpoint for rs in snap.servers]
    order = sorted(range(len(names)), key=names.__getitem__)
    remap = np.full(0x10000, 0xFFFF, np.uint16)
    remap[np.array(order, np.int64)] = np.arange(len(order), dtype=np.uint16)
    table = remap[snap.table.astype(np.int64)]
    h = hashlib.blake2b(digest_size=8)
    h.update(f"M={len(table)}\n".encode())
    h.update("".join(names[i] + "\n" for i in order).encode())
    h.update(table.astype("<u2").tobytes())
    return h.hexdigest()


def is_root() -> bool:
    """Whether this process may read IPVS (euid 0)."""
    return os.geteuid() == 0
