"""A model of an IPVS director: virtual services, real servers, Maglev tables.

The model keeps exactly the state ``ip_vs_mh`` depends on:

- each virtual service's real servers in the kernel's list order (a new or
  re-added real server goes to the HEAD of the list; tables are built head
  first);
- each real server's ``weight`` and ``last_weight`` as ``ip_vs_ctl.c`` keeps
  them (``last_weight`` is set on add, and on edit only to a non-zero weight);
- the service's scheduler flags (``mh-fallback``, ``mh-port``), read per
  packet, so ``-E`` flag changes take effect without a table rebuild.

Tables are rebuilt, as in the kernel, on every add, edit and delete of a real
server while the service uses ``mh``, and when a service switches to ``mh``.
The variant decides which weight a table is built from: ``upstream`` (in-tree
Linux >= 4.18) uses ``last_weight``; ``backport`` (the out-of-tree module of
``kmod/``) uses the live ``weight`` and always hashes the client port.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from maglevx.backend import core
from maglevx.errors import MaglevxError

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

VARIANTS = ("upstream", "backport")
WORD_SIZES = (64, 32)
PRIMES: tuple[int, ...] = tuple(core.PRIMES)
DEFAULT_TABLE_SIZE = 4093
KERNEL_REFERENCE: str = core.KERNEL_REFERENCE

# include/uapi/linux/ip_vs.h
SVC_F_PERSISTENT = 0x0001
SVC_F_ONEPACKET = 0x0004
SVC_F_SCHED1 = 0x0008  # mh-fallback
SVC_F_SCHED2 = 0x0010  # mh-port
SVC_F_SCHED3 = 0x0020
FLAG_FALLBACK = SVC_F_SCHED1
FLAG_PORT = SVC_F_SCHED2

PROTOCOLS = ("tcp", "udp", "sctp")
FORWARD_METHODS = ("masq", "route", "tunnel")


class _Changes:
    """How many changes the model has seen, to know when caches are stale.

    Every attribute set on a Director, VirtualService or RealServer, and
    every change to a Director's ``services`` list, counts. Caches of
    derived state (service resolution, availability arrays) remember the
    count they were filled at and are refilled once it moves. Reading the
    count before filling a cache makes a concurrent change win.
    """

    count = 0

    @classmethod
    def bump(cls) -> None:
        cls.count += 1


class _ServiceList(list):  # type: ignore[type-arg]
    """A Director's services: a list that reports its changes."""

    def _changing(name: str) -> Any:  # noqa: N805 - builds methods below
        method = getattr(list, name)

        def changing(self: list[Any], *args: Any) -> Any:
            _Changes.bump()
            return method(self, *args)

        changing.__name__ = name
        return changing

    for _name in (
        "append", "extend", "insert", "remove", "pop", "clear", "sort",
        "reverse", "__setitem__", "__delitem__", "__iadd__", "__imul__",
    ):  # fmt: skip
        locals()[_name] = _changing(_name)
    del _name, _changing


def check_params(variant: str, word_size: int, table_size: int) -> None:
    """Raise MaglevxError unless the three director parameters are valid."""
    if variant not in VARIANTS:
        raise MaglevxError(
            f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}",
            field="variant",
        )
    if word_size not in WORD_SIZES:
        raise MaglevxError(
            f"word size {word_size!r} is not 64 or 32", field="word_size"
        )
    if table_size not in PRIMES:
        raise MaglevxError(
            f"table size {table_size!r} is not one of the kernel's primes "
            f"({', '.join(map(str, PRIMES))})",
            field="table_size",
        )


def fold_address(address: IPAddress) -> int:
    """The 32-bit value ``ip_vs_mh_hashkey()`` hashes for *address*.

    IPv4: the address as a number. IPv6: the XOR of its four 32-bit words.
    """
    n = int(address)
    if address.version == 4:
        return n
    return (n >> 96 ^ n >> 64 ^ n >> 32 ^ n) & 0xFFFFFFFF


def format_endpoint(address: IPAddress, port: int) -> str:
    """``addr:port`` or ``[addr]:port`` as ipvsadm prints it."""
    if address.version == 6:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


@dataclass(eq=False)
class RealServer:
    """A real server (``struct ip_vs_dest``) of one virtual service.

    ``port`` is the port the kernel stores: for ``-g`` and ``-i`` real servers
    of a non-fwmark service, ipvsadm replaces it with the service port.
    ``overloaded`` stands for IP_VS_DEST_F_OVERLOAD, which depends on live
    connection counts and thresholds; the model cannot know it and assumes
    False unless told.
    """

    address: IPAddress
    port: int
    weight: int
    last_weight: int
    forward: str = "route"
    u_threshold: int = 0
    l_threshold: int = 0
    overloaded: bool = False

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

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        _Changes.bump()


@dataclass(eq=False)
class VirtualService:
    """A virtual service (``struct ip_vs_service``) and its Maglev table.

    ``protocol`` is ``tcp``, ``udp``, ``sctp`` or ``fwmark``; fwmark services
    have ``fwmark`` set, ``address`` None and ``port`` 0.
    """

    protocol: str
    address: IPAddress | None
    port: int
    fwmark: int
    family: int
    scheduler: str
    flags: int
    director: Director
    persistent: int | None = None
    real_servers: list[RealServer] = field(default_factory=list)
    # (real servers, table weights) the current table was built from
    _built: tuple[tuple[RealServer, ...], tuple[int, ...]] = ((), ())
    _table: npt.NDArray[np.uint16] | None = None
    # (_Changes.count, what lookups need), see _lookup_state()
    _state: tuple[int, _LookupState | None] = (-1, None)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name not in ("_table", "_state"):  # caches, not state
            _Changes.bump()

    # -- identity --------------------------------------------------------
    @property
    def key(self) -> tuple[str, int | IPAddress | None, int]:
        """What identifies the service: (protocol, address, port) or fwmark."""
        if self.protocol == "fwmark":
            return ("fwmark", self.fwmark, self.family)
        return (self.protocol, self.address, self.port)

    @property
    def name(self) -> str:
        """The service as ipvsadm names it, e.g. ``TCP 10.0.0.1:80``."""
        if self.protocol == "fwmark":
            return f"FWM {self.fwmark}" + (" IPv6" if self.family == 6 else "")
        assert self.address is not None
        return f"{self.protocol.upper()} {format_endpoint(self.address, self.port)}"

    def __str__(self) -> str:
        return self.name

    @property
    def fallback(self) -> bool:
        """Whether lookups fall back (upstream ``mh-fallback``)."""
        return self.director.variant == "upstream" and bool(self.flags & FLAG_FALLBACK)

    @property
    def hashes_port(self) -> bool:
        """Whether the client port is hashed for TCP/UDP/SCTP flows."""
        if self.director.variant == "backport":
            return self.director.backport_hash_port
        return bool(self.flags & FLAG_PORT)

    # -- real servers ----------------------------------------------------
    def find(self, address: IPAddress, port: int) -> RealServer | None:
        """The real server with this address and port, if any."""
        for rs in self.real_servers:
            if rs.address == address and rs.port == port:
                return rs
        return None

    def table_weight(self, rs: RealServer) -> int:
        """The weight the variant builds tables from."""
        if self.director.variant == "backport":
            return rs.weight
        return rs.last_weight

    def rebuild(self) -> bool:
        """Rebuild the table as ``ip_vs_mh_dest_changed()`` would.

        Returns False, keeping the old table, when there are more real
        servers than slots (the kernel's -EINVAL).
        """
        if self.scheduler != "mh":
            return True
        if len(self.real_servers) > min(self.director.table_size, core.MAX_DESTS):
            return False
        servers = tuple(self.real_servers)
        self._built = (servers, tuple(self.table_weight(rs) for rs in servers))
        self._table = None
        return True

    @property
    def table_servers(self) -> tuple[RealServer, ...]:
        """The real servers the table was built from, list head first.

        Table entries index this tuple.
        """
        return self._built[0]

    @property
    def table_weights(self) -> tuple[int, ...]:
        """The weights the current table was built from, per table server."""
        return self._built[1]

    @property
    def table(self) -> npt.NDArray[np.uint16]:
        """The lookup table: per slot, an index into ``table_servers``.

        Empty slots hold 0xFFFF. Computed on first use after a change.
        """
        if self._table is None:
            servers, weights = self._built
            d = self.director
            self._table = core.build_table(
                d.table_size,
                d.word_size,
                np.array([fold_address(rs.address) for rs in servers], np.uint32),
                np.array([rs.port for rs in servers], np.uint32),
                np.array(weights, np.uint32),
            )
        return self._table

    def availability(self) -> npt.NDArray[np.uint8]:
        """Per table server, 1 when it is available (live weight > 0)."""
        return np.array([rs.available for rs in self.table_servers], np.uint8)

    def _lookup_state(self) -> _LookupState:
        """What a lookup needs, computed once per change to the model."""
        count = _Changes.count
        seen, state = self._state
        if seen != count or state is None:
            d = self.director
            avail = self.availability()
            avail.flags.writeable = False  # shared by every lookup until a change
            args = (d.table_size, d.word_size, self.table, avail, self.fallback)
            state = _LookupState(*args, self.table_servers, core.Scheduler(*args))
            self._state = (count, state)
        return state

    # -- scheduling ------------------------------------------------------
    def hashed_port(self, protocol: str, sport: int) -> int:
        """The port that enters the hash for a flow of *protocol*."""
        if protocol in PROTOCOLS and self.hashes_port:
            return sport
        return 0

    def schedule(
        self, saddr: IPAddress, sport: int, protocol: str
    ) -> RealServer | None:
        """The real server the kernel picks for a new flow, or None."""
        self._require_mh()
        if saddr.version != self.family:
            raise MaglevxError(
                f"client address {saddr} is not IPv{self.family} like {self.name}",
                field="saddr",
            )
        st = self._lookup_state()
        idx = st.scheduler.lookup(
            fold_address(saddr), self.hashed_port(protocol, sport)
        )
        return None if idx == core.NONE else st.servers[idx]

    def lookup_many(
        self,
        saddrs: npt.ArrayLike,
        sports: npt.ArrayLike | None = None,
        protocol: str = "tcp",
        *,
        threads: int = 1,
    ) -> npt.NDArray[np.int32]:
        """Schedule many flows at once; releases the GIL in the C core.

        *saddrs*: IPv4 addresses as integers (shape ``(n,)``), or IPv6
        addresses as four 32-bit words, most significant first (shape
        ``(n, 4)``), or as 16 bytes each (shape ``(n, 16)``, uint8).
        *sports*: client ports (ignored unless the port is hashed).
        *threads*: split the flows over this many threads (the calling
        thread is one of them); results do not depend on it.

        Returns, per flow, the index into ``table_servers`` or -1 for no
        destination.
        """
        self._require_mh()
        if type(threads) is not int or threads < 1:
            raise MaglevxError(f"threads {threads!r} is not a positive integer")
        addrs = _address_array(saddrs, self.family)
        n = addrs.shape[0]
        if sports is None or protocol not in PROTOCOLS or not self.hashes_port:
            ports = None
        else:
            ports = np.ascontiguousarray(sports, dtype=np.uint16)
            if ports.shape != (n,):
                raise MaglevxError(
                    f"{ports.shape[0]} ports for {n} addresses", field="sports"
                )
        st = self._lookup_state()
        run = (
            st.scheduler.lookup_many if self.family == 4 else st.scheduler.lookup_many6
        )
        if threads == 1 or n < _MIN_FLOWS_PER_THREAD * 2:
            return run(addrs, ports).view(np.int32)
        out = np.empty(n, np.uint32)
        bounds = np.linspace(0, n, min(threads, n // _MIN_FLOWS_PER_THREAD) + 1)
        bounds = bounds.astype(np.intp)

        def part(i: int) -> None:
            lo, hi = bounds[i], bounds[i + 1]
            p = None if ports is None else ports[lo:hi]
            run(addrs[lo:hi], p, out[lo:hi])

        pending = [
            _pool(len(bounds) - 2).submit(part, i) for i in range(1, len(bounds) - 1)
        ]
        part(0)
        for f in pending:
            f.result()
        return out.view(np.int32)

    def _require_mh(self) -> None:
        if self.scheduler != "mh":
            raise MaglevxError(
                f"{self.name} uses scheduler {self.scheduler!r}, not mh; "
                "only mh decisions can be predicted"
            )


@dataclass(frozen=True)
class _LookupState:
    """A service's table and availability as the C core takes them."""

    m: int
    word_size: int
    table: npt.NDArray[np.uint16]
    avail: npt.NDArray[np.uint8]
    fallback: bool
    servers: tuple[RealServer, ...]
    scheduler: Any  # core.Scheduler over the above


# Below this many flows per thread, starting the thread costs more than it saves.
_MIN_FLOWS_PER_THREAD = 65536
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool of at least *workers* threads for lookup_many()."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            old, _POOL = _POOL, ThreadPoolExecutor(workers, "maglevx")
            if old is not None:
                old.shutdown(wait=False)
        return _POOL


def _address_array(saddrs: npt.ArrayLike, family: int) -> npt.NDArray[Any]:
    """Client addresses as the C core takes them (see lookup_many).

    IPv4: uint32 per address; IPv6: (n, 4) uint32 words or (n, 16) bytes,
    folded by the core. Same checks and messages as fold_array().
    """
    a = np.asarray(saddrs)
    if family == 4:
        if a.ndim != 1:
            raise MaglevxError("IPv4 addresses must be a 1-d array", field="saddrs")
        return np.ascontiguousarray(a, dtype=np.uint32)
    if a.ndim == 2 and a.shape[1] == 16:
        return np.ascontiguousarray(a, dtype=np.uint8)
    if a.ndim != 2 or a.shape[1] != 4:
        raise MaglevxError(
            "IPv6 addresses must have shape (n, 4) words or (n, 16) bytes",
            field="saddrs",
        )
    return np.ascontiguousarray(a, dtype=np.uint32)


def fold_array(saddrs: npt.ArrayLike, family: int) -> npt.NDArray[np.uint32]:
    """Folded client addresses for an array of addresses (see lookup_many)."""
    a = np.asarray(saddrs)
    if family == 4:
        if a.ndim != 1:
            raise MaglevxError("IPv4 addresses must be a 1-d array", field="saddrs")
        return np.ascontiguousarray(a, dtype=np.uint32)
    if a.ndim == 2 and a.shape[1] == 16:
        a = a.astype(np.uint8).reshape(-1, 4, 4)
        a = (
            a[:, :, 0].astype(np.uint32) << 24
            | a[:, :, 1].astype(np.uint32) << 16
            | a[:, :, 2].astype(np.uint32) << 8
            | a[:, :, 3].astype(np.uint32)
        )
    if a.ndim != 2 or a.shape[1] != 4:
        raise MaglevxError(
            "IPv6 addresses must have shape (n, 4) words or (n, 16) bytes",
            field="saddrs",
        )
    a = a.astype(np.uint32)
    return np.ascontiguousarray(a[:, 0] ^ a[:, 1] ^ a[:, 2] ^ a[:, 3])


class Director:
    """An IPVS director: its virtual services and how it builds tables.

    *variant*: ``upstream`` (in-tree ip_vs_mh) or ``backport`` (kmod/).
    *word_size*: 64 or 32, the director kernel's word size (which hsiphash).
    *table_size*: the table size M, one of the kernel's primes.
    *backport_hash_port*: for ``backport`` only: the module's ``hash_port``
    parameter (default True: client ports are always hashed).
    """

    def __init__(
        self,
        variant: str = "upstream",
        word_size: int = 64,
        table_size: int = DEFAULT_TABLE_SIZE,
        *,
        backport_hash_port: bool = True,
    ) -> None:
        check_params(variant, word_size, table_size)
        self.variant = variant
        self.word_size = word_size
        self.table_size = table_size
        self.backport_hash_port = backport_hash_port
        self.services: list[VirtualService] = _ServiceList()
        # lookup(): (proto, daddr, dport, fwmark) as given -> _Route
        self._routes: dict[tuple[object, ...], _Route | None] = {}
        self._routes_seen = -1

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name not in ("_routes", "_routes_seen"):  # caches, not state
            _Changes.bump()

    def __repr__(self) -> str:
        return (
            f"Director(variant={self.variant!r}, word_size={self.word_size}, "
            f"table_size={self.table_size}, services={len(self.services)})"
        )

    @classmethod
    def from_history(
        cls,
        text: str | Iterable[str],
        *,
        source: str = "<history>",
        variant: str = "upstream",
        word_size: int = 64,
        table_size: int = DEFAULT_TABLE_SIZE,
        backport_hash_port: bool = True,
    ) -> Director:
        """Build a director by applying ``ipvsadm -R`` lines top to bottom."""
        from maglevx.ipvsadm import apply_history

        d = cls(variant, word_size, table_size, backport_hash_port=backport_hash_port)
        apply_history(d, text, source=source)
        return d

    @classmethod
    def from_snapshot(
        cls,
        text: str | Iterable[str],
        *,
        source: str = "<snapshot>",
        variant: str = "upstream",
        word_size: int = 64,
        table_size: int = DEFAULT_TABLE_SIZE,
        backport_hash_port: bool = True,
    ) -> Director:
        """Build a director from ``ipvsadm -Ln --nosort`` output.

        See :func:`maglevx.ipvsadm.apply_snapshot` for what a snapshot
        cannot know.
        """
        from maglevx.ipvsadm import apply_snapshot

        d = cls(variant, word_size, table_size, backport_hash_port=backport_hash_port)
        apply_snapshot(d, text, source=source)
        return d

    # -- services --------------------------------------------------------
    def find_service(
        self, key: tuple[str, int | IPAddress | None, int]
    ) -> VirtualService | None:
        """The service with this key (see VirtualService.key), if any."""
        for svc in self.services:
            if svc.key == key:
                return svc
        return None

    def service_for(
        self, protocol: str, daddr: IPAddress, dport: int, fwmark: int | None = None
    ) -> VirtualService | None:
        """The service ``ip_vs_service_find()`` picks for a packet.

        fwmark services first (when the packet carries a mark), then
        protocol/address/port, then the port-zero catch-all service.
        """
        if fwmark:
            svc = self.find_service(("fwmark", fwmark, daddr.version))
            if svc is not None:
                return svc
        svc = self.find_service((protocol, daddr, dport))
        if svc is None and dport != 0:
            svc = self.find_service((protocol, daddr, 0))
        return svc


FiveTuple = Sequence[object]


def parse_five_tuple(
    five_tuple: FiveTuple,
) -> tuple[str, IPAddress, int, IPAddress, int]:
    """Validate ``(proto, saddr, sport, daddr, dport)``; addresses may be str."""
    if len(five_tuple) != 5:
        raise MaglevxError(
            f"a flow has 5 fields (proto, saddr, sport, daddr, dport), "
            f"got {len(five_tuple)}"
        )
    proto, saddr, sport, daddr, dport = five_tuple
    p = str(proto).strip().lower()
    if p not in PROTOCOLS:
        raise MaglevxError(
            f"unknown protocol {proto!r}; expected tcp, udp or sctp", field="proto"
        )
    sa = parse_address(saddr, "saddr")
    da = parse_address(daddr, "daddr")
    if sa.version != da.version:
        raise MaglevxError(
            f"saddr {sa} and daddr {da} are of different families", field="saddr"
        )
    return p, sa, parse_port(sport, "sport"), da, parse_port(dport, "dport")


def parse_address(value: object, what: str) -> IPAddress:
    """An IPv4/IPv6 address from str, int-free input or an ipaddress object."""
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if not isinstance(value, str):
        raise MaglevxError(f"{value!r} is not an IP address", field=what)
    if "%" in value:  # zone indices: inet_pton() and the kernel know none
        raise MaglevxError(f"{value!r} is not an IP address", field=what)
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise MaglevxError(f"{value!r} is not an IP address", field=what) from None


def parse_number(text: str, lo: int, hi: int, what: str, field: str) -> int:
    """A decimal number in ASCII digits within lo..hi, from a file's token.

    Other scripts' digits (``int('٨٠') == 80``) are refused, and so are
    numbers of thousands of digits (int() raises ValueError past
    ``sys.get_int_max_str_digits()``) without converting them. *what*
    prefixes the messages (``weight '1x' is not a number``); may be empty.
    """
    name = f"{what} " if what else ""
    s = text.strip()
    if not s.isascii() or not s.isdigit():
        raise MaglevxError(f"{name}{text!r} is not a number", field=field)
    digits = s.lstrip("0") or "0"
    if len(digits) > max(20, len(str(hi))):
        raise MaglevxError(
            f"{name}{digits[:20]}... ({len(digits)} digits) is outside {lo}..{hi}",
            field=field,
        )
    n = int(digits)
    if not lo <= n <= hi:
        raise MaglevxError(f"{name}{n} is outside {lo}..{hi}", field=field)
    return n


def parse_port(value: object, what: str) -> int:
    """A port number 0..65535 from int or decimal str."""
    if isinstance(value, bool):
        raise MaglevxError(f"{value!r} is not a port", field=what)
    if isinstance(value, str):
        s = value.strip()
        if not s.isdigit() or not s.isascii():
            raise MaglevxError(f"{value!r} is not a port", field=what)
        if len(s.lstrip("0")) > 5:  # also keeps int() under its 4300 digits
            raise MaglevxError(f"port {s[:20]!r} is outside 0..65535", field=what)
        port = int(s)
    elif isinstance(value, (int, np.integer)):
        port = int(value)
    else:
        raise MaglevxError(f"{value!r} is not a port", field=what)
    if not 0 <= port <= 65535:
        raise MaglevxError(f"port {port} is outside 0..65535", field=what)
    return port


@dataclass(frozen=True)
class _Route:
    """Where lookup() sends flows of one (proto, daddr, dport, fwmark)."""

    service: VirtualService
    family: int  # of the service and of daddr
    hashes_port: bool
    state: _LookupState


_MAX_ROUTES = 4096
_ADDRESS_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_MISS = object()


def _route(
    director: Director, proto: str, daddr: object, dport: int, fwmark: int | None
) -> _Route | None:
    """The _Route for a flow, or None when only the slow path can say."""
    p = proto.strip().lower()
    if p not in PROTOCOLS:
        return None
    try:
        da = parse_address(daddr, "daddr")
    except MaglevxError:
        return None
    svc = director.service_for(p, da, dport, fwmark)
    if svc is None or svc.scheduler != "mh" or svc.family != da.version:
        return None
    return _Route(svc, da.version, svc.hashes_port, svc._lookup_state())


def _lookup_fast(
    five_tuple: FiveTuple, director: Director, fwmark: int | None
) -> RealServer | None | object:
    """lookup() for the common case, or _MISS to take the slow path.

    Returns only what the slow path would return; anything unusual (odd
    types, bad values, no service) is left to it, errors included.
    Service resolution is cached per (proto, daddr, dport, fwmark) as
    given, and client addresses are parsed with inet_pton(), which accepts
    a subset of what ipaddress accepts (no whitespace, no zone index).
    """
    if (
        type(five_tuple) is not tuple
        or len(five_tuple) != 5
        or type(director.services) is not _ServiceList  # changes not seen
    ):
        return _MISS
    proto, saddr, sport, daddr, dport = five_tuple
    if (
        type(proto) is not str
        or type(sport) is not int
        or type(dport) is not int
        or not (fwmark is None or type(fwmark) is int)
        or not 0 <= sport <= 65535
        or not 0 <= dport <= 65535
    ):
        return _MISS
    if director._routes_seen != _Changes.count:
        director._routes_seen = _Changes.count
        director._routes = {}
    if type(daddr) is str:
        dkey: object = daddr
    elif type(daddr) in _ADDRESS_TYPES:
        # they hash and compare in Python code: key on their value instead
        dkey = (type(daddr), int(daddr))  # type: ignore[call-overload]
    else:
        return _MISS
    route = director._routes.get((proto, dkey, dport, fwmark), _MISS)
    if route is _MISS:
        if len(director._routes) >= _MAX_ROUTES:
            director._routes = {}
        seen = _Changes.count
        route = _route(director, proto, daddr, dport, fwmark)
        if seen == _Changes.count:
            director._routes[(proto, dkey, dport, fwmark)] = route
    if route is None:
        return _MISS
    st = route.state
    port = sport if route.hashes_port else 0
    if type(saddr) is str:
        idx = st.scheduler.lookup_text(route.family, saddr, port)
        if idx == -1:
            return _MISS
    elif type(saddr) is _ADDRESS_TYPES[route.family == 6]:
        n = int(saddr)  # type: ignore[call-overload]
        fold = (
            n if route.family == 4 else (n >> 96 ^ n >> 64 ^ n >> 32 ^ n) & 0xFFFFFFFF
        )
        idx = st.scheduler.lookup(fold, port)
    else:
        return _MISS
    return None if idx == core.NONE else st.servers[idx]


def lookup(
    five_tuple: FiveTuple, director: Director, *, fwmark: int | None = None
) -> RealServer | None:
    """The real server *director* picks for a new flow, or None.

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
    rs = _lookup_fast(five_tuple, director, fwmark)
    if rs is not _MISS:
        return rs  # type: ignore[return-value]
    proto, saddr, sport, daddr, dport = parse_five_tuple(five_tuple)
    svc = director.service_for(proto, daddr, dport, fwmark)
    if svc is None:
        raise MaglevxError(
            f"no virtual service for {proto} {format_endpoint(daddr, dport)}",
            field="daddr",
        )
    return svc.schedule(saddr, sport, proto)
