"""The change journal: what a director went through, as ``ipvsadm -R`` lines.

A listing (``ipvsadm -Ln --nosort``) shows a director's state but not how it got
there, and the in-tree ``ip_vs_mh`` builds its tables from that history: a real
server edited to weight 0 keeps its ``last_weight`` (and its slots), a deleted
and re-added one goes back to the head of the list. ``maglevx watch`` reads the
director every few seconds and writes each change it sees as the ipvsadm
commands that make it, so the journal is a history that every subcommand reads
(``--history``) and that ``ipvsadm -R`` replays.

From two consecutive reads of a service's real servers (head first), the kernel's
rules (a new or re-added real server goes to the head; nothing else reorders the
list) give the commands exactly: the longest tail of the new list that keeps its
old relative order is the servers left in place (edited with ``-e`` where they
changed); every server before it was added, or deleted and re-added, newest
first (written with ``-d`` then ``-a``, tail first). What polling cannot see:
changes undone between two reads (e.g. a delete and re-add of the server already
at the head with the same weight), and the ``last_weight`` of real servers that
already had weight 0 when the journal started (written as added with weight 0,
and said so in a comment).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import TextIO

from maglevx.netlink import (
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    LiveRealServer,
    LiveService,
)

_FORWARD_OPTION = {
    "masq": "-m",
    "local": "-m",
    "route": "-g",
    "tunnel": "-i",
    "bypass": "-g",
}


def service_option(svc: LiveService) -> str:
    """``-t 10.0.0.1:80``, ``-u [fd00::1]:53``, ``-f 7``, ``-f 7 -6`` ..."""
    if svc.protocol == "fwmark":
        return f"-f {svc.fwmark}" + (" -6" if svc.family == 6 else "")
    host = f"[{svc.address}]" if svc.family == 6 else str(svc.address)
    opt = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}[svc.protocol]
    return f"{opt} {host}:{svc.port}"


def service_line(svc: LiveService, command: str = "-A") -> str:
    """The ``-A`` (or ``-E``) line that gives a service its attributes."""
    line = f"{command} {service_option(svc)} -s {svc.scheduler}"
    if svc.sched_flag_names:
        line += " -b " + ",".join(svc.sched_flag_names)
    if svc.flags & SVC_F_PERSISTENT:
        line += f" -p {svc.timeout}"
        if svc.netmask != (128 if svc.family == 6 else 0xFFFFFFFF):
            line += f" -M {svc.netmask_text}"
        if svc.pe_name:
            line += f" --pe {svc.pe_name}"
    if svc.flags & SVC_F_ONEPACKET:
        line += " -o"
    return line


def server_line(svc: LiveService, rs: LiveRealServer, command: str = "-a") -> str:
    """The ``-a`` (or ``-e``) line of a real server, or its ``-d`` line."""
    line = f"{command} {service_option(svc)} -r {rs.endpoint}"
    if command == "-d":
        return line
    line += f" {_FORWARD_OPTION.get(rs.forward, '-m')} -w {rs.weight}"
    if rs.u_threshold:
        line += f" -x {rs.u_threshold}"
    if rs.l_threshold:
        line += f" -y {rs.l_threshold}"
    return line


def _config(rs: LiveRealServer) -> tuple[object, ...]:
    return (rs.forward, rs.weight, rs.u_threshold, rs.l_threshold)


def _service_config(svc: LiveService) -> tuple[object, ...]:
    persistent = svc.flags & SVC_F_PERSISTENT
    return (
        svc.scheduler,
        svc.flags,
        svc.timeout if persistent else 0,
        svc.netmask if persistent else 0,
        svc.pe_name,
    )


def baseline(services: Iterable[LiveService]) -> list[str]:
    """Lines that build *services* from nothing (real servers tail first)."""
    out: list[str] = []
    for svc in services:
        out.append(service_line(svc))
        for rs in reversed(svc.real_servers):
            if rs.weight == 0 and svc.scheduler == "mh":
                out.append(
                    f"# {rs.endpoint} had weight 0 when the journal started: its "
                    "last_weight is unknown, taken as 0"
                )
            out.append(server_line(svc, rs))
    return out


def _servers_diff(
    svc: LiveService, old: Sequence[LiveRealServer], new: Sequence[LiveRealServer]
) -> list[str]:
    key = lambda r: (r.address, r.port)  # noqa: E731
    old_keys = [key(r) for r in old]
    old_by = {key(r): r for r in old}
    new_keys = {key(r) for r in new}
    # the longest tail of `new` that is a subsequence of `old`, matched backwards
    j = len(old) - 1
    p = len(new)
    for i in range(len(new) - 1, -1, -1):
        while j >= 0 and old_keys[j] != key(new[i]):
            j -= 1
        if j < 0:
            break
        p = i
        j -= 1
    head, kept = new[:p], new[p:]
    out = [server_line(svc, r, "-d") for r in old if key(r) not in new_keys]
    out += [server_line(svc, r, "-d") for r in head if key(r) in old_by]
    out += [
        server_line(svc, r, "-e") for r in kept if _config(r) != _config(old_by[key(r)])
    ]
    out += [server_line(svc, r) for r in reversed(head)]
    return out


def diff(old: Iterable[LiveService], new: Iterable[LiveService]) -> list[str]:
    """The ipvsadm lines that turn the director *old* into *new*."""
    old_by = {s.key: s for s in old}
    new_list = list(new)
    new_keys = {s.key for s in new_list}
    out = [f"-D {service_option(s)}" for s in old_by.values() if s.key not in new_keys]
    for s in new_list:
        prev = old_by.get(s.key)
        if prev is None:
            out += [service_line(s)] + [
                server_line(s, r) for r in reversed(s.real_servers)
            ]
            continue
        if _service_config(prev) != _service_config(s):
            out.append(service_line(s, "-E"))
        out += _servers_diff(s, prev.real_servers, s.real_servers)
    return out


class Journal:
    """Appends changes to a journal file, each under a timestamp comment."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, lines: Sequence[str], note: str) -> None:
        """Append *lines* (no-op when empty) and make them durable."""
        if not lines:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.file.write(f"# {stamp} {note}\n" + "".join(f"{ln}\n" for ln in lines))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        """Close the file."""
        self.file.close()
