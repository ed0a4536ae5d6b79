"""Read a live director's IPVS configuration over generic netlink.

This is what ``ipvsadm -Ln --nosort`` does (``libipvs``, ``IPVS_CMD_GET_SERVICE``
and ``IPVS_CMD_GET_DEST`` dumps of the ``IPVS`` generic netlink family,
``include/uapi/linux/ip_vs.h``), with the standard library only. The kernel
dumps a service's real servers by walking its list head to tail
(``ip_vs_genl_dump_dests()``), so :attr:`LiveService.real_servers` is in the
kernel's list order, the order ``ip_vs_mh`` builds its table in.

Why not pyroute2: its IPVS helper keys the real-server dump of a service by
address, protocol and port only, so fwmark services cannot be dumped, its
``"update"`` command sends ``IPVS_CMD_DEL_SERVICE``, and it is a large import for
the few hundred lines of protocol needed here (import time counts: ``watch``
and the tests run under TCG emulation).

The result is plain records (:class:`LiveService`, :class:`LiveRealServer`);
:func:`parse_listing` builds the same records from ``ipvsadm -Ln --nosort``
(and ``--thresholds``) output, the fallback when netlink is not available.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import struct
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Union

from maglevx.errors import MaglevxError
from maglevx.ipvs import (
    SVC_F_HASHED,  # the kernel's own bookkeeping; ipvsadm never shows it
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    SVC_F_SCHED1,
    SVC_F_SCHED2,
    SVC_F_SCHED3,
)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

NETLINK_GENERIC = 16
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2

IPVS_GENL_NAME, IPVS_GENL_VERSION = "IPVS", 1
IPVS_CMD_GET_SERVICE, IPVS_CMD_GET_DEST, IPVS_CMD_GET_INFO = 4, 8, 15
IPVS_CMD_ATTR_SERVICE, IPVS_CMD_ATTR_DEST = 1, 2
(
    SVC_AF,
    SVC_PROTOCOL,
    SVC_ADDR,
    SVC_PORT,
    SVC_FWMARK,
    SVC_SCHED_NAME,
    SVC_FLAGS,
    SVC_TIMEOUT,
    SVC_NETMASK,
    SVC_STATS,
    SVC_PE_NAME,
) = range(1, 12)
(
    DEST_ADDR,
    DEST_PORT,
    DEST_FWD_METHOD,
    DEST_WEIGHT,
    DEST_U_THRESH,
    DEST_L_THRESH,
    DEST_ACTIVE_CONNS,
    DEST_INACT_CONNS,
    DEST_PERSIST_CONNS,
    DEST_STATS,
    DEST_ADDR_FAMILY,
) = range(1, 12)
INFO_VERSION, INFO_CONN_TAB_SIZE = 1, 2


PROTOCOL_NAMES = {6: "tcp", 17: "udp", 132: "sctp"}
PROTOCOL_NUMBERS = {v: k for k, v in PROTOCOL_NAMES.items()}
# IP_VS_CONN_F_MASQ .. IP_VS_CONN_F_BYPASS, as ipvsadm -L names them
FORWARD_NAMES = ("masq", "local", "tunnel", "route", "bypass")
_LISTING_FORWARD = {
    "Masq": "masq",
    "Local": "local",
    "Route": "route",
    "Tunnel": "tunnel",
    "Bypass": "bypass",
}
# ipvsadm's print_sched_flags(): names per scheduler, flag-N otherwise
_SCHED_FLAG_NAMES = {
    "mh": ("mh-fallback", "mh-port", "flag-3"),
    "sh": ("sh-fallback", "sh-port", "flag-3"),
}
_GENERIC_FLAG_NAMES = ("flag-1", "flag-2", "flag-3")
_SCHED_FLAG_BITS = (SVC_F_SCHED1, SVC_F_SCHED2, SVC_F_SCHED3)


class NetlinkError(MaglevxError):
    """A failed netlink request; ``errno`` tells why (0: not an OS error)."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err

    @property
    def transient(self) -> bool:
        """Whether retrying later may succeed (e.g. a dump raced a change)."""
        return self.errno in (
            errno.EINTR,
            errno.EAGAIN,
            errno.ENOBUFS,
            errno.EBUSY,
            errno.ESRCH,
            0,
        )


@dataclass(frozen=True)
class LiveRealServer:
    """One real server as the kernel reports it."""

    address: IPAddress
    port: int
    forward: str  # masq, local, route, tunnel, bypass
    weight: int
    u_threshold: int = 0
    l_threshold: int = 0
    active_conns: int = 0
    inactive_conns: int = 0
    persistent_conns: int = 0

    @property
    def endpoint(self) -> str:
        """``addr:port`` as ipvsadm prints it (``[v6]:port``)."""
        if self.address.version == 6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class LiveService:
    """One virtual service with its real servers, head of the list first.

    ``netmask`` is the persistence netmask as the kernel keeps it: a 32-bit
    mask for IPv4 (``0xFFFFFF00`` is ``255.255.255.0``), a prefix length for
    IPv6. ``timeout`` is the persistence timeout in seconds (kept by the
    kernel also when the service is not persistent); ``flags`` never has the
    kernel's internal "hashed" bit.
    """

    protocol: str  # tcp, udp, sctp, or "fwmark"
    address: IPAddress | None  # None for fwmark services
    port: int
    fwmark: int
    family: int  # 4 or 6
    scheduler: str
    flags: int
    timeout: int
    netmask: int
    pe_name: str = ""
    real_servers: tuple[LiveRealServer, ...] = field(default=())

    @property
    def persistent(self) -> int | None:
        """The persistence timeout, or None when the service is not persistent."""
        return self.timeout if self.flags & SVC_F_PERSISTENT else None

    @property
    def name(self) -> str:
        """The service as ipvsadm -L names it: ``TCP 10.0.0.1:80``, ``FWM 5 IPv6``."""
        if self.protocol == "fwmark":
            return f"FWM {self.fwmark}" + (" IPv6" if self.family == 6 else "")
        host = f"[{self.address}]" if self.family == 6 else str(self.address)
        return f"{self.protocol.upper()} {host}:{self.port}"

    @property
    def key(self) -> tuple[object, ...]:
        """``(protocol, address, port)``, or ``("fwmark", mark, family)``."""
        if self.protocol == "fwmark":
            return ("fwmark", self.fwmark, self.family)
        return (self.protocol, self.address, self.port)

    @property
    def sched_flag_names(self) -> tuple[str, ...]:
        """The scheduler flags as ipvsadm spells them for this scheduler."""
        names = _SCHED_FLAG_NAMES.get(self.scheduler, _GENERIC_FLAG_NAMES)
        return tuple(n for n, b in zip(names, _SCHED_FLAG_BITS) if self.flags & b)

    @property
    def netmask_text(self) -> str:
        """The netmask as ipvsadm prints it (dotted for IPv4, a number for IPv6)."""
        if self.family == 6:
            return str(self.netmask)
        return str(ipaddress.IPv4Address(self.netmask))


def services_to_json(services: Iterable[LiveService]) -> list[dict[str, object]]:
    """Records as JSON-serializable dicts (addresses as text)."""
    out = []
    for s in services:
        d = asdict(s)
        d["address"] = None if s.address is None else str(s.address)
        for r in d["real_servers"]:
            r["address"] = str(r["address"])
        out.append(d)
    return out


def services_from_json(data: Iterable[dict[str, Any]]) -> list[LiveService]:
    """The inverse of :func:`services_to_json`."""
    out = []
    for d in data:
        d = dict(d)
        rss = tuple(
            LiveRealServer(**{**r, "address": ipaddress.ip_address(r["address"])})
            for r in d.pop("real_servers")
        )
        addr = d.pop("address")
        out.append(
            LiveService(
                **d,
                address=None if addr is None else ipaddress.ip_address(addr),
                real_servers=rss,
            )
        )
    return out


# --- netlink plumbing ------------------------------------------------------


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        yield kind & 0x3FFF, data[off + 4 : off + length]
        off += (length + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _u16(b: bytes) -> int:
    return int(struct.unpack("=H", b[:2])[0])


def _u32(b: bytes) -> int:
    return int(struct.unpack("=I", b[:4])[0])


def _be16(b: bytes) -> int:
    return int(struct.unpack("!H", b[:2])[0])


def _string(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("ascii", "replace")


def _address(b: bytes, family: int) -> IPAddress:
    if family == 6:
        return ipaddress.IPv6Address(b[:16])
    return ipaddress.IPv4Address(b[:4])


class IPVSNetlink:
    """A generic netlink socket bound to the kernel's ``IPVS`` family.

    Raises :class:`NetlinkError` with one clear line when the kernel has no
    IPVS or the caller lacks ``CAP_NET_ADMIN``.
    """

    def __init__(self) -> None:
        try:
            self.sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC
            )
            self.sock.bind((0, 0))
        except OSError as exc:
            raise NetlinkError(
                f"cannot open a generic netlink socket: {exc.strerror}", exc.errno or 0
            ) from None
        self.seq = 0
        try:
            self.family = self._resolve(IPVS_GENL_NAME)
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> IPVSNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, kind: int, flags: int, cmd: int, version: int, attrs: bytes, what: str
    ) -> list[bytes]:
        """Send one request; the payloads (after the genl header) of the replies."""
        self.seq += 1
        body = struct.pack("=BBH", cmd, version, 0) + attrs
        msg = struct.pack("=IHHII", 16 + len(body), kind, flags, self.seq, 0) + body
        try:
            self.sock.send(msg)
        except OSError as exc:
            raise NetlinkError(f"{what}: {exc.strerror}", exc.errno or 0) from None
        out: list[bytes] = []
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError as exc:
                raise NetlinkError(f"{what}: {exc.strerror}", exc.errno or 0) from None
            off = 0
            while off + 16 <= len(data):
                length, mtype, _flags, seq, _pid = struct.unpack_from(
                    "=IHHII", data, off
                )
                if length < 16:
                    raise NetlinkError(f"{what}: malformed netlink reply")
                payload = data[off + 16 : off + length]
                off += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err == 0:
                        return out
                    raise self._error(what, err)
                out.append(payload[4:])
                if not dump:
                    return out

    @staticmethod
    def _error(what: str, err: int) -> NetlinkError:
        if err == errno.EPERM:
            return NetlinkError("reading IPVS needs CAP_NET_ADMIN: run as root", err)
        return NetlinkError(f"{what}: {os.strerror(err)}", err)

    def _resolve(self, name: str) -> int:
        try:
            replies = self._request(
                GENL_ID_CTRL,
                NLM_F_REQUEST,
                CTRL_CMD_GETFAMILY,
                1,
                _attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"),
                "resolving the IPVS netlink family",
            )
        except NetlinkError as exc:
            if exc.errno == errno.ENOENT:
                raise NetlinkError(
                    "this kernel has no IPVS (no generic netlink family 'IPVS'): "
                    "load it with modprobe ip_vs",
                    exc.errno,
                ) from None
            raise
        for payload in replies:
            for kind, value in _attrs(payload):
                if kind == CTRL_ATTR_FAMILY_ID:
                    return _u16(value)
        raise NetlinkError("the kernel did not say which id the IPVS family has")

    def info(self) -> tuple[str, int]:
        """IPVS's version (``"1.2.1"``) and its connection hash table size."""
        replies = self._request(
            self.family,
            NLM_F_REQUEST,
            IPVS_CMD_GET_INFO,
            IPVS_GENL_VERSION,
            b"",
            "IPVS_CMD_GET_INFO",
        )
        version, size = 0, 0
        for payload in replies:
            for kind, value in _attrs(payload):
                if kind == INFO_VERSION:
                    version = _u32(value)
                elif kind == INFO_CONN_TAB_SIZE:
                    size = _u32(value)
        return f"{version >> 16}.{(version >> 8) & 0xFF}.{version & 0xFF}", size

    def services(self) -> list[LiveService]:
        """Every virtual service, each with its real servers in list order."""
        replies = self._request(
            self.family,
            NLM_F_REQUEST | NLM_F_DUMP,
            IPVS_CMD_GET_SERVICE,
            IPVS_GENL_VERSION,
            b"",
            "IPVS_CMD_GET_SERVICE",
        )
        out = []
        for payload in replies:
            for kind, value in _attrs(payload):
                if kind == IPVS_CMD_ATTR_SERVICE:
                    svc, key = _service(value)
                    out.append(replace(svc, real_servers=self._dests(svc, key)))
        return out

    def _dests(self, svc: LiveService, key: bytes) -> tuple[LiveRealServer, ...]:
        replies = self._request(
            self.family,
            NLM_F_REQUEST | NLM_F_DUMP,
            IPVS_CMD_GET_DEST,
            IPVS_GENL_VERSION,
            _attr(IPVS_CMD_ATTR_SERVICE, key),
            f"IPVS_CMD_GET_DEST {svc.name}",
        )
        out = []
        for payload in replies:
            for kind, value in _attrs(payload):
                if kind == IPVS_CMD_ATTR_DEST:
                    out.append(_dest(value, svc.family))
        return tuple(out)


def _service(data: bytes) -> tuple[LiveService, bytes]:
    """A service record and the nested attributes that name it in requests."""
    a = dict(_attrs(data))
    family = 6 if _u16(a.get(SVC_AF, b"\2\0")) == socket.AF_INET6 else 4
    fwmark = _u32(a[SVC_FWMARK]) if SVC_FWMARK in a else 0
    af = _attr(SVC_AF, a[SVC_AF])
    if fwmark:
        protocol, address, port = "fwmark", None, 0
        key = af + _attr(SVC_FWMARK, a[SVC_FWMARK])
    else:
        number = _u16(a[SVC_PROTOCOL])
        protocol = PROTOCOL_NAMES.get(number, str(number))
        address = _address(a[SVC_ADDR], family)
        port = _be16(a[SVC_PORT])
        key = af + b"".join(_attr(k, a[k]) for k in (SVC_PROTOCOL, SVC_ADDR, SVC_PORT))
    flags = _u32(a[SVC_FLAGS]) if SVC_FLAGS in a else 0
    raw_mask = a.get(SVC_NETMASK, b"\xff\xff\xff\xff")
    # IPv4: the mask in network order; IPv6: a prefix length in host order
    netmask = _u32(raw_mask) if family == 6 else int(struct.unpack("!I", raw_mask)[0])
    svc = LiveService(
        protocol=protocol,
        address=address,
        port=port,
        fwmark=fwmark,
        family=family,
        scheduler=_string(a.get(SVC_SCHED_NAME, b"")),
        flags=flags & ~SVC_F_HASHED & 0xFFFF,
        timeout=_u32(a[SVC_TIMEOUT]) if SVC_TIMEOUT in a else 0,
        netmask=netmask,
        pe_name=_string(a.get(SVC_PE_NAME, b"")),
    )
    return svc, key


def _dest(data: bytes, svc_family: int) -> LiveRealServer:
    a = dict(_attrs(data))
    family = svc_family
    if DEST_ADDR_FAMILY in a:  # Linux >= 4.x: real servers may be of another family
        family = 6 if _u16(a[DEST_ADDR_FAMILY]) == socket.AF_INET6 else 4
    method = _u32(a.get(DEST_FWD_METHOD, b"\0\0\0\0")) & 0x7
    weight = struct.unpack("=i", a.get(DEST_WEIGHT, b"\0\0\0\0")[:4])[0]
    return LiveRealServer(
        address=_address(a[DEST_ADDR], family),
        port=_be16(a[DEST_PORT]),
        forward=FORWARD_NAMES[method] if method < len(FORWARD_NAMES) else str(method),
        weight=int(weight),
        u_threshold=_u32(a.get(DEST_U_THRESH, b"\0\0\0\0")),
        l_threshold=_u32(a.get(DEST_L_THRESH, b"\0\0\0\0")),
        active_conns=_u32(a.get(DEST_ACTIVE_CONNS, b"\0\0\0\0")),
        inactive_conns=_u32(a.get(DEST_INACT_CONNS, b"\0\0\0\0")),
        persistent_conns=_u32(a.get(DEST_PERSIST_CONNS, b"\0\0\0\0")),
    )


def read_services(*, consistent: bool = True, tries: int = 3) -> list[LiveService]:
    """The live services over netlink.

    A dump is not atomic: a change between the service dump and a real-server
    dump gives a mixed picture. With *consistent*, read until two reads in a
    row agree (at most *tries* times), else raise a transient
    :class:`NetlinkError`. Counters (connections) are not compared.
    """
    with IPVSNetlink() as nl:
        prev = nl.services()
        if not consistent:
            return prev
        for _ in range(tries):
            cur = nl.services()
            if _config(cur) == _config(prev):
                return cur
            prev = cur
    raise NetlinkError("IPVS kept changing while it was read; try again", errno.EAGAIN)


def _config(services: list[LiveService]) -> list[LiveService]:
    """*services* without their connection counters."""
    return [
        replace(
            s,
            real_servers=tuple(
                replace(r, active_conns=0, inactive_conns=0, persistent_conns=0)
                for r in s.real_servers
            ),
        )
        for s in services
    ]


def without_counters(services: Iterable[LiveService]) -> list[LiveService]:
    """The configuration only: connection counters set to 0."""
    return _config(list(services))


# --- the ipvsadm fallback ----------------------------------------------------

_SVC_LINE = re.compile(
    r"^(?:(?P<proto>TCP|UDP|SCTP)\s+(?P<addr>\S+)|FWM\s+(?P<mark>-?\d+)(?P<v6>\s+IPv6)?)"
    r"\s+(?P<sched>\S+)(?P<rest>.*)$",
    re.ASCII,
)
_RS_LINE = re.compile(r"^->\s+(?P<addr>\S+)\s+(?P<rest>.*)$", re.ASCII)


def _endpoint(text: str, where: str) -> tuple[IPAddress, int]:
    m = re.fullmatch(
        r"\[(?P<a6>[0-9A-Fa-f:.]+)\]:(?P<p>\d+)|(?P<a4>[0-9.]+):(?P<p4>\d+)",
        text,
        re.ASCII,
    )
    if m is None:
        raise MaglevxError(f"{text!r} is not address:port", field=where)
    try:
        if m["a6"]:
            return ipaddress.IPv6Address(m["a6"]), int(m["p"])
        return ipaddress.IPv4Address(m["a4"]), int(m["p4"])
    except ValueError:
        raise MaglevxError(f"{text!r} is not address:port", field=where) from None


def _flag_bits(names: str, scheduler: str) -> int:
    table = _SCHED_FLAG_NAMES.get(scheduler, _GENERIC_FLAG_NAMES)
    bits = 0
    for name in names.split(","):
        name = name.strip()
        if name in table:
            bits |= _SCHED_FLAG_BITS[table.index(name)]
        elif name in _GENERIC_FLAG_NAMES:
            bits |= _SCHED_FLAG_BITS[_GENERIC_FLAG_NAMES.index(name)]
        else:
            raise MaglevxError(f"unknown scheduler flag {name!r}", field="Flags")
    return bits


def _parse_service(line: str) -> LiveService:
    m = _SVC_LINE.match(line)
    if m is None:
        raise MaglevxError(f"not a service line of ipvsadm -Ln: {line!r}")
    if m["proto"]:
        address, port = _endpoint(m["addr"], "LocalAddress:Port")
        protocol, fwmark, family = m["proto"].lower(), 0, address.version
    else:
        address, port, protocol = None, 0, "fwmark"
        # ipvsadm prints the mark with %d: marks above 2^31 come out negative
        fwmark, family = int(m["mark"]) % 2**32, 6 if m["v6"] else 4
    sched, rest = m["sched"], m["rest"].strip()
    flags, timeout, pe = 0, 0, ""
    netmask = 128 if family == 6 else 0xFFFFFFFF
    fm = re.match(r"\((?P<f>[^)]*)\)\s*", rest)
    if fm:
        flags |= _flag_bits(fm["f"], sched)
        rest = rest[fm.end() :]
    pm = re.match(r"persistent\s+(?P<t>\d+)\s*", rest, re.ASCII)
    if pm:
        flags |= SVC_F_PERSISTENT
        timeout = int(pm["t"])
        rest = rest[pm.end() :]
        mm = re.match(r"mask\s+(?P<m>\S+)\s*", rest)
        if mm:
            try:
                netmask = (
                    int(mm["m"]) if family == 6 else int(ipaddress.IPv4Address(mm["m"]))
                )
            except ValueError:
                raise MaglevxError(f"bad mask {mm['m']!r}", field="mask") from None
            rest = rest[mm.end() :]
        em = re.match(r"pe\s+(?P<pe>\S+)\s*", rest)
        if em:
            pe, rest = em["pe"], rest[em.end() :]
    if re.match(r"ops\s*$", rest):
        flags |= SVC_F_ONEPACKET
        rest = ""
    if rest.strip():
        raise MaglevxError(f"unexpected service attributes {rest.strip()!r}")
    return LiveService(
        protocol, address, port, fwmark, family, sched, flags, timeout, netmask, pe
    )


def parse_listing(
    text: str, thresholds: str | None = None, *, source: str = "ipvsadm -Ln --nosort"
) -> list[LiveService]:
    """Records from ``ipvsadm -Ln --nosort`` (and its ``--thresholds`` form).

    *text* gives forwarding methods, weights and connection counters;
    *thresholds*, the output of ``ipvsadm -Ln --nosort --thresholds`` taken
    at the same time, the upper and lower thresholds (0 without it). A
    listing has no persistent-connection counter and no persistence timeout
    of a non-persistent service: both read as 0.
    """
    services: list[LiveService] = []
    servers: list[list[LiveRealServer]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(
            ("IP Virtual Server", "Prot LocalAddress", "-> RemoteAddress")
        ):
            continue
        try:
            if line.startswith("->"):
                if not services:
                    raise MaglevxError("real server line before any service")
                m = _RS_LINE.match(line)
                f = m["rest"].split() if m else []
                if m is None or len(f) != 4 or f[0] not in _LISTING_FORWARD:
                    raise MaglevxError(f"not a real server line: {line!r}")
                address, port = _endpoint(m["addr"], "RemoteAddress:Port")
                w, act, inact = (int(x) for x in f[1:])
                servers[-1].append(
                    LiveRealServer(
                        address, port, _LISTING_FORWARD[f[0]], w, 0, 0, act, inact
                    )
                )
            else:
                services.append(_parse_service(line))
                servers.append([])
        except ValueError as exc:
            if isinstance(exc, MaglevxError):
                raise exc.located(source, lineno) from None
            raise MaglevxError(
                f"not a line of ipvsadm -Ln: {line!r}", source=source, line=lineno
            ) from None
    out = [replace(s, real_servers=tuple(rs)) for s, rs in zip(services, servers)]
    if thresholds is not None:
        out = _with_thresholds(out, thresholds)
    return out


def _with_thresholds(services: list[LiveService], text: str) -> list[LiveService]:
    found: dict[tuple[object, ...], list[tuple[int, int]]] = {}
    cur: list[tuple[int, int]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("->") and cur is not None:
            f = line.split()
            if len(f) == 6 and f[2].isdigit():
                cur.append((int(f[2]), int(f[3])))
        elif _SVC_LINE.match(line):
            cur = found.setdefault(_parse_service(line).key, [])
    out = []
    for s in services:
        th = found.get(s.key, [])
        if len(th) != len(s.real_servers):
            raise MaglevxError(f"the --thresholds listing disagrees about {s.name}")
        out.append(
            replace(
                s,
                real_servers=tuple(
                    replace(r, u_threshold=u, l_threshold=lo)
                    for r, (u, lo) in zip(s.real_servers, th)
                ),
            )
        )
    return out


def run_ipvsadm(*args: str) -> str:
    """The output of ``ipvsadm -Ln --nosort ARGS`` on this machine."""
    cmd = ["ipvsadm", "-Ln", "--nosort", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MaglevxError(f"cannot run {' '.join(cmd)}: {exc}") from None
    if r.returncode != 0:
        raise MaglevxError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


def read_services_ipvsadm() -> list[LiveService]:
    """The live services from ``ipvsadm -Ln --nosort`` (the fallback)."""
    return parse_listing(run_ipvsadm(), run_ipvsadm("--thresholds"))


def render_listing(services: Iterable[LiveService]) -> str:
    """The records as ``ipvsadm -Ln --nosort`` prints them (ipvsadm 1.31).

    Used to compare live reads with ipvsadm field for field, and by
    ``maglevx`` to show what it read.
    """
    out = [
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
    ]
    for s in services:
        if s.protocol == "fwmark":
            mark = s.fwmark - 2**32 if s.fwmark >= 2**31 else s.fwmark  # %d
            head = f"FWM  {mark}" + (" IPv6" if s.family == 6 else "")
        else:
            host = f"[{s.address}]" if s.family == 6 else str(s.address)
            head = f"{s.protocol.upper():<4} {host}:{s.port}"  # "%-4s %s"
        line = f"{head} {s.scheduler}"
        if s.sched_flag_names:
            line += f" ({','.join(s.sched_flag_names)})"
        if s.flags & SVC_F_PERSISTENT:
            line += f" persistent {s.timeout}"
            if s.netmask != (128 if s.family == 6 else 0xFFFFFFFF):
                line += f" mask {s.netmask_text}"
            if s.pe_name:
                line += f" pe {s.pe_name}"
        if s.flags & SVC_F_ONEPACKET:
            line += " ops"
        out.append(line)
        for r in s.real_servers:
            fwd = {
                "masq": "Masq",
                "local": "Local",
                "route": "Route",
                "tunnel": "Tunnel",
                "bypass": "Bypass",
            }.get(r.forward, r.forward)
            out.append(
                f"  -> {r.endpoint:<28} {fwd:<7} {r.weight:<6} "
                f"{r.active_conns:<10} {r.inactive_conns:<10}"
            )
    return "\n".join(out) + "\n"
