"""Reading IPVS configurations: ``ipvsadm -R`` histories and listings.

A *history* is text in ``ipvsadm -R`` syntax (one command a line, as
``ipvsadm -S`` writes them). It is applied top to bottom, each line parsed as
ipvsadm 1.31 parses it and then applied as the kernel (``ip_vs_ctl.c``)
applies the resulting request. Extensions: blank lines and lines starting
with ``#`` are ignored, and a leading ``ipvsadm`` word is allowed.

Where ipvsadm would print an error and the kernel would refuse (adding a
real server twice, editing one that does not exist, ...), maglevx raises
MaglevxError naming the file, line and option: a history that does not apply
cleanly does not describe a director.

A *snapshot* is the output of ``ipvsadm -Ln --nosort``: the kernel's current
real server lists, head first. (``ipvsadm -Sn`` sorts real servers by address
and so loses the order the table depends on; ``ipvsadm -S --nosort`` is
refused by ipvsadm.)
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from maglevx.backend import core
from maglevx.errors import MaglevxError
from maglevx.model import (
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    SVC_F_SCHED1,
    SVC_F_SCHED2,
    SVC_F_SCHED3,
    Director,
    IPAddress,
    RealServer,
    VirtualService,
    format_endpoint,
    parse_number,
)
from maglevx.portnames import NETBASE, port_of

# The schedulers Linux 6.1 ships (net/netfilter/ipvs/ip_vs_*.c).
SCHEDULERS = (
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh",
    "sed", "nq", "fo", "ovf", "mh", "twos",
)  # fmt: skip
DEFAULT_SCHEDULER = "wlc"  # ipvsadm's DEF_SCHED
DEFAULT_PERSISTENT_TIMEOUT = 300  # IPVS_SVC_PERSISTENT_TIMEOUT
MAX_TIMEOUT = 86400 * 31  # ipvsadm's MAX_TIMEOUT

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

# option -> (canonical name, argument: "required" | "optional" | "none")
_OPTIONS = {
    "-t": ("tcp-service", "required"), "--tcp-service": ("tcp-service", "required"),
    "-u": ("udp-service", "required"), "--udp-service": ("udp-service", "required"),
    "--sctp-service": ("sctp-service", "required"),
    "-f": ("fwmark-service", "required"),
    "--fwmark-service": ("fwmark-service", "required"),
    "-s": ("scheduler", "required"), "--scheduler": ("scheduler", "required"),
    "-b": ("sched-flags", "required"), "--sched-flags": ("sched-flags", "required"),
    "-p": ("persistent", "optional"), "--persistent": ("persistent", "optional"),
    "-M": ("netmask", "required"), "--netmask": ("netmask", "required"),
    "-r": ("real-server", "required"), "--real-server": ("real-server", "required"),
    "-w": ("weight", "required"), "--weight": ("weight", "required"),
    "-m": ("masquerading", "none"), "--masquerading": ("masquerading", "none"),
    "-g": ("gatewaying", "none"), "--gatewaying": ("gatewaying", "none"),
    "-i": ("ipip", "none"), "--ipip": ("ipip", "none"),
    "-x": ("u-threshold", "required"), "--u-threshold": ("u-threshold", "required"),
    "-y": ("l-threshold", "required"), "--l-threshold": ("l-threshold", "required"),
    "-6": ("ipv6", "none"), "--ipv6": ("ipv6", "none"),
    "-o": ("ops", "none"), "--ops": ("ops", "none"),
    "--pe": ("pe", "required"),
    "--tun-type": ("tun-type", "required"), "--tun-port": ("tun-port", "required"),
    "--tun-nocsum": ("tun-nocsum", "none"), "--tun-csum": ("tun-csum", "none"),
    "--tun-remcsum": ("tun-remcsum", "none"),
    "-n": ("numeric", "none"), "--numeric": ("numeric", "none"),
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
        if self.protocol == "fwmark":
            return f"FWM {self.fwmark}" + (" IPv6" if self.family == 6 else "")
        assert self.protocol is not None and self.address is not None
        return f"{self.protocol.upper()} {format_endpoint(self.address, self.port)}"


def parse_endpoint(text: str, field: str) -> tuple[IPAddress, int | None]:
    """``addr[:port]`` or ``[v6addr]:port`` as ipvsadm's parse_service()."""
    s = text
    port_text: str | None = None
    if s.startswith("["):
        close = s.find("]")
        if close < 0 or s[close + 1 : close + 2] != ":":
            raise MaglevxError(f"{text!r} is not [IPv6-address]:port", field=field)
        addr_text, port_text = s[1:close], s[close + 2 :]
    elif s.count(":") > 1:
        addr_text = s  # bare IPv6 address, no port
    elif ":" in s:
        addr_text, port_text = s.rsplit(":", 1)
    else:
        addr_text = s
    try:
        address = ipaddress.ip_address(addr_text)
    except ValueError:
        raise MaglevxError(
            f"{addr_text!r} is not a numeric IP address (host names are not resolved)",
            field=field,
        ) from None
    if s.startswith("[") and address.version != 6:
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


def numeric_endpoint(text: str, protocol: str, field: str, numeric: str) -> str:
    """*text* with a port name replaced by the number ipvsadm reads for it.

    ipvsadm prints ports by name without ``-n`` (``10.0.0.1:http``) and reads
    names back with ``getservbyname()``: the bundled table of
    :mod:`maglevx.portnames` decides, the same on every host. Host names
    cannot be resolved offline: refused, saying to use *numeric* (the
    command that prints numbers).
    """
    if text.startswith("["):
        close = text.find("]")
        addr, port = text[1:close], text[close + 2 :] if close > 0 else None
        if close < 0 or text[close + 1 : close + 2] != ":":
            return text  # parse_endpoint() says what is wrong
    elif text.count(":") == 1:
        addr, port = text.split(":")
    else:
        addr, port = text, None
    if not _is_address(addr) and re.search(r"[<>*]|xx", addr):
        raise MaglevxError(
            f"{addr!r} is not an IP address (redacted?): give the real addresses",
            field=field,
        )
    if (
        not _is_address(addr)
        and _HOST_NAME.match(addr)
        and _has_letter(addr)
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
        return text[: len(text) - len(port)] + str(number)
    return text


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


def _has_letter(text: str) -> bool:
    return any(c.isalpha() for c in text)


def _parse_sched_flags(text: str, scheduler: str, field: str) -> int:
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

        if name in ("tcp-service", "udp-service", "sctp-service", "fwmark-service"):
            if cmd.protocol is not None:
                raise MaglevxError(
                    f"a second virtual service {opt} on one line", field=opt
                )
            assert value is not None
            if name == "fwmark-service":
                cmd.protocol = "fwmark"
                cmd.fwmark = parse_number(value, 1, 0xFFFFFFFF, "fwmark", opt)
                cmd.family = 4
            else:
                cmd.protocol = name.split("-")[0]
                value = numeric_endpoint(value, cmd.protocol, opt, _SAVE_NUMERIC)
                address, port = parse_endpoint(value, opt)
                cmd.address, cmd.port = address, port or 0
                cmd.family = address.version
        elif name == "scheduler":
            assert value is not None
            if value not in SCHEDULERS:
                raise MaglevxError(
                    f"unknown scheduler {value!r} (known: {', '.join(SCHEDULERS)})",
                    field=opt,
                )
            cmd.scheduler = value
        elif name == "sched-flags":
            assert value is not None
            sched_flags = (value, opt)
        elif name == "persistent":
            cmd.flags |= SVC_F_PERSISTENT
            cmd.persistent = (
                DEFAULT_PERSISTENT_TIMEOUT
                if value is None
                else parse_number(value, 1, MAX_TIMEOUT, "timeout", opt)
            )
        elif name == "real-server":
            assert value is not None
            proto = cmd.protocol if cmd.protocol not in (None, "fwmark") else "tcp"
            value = numeric_endpoint(value, proto, opt, _SAVE_NUMERIC)
            address, port = parse_endpoint(value, opt)
            cmd.rs_address = address
            # ipvsadm: "copy vport to dport if not specified"
            cmd.rs_port = cmd.port if port is None else port
        elif name in _FORWARD:
            if "forward" in seen:
                raise MaglevxError(f"{opt} conflicts with {seen['forward']}", field=opt)
            seen["forward"] = opt
            cmd.forward = _FORWARD[name]
        elif name == "weight":
            assert value is not None
            cmd.weight = parse_number(value, 0, 65535, "weight", opt)
        elif name == "u-threshold":
            assert value is not None
            cmd.u_threshold = parse_number(value, 0, 2**31 - 1, "u-threshold", opt)
        elif name == "l-threshold":
            assert value is not None
            cmd.l_threshold = parse_number(value, 0, 2**31 - 1, "l-threshold", opt)
        elif name == "ipv6":
            if cmd.protocol != "fwmark":
                raise MaglevxError("-6 used before -f", field=opt)
            cmd.family = 6
        elif name == "ops":
            cmd.flags |= SVC_F_ONEPACKET
        # netmask, pe, tunnel options, numeric: accepted, no effect on mh

    _check_options(cmd, seen)
    if sched_flags is not None:
        cmd.flags &= ~(SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3)
        cmd.flags |= _parse_sched_flags(
            sched_flags[0], cmd.scheduler or DEFAULT_SCHEDULER, sched_flags[1]
        )
    if cmd.command in ("add-service", "edit-service"):
        if cmd.protocol != "fwmark" and cmd.port == 0 and cmd.persistent is None:
            raise MaglevxError(
                "zero port specified for non-persistent service",
                field=seen.get("tcp-service")
                or seen.get("udp-service")
                or seen.get("sctp-service"),
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
    has_service = bool(names & _SERVICE_OPTS)
    if cmd.command == "clear":
        extra = names
        if extra:
            opt = seen[sorted(extra)[0]]
            raise MaglevxError(f"option {opt} is not allowed with -C", field=opt)
        return
    if not has_service:
        raise MaglevxError("no virtual service given (-t, -u, --sctp-service or -f)")
    if cmd.command in ("add-service", "edit-service", "delete-service"):
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
        opt = seen[sorted(bad)[0]]
        raise MaglevxError(f"option {opt} is not allowed with {cmd.command}", field=opt)


def apply_command(director: Director, cmd: Command) -> None:
    """Apply one command as the kernel does (ip_vs_ctl.c)."""
    if cmd.command == "clear":
        director.services.clear()
        return
    svc = director.find_service(cmd.service_key)
    if cmd.command == "add-service":
        if svc is not None:
            raise MaglevxError(f"service {cmd.service_name} already exists")
        assert cmd.scheduler is not None
        svc = VirtualService(
            protocol=cmd.protocol or "tcp",
            address=cmd.address,
            port=cmd.port,
            fwmark=cmd.fwmark,
            family=cmd.family,
            scheduler=cmd.scheduler,
            flags=cmd.flags,
            director=director,
            persistent=cmd.persistent,
        )
        svc.rebuild()
        director.services.append(svc)
        return
    if svc is None:
        raise MaglevxError(f"no such service {cmd.service_name}")
    if cmd.command == "edit-service":
        assert cmd.scheduler is not None
        old = svc.scheduler
        svc.scheduler = cmd.scheduler
        if old != cmd.scheduler and not svc.rebuild():
            svc.scheduler = old
            raise MaglevxError(
                f"{svc.name} has {len(svc.real_servers)} real servers, more than "
                f"the {director.table_size} table slots: the kernel refuses mh"
            )
        svc.flags = cmd.flags
        svc.persistent = cmd.persistent
        return
    if cmd.command == "delete-service":
        director.services.remove(svc)
        return

    assert cmd.rs_address is not None
    rs = svc.find(cmd.rs_address, cmd.rs_port)
    where = f"{format_endpoint(cmd.rs_address, cmd.rs_port)} in {svc.name}"
    if cmd.command in ("add-server", "edit-server"):
        if cmd.l_threshold > cmd.u_threshold:
            raise MaglevxError(
                "lower threshold is higher than upper threshold", field="-y"
            )
    if cmd.command == "add-server":
        if rs is not None:
            raise MaglevxError(f"real server {where} already exists")
        rs = RealServer(
            address=cmd.rs_address,
            port=cmd.rs_port,
            weight=cmd.weight,
            last_weight=cmd.weight,
            forward=cmd.forward,
            u_threshold=cmd.u_threshold,
            l_threshold=cmd.l_threshold,
        )
        svc.real_servers.insert(0, rs)  # list_add_rcu(): the head
        svc.rebuild()
        return
    if rs is None:
        raise MaglevxError(f"no such real server {where}")
    if cmd.command == "edit-server":
        if cmd.weight != 0:
            rs.last_weight = cmd.weight  # "keep the last_weight with latest non-0"
        rs.weight = cmd.weight
        rs.forward = cmd.forward
        rs.u_threshold = cmd.u_threshold
        rs.l_threshold = cmd.l_threshold
        svc.rebuild()
        return
    svc.real_servers.remove(rs)  # delete-server
    svc.rebuild()


def _lines(text: str | Iterable[str]) -> Iterable[str]:
    if isinstance(text, str):
        # Only \n, \r\n and \r end a line, as for editors, `wc -l` and open():
        # str.splitlines() would also split at \f, \v, \x1c.. and U+2028,
        # and error line numbers would no longer match the file.
        return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return text


def apply_history(
    director: Director, text: str | Iterable[str], *, source: str = "<history>"
) -> Director:
    """Apply ``ipvsadm -R`` lines to *director*, top to bottom."""
    for lineno, raw in enumerate(_lines(text), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tokens = tokenize(line)
            if tokens and tokens[0] in ("-Z", "--zero"):
                continue  # zeroes counters: changes nothing a table depends on
            apply_command(director, parse_command(tokens))
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None
    return director


# re.ASCII: \d must not match other scripts' digits (int("٣") == 3).
_SVC_RE = re.compile(
    r"^(?P<proto>TCP|UDP|SCTP)\s+(?P<addr>\S+)\s+(?P<sched>\S+)(?P<rest>.*)$",
    re.ASCII,
)
_FWM_RE = re.compile(
    r"^FWM\s+(?P<mark>\d+)(?P<v6>\s+IPv6)?\s+(?P<sched>\S+)(?P<rest>.*)$",
    re.ASCII,
)
_RS_RE = re.compile(
    r"^->\s+(?P<addr>\S+)\s+(?P<fwd>Masq|Local|Route|Tunnel|Bypass)\s+"
    r"(?P<weight>-?\d+)(\s+\d+\s+\d+)?\s*$",
    re.ASCII,
)
# --persistent-conn: "-> addr Weight PersistConn ActiveConn InActConn"
_RS_PCONN_RE = re.compile(
    r"^->\s+(?P<addr>\S+)\s+(?P<weight>-?\d+)\s+\d+\s+\d+\s+\d+\s*$", re.ASCII
)
_RS_OTHER_FWD_RE = re.compile(r"^->\s+\S+\s+(?P<fwd>[A-Za-z()]+)\s+-?\d+")
# ipvsadm -L's header of each flavour: what it leaves out
_FLAVOURS = {
    "Conns": ("--stats", "scheduler, flags or weights"),
    "CPS": ("--rate", "scheduler, flags or weights"),
    "Uthreshold": ("--thresholds", "weights"),
}
_NUMERIC = "list with `ipvsadm -Ln --nosort`"
# /proc/net/ip_vs: "TCP  0A010001:0050 mh", "UDP  [fd00:0001:...:0001]:0035 mh"
_PROC_IP_VS_RE = re.compile(
    r"^(TCP|UDP|SCTP)\s+([0-9A-F]{8}|\[[0-9a-f]{4}(:[0-9a-f]{4}){7}\]):[0-9A-F]{4}\s"
)
# a history line: -A/-E/-D/-a/-e/-d/-C, maybe after "ipvsadm"
_HISTORY_RE = re.compile(r"^(\S*ipvsadm\s+)?-[AEDaedC](\s|$)")
# the command that printed the listing, without a prompt ("$ ipvsadm -Ln")
_COMMAND_RE = re.compile(r"^([$%]\s*)?(?P<cmd>(sudo\s+)?\S*ipvsadm(\s.*)?)$")
# a shell prompt ("[root@lb ~]#", "root@lb:~$", "user@lb ~ ❱"), maybe a command
_PROMPT_RE = re.compile(
    r"^(\[[^\]]*@[^\]]*\]\s*[#$]|[\w.-]+@[\w.-]+\S*(\s+\S+)?\s*[#$❱>%])\s*(?P<cmd>.*)$"
)

_FWD_NAMES = {
    "Masq": "masq", "Local": "masq", "Route": "route",
    "Tunnel": "tunnel", "Bypass": "route",
}  # fmt: skip


def apply_snapshot(
    director: Director, text: str | Iterable[str], *, source: str = "<snapshot>"
) -> Director:
    """Load ``ipvsadm -Ln --nosort`` output into *director*.

    Real servers are listed head first, which is the order tables are built
    in. What a snapshot cannot know:

    - ``last_weight``: taken equal to the weight shown. After an edit to
      weight 0 the in-tree kernel keeps building from the old non-zero
      ``last_weight`` (the server keeps its slots), which a listing does not
      show: for weight-0 servers of ``upstream`` directors, predictions of
      flows that land on them may differ (a history knows it).
    - whether a real server is overloaded (thresholds vs live counts).
    - a table kept from before a failed rebuild (more servers than slots).
    """
    svc: VirtualService | None = None
    persistent_conn = False  # the --persistent-conn flavour's server lines
    for lineno, raw in enumerate(_lines(text), 1):
        line = raw.strip()
        try:
            if (
                not line
                or line.startswith("#")
                or line.startswith("IP Virtual Server")
                or line.startswith("-> RemoteAddress")
            ):
                continue
            if line.startswith("Prot LocalAddress"):
                persistent_conn = _header(line)
                continue
            if _foreign(line, svc is not None):
                continue
            if line.startswith("->"):
                if svc is None:
                    raise MaglevxError("real server line before any service")
                _snapshot_server(svc, line, persistent_conn)
                continue
            svc = _snapshot_service(director, line)
        except MaglevxError as exc:
            raise exc.located(source, lineno) from None
    for s in director.services:
        s.rebuild()
    return director


def _header(line: str) -> bool:
    """Check a ``Prot LocalAddress:Port ...`` header; True for --persistent-conn."""
    words = line.split()
    for word, (flag, missing) in _FLAVOURS.items():
        if word in words:
            raise MaglevxError(
                f"this is `ipvsadm -L {flag}` output, which shows no {missing}: "
                f"{_NUMERIC}"
            )
    if "ProtoMod" in words:
        raise _not_ipvs("l7vsd's (UltraMonkey-L7 `l7vsadm -l`)")
    return "PersistConn" in words


def _not_ipvs(what: str) -> MaglevxError:
    return MaglevxError(
        f"this is {what} listing, not Linux IPVS's: maglevx models the kernel's "
        "ip_vs_mh; give `ipvsadm -Ln --nosort` of a Linux director"
    )


def _foreign(line: str, seen_service: bool) -> bool:
    """Refuse what is not a listing line; True for a line to skip (a prompt)."""
    if line.startswith(">>>"):
        raise MaglevxError(
            f"{line[:40]!r} starts another director's output: several listings "
            "are in one file; give one director's listing per file"
        )
    if line.startswith(">"):
        raise MaglevxError(
            "the line starts with '>' (mail quoting): remove the quoting, or "
            f"{_NUMERIC} on the director"
        )
    if line.startswith("Layer-7 Virtual Server"):
        raise _not_ipvs("l7vsd's (UltraMonkey-L7 `l7vsadm -l`)")
    if _PROC_IP_VS_RE.match(line):
        raise MaglevxError(
            "this is /proc/net/ip_vs (hex addresses), which shows no scheduler "
            f"flags (mh-port, mh-fallback): {_NUMERIC}"
        )
    if line.startswith("MATCH "):
        raise _not_ipvs("DPVS's (a `MATCH` SNAT service)")
    if _HISTORY_RE.match(line):
        raise MaglevxError(
            "this line is an `ipvsadm -R` command: a history (rule file) is given "
            "with --history (or FILE:kind=history)"
        )
    m = _PROMPT_RE.match(line) or _COMMAND_RE.match(line)
    if m is None:
        return False
    if not m["cmd"] or (not seen_service and "ipvsadm" in m["cmd"]):
        return True  # the prompt and command before the listing, or alone after
    raise MaglevxError(
        f"a shell prompt or command ({m['cmd'][:40]!r}) after the listing: the "
        "output of several commands is in one file; give one listing per file"
    )


def _snapshot_service(director: Director, line: str) -> VirtualService:
    m = _SVC_RE.match(line)
    fwm = _FWM_RE.match(line) if m is None else None
    if m is None and fwm is None:
        raise MaglevxError(f"not a line of `ipvsadm -Ln --nosort`: {line!r}")
    if m is not None:
        protocol = m["proto"].lower()
        text = numeric_endpoint(m["addr"], protocol, "LocalAddress:Port", _NUMERIC)
        address, port = parse_endpoint(text, "LocalAddress:Port")
        port = port or 0
        fwmark, family, sched, rest = 0, address.version, m["sched"], m["rest"]
    else:
        assert fwm is not None
        protocol, address, port = "fwmark", None, 0
        fwmark = parse_number(fwm["mark"], 1, 0xFFFFFFFF, "fwmark", "FWM")
        family = 6 if fwm["v6"] else 4
        sched, rest = fwm["sched"], fwm["rest"]
    if sched not in SCHEDULERS:
        if re.fullmatch(r"\d+[KMGT]?", sched, re.ASCII):
            raise MaglevxError(
                f"a number ({sched!r}) where the scheduler goes: this is `ipvsadm "
                f"-L --stats` or `--rate` output, which shows no scheduler, flags "
                f"or weights: {_NUMERIC}",
                field="Scheduler",
            )
        raise MaglevxError(f"unknown scheduler {sched!r}", field="Scheduler")
    flags, persistent = 0, None
    rest = rest.strip()
    fm = re.match(r"^\((?P<flags>[^)]*)\)\s*", rest)
    if fm:
        flags = _parse_sched_flags(fm["flags"], sched, "Flags")
        rest = rest[fm.end() :]
    pm = re.match(r"^persistent\s+(?P<t>\d+)\s*", rest, re.ASCII)
    if pm:
        flags |= SVC_F_PERSISTENT
        persistent = parse_number(pm["t"], 0, 0xFFFFFFFF, "timeout", "persistent")
        rest = rest[pm.end() :]
    rest = re.sub(r"^mask\s+\S+\s*", "", rest)
    rest = re.sub(r"^pe\s+\S+\s*", "", rest)
    if re.match(r"^ops\s*$", rest):
        flags |= SVC_F_ONEPACKET
        rest = ""
    if rest.strip():
        raise MaglevxError(f"unexpected service attributes {rest.strip()!r}")
    svc = VirtualService(
        protocol=protocol,
        address=address,
        port=port,
        fwmark=fwmark,
        family=family,
        scheduler=sched,
        flags=flags,
        director=director,
        persistent=persistent,
    )
    if director.find_service(svc.key) is not None:
        raise MaglevxError(f"service {svc.name} listed twice")
    director.services.append(svc)
    return svc


def _snapshot_server(svc: VirtualService, line: str, persistent_conn: bool) -> None:
    m = (_RS_PCONN_RE if persistent_conn else _RS_RE).match(line)
    if m is None:
        other = _RS_OTHER_FWD_RE.match(line)
        if other is not None and not persistent_conn:
            fwd = other["fwd"]
            if fwd in ("SNAT", "FNAT", "FullNat", "(null)"):
                who = "DPVS's" if fwd in ("SNAT", "FNAT") else "a patched IPVS's"
                raise MaglevxError(
                    f"forwarding method {fwd!r} is {who} (FULLNAT/SNAT), not one of "
                    "Linux IPVS (Masq, Local, Route, Tunnel, Bypass): maglevx "
                    "models mainline ip_vs_mh",
                    field="Forward",
                )
        if re.match(r"^->\s+\S+(\s+\d+){4}\s*$", line, re.ASCII):
            raise MaglevxError(
                "real server line without a forwarding method: `ipvsadm -L "
                "--thresholds` (no weights) or `--persistent-conn` output without "
                f"its header line: {_NUMERIC}"
            )
        raise MaglevxError(f"not a real server line: {line!r}")
    protocol = "tcp" if svc.protocol == "fwmark" else svc.protocol
    text = numeric_endpoint(m["addr"], protocol, "RemoteAddress:Port", _NUMERIC)
    address, port = parse_endpoint(text, "RemoteAddress:Port")
    if m["weight"].startswith("-"):
        raise MaglevxError(
            f"weight {m['weight'][:21]} is outside 0..65535", field="Weight"
        )
    weight = parse_number(m["weight"], 0, 65535, "weight", "Weight")
    if svc.find(address, port or 0) is not None:
        raise MaglevxError(f"real server {m['addr']} listed twice in {svc.name}")
    limit = min(svc.director.table_size, core.MAX_DESTS)
    if svc.scheduler == "mh" and len(svc.real_servers) >= limit:
        # The kernel refused to rebuild (ip_vs_mh_reassign(): -EINVAL) and kept
        # a table from before, which a listing does not show: refuse rather
        # than predict from a table that does not exist.
        raise MaglevxError(
            f"{svc.name} lists more than {limit} real servers, the table size: "
            "the kernel kept an older table a snapshot cannot show "
            "(use the history, or a larger --table-size)"
        )
    svc.real_servers.append(  # listed head first
        RealServer(
            address=address,
            port=port or 0,
            weight=weight,
            last_weight=weight,
            # --persistent-conn prints no forwarding method; it does not enter
            # the table (the port printed is the one the kernel stores)
            forward="route" if persistent_conn else _FWD_NAMES[m["fwd"]],
        )
    )
