"""Seeded generator of IPVS histories (``ipvsadm -R`` lines) and flows.

One seed gives one :class:`~.jobs.Scenario`: 1-4 virtual services (TCP/UDP,
IPv4/IPv6) with the ``mh`` scheduler and any of no flags, ``mh-port``,
``mh-fallback`` or both; 1..64 real servers forwarded with ``-m``, ``-g`` or ``-i``;
weights from 0 to 65535 (large ones make the kernel shift weights); then phases of
adds, deletes, re-adds, weight edits to and from 0, ``-E`` flag changes and service
re-creation, each phase followed by new flows from random clients.

Addresses, chosen so the guest stays undisturbed (it has no NIC; see qemu.py):

* virtual services: IPv4 10.1.0.0/16, IPv6 fd00:1::/32 (local via the guest's
  ``local 10.0.0.0/8`` / ``local fd00::/16`` routes, so the client's packet reaches
  IPVS in LOCAL_OUT);
* clients: IPv4 10.2.0.0-10.255.255.255, IPv6 fd00:c::/32 (bindable the same way);
* real servers: IPv4 172.16.0.0/12, IPv6 2001:db8::/32 - no route in the guest, so
  after IPVS has scheduled a flow the forwarded packet is dropped. The kernel accepts
  such real servers for -m, -g and -i alike.

The generator also tracks the list order the kernel should keep (newest first,
re-added servers back at the head) so the tests can compare it with what
``ipvsadm -Ln --nosort`` shows.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random

from .jobs import Flow, Phase, Scenario

FLAG_SETS = ((), ("mh-port",), ("mh-fallback",), ("mh-fallback", "mh-port"))
METHODS = ("-m", "-g", "-i")
THEMES = ("plain", "port", "fallback-zero", "both", "flag-edits", "big", "churn", "v6")


@dataclasses.dataclass
class RS:
    addr: str  # bare address
    written_port: int  # the port written in -a/-e
    method: str  # -m / -g / -i
    weight: int
    stored_port: int  # what the kernel stores (service port for -g/-i)

    def endpoint(self, port: int | None = None) -> str:
        a = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"{a}:{self.written_port if port is None else port}"

    @property
    def key(self):
        return (self.addr, self.stored_port)


@dataclasses.dataclass
class Service:
    proto: str
    vip: str
    port: int
    flags: tuple
    weights: str  # weight regime
    servers: list  # RS, list head (newest) first
    deleted: list  # RS once present, for re-adds

    @property
    def v6(self) -> bool:
        return ":" in self.vip

    @property
    def opt(self) -> str:
        return "-t" if self.proto == "tcp" else "-u"

    @property
    def endpoint(self) -> str:
        a = f"[{self.vip}]" if self.v6 else self.vip
        return f"{a}:{self.port}"

    def sched(self) -> str:
        s = "-s mh"
        return s + (" -b " + ",".join(self.flags) if self.flags else "")


class Generator:
    def __init__(self, seed: int):
        self.seed = seed
        self.rnd = random.Random(seed)
        self.theme = THEMES[seed % len(THEMES)]

    # -- value samplers ------------------------------------------------------
    def weight(self, regime: str) -> int:
        r = self.rnd
        if regime == "equal":
            return 1
        if regime == "small":
            return r.choice([0, 1, 1, 2, 3, 4, 5, 7, 10])
        if regime == "zero-heavy":
            return r.choice([0, 0, 0, 1, 2, 5, 100])
        if regime == "large":
            return r.randint(1000, 65535)
        if regime == "multiples":  # share a gcd > 1
            return 4 * r.randint(0, 16000)
        # "wide": log-uniform over 1..65535, with some zeros
        if r.random() < 0.08:
            return 0
        return min(65535, int(2 ** r.uniform(0, 16)))

    def v4(self, first: int, lo: int = 0, hi: int = 255) -> str:
        r = self.rnd
        return f"{first}.{r.randint(lo, hi)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def v6(self, prefix: str) -> str:
        net = ipaddress.IPv6Network(prefix)
        host = self.rnd.getrandbits(128 - net.prefixlen) or 1
        return str(net.network_address + host)

    def rs_addr(self, v6: bool) -> str:
        if v6:
            return self.v6("2001:db8::/32")
        return f"172.{self.rnd.randint(16, 31)}.{self.rnd.randint(0, 255)}.{self.rnd.randint(1, 254)}"

    # -- history pieces --------------------------------------------------------
    def new_rs(self, svc: Service) -> RS:
        r = self.rnd
        methods = {"-m": 70, "-g": 15, "-i": 15}
        method = r.choices(list(methods), weights=list(methods.values()))[0]
        taken_addrs = {s.addr for s in svc.servers}
        taken = {s.key for s in svc.servers}
        while True:
            if method == "-m" and svc.servers and r.random() < 0.1:
                # same address, another port: the hash includes the port
                addr = r.choice([s.addr for s in svc.servers])
            else:
                addr = self.rs_addr(svc.v6)
            port = r.choice([svc.port, 8080, r.randint(1, 65535)])
            stored = port if method == "-m" else svc.port
            if (addr, stored) not in taken and (
                method == "-m" or addr not in taken_addrs
            ):
                return RS(addr, port, method, self.weight(svc.weights), stored)

    def add_line(self, svc: Service, rs: RS) -> str:
        w = f" -w {rs.weight}"
        if rs.weight == 1 and self.rnd.random() < 0.3:
            w = ""  # ipvsadm's default weight is 1
        return f"-a {svc.opt} {svc.endpoint} -r {rs.endpoint()} {rs.method}{w}"

    def edit_line(self, svc: Service, rs: RS) -> str:
        # -e must repeat the forwarding method: ipvsadm's default is -g, which
        # would also replace the port with the service port.
        return (
            f"-e {svc.opt} {svc.endpoint} -r {rs.endpoint()} {rs.method} -w {rs.weight}"
        )

    def del_line(self, svc: Service, rs: RS) -> str:
        # ipvsadm swaps in the service port for -g/-i only on -a/-e, so -d must
        # name the port the kernel stored.
        return f"-d {svc.opt} {svc.endpoint} -r {rs.endpoint(rs.stored_port)}"

    def op(self, svc: Service, out: list) -> None:
        """One random change to ``svc``, appended to ``out`` as ipvsadm lines."""
        r = self.rnd
        ops = {
            "add": 3,
            "delete": 2,
            "readd": 2,
            "edit": 3,
            "to0": 2,
            "from0": 2,
            "flags": 1 if self.theme != "flag-edits" else 4,
            "recreate": 0.3,
        }
        if self.theme == "churn":
            ops.update(delete=4, readd=4, recreate=1)
        if self.theme == "fallback-zero":
            ops.update(to0=5, from0=3)
        kind = r.choices(list(ops), weights=list(ops.values()))[0]
        live = svc.servers
        if kind == "add" and len(live) < 64:
            rs = self.new_rs(svc)
            live.insert(0, rs)
            out.append(self.add_line(svc, rs))
        elif kind == "delete" and live:
            rs = r.choice(live)
            live.remove(rs)
            svc.deleted.append(rs)
            out.append(self.del_line(svc, rs))
        elif kind == "readd" and svc.deleted and len(live) < 64:
            rs = r.choice(svc.deleted)
            svc.deleted.remove(rs)
            if rs.key in {s.key for s in live} or (
                rs.method != "-m" and rs.addr in {s.addr for s in live}
            ):
                return
            if r.random() < 0.5:
                rs.weight = self.weight(svc.weights)
            live.insert(0, rs)
            out.append(self.add_line(svc, rs))
        elif kind in ("edit", "to0", "from0") and live:
            cands = live
            if kind == "from0":
                cands = [s for s in live if s.weight == 0] or live
            rs = r.choice(cands)
            if kind == "to0":
                rs.weight = 0
            elif kind == "from0":
                rs.weight = max(1, self.weight(svc.weights))
            else:
                rs.weight = self.weight(svc.weights)
            out.append(self.edit_line(svc, rs))
        elif kind == "flags":
            svc.flags = r.choice([f for f in FLAG_SETS if f != svc.flags])
            out.append(f"-E {svc.opt} {svc.endpoint} {svc.sched()}")
        elif kind == "recreate":
            out.append(f"-D {svc.opt} {svc.endpoint}")
            old = svc.servers[:]
            svc.deleted.extend(old)
            svc.servers.clear()
            if r.random() < 0.5:
                svc.flags = r.choice(FLAG_SETS)
            out.append(f"-A {svc.opt} {svc.endpoint} {svc.sched()}")
            for rs in r.sample(old, k=r.randint(0, len(old))):
                svc.deleted.remove(rs)
                svc.servers.insert(0, rs)
                out.append(self.add_line(svc, rs))

    # -- the scenario ----------------------------------------------------------
    def new_service(self, used: set) -> Service:
        r = self.rnd
        t = self.theme
        v6 = r.random() < (0.7 if t == "v6" else 0.25)
        proto = r.choice(["tcp", "udp"])
        while True:
            vip = self.v6("fd00:1::/32") if v6 else self.v4(10, 1, 1)
            port = r.choice([80, 443, 53, 8080, r.randint(1, 65535)])
            if (proto, vip, port) not in used:
                used.add((proto, vip, port))
                break
        flags = {
            "plain": ((),),
            "port": (("mh-port",),),
            "fallback-zero": (("mh-fallback",), ("mh-fallback", "mh-port")),
            "both": (("mh-fallback", "mh-port"),),
        }.get(t, FLAG_SETS)
        flags = r.choice(flags) if r.random() < 0.8 else r.choice(FLAG_SETS)
        regimes = ["small", "equal", "wide", "large", "multiples", "zero-heavy"]
        regime = {"big": "large", "fallback-zero": "zero-heavy"}.get(
            t, r.choice(regimes)
        )
        return Service(proto, vip, port, flags, regime, [], [])

    def client(self, svc: Service, pool: list) -> Flow:
        r = self.rnd
        if pool and r.random() < 0.25:
            addr = r.choice(pool)  # same client, another port (matters with mh-port)
        else:
            addr = self.v6("fd00:c::/32") if svc.v6 else self.v4(10, 2, 255)
            pool.append(addr)
        return Flow(svc.proto, addr, r.randint(1024, 65535), svc.vip, svc.port)

    def scenario(self, n_flows: int) -> Scenario:
        r = self.rnd
        used: set = set()
        n_services = r.choice([1, 1, 2, 2, 3, 4])
        services = [self.new_service(used) for _ in range(n_services)]
        n_phases = r.choice([1, 2, 2, 3, 3, 4])
        phases = []
        pools = {id(s): [] for s in services}
        seen = set()
        orders: list = []
        for p in range(n_phases):
            lines: list[str] = []
            if p == 0:
                for svc in services:
                    lines.append(f"-A {svc.opt} {svc.endpoint} {svc.sched()}")
                    if self.theme == "big":
                        n = r.randint(40, 64)
                    else:
                        n = r.choice(
                            [1, 2, 3, 5, 8, r.randint(1, 64), r.randint(1, 16)]
                        )
                    for _ in range(n):
                        rs = self.new_rs(svc)
                        svc.servers.insert(0, rs)
                        lines.append(self.add_line(svc, rs))
                    for _ in range(r.randint(0, 3)):
                        self.op(svc, lines)
            else:
                for svc in services:
                    for _ in range(r.randint(0, 6)):
                        self.op(svc, lines)
            flows = []
            per = max(1, n_flows // n_phases)
            while len(flows) < per:
                svc = services[len(flows) % len(services)]
                f = self.client(svc, pools[id(svc)])
                if f.client_key() not in seen:
                    seen.add(f.client_key())
                    flows.append(f)
            phases.append(Phase(lines, flows))
            # the list order the kernel should now have, per service
            orders.append(
                {
                    f"{s.proto.upper()} {s.endpoint}": [
                        RS(
                            x.addr, x.stored_port, x.method, x.weight, x.stored_port
                        ).endpoint()
                        for x in s.servers
                    ]
                    for s in services
                }
            )
        return Scenario(
            name=f"seed{self.seed}-{self.theme}",
            phases=phases,
            seed=self.seed,
            meta={"theme": self.theme, "expected_order": orders},
        )


def generate(seed: int, n_flows: int = 2500) -> Scenario:
    """The scenario of ``seed`` with about ``n_flows`` flows."""
    return Generator(seed).scenario(n_flows)


def expected_order(sc: Scenario) -> list[dict]:
    """Per phase: {"TCP 10.1.0.1:80": ["172.16.0.5:8080", ...]} in kernel list order."""
    return sc.meta.get("expected_order", [{} for _ in sc.phases])


def parse_listing(text: str) -> dict:
    """``ipvsadm -Ln --nosort`` -> {"TCP 10.1.0.1:80": ["rs:port", ...]} in listed order."""
    out: dict = {}
    cur = None
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] in ("TCP", "UDP", "SCTP", "FWM") and len(f) >= 3:
            cur = f"{f[0]} {f[1]}"
            out[cur] = []
        elif f[0] == "->" and cur is not None and f[1] != "RemoteAddress:Port":
            out[cur].append(f[1])
    return out


def pack(scenarios, max_flows_per_boot: int) -> list[list[Scenario]]:
    """Group scenarios into boots of at most ``max_flows_per_boot`` flows, dropping any
    flow whose client (proto, address, port) an earlier scenario of the boot used."""
    boots: list[list[Scenario]] = []
    cur: list[Scenario] = []
    count = 0
    seen: set = set()
    for sc in scenarios:
        if cur and count + sc.n_flows > max_flows_per_boot:
            boots.append(cur)
            cur, count, seen = [], 0, set()
        for ph in sc.phases:
            keep = [f for f in ph.flows if f.client_key() not in seen]
            seen.update(f.client_key() for f in keep)
            ph.flows[:] = keep
        cur.append(sc)
        count += sc.n_flows
    if cur:
        boots.append(cur)
    return boots
