"""The edge cases of the real kernel (issue 7) as scenarios, for any kernel and arch.

``over-m`` (more servers than slots: the kernel keeps the old table), ``zero``
(all weights 0), ``huge`` (weights 65535 beside 1 and 2) and ``v6churn`` (IPv6
churn, then ``ipvsadm -C``): :func:`build_scenarios` for one :class:`Mode` (in-tree
at M = 4093, or our module at ``table_size=KMOD_M``). Used by
test_kernel_robustness.py on amd64 and test_arch_kernels.py on every other kernel.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random

import maglevx

from . import scenarios as scen
from .jobs import Flow, Phase, Scenario

KMOD_M = 251
RANDOM_FLOWS = 200  # random clients per service and phase


@dataclasses.dataclass(frozen=True)
class Mode:
    """One boot: a kernel with the in-tree scheduler or our module."""

    key: str  # kernel key
    kmod: bool

    @property
    def id(self) -> str:
        return f"{'kmod' if self.kmod else 'intree'}-{self.key}"

    @property
    def m(self) -> int:
        return KMOD_M if self.kmod else 4093

    @property
    def variant(self) -> str:
        return "backport" if self.kmod else "upstream"

    @property
    def predict_args(self) -> tuple:
        # through the CLI, as a user would: --variant backport --table-size 251
        return ("--table-size", str(self.m)) if self.kmod else ()


# -- scenario construction -------------------------------------------------------


class Clients:
    """New client addresses, unique within a boot (10.2-255.x.y, fd00:c::/32)."""

    def __init__(self, seed: int):
        self.rnd = random.Random(seed)
        self.seen: set = set()

    def candidate(self, proto: str, vip: str, port: int) -> Flow:
        r = self.rnd
        if ":" in vip:
            net = ipaddress.IPv6Network("fd00:c::/32")
            addr = str(net.network_address + (r.getrandbits(96) or 1))
        else:
            addr = f"10.{r.randint(2, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
        return Flow(proto, addr, r.randint(1024, 65535), vip, port)

    def take(self, f: Flow) -> bool:
        if f.client_key() in self.seen:
            return False
        self.seen.add(f.client_key())
        return True

    def random(self, proto: str, vip: str, port: int, n: int) -> list[Flow]:
        out: list[Flow] = []
        while len(out) < n:
            f = self.candidate(proto, vip, port)
            if self.take(f):
                out.append(f)
        return out

    def aimed(
        self,
        history: list[str],
        mode: Mode,
        proto: str,
        vip: str,
        port: int,
        targets: list[str],
        per_target: int = 3,
        tries: int = 200_000,
    ) -> list[Flow]:
        """Clients whose slot in maglevx's table holds each of ``targets``
        ("addr:port"), available or not, ``per_target`` each."""
        d = maglevx.Director.from_history(
            "\n".join(history) + "\n", variant=mode.variant, table_size=mode.m
        )
        svc = d.service_for(proto, ipaddress.ip_address(vip), port, None)
        servers = list(svc.table_servers)
        table = svc.table
        want = {t: [] for t in targets}
        for _ in range(tries):
            if all(len(v) >= per_target for v in want.values()):
                break
            f = self.candidate(proto, vip, port)
            rs_i = int(table[_slot_of(svc, f)])
            if rs_i >= len(servers):
                continue
            ep = servers[rs_i].endpoint
            if ep in want and len(want[ep]) < per_target and self.take(f):
                want[ep].append(f)
        return [f for v in want.values() for f in v]


def _slot_of(svc, f: Flow) -> int:
    """The table slot maglevx hashes flow ``f`` to (hash1 of client, port)."""
    from maglevx.backend import core
    from maglevx.model import fold_address

    d = svc.director
    port = svc.hashed_port(f.proto, f.sport)
    return core.slot(
        d.table_size, d.word_size, fold_address(ipaddress.ip_address(f.saddr)), port
    )


def _rs4(i: int) -> str:
    return str(ipaddress.IPv4Address("172.16.0.1") + i)


def over_m(mode: Mode, cl: Clients) -> Scenario:
    m, vip = mode.m, "10.1.0.1"
    svc = f"-t {vip}:80"
    rs = [_rs4(i) for i in range(m + 2)]
    gone, zeroed, x1, x2 = rs[0], rs[1], rs[m], rs[m + 1]
    h0 = [f"-A {svc} -s mh"] + [f"-a {svc} -r {a}:80 -m -w 1" for a in rs[:m]]
    h1 = [
        f"-a {svc} -r {x1}:80 -m -w 1",  # M+1 servers: the rebuild fails
        f"-a {svc} -r {x2}:80 -m -w 1",
        f"-d {svc} -r {gone}:80",  # still M+1: its slot stays in the old table
        f"-e {svc} -r {zeroed}:80 -m -w 0",  # still in the old table, unavailable
    ]
    h2 = [f"-d {svc} -r {x1}:80"]  # M servers: rebuilt
    olds = [f"{gone}:80", f"{zeroed}:80"]
    phases = []
    hist: list[str] = []
    for h, aim in ((h0, olds), (h1, olds), (h2, [f"{x2}:80", f"{zeroed}:80"])):
        hist += h
        flows = cl.random("tcp", vip, 80, RANDOM_FLOWS)
        flows += cl.aimed(hist, mode, "tcp", vip, 80, aim)
        phases.append(Phase(h, flows))
    return Scenario(
        "over-m",
        phases,
        meta={"m": m, "new": [f"{x1}:80", f"{x2}:80"], "gone": f"{gone}:80"},
    )


ZERO_SERVICES = {  # vip -> flags
    "10.1.0.2": "",
    "10.1.0.3": " -b mh-fallback,mh-port",
    "10.1.0.4": "",
    "10.1.0.5": " -b mh-fallback",
}


def zero_weights(cl: Clients) -> Scenario:
    added0, edited0 = ("10.1.0.2", "10.1.0.3"), ("10.1.0.4", "10.1.0.5")
    h0 = []
    for i, (vip, flags) in enumerate(ZERO_SERVICES.items()):
        h0.append(f"-A -t {vip}:80 -s mh{flags}")
        for j in range(8):
            w = 0 if vip in added0 else j + 1
            h0.append(f"-a -t {vip}:80 -r 172.17.{i}.{j + 1}:80 -m -w {w}")
    h1 = [
        f"-e -t {vip}:80 -r 172.17.{i + 2}.{j + 1}:80 -m -w 0"
        for i, vip in enumerate(edited0)
        for j in range(8)
    ]
    h2 = [
        f"-e -t {vip}:80 -r 172.17.{i + 2}.3:80 -m -w 5"
        for i, vip in enumerate(edited0)
    ]
    n = RANDOM_FLOWS // 2
    phases = [
        Phase(h0, [f for v in ZERO_SERVICES for f in cl.random("tcp", v, 80, n)]),
        Phase(h1, [f for v in ZERO_SERVICES for f in cl.random("tcp", v, 80, n)]),
        Phase(h2, [f for v in edited0 for f in cl.random("tcp", v, 80, n)]),
    ]
    # (phase, vip) whose flows must all get no destination, in both variants
    none = [(0, v) for v in added0] + [(1, v) for v in ZERO_SERVICES]
    return Scenario("zero", phases, meta={"all_none": none})


def huge_weights(cl: Clients) -> Scenario:
    e, f = "10.1.0.6", "10.1.0.7"
    we = [65535, 1, 2, 65535, 2, 1, 65535, 1, 2, 1]
    wf = [65534, 2, 65534, 4, 2, 6]  # gcd 2
    h0 = [f"-A -t {e}:80 -s mh", f"-A -t {f}:80 -s mh -b mh-port"]
    h0 += [f"-a -t {e}:80 -r 172.18.0.{i + 1}:80 -m -w {w}" for i, w in enumerate(we)]
    h0 += [f"-a -t {f}:80 -r 172.18.1.{i + 1}:80 -m -w {w}" for i, w in enumerate(wf)]
    h1 = [
        f"-e -t {e}:80 -r 172.18.0.1:80 -m -w 1",
        f"-e -t {e}:80 -r 172.18.0.2:80 -m -w 65535",
        f"-e -t {f}:80 -r 172.18.1.2:80 -m -w 65535",
        f"-e -t {f}:80 -r 172.18.1.1:80 -m -w 0",
    ]
    phases = [
        Phase(
            h,
            cl.random("tcp", e, 80, RANDOM_FLOWS)
            + cl.random("tcp", f, 80, RANDOM_FLOWS),
        )
        for h in (h0, h1)
    ]
    return Scenario("huge", phases)


def v6_churn(cl: Clients, seed: int = 14, bursts: int = 3, ops: int = 60) -> Scenario:
    gen = scen.Generator(seed)
    assert gen.theme == "churn"
    services = [
        scen.Service("tcp", "fd00:1::10", 80, (), "small", [], []),
        scen.Service("udp", "fd00:1::11", 53, ("mh-port",), "wide", [], []),
    ]
    phases = []
    for b in range(bursts + 1):
        lines: list[str] = []
        for svc in services:
            if b == 0:
                lines.append(f"-A {svc.opt} {svc.endpoint} {svc.sched()}")
                for _ in range(12):
                    rs = gen.new_rs(svc)
                    svc.servers.insert(0, rs)
                    lines.append(gen.add_line(svc, rs))
            else:
                for _ in range(ops):
                    gen.op(svc, lines)
        flows = [
            f for s in services for f in cl.random(s.proto, s.vip, s.port, RANDOM_FLOWS)
        ]
        phases.append(Phase(lines, flows))
    phases.append(Phase(["-C"], []))  # the clear must succeed on the churned state
    return Scenario("v6churn", phases)


def build_scenarios(mode: Mode) -> list[Scenario]:
    cl = Clients(7)
    return [over_m(mode, cl), zero_weights(cl), huge_weights(cl), v6_churn(cl)]
