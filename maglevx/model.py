"""A model of an IPVS director: the kernel's rules, in one place.

The model keeps exactly the state the kernel's decision depends on and
applies changes as ``ip_vs_ctl.c`` does:

- each virtual service's real servers in the kernel's list order: a new or
  re-added real server goes to the HEAD of the list (``list_add_rcu()``);
  tables are built head first;
- each real server's ``weight`` and ``last_weight``: ``last_weight`` is set
  on add (even to 0), and on edit only to a non-zero weight;
- tables are rebuilt on every add, edit and delete of a real server while
  the service uses ``mh``, and when a service switches to ``mh``; a rebuild
  with more real servers than slots fails and the old table stays (the old
  table may then still point at a deleted real server, as the kernel's does);
- scheduler flags (``mh-fallback``, ``mh-port``) are read per packet, so
  ``-E`` flag changes take effect without a table rebuild.

The variant decides which weight a table is built from: ``upstream``
(in-tree Linux >= 4.18) uses ``last_weight``; ``backport`` (the module of
``kmod/``) uses the live ``weight`` and always hashes the client port.

Every change publishes a new immutable :class:`TableSnapshot` per service
(table, availability and real servers together), swapped atomically: a
lookup running in another thread sees the table before or after a change,
never a mix. Edits themselves are serialized by a per-director lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from maglevx import decision
from maglevx.addresses import (
    ADDRESS_TYPES,
    IPAddress,
    fold,
    fold_int,
    format_endpoint,
    inet_aton,
    parse_address,
    parse_five_tuple,
    parse_int,
    parse_port,
    parse_protocol,
)
from maglevx.backend import core
from maglevx.errors import MaglevxError
from maglevx.ipvs import (
    BYTE_ORDERS,
    FLAG_FALLBACK,
    FLAG_PORT,
    FORWARD_METHODS,
    MAX_THRESHOLD,
    MAX_TIMEOUT,
    MAX_WEIGHT,
    PROTOCOLS,
    SCHEDULERS,
    SVC_F_PERSISTENT,
    VARIANTS,
    WORD_SIZES,
)
from maglevx.ipvsadm import (
    Command,
    iter_history,
    parse_command,
    service_name,
    tokenize,
)
from maglevx.listing import parse_listing
from maglevx.templates import Templates

PRIMES: tuple[int, ...] = tuple(core.PRIMES)
DEFAULT_TABLE_SIZE = 4093
KERNEL_REFERENCE: str = core.KERNEL_REFERENCE

fold_address = fold  # the name of earlier releases

ServiceKey = tuple[str, Union[int, IPAddress, None], int]


def check_params(
    variant: str,
    word_size: int,
    table_size: int,
    byte_order: str = "little",
    hash_key: bytes | None = None,
) -> None:
    """Raise MaglevxError unless the director parameters are valid."""
    if variant not in VARIANTS:
        raise MaglevxError(
            f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}",
            field="variant",
        )
    if type(word_size) is not int or word_size not in WORD_SIZES:
        raise MaglevxError(
            f"word size {word_size!r} is not 64 or 32", field="word_size"
        )
    if type(table_size) is not int or table_size not in PRIMES:
        raise MaglevxError(
            f"table size {table_size!r} is not one of the kernel's primes "
            f"({', '.join(map(str, PRIMES))})",
            field="table_size",
        )
    if byte_order not in BYTE_ORDERS:
        raise MaglevxError(
            f"byte order {byte_order!r} is not little or big", field="byte_order"
        )
    if hash_key is not None:
        if not isinstance(hash_key, bytes) or len(hash_key) != 16:
            raise MaglevxError(
                "the hash key is 16 bytes (32 hex digits)", field="hash_key"
            )
        if variant != "backport":
            raise MaglevxError(
                "a secret hash key is our module's (--variant backport); the "
                "in-tree ip_vs_mh always uses the kernel's fixed keys",
                field="hash_key",
            )


def parse_hash_key(text: str) -> bytes:
    """The module's ``hash_key`` parameter (32 hex digits) as 16 bytes."""
    s = text.strip().lower().removeprefix("0x")
    if len(s) != 32 or any(c not in "0123456789abcdef" for c in s):
        raise MaglevxError(
            "the hash key is 32 hex digits, as the module's hash_key parameter",
            field="hash_key",
        )
    return bytes.fromhex(s)


# -- real servers -------------------------------------------------------------


@dataclass(frozen=True)
class RealServer:
    """A real server (``struct ip_vs_dest``) of one virtual service.

    Immutable: an edit replaces it. ``port`` is the port the kernel stores
    (for ``-g``/``-i`` real servers ipvsadm sends the service port).
    ``overloaded`` stands for IP_VS_DEST_F_OVERLOAD, which depends on live
    connection counts and thresholds; the model assumes False unless told.
    ``last_weight`` defaults to ``weight``.
    """

    address: IPAddress
    port: int
    weight: int = 1
    last_weight: int = -1
    forward: str = "route"
    u_threshold: int = 0
    l_threshold: int = 0
    overloaded: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "address", parse_address(self.address, "address"))
        set_(self, "port", parse_port(self.port, "port"))
        set_(self, "weight", parse_int(self.weight, 0, MAX_WEIGHT, "weight", "weight"))
        last = self.last_weight
        if isinstance(last, int) and last == -1:
            last = self.weight
        last = parse_int(last, 0, MAX_WEIGHT, "last_weight", "last_weight")
        set_(self, "last_weight", last)
        if self.forward not in FORWARD_METHODS:
            raise MaglevxError(
                f"forwarding method {self.forward!r} is not one of "
                f"{', '.join(FORWARD_METHODS)}",
                field="forward",
            )
        for name in ("u_threshold", "l_threshold"):
            value = getattr(self, name)
            set_(self, name, parse_int(value, 0, MAX_THRESHOLD, name, name))
        if self.l_threshold > self.u_threshold:
            raise MaglevxError(
                "lower threshold is higher than upper threshold", field="l_threshold"
            )
        set_(self, "overloaded", bool(self.overloaded))

    @property
    def available(self) -> bool:
        """``!is_unavailable(dest)``: weight > 0 and not overloaded."""
        return self.weight > 0 and not self.overloaded

    @property
    def endpoint(self) -> str:
        """``addr:port`` (IPv6 in brackets)."""
        return format_endpoint(self.address, self.port)

    def __str__(self) -> str:
        return self.endpoint


# -- tables -------------------------------------------------------------------


class _Build:
    """One table build: real servers (list order) and the weights used.

    Making one costs O(1); the weights and the table are computed on first
    use. A build whose servers and weights equal those of the last build
    that computed a table shares that table (an upstream drain to weight 0
    keeps the table and changes only availability).
    """

    __slots__ = ("params", "servers", "_weights", "_table", "_reuse")

    def __init__(
        self,
        params: DirectorParams,
        servers: tuple[RealServer, ...],
        previous: _Build | None = None,
    ) -> None:
        self.params = params
        self.servers = servers
        self._weights: tuple[int, ...] | None = None
        self._table: npt.NDArray[np.uint16] | None = None
        # the last build that computed a table (previous builds share params)
        self._reuse = previous
        if previous is not None and previous._table is None:
            self._reuse = previous._reuse

    @property
    def weights(self) -> tuple[int, ...]:
        """The table weight of each server: backport weight, upstream last_weight."""
        w = self._weights
        if w is None:
            attr = "weight" if self.params.variant == "backport" else "last_weight"
            w = self._weights = tuple(getattr(rs, attr) for rs in self.servers)
        return w

    @property
    def table(self) -> npt.NDArray[np.uint16]:
        """The table (read-only), computed once."""
        t = self._table
        if t is not None:
            return t
        r = self._reuse
        if (
            r is not None
            and r._table is not None
            and r.weights == self.weights
            and _endpoints(r.servers) == _endpoints(self.servers)
        ):
            t = r._table
        else:
            t = core.build_table(
                self.params.table_size,
                self.params.word_size,
                np.array([fold(rs.address) for rs in self.servers], np.uint32),
                np.array([rs.port for rs in self.servers], np.uint32),
                np.array(self.weights, np.uint32),
                **self.params.hashing,
            )
        self._table = t  # a racing build computes the same table
        self._reuse = None
        return t


def _endpoints(servers: tuple[RealServer, ...]) -> list[tuple[IPAddress, int]]:
    return [(rs.address, rs.port) for rs in servers]


class TableSnapshot:
    """One service's table as the kernel has it at one moment: immutable.

    ``servers[i]`` is the real server table entry ``i`` points at (as it is
    now: a server deleted while a rebuild failed is still there, as in the
    kernel); ``avail[i]`` whether it is available; ``table`` holds, per
    slot, an index into ``servers`` or 0xFFFF for an empty slot.
    """

    __slots__ = ("build", "servers", "avail", "fallback", "hashes_port", "_sched")

    def __init__(
        self,
        build: _Build,
        servers: tuple[RealServer, ...],
        fallback: bool,
        hashes_port: bool,
        available: Sequence[bool],
    ) -> None:
        self.build = build
        self.servers = servers
        avail = np.array(available, np.uint8)
        avail.flags.writeable = False
        self.avail = avail
        self.fallback = fallback
        self.hashes_port = hashes_port
        self._sched: Any = None

    @property
    def table(self) -> npt.NDArray[np.uint16]:
        """The table (read-only): per slot an index into ``servers``."""
        return self.build.table

    @property
    def weights(self) -> tuple[int, ...]:
        """The weights the table was built from, per entry of ``servers``."""
        return self.build.weights

    @property
    def table_size(self) -> int:
        """M."""
        return self.build.params.table_size

    @property
    def scheduler(self) -> Any:
        """The core's Scheduler over this table (built once)."""
        s = self._sched
        if s is None:
            p = self.build.params
            s = core.Scheduler(
                p.table_size,
                p.word_size,
                self.table,
                self.avail,
                self.fallback,
                **p.hashing,
            )
            self._sched = s
        return s

    def hashed_port(self, protocol: str, sport: int) -> int:
        """The port that enters the hash for a flow of *protocol*."""
        return sport if self.hashes_port and protocol in PROTOCOLS else 0

    def lookup(self, fold_value: int, port: int) -> RealServer | None:
        """The real server for a folded client address and hashed port."""
        idx = self.scheduler.lookup(fold_value, port)
        return None if idx == core.NONE else self.servers[idx]

    def trace(self, fold_value: int, port: int) -> list[tuple[int, int]]:
        """The (slot, entry) probes of a lookup, in order (see core)."""
        return list(self.scheduler.trace(fold_value, port))

    def quantize(self) -> tuple[int, int, list[int]]:
        """(gcd, rshift, turns per server) of the weights the table used."""
        g, shift, turns = core.quantize(self.table_size, self.weights)
        return int(g), int(shift), [int(t) for t in turns]

    def lookup_many(
        self,
        saddrs: Any,
        sports: Any = None,
        protocol: str = "tcp",
        *,
        family: int,
        threads: int = 1,
        out: Any = None,
    ) -> npt.NDArray[np.int32]:
        """Bulk lookup: per flow, an index into ``servers`` or -1.

        See :meth:`VirtualService.lookup_many` for the arguments.
        """
        if type(threads) is not int or threads < 1:
            raise MaglevxError(
                f"threads {threads!r} is not a positive integer", field="threads"
            )
        parse_protocol(protocol, "protocol")
        addrs = bulk_addresses(saddrs, family)
        n = addrs.shape[0]
        ports = None if sports is None else bulk_ports(sports, n)  # always checked
        if not self.hashes_port:
            ports = None
        elif ports is None:
            raise MaglevxError(
                "this service hashes client ports: give sports", field="sports"
            )
        result = _bulk_out(out, n)
        sched = self.scheduler
        run = sched.lookup_many if family == 4 else sched.lookup_many6
        parts = min(threads, n // _MIN_FLOWS_PER_THREAD)
        if parts < 2:
            run(addrs, ports, result)
            return result.view(np.int32)
        bounds = np.linspace(0, n, parts + 1).astype(np.intp)

        def part(i: int) -> None:
            lo, hi = bounds[i], bounds[i + 1]
            run(addrs[lo:hi], None if ports is None else ports[lo:hi], result[lo:hi])

        list(_pool(parts).map(part, range(parts)))
        return result.view(np.int32)


# Below this many flows per thread, starting the thread costs more than it saves.
_MIN_FLOWS_PER_THREAD = 65536
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool of at least *workers* threads for bulk lookups."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            old, _POOL = _POOL, ThreadPoolExecutor(workers, "maglevx")
            if old is not None:
                old.shutdown(wait=False)
        return _POOL


def _integers(a: npt.NDArray[Any], hi: int, what: str) -> npt.NDArray[Any]:
    """*a* checked to hold integers in 0..hi (no floats, bools or NaN)."""
    if a.dtype.kind not in "iu":
        raise MaglevxError(f"expected integers, got an array of {a.dtype}", field=what)
    info = np.iinfo(a.dtype)
    if info.min >= 0 and info.max <= hi:
        return a  # the type holds nothing outside 0..hi: no pass over the data
    if a.size and (int(a.min()) < 0 or int(a.max()) > hi):
        bad = a[(a < 0) | (a > hi)].flat[0]
        raise MaglevxError(f"{int(bad)} is outside 0..{hi}", field=what)
    return a


def bulk_addresses(saddrs: Any, family: int) -> npt.NDArray[Any]:
    """Client addresses as the core's bulk lookups take them, checked.

    IPv4: integers 0..2^32-1 (shape ``(n,)``); IPv6: four 32-bit words
    most significant first (shape ``(n, 4)``) or 16 bytes (``(n, 16)``,
    uint8). Either family: a sequence of address strings (parsed in C).
    """
    if isinstance(saddrs, (str, bytes)):
        raise MaglevxError("expected many addresses, got one", field="saddrs")
    a = np.asarray(saddrs) if not isinstance(saddrs, list) else None
    if a is None or a.dtype.kind in "OUS":
        texts = saddrs if isinstance(saddrs, list) else a.tolist()  # type: ignore[union-attr]
        if isinstance(texts, list) and texts and not isinstance(texts[0], str):
            a = np.asarray(texts)
        else:
            parsed, bad = core.parse_addresses(family, texts)
            if bad >= 0:
                raise MaglevxError(
                    f"element {bad}: {texts[bad]!r} is not an IPv{family} address",
                    field="saddrs",
                )
            return parsed
    if family == 4:
        if a.ndim != 1:
            raise MaglevxError("IPv4 addresses must be a 1-d array", field="saddrs")
        return np.ascontiguousarray(_integers(a, 0xFFFFFFFF, "saddrs"), np.uint32)
    if a.ndim != 2 or a.shape[1] not in (4, 16):
        raise MaglevxError(
            "IPv6 addresses must have shape (n, 4) words or (n, 16) bytes",
            field="saddrs",
        )
    if a.shape[1] == 16:
        return np.ascontiguousarray(_integers(a, 0xFF, "saddrs"), np.uint8)
    return np.ascontiguousarray(_integers(a, 0xFFFFFFFF, "saddrs"), np.uint32)


def _bulk_column(values: Any, n: int, dtype: Any, what: str, field: str) -> Any:
    """One value per flow, a 1-d array checked to fit *dtype*."""
    a = np.asarray(values)
    if a.ndim != 1 or a.shape[0] != n:
        raise MaglevxError(
            f"expected {n} {what} in a 1-d array, got shape {a.shape}", field=field
        )
    return np.ascontiguousarray(_integers(a, np.iinfo(dtype).max, field), dtype)


def bulk_ports(sports: Any, n: int) -> npt.NDArray[np.uint16]:
    """Client ports 0..65535, one per flow, checked."""
    return _bulk_column(sports, n, np.uint16, "ports", "sports")


def bulk_marks(fwmarks: Any, n: int) -> npt.NDArray[np.uint32]:
    """Packet marks 0..2^32-1, one per flow, checked."""
    return _bulk_column(fwmarks, n, np.uint32, "marks", "fwmarks")


def _bulk_out(out: Any, n: int) -> npt.NDArray[np.uint32]:
    if out is None:
        return np.empty(n, np.uint32)
    if (
        not isinstance(out, np.ndarray)
        or out.dtype not in (np.int32, np.uint32)
        or out.shape != (n,)
        or not out.flags.c_contiguous
        or not out.flags.writeable
    ):
        raise MaglevxError(
            f"out must be a writable C-contiguous int32 array of {n} elements",
            field="out",
        )
    return out.view(np.uint32)


# -- virtual services ---------------------------------------------------------


@dataclass(frozen=True)
class ServiceConfig:
    """A virtual service's own settings (``struct ip_vs_service``), checked.

    Made, it checks and normalises itself as the kernel takes a service:
    a fwmark service has no address or port (*family* None: 4), another no
    fwmark (*family* None: the address's); ``flags`` carries
    IP_VS_SVC_F_PERSISTENT exactly when *persistent* is given. ``mask`` is
    derived from *netmask* and the family; edit with ``dataclasses.replace``.
    """

    protocol: str  # tcp, udp, sctp or fwmark
    address: IPAddress | None
    port: int
    fwmark: int
    family: int
    scheduler: str
    flags: int
    persistent: int | None = None
    netmask: str | None = None
    # -M as the kernel keeps it: an IPv4 mask (int) or an IPv6 prefix length
    mask: int = field(init=False)

    def __post_init__(self) -> None:
        protocol, family, persistent = self.protocol, self.family, self.persistent
        if protocol not in (*PROTOCOLS, "fwmark"):
            raise MaglevxError(
                f"unknown protocol {protocol!r}; expected tcp, udp, sctp or fwmark",
                field="protocol",
            )
        if self.scheduler not in SCHEDULERS:
            raise MaglevxError(
                f"unknown scheduler {self.scheduler!r} (known: "
                f"{', '.join(SCHEDULERS)})",
                field="scheduler",
            )
        flags = parse_int(self.flags, 0, 0xFFFFFFFF, "flags", "flags")
        if persistent is not None:
            persistent = parse_int(persistent, 0, MAX_TIMEOUT, "timeout", "persistent")
            flags |= SVC_F_PERSISTENT
        else:
            flags &= ~SVC_F_PERSISTENT
        address, port, fwmark = None, 0, 0
        if protocol == "fwmark":
            fwmark = parse_int(self.fwmark, 1, 0xFFFFFFFF, "fwmark", "fwmark")
            family = 4 if family is None else family
            if family not in (4, 6):
                raise MaglevxError(f"family {family!r} is not 4 or 6", field="family")
        elif self.address is None:
            raise MaglevxError(
                f"a {protocol} service needs an address", field="address"
            )
        else:
            address = parse_address(self.address, "address")
            if family is not None and family != address.version:
                raise MaglevxError(
                    f"family {family} does not fit address {address}", field="family"
                )
            family, port = address.version, parse_port(self.port, "port")
        checked = {
            "address": address, "port": port, "fwmark": fwmark, "family": family,
            "flags": flags, "persistent": persistent,
            "mask": _mask(self.netmask, family),
        }  # fmt: skip
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: set as RealServer does

    @property
    def key(self) -> ServiceKey:
        """(protocol, address, port), or ("fwmark", mark, family)."""
        if self.protocol == "fwmark":
            return ("fwmark", self.fwmark, self.family)
        return (self.protocol, self.address, self.port)

    @property
    def name(self) -> str:
        """The service as ipvsadm names it, e.g. ``TCP 10.0.0.1:80``."""
        return service_name(self.key)


class VirtualService:
    """A virtual service (``struct ip_vs_service``), its real servers and table.

    Created and removed through its :class:`Director`; its real servers are
    changed with :meth:`add_server`, :meth:`edit_server` and
    :meth:`remove_server`, which rebuild the table as the kernel does.
    """

    def __init__(
        self,
        director: Director,
        config: ServiceConfig,
        servers: tuple[RealServer, ...] = (),
        built: tuple[RealServer, ...] = (),
    ) -> None:
        # *servers*: the list, head first; *built*: those the table was built from
        self._director = director
        self._config = config
        self._servers = servers
        self._index = {(rs.address, rs.port): rs for rs in servers}
        self._build = _Build(director._params, built)
        self._snapshot: TableSnapshot | None = None

    # -- identity and settings ---------------------------------------------
    director = property(lambda self: self._director, doc="The owning director.")
    config = property(lambda self: self._config, doc="The service's settings.")
    protocol = property(lambda self: self._config.protocol, doc="tcp/udp/sctp/fwmark.")
    address = property(lambda self: self._config.address, doc="Virtual address.")
    port = property(lambda self: self._config.port, doc="Virtual port (0: any).")
    fwmark = property(lambda self: self._config.fwmark, doc="Firewall mark.")
    family = property(lambda self: self._config.family, doc="4 or 6.")
    scheduler = property(lambda self: self._config.scheduler, doc="Scheduler name.")
    flags = property(lambda self: self._config.flags, doc="IP_VS_SVC_F_* flags.")
    persistent = property(lambda self: self._config.persistent, doc="-p timeout.")
    netmask = property(lambda self: self._config.netmask, doc="-M as given.")
    persistence_mask = property(
        lambda self: self._config.mask,
        doc="-M as the kernel keeps it: IPv4 mask (int) or IPv6 prefix length.",
    )
    key = property(lambda self: self._config.key, doc="What identifies it.")
    name = property(lambda self: self._config.name, doc="e.g. TCP 10.0.0.1:80.")

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return (
            f"<VirtualService {self.name} {self.scheduler} "
            f"{len(self._servers)} real servers>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VirtualService):
            return NotImplemented
        return (
            self._config == other._config
            and self._servers == other._servers
            and self._build.servers == other._build.servers
            and self._build.weights == other._build.weights
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # a service pickles as its director and its key: no cycles
        return (Director.service, (self._director, self.key))

    def _state(self) -> tuple[Any, ...]:
        """What the service is, without caches: VirtualService(director, *state)."""
        return (self._config, self._servers, self._build.servers)

    @property
    def fallback(self) -> bool:
        """Whether lookups fall back (upstream ``mh-fallback``)."""
        return self._director.variant == "upstream" and bool(self.flags & FLAG_FALLBACK)

    @property
    def hashes_port(self) -> bool:
        """Whether the client port is hashed for TCP/UDP/SCTP flows."""
        d = self._director
        if d.variant == "backport":
            return d.backport_hash_port
        return bool(self.flags & FLAG_PORT)

    # -- real servers ------------------------------------------------------
    @property
    def real_servers(self) -> tuple[RealServer, ...]:
        """The real servers in the kernel's list order, head first."""
        return self._servers

    def find(self, address: IPAddress, port: int) -> RealServer | None:
        """The real server with this address and port, if any."""
        return self._index.get((address, port))

    def table_weight(self, rs: RealServer) -> int:
        """The weight the variant builds tables from."""
        return rs.weight if self._director.variant == "backport" else rs.last_weight

    def add_server(
        self,
        address: IPAddress | str,
        port: int,
        *,
        weight: int = 1,
        forward: str = "route",
        u_threshold: int = 0,
        l_threshold: int = 0,
    ) -> RealServer:
        """``ip_vs_add_dest()``: a new real server at the list head; rebuild."""
        address = parse_address(address, "address")
        # last_weight is set on add, even to 0
        rs = RealServer(
            address, port, weight, weight, forward, u_threshold, l_threshold
        )
        self._check_family(rs)
        with self._director._lock:
            if (rs.address, rs.port) in self._index:
                raise MaglevxError(f"real server {rs} in {self.name} already exists")
            self._servers = (rs, *self._servers)  # list_add_rcu(): the head
            self._index[(rs.address, rs.port)] = rs
            self._changed()
        return rs

    def edit_server(
        self,
        address: IPAddress | str,
        port: int,
        *,
        weight: int = 1,
        forward: str = "route",
        u_threshold: int = 0,
        l_threshold: int = 0,
    ) -> RealServer:
        """``ip_vs_edit_dest()``: new weight, method and thresholds; rebuild.

        ``last_weight`` follows only a non-zero weight ("keep the
        last_weight with latest non-0 weight"), so an upstream table keeps a
        drained server's slots.
        """
        with self._director._lock:
            old = self._existing(address, port)
            rs = replace(
                old,
                weight=weight,
                last_weight=weight if weight != 0 else old.last_weight,
                forward=forward,
                u_threshold=u_threshold,
                l_threshold=l_threshold,
            )
            self._swap(old, rs)
            self._changed()
        return rs

    def set_overloaded(
        self, address: IPAddress | str, port: int, overloaded: bool = True
    ) -> RealServer:
        """Mark a real server overloaded (IP_VS_DEST_F_OVERLOAD) or not.

        The kernel sets this flag from live connection counts and the
        thresholds; it changes availability only, never the table.
        """
        with self._director._lock:
            old = self._existing(address, port)
            rs = replace(old, overloaded=bool(overloaded))
            self._swap(old, rs)
            self._snapshot = None  # availability only: no rebuild
        return rs

    def remove_server(self, address: IPAddress | str, port: int) -> None:
        """``ip_vs_del_dest()``: unlink the real server; rebuild."""
        with self._director._lock:
            old = self._existing(address, port)
            del self._index[(old.address, old.port)]
            self._servers = tuple(s for s in self._servers if s is not old)
            self._changed()

    def _existing(self, address: IPAddress | str, port: int) -> RealServer:
        """The real server at address:port; MaglevxError when there is none."""
        address = parse_address(address, "address")
        rs = self._index.get((address, port))
        if rs is None:
            raise MaglevxError(
                f"no such real server {format_endpoint(address, port)} in {self.name}"
            )
        return rs

    def _swap(self, old: RealServer, new: RealServer) -> None:
        """Put *new* in *old*'s place in the list and the index."""
        self._servers = tuple(new if s is old else s for s in self._servers)
        self._index[(new.address, new.port)] = new

    def _check_family(self, rs: RealServer) -> None:
        if rs.address.version != self.family:
            raise MaglevxError(
                f"real server {rs.address} is not IPv{self.family} like the "
                "service (mixed-family tunnel servers are not modelled)",
                field="address",
            )

    # -- tables ------------------------------------------------------------
    def _changed(self) -> None:
        """``ip_vs_mh_dest_changed()``: rebuild if mh; a new snapshot is due."""
        if self.scheduler == "mh":
            self._rebuild()
        self._snapshot = None

    def _rebuild(self) -> bool:
        """``ip_vs_mh_reassign()``; False (old table kept) above M servers."""
        d = self._director
        if len(self._servers) > min(d.table_size, core.MAX_DESTS):
            return False
        self._build = _Build(d._params, self._servers, self._build)
        return True

    @property
    def snapshot(self) -> TableSnapshot:
        """The current table, availability and real servers, together.

        Made on first use after a change, under the director's lock, so it
        always shows the state between two whole edits.
        """
        snap = self._snapshot
        if snap is None:
            with self._director._lock:
                snap = self._snapshot or self._make_snapshot()
        return snap

    def _make_snapshot(self) -> TableSnapshot:
        b, index = self._build, self._index
        # entries point at the servers as they are now; one deleted
        # while a rebuild failed keeps its last state (the trash)
        servers = tuple(index.get((rs.address, rs.port), rs) for rs in b.servers)
        # kmod/ also refuses a server no longer in the list
        # (IP_VS_DEST_F_AVAILABLE cleared by its deletion)
        upstream = self._director.variant == "upstream"
        avail = [
            rs.available and (upstream or (rs.address, rs.port) in index)
            for rs in servers
        ]
        snap = TableSnapshot(b, servers, self.fallback, self.hashes_port, avail)
        self._snapshot = snap
        return snap

    @property
    def table(self) -> npt.NDArray[np.uint16]:
        """The lookup table (read-only): per slot an index into table_servers.

        Empty slots hold 0xFFFF.
        """
        return self.snapshot.table

    @property
    def table_servers(self) -> tuple[RealServer, ...]:
        """The real servers the table entries point at (list head first)."""
        return self.snapshot.servers

    @property
    def table_weights(self) -> tuple[int, ...]:
        """The weights the current table was built from, per table server."""
        return self.snapshot.weights

    def availability(self) -> npt.NDArray[np.uint8]:
        """Per table server, 1 when it is available (read-only)."""
        return self.snapshot.avail

    # -- scheduling --------------------------------------------------------
    def require_mh(self) -> None:
        """Raise MaglevxError unless the service uses the mh scheduler."""
        if self.scheduler != "mh":
            raise MaglevxError(
                f"{self.name} uses scheduler {self.scheduler!r}, not mh; "
                "only mh decisions can be predicted"
            )

    def hashed_port(self, protocol: str, sport: int) -> int:
        """The port that enters the hash for a flow of *protocol*."""
        return self.snapshot.hashed_port(protocol, sport)

    def schedule(
        self, saddr: IPAddress | str, sport: int, protocol: str
    ) -> RealServer | None:
        """The real server the mh scheduler picks for a new flow, or None.

        The scheduler's pick only: no persistence template and no client
        port 20 rule (see :func:`lookup` for the kernel's whole decision).
        """
        self.require_mh()
        sa = parse_address(saddr, "saddr")
        if sa.version != self.family:
            raise MaglevxError(
                f"client address {sa} is not IPv{self.family} like {self.name}",
                field="saddr",
            )
        snap = self.snapshot
        port = snap.hashed_port(
            parse_protocol(protocol, "protocol"), parse_port(sport, "sport")
        )
        return snap.lookup(fold(sa), port)

    def lookup_many(
        self,
        saddrs: Any,
        sports: Any = None,
        protocol: str = "tcp",
        *,
        threads: int = 1,
        out: Any = None,
    ) -> npt.NDArray[np.int32]:
        """Schedule many flows at once; releases the GIL in the C core.

        *saddrs*: IPv4 addresses as integers (shape ``(n,)``), IPv6
        addresses as four 32-bit words most significant first (``(n, 4)``)
        or 16 bytes each (``(n, 16)``, uint8), or a list of address strings.
        *sports*: client ports, required when the service hashes them.
        *protocol*: tcp, udp or sctp (any case). *threads*: split the flows
        over this many threads. *out*: an int32 array of n elements to
        write into (returned), so a stream of batches allocates nothing.

        Returns, per flow, an index into ``snapshot.servers`` or -1 for no
        destination. To pair indices with servers across concurrent edits,
        take ``snap = svc.snapshot`` once and call ``snap.lookup_many``.

        These are the scheduler's picks, as :meth:`schedule`'s: persistence
        templates and the client port 20 rule are the director's, so for
        the kernel's whole decision over columns use
        :meth:`Director.lookup_many`.
        """
        self.require_mh()
        return self.snapshot.lookup_many(
            saddrs, sports, protocol, family=self.family, threads=threads, out=out
        )


# -- the director -------------------------------------------------------------


@dataclass(frozen=True)
class DirectorParams:
    """How a director builds tables and schedules: fixed for its lifetime."""

    variant: str = "upstream"
    word_size: int = 64
    table_size: int = DEFAULT_TABLE_SIZE
    byte_order: str = "little"
    backport_hash_port: bool = True
    expire_quiescent_template: bool = False
    hash_key: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.hash_key, str):
            object.__setattr__(self, "hash_key", parse_hash_key(self.hash_key))
        check_params(
            self.variant, self.word_size, self.table_size, self.byte_order,
            self.hash_key,
        )  # fmt: skip

    @property
    def hashing(self) -> dict[str, Any]:
        """The core's keyword arguments for this director's hash."""
        return {"byte_order": self.byte_order, "hash_key": self.hash_key}

    def describe(self) -> str:
        """E.g. ``upstream, 64-bit, M=4093``."""
        s = f"{self.variant}, {self.word_size}-bit, M={self.table_size}"
        if self.variant == "backport" and not self.backport_hash_port:
            s += ", hash_port=0"
        if self.byte_order == "big":
            s += ", big-endian"
        if self.hash_key is not None:
            s += ", secret hash key"
        if self.expire_quiescent_template:
            s += ", expire_quiescent_template=1"
        return s


class Director:
    """An IPVS director: its virtual services and how it builds tables.

    *variant*: ``upstream`` (in-tree ip_vs_mh) or ``backport`` (kmod/).
    *word_size*: 64 or 32, the director kernel's word size (which hsiphash).
    *table_size*: the table size M, one of the kernel's primes.
    *backport_hash_port*: for ``backport`` only: the module's ``hash_port``
    parameter (default True: client ports are always hashed).
    *expire_quiescent_template*: the sysctl of that name.
    *byte_order*: ``little`` or ``big`` (s390x): the kernel hashes the bytes
    of ``offset + port + fold`` as its CPU stores them.
    *hash_key*: ``backport`` only: the module's secret ``hash_key`` (16
    bytes, or 32 hex digits); None for the kernel's fixed keys.
    """

    def __init__(
        self,
        variant: str = "upstream",
        word_size: int = 64,
        table_size: int = DEFAULT_TABLE_SIZE,
        *,
        byte_order: str = "little",
        backport_hash_port: bool = True,
        expire_quiescent_template: bool = False,
        hash_key: bytes | str | None = None,
    ) -> None:
        self._init(
            DirectorParams(
                variant,
                word_size,
                table_size,
                byte_order,
                bool(backport_hash_port),
                bool(expire_quiescent_template),
                hash_key,  # type: ignore[arg-type]
            )
        )

    @classmethod
    def from_params(cls, params: DirectorParams) -> Director:
        """An empty director with these parameters."""
        if not isinstance(params, DirectorParams):
            raise MaglevxError(f"expected DirectorParams, got {params!r}")
        d = cls.__new__(cls)
        d._init(params)
        return d

    def _init(self, params: DirectorParams) -> None:
        self._params = params
        self._services: dict[ServiceKey, VirtualService] = {}
        self._lock = threading.RLock()
        self._routes: dict[tuple[object, ...], VirtualService | None] = {}
        self._decisions: bool | None = None  # needs_decisions(), cached
        # persistence templates (ip_vs_sched_persist): state, like the services
        self.templates = Templates()

    params = property(lambda self: self._params, doc="The DirectorParams.")
    variant = property(lambda self: self._params.variant, doc="upstream/backport.")
    word_size = property(lambda self: self._params.word_size, doc="64 or 32.")
    table_size = property(lambda self: self._params.table_size, doc="M.")
    byte_order = property(lambda self: self._params.byte_order, doc="little/big.")
    hash_key = property(lambda self: self._params.hash_key, doc="kmod's secret key.")
    backport_hash_port = property(
        lambda self: self._params.backport_hash_port, doc="kmod's hash_port."
    )
    expire_quiescent_template = property(
        lambda self: self._params.expire_quiescent_template,
        doc="sysctl expire_quiescent_template.",
    )

    def __repr__(self) -> str:
        p = self._params
        return (
            f"Director(variant={p.variant!r}, word_size={p.word_size}, "
            f"table_size={p.table_size}, services={len(self._services)})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Director):
            return NotImplemented
        return self._params == other._params and self.services == other.services

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        states = [svc._state() for svc in self._services.values()]
        return {"params": self._params, "services": states, "templates": self.templates}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._init(state["params"])
        for st in state["services"]:
            svc = VirtualService(self, *st)
            self._services[svc.key] = svc
        self.templates = state.get("templates", Templates())

    def needs_decisions(self) -> bool:
        """Whether a flow's fate can depend on more than its service's table.

        True with persistent, port-zero, FTP (:21) or fwmark services
        (:func:`maglevx.decision.needs_decisions`); cached until services change.
        """
        flag = self._decisions
        if flag is None:
            flag = self._decisions = decision.needs_decisions(self)
        return flag

    def reset_templates(self) -> None:
        """Forget every persistence template (as if all had expired)."""
        self.templates = Templates()

    def copy(self) -> Director:
        """An independent copy (tables are shared until either changes)."""
        new = Director.from_params(self._params)
        with self._lock:
            for key, svc in self._services.items():
                c = VirtualService(new, *svc._state())
                c._build._table = svc._build._table
                new._services[key] = c
            new.templates = self.templates.copy()
        return new

    # -- building ------------------------------------------------------------
    @classmethod
    def from_history(
        cls,
        text: str | Iterable[str],
        *,
        source: str = "<history>",
        **params: Any,
    ) -> Director:
        """Build a director by applying ``ipvsadm -R`` lines top to bottom.

        *params*: the constructor's keyword arguments (variant, word_size,
        table_size, ...). Errors name *source*, the line and the option.
        """
        _check_text(text, "history")
        d = cls(**params)
        d.apply_history(text, source=source)
        return d

    def apply_history(
        self, text: str | Iterable[str], *, source: str = "<history>"
    ) -> Director:
        """Apply ``ipvsadm -R`` lines to this director, top to bottom."""
        for lineno, cmd in iter_history(text, source=source):
            try:
                self.apply_command(cmd)
            except MaglevxError as exc:
                raise exc.located(source, lineno) from None
        return self

    def apply(self, line: str) -> None:
        """Apply one ipvsadm command line (``-A``/``-E``/``-D``/``-C``/``-a``/...)."""
        if not isinstance(line, str):
            raise MaglevxError(f"expected an ipvsadm line (str), got {line!r}")
        self.apply_command(parse_command(tokenize(line)))

    @classmethod
    def from_snapshot(
        cls,
        text: str | Iterable[str],
        *,
        source: str = "<snapshot>",
        **params: Any,
    ) -> Director:
        """Build a director from ``ipvsadm -Ln --nosort`` output.

        Real servers are listed head first, the order tables are built in.
        What a listing cannot know: ``last_weight`` (taken equal to the
        weight shown, so a server drained by an edit to weight 0 is taken
        to hold no slots, which the in-tree kernel does not do), whether a
        real server is overloaded, and a table kept from before a failed
        rebuild (more servers than slots: refused).
        """
        _check_text(text, "snapshot")
        d = cls(**params)
        for listed in parse_listing(text, source=source):
            try:
                d._load_listed(listed)
            except MaglevxError as exc:
                raise exc.located(source, exc.line or listed.line) from None
        return d

    def _load_listed(self, listed: Any) -> None:
        config = ServiceConfig(
            listed.protocol, listed.address, listed.port, listed.fwmark,
            listed.family, listed.scheduler, listed.flags, listed.persistent,
            listed.netmask,
        )  # fmt: skip
        if config.key in self._services:
            raise MaglevxError(f"service {config.name} listed twice")
        svc = VirtualService(self, config)
        limit = min(self.table_size, core.MAX_DESTS)
        index = svc._index  # listed head first, the list order
        for ls in listed.servers:
            if (ls.address, ls.port) in index:
                raise MaglevxError(
                    f"real server {format_endpoint(ls.address, ls.port)} listed "
                    f"twice in {config.name}",
                    line=ls.line,
                )
            if config.scheduler == "mh" and len(index) >= limit:
                # The kernel refused to rebuild and kept a table from before,
                # which a listing does not show: refuse rather than guess.
                raise MaglevxError(
                    f"{config.name} lists more than {limit} real servers, the "
                    "table size: the kernel kept an older table a snapshot "
                    "cannot show (use the history, or a larger --table-size)",
                    line=ls.line,
                )
            rs = RealServer(ls.address, ls.port, ls.weight, ls.weight, ls.forward)
            svc._check_family(rs)
            index[(rs.address, rs.port)] = rs
        svc._servers = tuple(index.values())
        svc._changed()
        with self._lock:
            self._services[config.key] = svc
            self._routes = {}
            self._decisions = None

    # -- services (ip_vs_ctl.c) ---------------------------------------------
    @property
    def services(self) -> tuple[VirtualService, ...]:
        """The virtual services, in the order they were created."""
        return tuple(self._services.values())

    def find_service(self, key: ServiceKey) -> VirtualService | None:
        """The service with this key (see VirtualService.key), if any."""
        return self._services.get(key)

    def service(self, key: ServiceKey) -> VirtualService:
        """The service with this key; MaglevxError if there is none."""
        svc = self._services.get(key)
        if svc is None:
            raise MaglevxError(f"no such service {service_name(key)}")
        return svc

    def add_service(
        self,
        protocol: str,
        address: IPAddress | str | None = None,
        port: int = 0,
        *,
        fwmark: int = 0,
        family: int | None = None,
        scheduler: str = "wlc",
        flags: int = 0,
        persistent: int | None = None,
        netmask: str | None = None,
    ) -> VirtualService:
        """``ip_vs_add_service()``: a new virtual service (empty table)."""
        config = ServiceConfig(
            protocol, address, port, fwmark, family,  # type: ignore[arg-type]
            scheduler, flags, persistent, netmask,
        )  # fmt: skip
        with self._lock:
            if config.key in self._services:
                raise MaglevxError(f"service {config.name} already exists")
            svc = VirtualService(self, config)
            self._services[config.key] = svc
            self._routes = {}
            self._decisions = None
        return svc

    def edit_service(
        self,
        key: ServiceKey,
        *,
        scheduler: str,
        flags: int = 0,
        persistent: int | None = None,
        netmask: str | None = None,
    ) -> VirtualService:
        """``ip_vs_edit_service()``: scheduler, flags and persistence.

        Switching to mh builds a table; with more real servers than slots
        the kernel refuses the switch. Flag changes need no rebuild.
        """
        with self._lock:
            svc = self.service(key)
            old = svc._config
            new = replace(
                old, scheduler=scheduler, flags=flags, persistent=persistent,
                netmask=netmask,
            )  # fmt: skip
            switch = new.scheduler == "mh" and old.scheduler != "mh"
            if switch and not svc._rebuild():
                raise MaglevxError(
                    f"{svc.name} has {len(svc._servers)} real servers, more "
                    f"than the {self.table_size} table slots: the kernel "
                    "refuses mh"
                )
            svc._config = new
            svc._snapshot = None
            self._routes = {}
            self._decisions = None
        return svc

    def remove_service(self, key: ServiceKey) -> None:
        """``ip_vs_del_service()``."""
        with self._lock:
            self.service(key)
            del self._services[key]
            self._routes = {}
            self._decisions = None

    def clear(self) -> None:
        """``ip_vs_flush()`` (``ipvsadm -C``)."""
        with self._lock:
            self._services.clear()
            self._routes = {}
            self._decisions = None

    def apply_command(self, cmd: Command) -> None:
        """Apply one parsed ipvsadm command as the kernel does (ip_vs_ctl.c).

        Errors name the ipvsadm option where the API names an argument.
        """
        c = cmd.command
        try:
            if c == "clear":
                self.clear()
            elif c == "add-service":
                assert cmd.scheduler is not None
                self.add_service(
                    cmd.protocol or "tcp", cmd.address, cmd.port, fwmark=cmd.fwmark,
                    family=cmd.family, scheduler=cmd.scheduler, flags=cmd.flags,
                    persistent=cmd.persistent, netmask=cmd.netmask,
                )  # fmt: skip
            elif c == "edit-service":
                assert cmd.scheduler is not None
                self.edit_service(
                    cmd.service_key, scheduler=cmd.scheduler, flags=cmd.flags,
                    persistent=cmd.persistent, netmask=cmd.netmask,
                )  # fmt: skip
            elif c == "delete-service":
                self.remove_service(cmd.service_key)
            else:
                svc = self.service(cmd.service_key)
                assert cmd.rs_address is not None
                if c not in ("add-server", "edit-server"):  # delete-server
                    svc.remove_server(cmd.rs_address, cmd.rs_port)
                    return
                change = svc.add_server if c == "add-server" else svc.edit_server
                change(
                    cmd.rs_address, cmd.rs_port, weight=cmd.weight,
                    forward=cmd.forward, u_threshold=cmd.u_threshold,
                    l_threshold=cmd.l_threshold,
                )  # fmt: skip
        except MaglevxError as exc:
            option = _OPTION_OF.get(exc.field or "")
            if option is None:
                raise
            raise MaglevxError(exc.message, field=option) from None

    # -- resolving flows -------------------------------------------------------
    def service_for(
        self,
        protocol: str,
        daddr: IPAddress,
        dport: int,
        fwmark: int | None = None,
    ) -> VirtualService | None:
        """The service ``ip_vs_service_find()`` picks for a packet.

        fwmark services first (when the packet carries a mark), then
        protocol/address/port, then a TCP flow's FTP service (port 20 or
        unprivileged ports), then the port-zero catch-all service
        (:func:`maglevx.decision.service_find`).
        """
        return decision.service_find(self, protocol, daddr, dport, fwmark or 0)

    def lookup_many(
        self,
        protocols: Sequence[str],
        saddrs: Sequence[object],
        sports: Any,
        daddrs: Sequence[object],
        dports: Any,
        *,
        fwmarks: Any = None,
        strict: bool = False,
    ) -> npt.NDArray[np.object_]:
        """Schedule whole 5-tuple columns (e.g. a DataFrame's), across services.

        Returns, per flow, the RealServer or None (no destination, or with
        *strict* False a flow that no mh service takes, which the kernel
        does not schedule). Addresses may be strings or ipaddress objects;
        *fwmarks*, if given, is each packet's mark (0: none).
        The whole decision, as :func:`lookup`: client port 20 is never
        scheduled, and a director with persistent, port-zero, FTP or fwmark
        services is decided flow by flow in input order, following and
        making the persistence templates in ``self.templates``.
        """
        n = len(protocols)
        cols = {"saddrs": saddrs, "sports": sports, "daddrs": daddrs, "dports": dports}
        for name, col in cols.items():
            if len(col) != n:
                raise MaglevxError(f"{len(col)} values for {n} protocols", field=name)
        sp = bulk_ports(sports, n)
        dp = bulk_ports(dports, n).tolist()
        # a mark matters only to a fwmark service, and one makes decisions due
        marks = None if fwmarks is None else bulk_marks(fwmarks, n).tolist()
        out = np.full(n, None, dtype=object)
        if self.needs_decisions():
            marks = marks or [0] * n
            # templates, port zero, FTP, fwmark: flow by flow, in input order
            for i in range(n):
                proto = parse_protocol(protocols[i], "protocol")
                flow = (proto, saddrs[i], int(sp[i]), daddrs[i], dp[i])
                svc = self.resolve(proto, daddrs[i], dp[i], marks[i] or None)
                if _mh_service(svc, strict, i, protocols[i], daddrs[i], dp[i]):
                    out[i] = decision.decide(self, flow, fwmark=marks[i]).server
            return out
        groups: dict[tuple[Any, Any, int], list[int]] = {}
        for i, key in enumerate(zip(protocols, daddrs, dp)):
            groups.setdefault(key, []).append(i)
        for (proto, daddr, dport), rows in groups.items():
            p = parse_protocol(proto, "protocol")
            svc = _mh_service(
                self.resolve(p, daddr, dport), strict, rows[0], p, daddr, dport
            )
            if svc is None:
                continue
            snap = svc.snapshot
            sel = np.array(rows, np.intp)
            rows_saddrs = [saddrs[i] for i in rows]
            addrs = [str(a) if isinstance(a, ADDRESS_TYPES) else a for a in rows_saddrs]
            idx = snap.lookup_many(addrs, sp[sel], p, family=svc.family)
            servers = np.array([*snap.servers, None], dtype=object)
            out[sel] = servers[idx]  # -1: the None at the end
        out[sp == decision.FTPDATA] = None  # FTP data: never scheduled
        return out

    def resolve(
        self, protocol: str, daddr: object, dport: int, fwmark: int | None = None
    ) -> VirtualService | None:
        """service_for() over the values as given (str or address), cached."""
        key = (protocol, daddr if type(daddr) is str else repr(daddr), dport, fwmark)
        routes = self._routes
        try:
            return routes[key]
        except KeyError:
            pass
        svc = self.service_for(protocol, parse_address(daddr, "daddr"), dport, fwmark)
        if len(routes) < _MAX_ROUTES and routes is self._routes:
            routes[key] = svc
        return svc


_MAX_ROUTES = 65536


def _mh_service(
    svc: VirtualService | None, strict: bool, row: int, *flow: object
) -> VirtualService | None:
    """*svc* if it uses mh, else None; with *strict*, an error naming the flow."""
    if svc is not None and svc.scheduler == "mh":
        return svc
    if strict:
        proto, daddr, dport = flow
        raise MaglevxError(
            f"row {row}: no mh virtual service for {proto} {daddr} port {dport}",
            field="daddrs",
        )
    return None


_OPTION_OF = {
    "weight": "-w",
    "l_threshold": "-y",
    "u_threshold": "-x",
    "persistent": "-p",
    "scheduler": "-s",
    "fwmark": "-f",
    "netmask": "-M",
}


def _check_text(text: object, what: str) -> None:
    if isinstance(text, str):
        return
    if isinstance(text, (bytes, bytearray)):
        raise MaglevxError(f"the {what} must be text (str), not bytes: decode it")
    if not isinstance(text, Iterable) or isinstance(text, (dict, set)):
        raise MaglevxError(
            f"the {what} must be text (str) or an iterable of lines, not "
            f"{type(text).__name__} (a path? read the file first)"
        )


def _mask(netmask: object, family: int) -> int:
    """``-M`` as the kernel takes it (``svc->netmask``).

    IPv4: a mask read as ipvsadm reads it (``inet_aton``: any 32-bit value,
    ``24`` is 0.0.0.24), default 255.255.255.255. IPv6: a prefix length
    1..128 (``ip_vs_add_service`` refuses others), default 128.
    """
    if netmask is None:
        return 0xFFFFFFFF if family == 4 else 128
    text = str(netmask).strip()
    if family == 6:
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 128:
            raise MaglevxError(
                f"illegal ipv6 netmask {text!r}: a prefix length 1..128",
                field="netmask",
            )
        return int(text)
    if isinstance(netmask, int) and 0 <= netmask <= 0xFFFFFFFF:
        return netmask
    mask = inet_aton(text)
    if mask is None:
        raise MaglevxError(
            f"illegal virtual server persistent mask {text!r}: an IPv4 mask "
            "such as 255.255.255.0",
            field="netmask",
        )
    return mask


# -- flows ----------------------------------------------------------------------

FiveTuple = Sequence[object]


def _lookup_fast(
    five_tuple: object, director: Director, fwmark: int | None
) -> RealServer | None | object:
    """lookup() for the common case, or _MISS to take the slow path.

    Returns only what the slow path would return; anything unusual (odd
    types, bad values, no service) is left to it, errors included.
    """
    if type(five_tuple) is not tuple or len(five_tuple) != 5:
        return _MISS
    proto, saddr, sport, daddr, dport = five_tuple
    if (
        type(proto) is not str
        or type(sport) is not int
        or type(dport) is not int
        or type(daddr) is not str
        or not (fwmark is None or type(fwmark) is int)
        or not 0 <= sport <= 65535
        or not 0 <= dport <= 65535
        or proto not in PROTOCOLS
    ):
        return _MISS
    try:
        svc = director.resolve(proto, daddr, dport, fwmark)
    except MaglevxError:
        return _MISS
    if svc is None or svc.scheduler != "mh" or director.needs_decisions():
        return _MISS  # (templates and the like: the slow path decides)
    if sport == decision.FTPDATA:
        return None  # ip_vs_schedule() never schedules FTP data
    snap = svc.snapshot
    port = sport if snap.hashes_port else 0
    if type(saddr) is str:
        idx = snap.scheduler.lookup_text(svc.family, saddr, port)
        if idx == -1:
            return _MISS
    elif type(saddr) in ADDRESS_TYPES and saddr.version == svc.family:
        idx = snap.scheduler.lookup(fold_int(int(saddr), svc.family), port)
    else:
        return _MISS
    return None if idx == core.NONE else snap.servers[idx]


_MISS = object()


def lookup(
    five_tuple: FiveTuple, director: Director, *, fwmark: int | None = None
) -> RealServer | None:
    """The real server the kernel picks for a new flow, or None.

    The whole decision (:func:`maglevx.decision.decide`), not only the
    scheduler's: client port 20 is never scheduled, and on persistent
    services the flow follows (or makes) a template in ``director.templates``.

    *five_tuple* is ``(proto, saddr, sport, daddr, dport)``; addresses may be
    strings or ``ipaddress`` objects. *fwmark* is the packet's firewall mark,
    if any. Returns None when the kernel finds no destination. Raises
    MaglevxError when no virtual service matches the flow or the service does
    not use the ``mh`` scheduler.

    >>> d = Director.from_history(["-A -t 10.0.0.1:80 -s mh",
    ...                            "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m"])
    >>> str(lookup(("tcp", "192.0.2.7", 40000, "10.0.0.1", 80), d))
    '10.1.0.1:80'
    """
    if not isinstance(director, Director):
        raise MaglevxError(f"expected a Director, got {type(director).__name__}")
    rs = _lookup_fast(five_tuple, director, fwmark)
    if rs is not _MISS:
        return rs  # type: ignore[return-value]
    proto, saddr, sport, daddr, dport = parse_five_tuple(five_tuple)
    if fwmark is not None:
        fwmark = parse_int(fwmark, 0, 0xFFFFFFFF, "fwmark", "fwmark")
    svc = director.service_for(proto, daddr, dport, fwmark)
    if svc is None:
        raise MaglevxError(
            f"no virtual service for {proto} {format_endpoint(daddr, dport)}",
            field="daddr",
        )
    svc.require_mh()
    if saddr.version != svc.family:
        return svc.schedule(saddr, sport, proto)  # its error
    flow = (proto, saddr, sport, daddr, dport)
    return decision.decide(director, flow, fwmark=fwmark or 0).server


__all__ = [
    "DEFAULT_TABLE_SIZE",
    "KERNEL_REFERENCE",
    "PRIMES",
    "Director",
    "DirectorParams",
    "RealServer",
    "ServiceConfig",
    "TableSnapshot",
    "VirtualService",
    "fold_address",
    "lookup",
    "parse_five_tuple",
]
