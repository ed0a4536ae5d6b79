"""Addresses, ports and numbers: parsed, formatted and folded in one place.

Every reader of maglevx (histories, listings, captures, flow files, the
Python API) goes through these functions, so that one rule is written once:
what counts as an address (``inet_pton()``'s view: no zone index), what
counts as a number (ASCII digits only), and how ``ip_vs_mh_hashkey()`` folds
an address into 32 bits.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Union

import numpy as np

from maglevx.errors import MaglevxError
from maglevx.ipvs import PROTOCOLS

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
ADDRESS_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def fold(address: IPAddress) -> int:
    """The 32-bit value ``ip_vs_mh_hashkey()`` hashes for *address*.

    IPv4: the address as a number. IPv6: the XOR of its four 32-bit words
    (the service's family decides; both are the same family here).
    """
    return fold_int(int(address), address.version)


def fold_int(n: int, family: int) -> int:
    """:func:`fold` of an address given as an integer of *family* (4 or 6)."""
    if family == 4:
        return n
    return (n >> 96 ^ n >> 64 ^ n >> 32 ^ n) & 0xFFFFFFFF


def format_endpoint(address: IPAddress, port: int) -> str:
    """``addr:port`` or ``[addr]:port`` as ipvsadm prints it."""
    if address.version == 6:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


def parse_address(value: object, what: str) -> IPAddress:
    """An IPv4/IPv6 address from str or an ipaddress object.

    Zone indices (``fe80::1%eth0``) are refused, as ``inet_pton()`` and the
    kernel know none; *what* names the field in errors.
    """
    if isinstance(value, ADDRESS_TYPES):
        if getattr(value, "scope_id", None) is None:
            return value
        value = str(value)
    elif isinstance(value, str) and "%" not in value:
        try:
            return ipaddress.ip_address(value.strip())
        except ValueError:
            pass
    raise MaglevxError(f"{value!r} is not an IP address", field=what)


def parse_number(text: str, lo: int, hi: int, what: str, field: str | None) -> int:
    """A decimal number in ASCII digits within lo..hi, from a file's token.

    Other scripts' digits (``int('٨٠') == 80``) are refused, and so are
    numbers of thousands of digits, without converting them. *what*
    prefixes the messages (``weight '1x' is not a number``); may be empty.
    """
    name = f"{what} " if what else ""
    s = text.strip()
    if not s.isascii() or not s.isdigit():
        raise MaglevxError(f"{name}{quote(text)} is not a number", field=field)
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


def parse_int(value: object, lo: int, hi: int, what: str, field: str | None) -> int:
    """An integer within lo..hi from an int (not bool) or decimal str."""
    if isinstance(value, str):
        return parse_number(value, lo, hi, what, field)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MaglevxError(f"{what} {value!r} is not a number", field=field)
    n = int(value)
    if not lo <= n <= hi:
        raise MaglevxError(f"{what} {n} is outside {lo}..{hi}", field=field)
    return n


def parse_port(value: object, what: str) -> int:
    """A port number 0..65535 from int or decimal str."""
    if isinstance(value, bool) or not isinstance(value, (str, int, np.integer)):
        raise MaglevxError(f"{value!r} is not a port", field=what)
    if isinstance(value, str):
        s = value.strip()
        if not s.isdigit() or not s.isascii():
            raise MaglevxError(f"{quote(value)} is not a port", field=what)
        if len(s.lstrip("0")) > 5:
            raise MaglevxError(f"port {s[:20]!r} is outside 0..65535", field=what)
        value = int(s)
    return parse_int(value, 0, 65535, "port", what)


def parse_protocol(value: object, what: str) -> str:
    """tcp, udp or sctp, in any case; *what* names the field in errors."""
    if not isinstance(value, str) or value.strip().lower() not in PROTOCOLS:
        raise MaglevxError(
            f"unknown protocol {value!r}; expected tcp, udp or sctp", field=what
        )
    return value.strip().lower()


def quote(text: str, limit: int = 40) -> str:
    """*text* quoted for an error message, cut to *limit* characters."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


def inet_aton(text: str) -> int | None:
    """Glibc's ``inet_aton()`` as an int, or None if *text* is not an address.

    ``a.b.c.d``, ``a.b.c``, ``a.b`` or ``a``: each part decimal, octal
    (leading 0) or hex (0x), the last one filling the remaining bytes. This is
    how ipvsadm reads an IPv4 ``-M``: ``-M 24`` is the mask 0.0.0.24.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for p in parts:
        if re.fullmatch(r"0[xX][0-9a-fA-F]*", p):
            values.append(int(p[2:] or "0", 16))
        elif re.fullmatch(r"0[0-7]*|[1-9][0-9]*", p):
            values.append(int(p, 8 if p[0] == "0" else 10))
        else:
            return None
    last_bits = 8 * (5 - len(values))
    if any(v > 255 for v in values[:-1]) or values[-1] >= 1 << last_bits:
        return None
    n = 0
    for v in values[:-1]:
        n = n << 8 | v
    return n << last_bits | values[-1]


def parse_five_tuple(
    five_tuple: Sequence[object],
) -> tuple[str, IPAddress, int, IPAddress, int]:
    """Validate ``(proto, saddr, sport, daddr, dport)``; addresses may be str."""
    if isinstance(five_tuple, (str, bytes)) or not isinstance(five_tuple, Sequence):
        raise MaglevxError(
            "a flow is a sequence (proto, saddr, sport, daddr, dport), "
            f"not {type(five_tuple).__name__}"
        )
    if len(five_tuple) != 5:
        raise MaglevxError(
            f"a flow has 5 fields (proto, saddr, sport, daddr, dport), "
            f"got {len(five_tuple)}"
        )
    proto, saddr, sport, daddr, dport = five_tuple
    p = parse_protocol(proto, "proto")
    sa = parse_address(saddr, "saddr")
    da = parse_address(daddr, "daddr")
    if sa.version != da.version:
        raise MaglevxError(
            f"saddr {sa} and daddr {da} are of different families", field="saddr"
        )
    return p, sa, parse_port(sport, "sport"), da, parse_port(dport, "dport")
