"""The ipvsadm command language: ``ipvsadm -R`` lines into commands.

Syntax only. A *history* is text in ``ipvsadm -R`` syntax (one command a
line, as ``ipvsadm -S`` writes them). Each line is parsed as ipvsadm 1.31
parses it, with ipvsadm's own rewrites (default weight 1, default ``-g``,
``-g``/``-i`` real servers get the service port, ``-E`` without ``-b``
clears the scheduler flags, without ``-s`` means ``wlc``), into a
:class:`Command`: what ipvsadm sends to the kernel. How the kernel applies a
command lives in :mod:`maglevx.model` (``Director.apply_command``).

Extensions: blank lines and lines starting with ``#`` are ignored, a leading
``ipvsadm`` word is allowed, and ``-Z`` (zero counters) is skipped.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from maglevx.addresses import IPAddress, format_endpoint, parse_number
from maglevx.errors import MaglevxError
from maglevx.ipvs import (
    DEFAULT_PERSISTENT_TIMEOUT,
    MAX_THRESHOLD,
    MAX_TIMEOUT,
    MAX_WEIGHT,
    SCHEDULERS,
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    SVC_F_SCHED1,
    SVC_F_SCHED2,
    SVC_F_SCHED3,
)
from maglevx.portnames import NETBASE, port_of

DEFAULT_SCHEDULER = "wlc"  # ipvsadm's DEF_SCHED
# A longer line is refused before it is split: shlex is quadratic in the
# length of a token, and no ipvsadm command needs more.
MAX_LINE_LENGTH = 65536

_COMMANDS = {
    "-A": "add-service", "--add-service": "add-service",
    "-E": "edit-service", "--edit-service": "edit-service",
    "-D": "delete-service", "--delete-service": "delete-service",
    "-C": "clear", "--clear": "clear",
    "-a": "add-server", "--add-server": "add-server",
    "-e": "edit-server", "--edit-server": "edit-server",
    "-d": "delete-server", "--delete-server": "delete-server",
}  # fmt: skip
_NOT_CONFIG = {
    "-L", "-l", "--list", "-Z", "--zero", "-R", "--restore", "-S", "--save",
    "--set", "--start-daemon", "--stop-daemon", "-h", "--help", "-v",
    "--version",
}  # fmt: skip

# option -> (canonical name, argument: "required" | "optional" | "none"); the
# long option is "--" + the canonical name
_OPTIONS = {
    opt: (name, arg)
    for letter, name, arg in (
        ("-t", "tcp-service", "required"), ("-u", "udp-service", "required"),
        (None, "sctp-service", "required"), ("-f", "fwmark-service", "required"),
        ("-s", "scheduler", "required"), ("-b", "sched-flags", "required"),
        ("-p", "persistent", "optional"), ("-M", "netmask", "required"),
        ("-r", "real-server", "required"), ("-w", "weight", "required"),
        ("-m", "masquerading", "none"), ("-g", "gatewaying", "none"),
        ("-i", "ipip", "none"), ("-x", "u-threshold", "required"),
        ("-y", "l-threshold", "required"), ("-6", "ipv6", "none"),
        ("-o", "ops", "none"), (None, "pe", "required"),
        (None, "tun-type", "required"), (None, "tun-port", "required"),
        (None, "tun-nocsum", "none"), (None, "tun-csum", "none"),
        (None, "tun-remcsum", "none"), ("-n", "numeric", "none"),
    )
    for opt in (letter, "--" + name)
    if opt is not None
}  # fmt: skip

_SCHED_FLAGS = {
    "flag-1": (SVC_F_SCHED1, None),
    "flag-2": (SVC_F_SCHED2, None),
    "flag-3": (SVC_F_SCHED3, None),
    "sh-fallback": (SVC_F_SCHED1, "sh"),
    "sh-port": (SVC_F_SCHED2, "sh"),
    "mh-fallback": (SVC_F_SCHED1, "mh"),
    "mh-port": (SVC_F_SCHED2, "mh"),
}

_FORWARD = {"masquerading": "masq", "gatewaying": "route", "ipip": "tunnel"}
_MAXIMA = {
    "weight": MAX_WEIGHT,
    "u-threshold": MAX_THRESHOLD,
    "l-threshold": MAX_THRESHOLD,
}


@dataclass
class Command:
    """One parsed ipvsadm command line, as ipvsadm would send it."""

    command: str
    protocol: str | None = None  # tcp, udp, sctp, fwmark
    address: IPAddress | None = None
    port: int = 0
    fwmark: int = 0
    family: int = 4
    scheduler: str | None = None
    flags: int = 0
    persistent: int | None = None
    netmask: str | None = None  # -M as written; the model checks it
    rs_address: IPAddress | None = None
    rs_port: int = 0
    weight: int = 1
    forward: str = "route"
    u_threshold: int = 0
    l_threshold: int = 0

    @property
    def service_key(self) -> tuple[str, int | IPAddress | None, int]:
        """The key of the virtual service the command names."""
        if self.protocol == "fwmark":
            return ("fwmark", self.fwmark, self.family)
        assert self.protocol is not None
        return (self.protocol, self.address, self.port)

    @property
    def service_name(self) -> str:
        """The named service as ipvsadm prints it."""
        return service_name(self.service_key)


def service_name(key: tuple[str, int | IPAddress | None, int]) -> str:
    """A service key as ipvsadm names it: ``TCP 10.0.0.1:80``, ``FWM 7 IPv6``."""
    proto, addr, port = key
    if proto == "fwmark":
        return f"FWM {addr}" + (" IPv6" if port == 6 else "")
    assert isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address))
    return f"{proto.upper()} {format_endpoint(addr, port)}"


def parse_endpoint(text: str, field: str) -> tuple[IPAddress, int | None]:
    """``addr[:port]`` or ``[v6addr]:port`` as ipvsadm's parse_service()."""
    parts = _split_endpoint(text)
    if parts is None:
        raise MaglevxError(f"{text!r} is not [IPv6-address]:port", field=field)
    addr_text, port_text = parts
    try:
        address = ipaddress.ip_address(addr_text)
    except ValueError:
        raise MaglevxError(
            f"{addr_text!r} is not a numeric IP address (host names are not resolved)",
            field=field,
        ) from None
    if text.startswith("[") and address.version != 6:
        raise MaglevxError(f"{addr_text!r} in brackets is not IPv6", field=field)
    if getattr(address, "scope_id", None) is not None:
        # ipvsadm's inet_pton() refuses "%zone"; ipaddress would keep it and
        # then treat fe80::1%eth0 and fe80::1 as two different real servers
        raise MaglevxError(
            f"{addr_text!r}: IPv6 zone indices (%...) are not accepted by ipvsadm",
            field=field,
        )
    port = None
    if port_text is not None:
        port = parse_number(port_text, 0, 65535, "port", field)
    return address, port


def _split_endpoint(text: str) -> tuple[str, str | None] | None:
    """(address, port or None) of *text*; None for ``[`` without ``]:``."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            return None
        return text[1:close], text[close + 2 :]
    if text.count(":") == 1:  # more: a bare IPv6 address, no port
        addr, port = text.split(":")
        return addr, port
    return text, None


def numeric_endpoint(
    text: str, protocol: str, field: str, numeric: str
) -> tuple[IPAddress, int | None]:
    """:func:`parse_endpoint` of *text*, a port name read as ipvsadm reads it.

    ipvsadm prints ports by name without ``-n`` (``10.0.0.1:http``) and reads
    names back with ``getservbyname()``: the bundled table of
    :mod:`maglevx.portnames` decides, the same on every host. Host names
    cannot be resolved offline: refused, saying to use *numeric* (the
    command that prints numbers).
    """
    parts = _split_endpoint(text)
    if parts is None:
        return parse_endpoint(text, field)  # it says what is wrong
    addr, port = parts
    if not _is_address(addr):
        if re.search(r"[<>*]|xx", addr):
            raise MaglevxError(
                f"{addr!r} is not an IP address (redacted?): give the real addresses",
                field=field,
            )
        if (
            _HOST_NAME.match(addr)
            and any(c.isalpha() for c in addr)
            and not re.match(r"^\d+\.\d+\.\d+\.", addr)  # a mistyped IPv4 address
        ):
            raise MaglevxError(
                f"{addr!r} is a host name: {numeric} (-n: numeric addresses)",
                field=field,
            )
    if port and not port.isdigit() and _SERVICE_NAME.match(port):
        number = port_of(port, protocol)
        if number is None:
            raise MaglevxError(
                f"port {port!r} is no service name of {protocol} that ipvsadm "
                f"prints (netbase {NETBASE}): {numeric} (-n: numeric ports)",
                field=field,
            )
        text = text[: len(text) - len(port)] + str(number)
    return parse_endpoint(text, field)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# what getnameinfo() prints: labels of letters, digits and '-' (cut to the
# column width by ipvsadm, so a trailing '.' or '-' is possible)
_HOST_NAME = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]*)*\.?$", re.ASCII)
_SERVICE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._+-]*$", re.ASCII)


def parse_sched_flags(text: str, scheduler: str, field: str) -> int:
    """``-b`` flags (``mh-fallback,mh-port``, ``flag-1``, ...) as bits."""
    flags = 0
    for name in text.split(","):
        if name not in _SCHED_FLAGS:
            raise MaglevxError(
                f"invalid scheduler flag {name!r} (known: {', '.join(_SCHED_FLAGS)})",
                field=field,
            )
        bit, needs = _SCHED_FLAGS[name]
        if needs is not None and needs != scheduler:
            raise MaglevxError(
                f"scheduler flag {name!r} needs scheduler {needs!r}, not {scheduler!r}",
                field=field,
            )
        flags |= bit
    return flags


def tokenize(line: str) -> list[str]:
    """Split a line like ipvsadm's config_stream (quotes allowed)."""
    try:
        tokens = shlex.split(line, comments=False, posix=True)
    except ValueError as exc:
        raise MaglevxError(f"cannot split line: {exc}") from None
    if tokens and tokens[0] in ("ipvsadm", "/sbin/ipvsadm", "/usr/sbin/ipvsadm"):
        tokens = tokens[1:]
    return tokens


def parse_command(tokens: list[str]) -> Command:
    """Parse one ipvsadm command (tokens) as ipvsadm 1.31 does."""
    if not tokens:
        raise MaglevxError("empty command")
    head = tokens[0]
    if head in _NOT_CONFIG:
        raise MaglevxError(
            f"{head} does not change the configuration; a history holds only "
            "-A/-E/-D/-C/-a/-e/-d lines",
            field=head,
        )
    if head not in _COMMANDS:
        raise MaglevxError(
            f"a line must start with a command (-A, -E, -D, -C, -a, -e, -d), "
            f"not {head!r}{_kind_hint(tokens)}",
            field=head,
        )
    cmd = Command(_COMMANDS[head])
    seen: dict[str, str] = {}
    sched_flags: tuple[str, str] | None = None
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        value: str | None = None
        opt = tok
        if tok.startswith("--") and "=" in tok:
            opt, value = tok.split("=", 1)
        if opt in _COMMANDS or opt in _NOT_CONFIG:
            raise MaglevxError(f"a second command {opt!r} on one line", field=opt)
        if opt == "(null)":
            raise MaglevxError(
                "`ipvsadm -S` could not name this real server's "
                "forwarding method (a patched IPVS such as Alibaba's FULLNAT); "
                "maglevx models mainline Linux IPVS",
                field=tok,
            )
        if opt not in _OPTIONS:
            raise MaglevxError(f"unknown option {tok!r}", field=tok)
        name, arg = _OPTIONS[opt]
        if name in seen:
            raise MaglevxError(f"option {opt} given twice", field=opt)
        seen[name] = opt
        i += 1
        if arg == "required" and value is None:
            if i >= len(tokens):
                raise MaglevxError(f"option {opt} needs a value", field=opt)
            value = tokens[i]
            i += 1
        elif arg == "optional" and value is None:
            if i < len(tokens) and not tokens[i].startswith("-"):
                value = tokens[i]
                i += 1
        elif arg == "none" and value is not None:
            raise MaglevxError(f"option {opt} takes no value", field=opt)

        text = value or ""  # an option that requires a value has one

        if name in _SERVICE_OPTS:
            if cmd.protocol is not None:
                raise MaglevxError(
                    f"a second virtual service {opt} on one line", field=opt
                )
            if name == "fwmark-service":
                cmd.protocol = "fwmark"
                cmd.fwmark = parse_number(text, 1, 0xFFFFFFFF, "fwmark", opt)
                cmd.family = 4
            else:
                cmd.protocol = name.split("-")[0]
                address, port = numeric_endpoint(text, cmd.protocol, opt, _SAVE_NUMERIC)
                cmd.address, cmd.port = address, port or 0
                cmd.family = address.version
        elif name == "scheduler":
            if text not in SCHEDULERS:
                raise MaglevxError(
                    f"unknown scheduler {text!r} (known: {', '.join(SCHEDULERS)})",
                    field=opt,
                )
            cmd.scheduler = text
        elif name == "sched-flags":
            sched_flags = (text, opt)
        elif name == "persistent":
            cmd.flags |= SVC_F_PERSISTENT
            cmd.persistent = (
                DEFAULT_PERSISTENT_TIMEOUT
                if value is None
                else parse_number(value, 1, MAX_TIMEOUT, "timeout", opt)
            )
        elif name == "real-server":
            proto = cmd.protocol if cmd.protocol not in (None, "fwmark") else "tcp"
            address, port = numeric_endpoint(text, proto, opt, _SAVE_NUMERIC)
            cmd.rs_address = address
            # ipvsadm: "copy vport to dport if not specified"
            cmd.rs_port = cmd.port if port is None else port
        elif name in _FORWARD:
            if "forward" in seen:
                raise MaglevxError(f"{opt} conflicts with {seen['forward']}", field=opt)
            seen["forward"] = opt
            cmd.forward = _FORWARD[name]
        elif name in _MAXIMA:  # weight, u-threshold, l-threshold
            number = parse_number(text, 0, _MAXIMA[name], name, opt)
            setattr(cmd, name.replace("-", "_"), number)
        elif name == "ipv6":
            if cmd.protocol != "fwmark":
                raise MaglevxError("-6 used before -f", field=opt)
            cmd.family = 6
        elif name == "ops":
            cmd.flags |= SVC_F_ONEPACKET
        elif name == "netmask":
            cmd.netmask = text
        # pe, tunnel options, numeric: accepted, no effect on mh

    _check_options(cmd, seen)
    if sched_flags is not None:
        cmd.flags &= ~(SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3)
        cmd.flags |= parse_sched_flags(
            sched_flags[0], cmd.scheduler or DEFAULT_SCHEDULER, sched_flags[1]
        )
    if cmd.command in ("add-service", "edit-service"):
        if cmd.protocol != "fwmark" and cmd.port == 0 and cmd.persistent is None:
            raise MaglevxError(
                "zero port specified for non-persistent service",
                field=seen[f"{cmd.protocol}-service"],
            )
        if cmd.flags & SVC_F_ONEPACKET and cmd.protocol not in ("udp", "fwmark"):
            raise MaglevxError(
                "one-packet scheduling is only for UDP virtual services",
                field=seen.get("ops"),
            )
        if cmd.scheduler is None:
            cmd.scheduler = DEFAULT_SCHEDULER
    if cmd.command in ("add-server", "edit-server"):
        # ipvsadm: -g and -i real servers get the service port
        if cmd.protocol != "fwmark" and cmd.forward in ("route", "tunnel"):
            cmd.rs_port = cmd.port
        assert cmd.rs_address is not None
        if cmd.rs_address.version != cmd.family:
            raise MaglevxError(
                f"real server {cmd.rs_address} is not IPv{cmd.family} like the "
                "service (mixed-family tunnel servers are not modelled)",
                field=seen.get("real-server"),
            )
    return cmd


_SAVE_NUMERIC = "save with `ipvsadm -Sn`"


def _kind_hint(tokens: list[str]) -> str:
    """What a line that is no command looks like, and how to give it."""
    head = tokens[0]
    if head in ("IP", "Prot", "TCP", "UDP", "SCTP", "FWM", "->"):
        return (
            ": this is an `ipvsadm -L` listing, given with --snapshot "
            "(or FILE:kind=snapshot)"
        )
    if head in ("Pro", "IPVS", "pro") or "src=" in " ".join(tokens):
        return ": this is a connection capture, given to predict or verify --conn"
    return ""


_SERVICE_OPTS = {"tcp-service", "udp-service", "sctp-service", "fwmark-service"}
_SERVICE_ONLY = {"scheduler", "sched-flags", "persistent", "netmask", "ops", "pe"}
_SERVER_ONLY = {
    "real-server", "weight", "masquerading", "gatewaying", "ipip",
    "u-threshold", "l-threshold", "forward", "tun-type", "tun-port",
    "tun-nocsum", "tun-csum", "tun-remcsum",
}  # fmt: skip


def _check_options(cmd: Command, seen: dict[str, str]) -> None:
    """Ipvsadm's commands_v_options table, for the configuration commands."""
    names = set(seen) - {"numeric", "ipv6"}
    if cmd.command == "clear":
        bad = names
    elif not names & _SERVICE_OPTS:
        raise MaglevxError("no virtual service given (-t, -u, --sctp-service or -f)")
    elif cmd.command.endswith("-service"):
        bad = names & _SERVER_ONLY
        if cmd.command == "delete-service":
            bad |= names & _SERVICE_ONLY
    else:
        bad = names & _SERVICE_ONLY
        if "real-server" not in names:
            raise MaglevxError("no real server given (-r)")
        if cmd.command == "delete-server":
            bad |= names & (_SERVER_ONLY - {"real-server"})
    if bad:
        opt = seen[min(bad)]
        what = "-C" if cmd.command == "clear" else cmd.command
        raise MaglevxError(f"option {opt} is not allowed with {what}", field=opt)


def split_lines(text: str | Iterable[str]) -> Iterable[str]:
    """The lines of *text*, split where editors, ``wc -l`` and open() do.

    Only LF, CR LF and CR end a line: str.splitlines() would also split at
    form feeds, vertical tabs, the file/group/record separators and U+2028,
    and line numbers would no longer match the file. Every reader of maglevx
    numbers lines with this function.
    """
    if isinstance(text, str):
        return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return text


def check_line_length(line: str) -> None:
    """Refuse a line longer than MAX_LINE_LENGTH, naming its length."""
    if len(line) > MAX_LINE_LENGTH:
        raise MaglevxError(
            f"line of {len(line)} characters is longer than {MAX_LINE_LENGTH}; "
            "not an ipvsadm command"
        )


def iter_history(
    text: str | Iterable[str], *, source: str = "<history>"
) -> Iterator[tuple[int, Command]]:
    """Parse ``ipvsadm -R`` lines: yields (line number, command).

    Errors name *source*, the line and the option.
    """
    for lineno, raw in enumerate(split_lines(text), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            check_line_length(line)
            tokens = tokenize(line)
            if tokens and tokens[0] in ("-Z", "--zero"):
                continue  # zeroes counters: changes nothing a table depends on
            cmd = parse_command(tokens)
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None
        yield lineno, cmd
