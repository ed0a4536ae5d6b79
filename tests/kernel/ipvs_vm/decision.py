"""Scenarios that hit, on purpose, every branch of the kernel's decision that is
not the scheduler's pick (docs/decision-path.md): FTP-data (client port 20), the
FTP service's catch-all, port-zero services, fwmark services and their precedence,
persistence templates with and without ``-M`` (IPv4 masks, IPv6 prefix lengths),
templates across server deletes / re-adds / edits to weight 0, the sysctl
``expire_quiescent_template``, ``-E`` toggling persistence, and ``-o`` for UDP.

Each theme is deterministic for a seed; the branches a theme exists for are hit
whatever the seed (the seed only varies addresses, weights, masks and flags).

Marks are set in the guest by nft (a ``route`` chain at ``mangle`` priority in
OUTPUT, before IPVS's LOCAL_OUT hook) by destination address; the generator
records the mark each flow gets in :attr:`Flow.fwmark`. One-packet (``-o``) UDP
connections are never entered in the connection table, so the ``ops`` theme
routes the real servers' networks to ``lo`` and records every forwarded datagram
(client address and port, real server address and port) in nft sets after
POSTROUTING; :func:`observed_ops` reads them back.
"""

from __future__ import annotations

import ipaddress
import random

from .jobs import Flow, Phase, Scenario

THEMES = (
    "lowports",  # every client port 1..1023 and the largest ones, persistent or not
    "persist4",  # -p with IPv4 -M masks, many clients per network, churn
    "persist6",  # -p with IPv6 -M prefix lengths
    "portzero",  # persistent VIP:0 catch-all beside exact services
    "fwmark",  # fwmark services (v4/v6, -p or not) and their precedence
    "ftp",  # a TCP :21 service (persistent or not): FTP-data lookup
    "toggle",  # -E dropping and restoring -p, changing -M
    "quiescent",  # expire_quiescent_template=1, edits to weight 0
    "ops",  # -o one-packet UDP (and fwmark -o), persistent and not
)

V4_MASKS = ("255.255.255.0", "255.255.0.0", "255.255.255.252", "255.0.255.0", "0.0.0.0")
V6_PLENS = (64, 48, 120, 1, 127)
OPS_SETUP = r"""ip route add 172.16.0.0/12 dev lo
ip -6 route add 2001:db8::/32 dev lo
nft -f - <<'NFT'
table inet mxops {
    set seen4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; size 1048576; flags dynamic; }
    set seen6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; size 1048576; flags dynamic; }
    chain post {
        type filter hook postrouting priority 0;
        ip daddr 172.16.0.0/12 meta l4proto udp add @seen4 { ip saddr . udp sport . ip daddr . udp dport }
        ip6 daddr 2001:db8::/32 meta l4proto udp add @seen6 { ip6 saddr . udp sport . ip6 daddr . udp dport }
    }
}
NFT"""
OPS_AFTER = [
    "nft -n list set inet mxops seen4 > /out/{tag}.seen4",
    "nft -n list set inet mxops seen6 > /out/{tag}.seen6",
    "nft flush set inet mxops seen4",
    "nft flush set inet mxops seen6",
]


# branch -> flows (or templates) that must have taken it in each kernel's run of
# the main campaign (2000 flows per theme); smaller runs need each at least once.
BRANCHES = {
    "ftp-data tcp": 2,  # client port 20, TCP, IPv4 and IPv6
    "ftp-data udp": 2,
    "FTP lookup": 20,  # TCP to a :21 service's VIP, port 20 or >= 1024
    "ftp-pass tcp": 10,  # ... non-persistent: passes
    "no-service tcp": 5,
    "port-zero catch-all": 100,
    "fwmark service": 100,
    "fwmark over exact service": 10,
    "mark without fwmark service": 10,
    "masked client IPv4": 100,
    "masked client IPv6": 100,
    "template tcp": 100,  # a template decided
    "template udp": 100,
    "template replaced": 3,  # its real server was gone (or quiescent + sysctl)
    "template to weight 0": 5,  # quiescent, followed
    "one-packet": 50,
    "one-packet seen by nft": 50,
    "template ip IPv4": 1,  # fwmark templates (protocol IP) in ip_vs_conn
    "template ip IPv6": 1,
    "template vport 0": 20,  # port-zero / FTP / fwmark templates
    "client port < 1024": 2000,
    "no-destination tcp": 1,
}


def _ep(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class _Svc:
    """One virtual service as the generator tracks it."""

    def __init__(self, proto: str, vip: str | None, port: int, mark: int = 0, v6=False):
        self.proto = proto  # tcp / udp / fwmark
        self.vip = vip
        self.port = port
        self.mark = mark
        self.v6 = v6 if vip is None else ":" in vip
        self.servers: list[tuple[str, int, str]] = []  # (addr, written port, method)
        self.deleted: list[tuple[str, int, str]] = []
        self.opts = ""
        self.methods = ("-m", "-m", "-g")  # of servers added by churn

    @property
    def ident(self) -> str:
        if self.proto == "fwmark":
            return f"-f {self.mark}" + (" -6" if self.v6 else "")
        return f"{'-t' if self.proto == 'tcp' else '-u'} {_ep(self.vip, self.port)}"

    def stored_port(self, port: int, method: str) -> int:
        # ipvsadm gives -g/-i servers the service port, except for fwmark services
        if self.proto != "fwmark" and method in ("-g", "-i"):
            return self.port
        return port


class Generator:
    def __init__(self, seed: int):
        self.seed = seed
        self.rnd = random.Random(seed * 7919 + 11)
        self.theme = THEMES[seed % len(THEMES)]
        self.used_clients: set = set()
        self.vips: set = set()

    # -- addresses -------------------------------------------------------------
    def vip(self, v6: bool) -> str:
        r = self.rnd
        while True:
            if v6:
                a = str(ipaddress.IPv6Address("fd00:1::") + r.getrandbits(64) + 1)
            else:
                a = f"10.1.{r.randint(0, 255)}.{r.randint(1, 254)}"
            if a not in self.vips:
                self.vips.add(a)
                return a

    def rs_addr(self, v6: bool) -> str:
        r = self.rnd
        if v6:
            return str(ipaddress.IPv6Address("2001:db8::") + r.getrandbits(64) + 1)
        return f"172.{r.randint(16, 31)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def network(self, v6: bool) -> ipaddress._BaseNetwork:
        """A client network: clients drawn from it share masked prefixes."""
        r = self.rnd
        if v6:
            base = ipaddress.IPv6Address("fd00:c::") + (r.getrandbits(96) << 0)
            return ipaddress.IPv6Network(f"{base}/100", strict=False)
        return ipaddress.IPv4Network(
            f"10.{r.randint(2, 255)}.{r.randint(0, 255)}.0/23", strict=False
        )

    def client_in(self, net) -> str:
        host = self.rnd.randrange(1, net.num_addresses - 1)
        return str(net.network_address + host)

    def sport(self) -> int:
        r = self.rnd
        return r.choice(
            [r.randint(1024, 65535), r.randint(1024, 65535), r.randint(1, 1023)]
        )

    def flow(self, proto: str, saddr: str, daddr: str, dport: int, sport=None, mark=0):
        """A flow whose (proto, client, port) is new in this scenario (else None)."""
        for _ in range(50):
            sp = self.sport() if sport is None else sport
            key = (proto, ipaddress.ip_address(saddr), sp)
            if key not in self.used_clients:
                self.used_clients.add(key)
                return Flow(proto, saddr, sp, daddr, dport, mark)
            if sport is not None:
                return None
        return None

    # -- history pieces ----------------------------------------------------------
    def sched(self) -> str:
        return self.rnd.choice(
            [
                "-s mh",
                "-s mh -b mh-port",
                "-s mh -b mh-port",
                "-s mh -b mh-fallback,mh-port",
            ]
        )

    def persist_opts(self, svc: _Svc, mask: bool = True) -> str:
        r = self.rnd
        p = r.choice(["-p", "-p 600", "-p 3600", "-p 86400"])
        if mask and r.random() < 0.75:
            m = r.choice(V6_PLENS) if svc.v6 else r.choice(V4_MASKS)
            p += f" -M {m}"
        return p

    def add_servers(
        self, svc: _Svc, out: list, n: int, methods=("-m", "-m", "-g")
    ) -> None:
        r = self.rnd
        for _ in range(n):
            method = r.choice(methods)
            port = r.choice([svc.port or 80, 8080, r.randint(1, 65535)])
            if svc.proto == "fwmark" and method == "-g" and r.random() < 0.5:
                port = 0
            addr = self.rs_addr(svc.v6)
            sp = svc.stored_port(port, method)
            if any((a, svc.stored_port(p, m)) == (addr, sp) for a, p, m in svc.servers):
                continue
            svc.servers.insert(0, (addr, port, method))
            w = r.choice([1, 1, 2, 3, 5, 10, 100])
            # ipvsadm 1.31 refuses "[v6]" without a port; a bare address means port 0
            rs = addr if (svc.proto == "fwmark" and port == 0) else _ep(addr, port)
            out.append(f"-a {svc.ident} -r {rs} {method} -w {w}")

    def rs_ident(self, svc: _Svc, s) -> str:
        addr, port, method = s
        sp = svc.stored_port(port, method)
        if sp == 0:
            return addr
        return _ep(addr, sp)

    def churn(
        self, svc: _Svc, out: list, kinds=("delete", "to0", "from0", "readd", "add")
    ) -> None:
        r = self.rnd
        for kind in kinds:
            if kind == "delete" and len(svc.servers) > 1:
                s = r.choice(svc.servers)
                svc.servers.remove(s)
                svc.deleted.append(s)
                out.append(f"-d {svc.ident} -r {self.rs_ident(svc, s)}")
            elif kind in ("to0", "from0") and svc.servers:
                s = r.choice(svc.servers)
                w = 0 if kind == "to0" else r.choice([1, 4, 9])
                out.append(f"-e {svc.ident} -r {self.rs_ident(svc, s)} {s[2]} -w {w}")
            elif kind == "readd" and svc.deleted:
                s = svc.deleted.pop(0)
                svc.servers.insert(0, s)
                out.append(f"-a {svc.ident} -r {self.rs_ident(svc, s)} {s[2]} -w 2")
            elif kind == "add":
                self.add_servers(svc, out, 1, methods=svc.methods)

    def flows_for(self, svc: _Svc, nets: list, n: int, dports=None) -> list[Flow]:
        """``n`` flows to ``svc`` from clients of ``nets`` (several per client)."""
        r = self.rnd
        out: list[Flow] = []
        clients: list[str] = []
        tries = 0
        while len(out) < n and tries < n * 5:
            tries += 1
            if clients and r.random() < 0.7:
                c = r.choice(clients)
            else:
                c = self.client_in(r.choice(nets))
                clients.append(c)
            if dports:
                dport = r.choice(dports)
            else:  # a port-zero or fwmark service takes any port (0 cannot be sent)
                dport = svc.port or r.choice([53, 80, 443, r.randint(1, 65535)])
            proto = svc.proto
            daddr = svc.vip
            mark = 0
            if svc.proto == "fwmark":
                proto = r.choice(["tcp", "udp"])
                daddr, mark = self.mark_dest[(svc.mark, svc.v6)]
            f = self.flow(proto, c, daddr, dport, mark=mark)
            if f is not None:
                out.append(f)
        return out

    # -- themes ------------------------------------------------------------------
    def scenario(self, n_flows: int) -> Scenario:
        self.mark_dest: dict = {}
        meta: dict = {"theme": self.theme, "decision": True}
        phases = getattr(self, "_" + self.theme)(n_flows, meta)
        return Scenario(f"decision{self.seed}-{self.theme}", phases, self.seed, meta)

    def _lowports(self, n: int, meta: dict) -> list[Phase]:
        r = self.rnd
        lines: list[str] = []
        svcs = []
        for proto, v6, persistent in (
            ("tcp", False, False),
            ("udp", False, True),
            ("tcp", True, True),
            ("udp", True, False),
        ):
            s = _Svc(proto, self.vip(v6), r.choice([80, 53, 443, 8443]))
            s.opts = self.persist_opts(s) if persistent else ""
            lines.append(f"-A {s.ident} {self.sched()} {s.opts}".strip())
            self.add_servers(s, lines, r.randint(3, 12))
            svcs.append(s)
        # every client port below 1024 (20: FTP-data) and the largest ones, on
        # every service; each port from a different client so all are new
        ports = list(range(1, 1024)) + [1024, 1025, 65533, 65534, 65535]
        flows = []
        per = max(1, n // (len(ports) * len(svcs)))
        for s in svcs:
            net = self.network(s.v6)
            for p in ports:
                for _ in range(per):
                    f = self.flow(s.proto, self.client_in(net), s.vip, s.port, sport=p)
                    if f is not None:
                        flows.append(f)
        r.shuffle(flows)
        return [Phase(lines, flows)]

    def _persist(self, n: int, meta: dict, v6: bool) -> list[Phase]:
        r = self.rnd
        lines: list[str] = []
        svcs = []
        for proto in ("tcp", "udp", r.choice(["tcp", "udp"])):
            s = _Svc(proto, self.vip(v6), r.choice([80, 53, 443, 8080]))
            s.opts = self.persist_opts(s)
            lines.append(f"-A {s.ident} {self.sched()} {s.opts}")
            self.add_servers(s, lines, r.randint(4, 20))
            svcs.append(s)
        nets = [self.network(v6) for _ in range(6)]
        phases = []
        per = max(1, n // (4 * len(svcs)))
        for j in range(4):
            if j:
                lines = []
                for s in svcs:
                    self.churn(s, lines)
            flows = [f for s in svcs for f in self.flows_for(s, nets, per)]
            r.shuffle(flows)
            phases.append(Phase(lines, flows))
        return phases

    def _persist4(self, n: int, meta: dict) -> list[Phase]:
        return self._persist(n, meta, False)

    def _persist6(self, n: int, meta: dict) -> list[Phase]:
        return self._persist(n, meta, True)

    def _portzero(self, n: int, meta: dict) -> list[Phase]:
        r = self.rnd
        lines: list[str] = []
        phases = []
        svcs = []
        for proto, v6 in (("tcp", False), ("udp", False), ("tcp", True), ("udp", True)):
            vip = self.vip(v6)
            z = _Svc(proto, vip, 0)
            z.opts = self.persist_opts(z)
            lines.append(f"-A {z.ident} {self.sched()} {z.opts}")
            self.add_servers(z, lines, r.randint(3, 10))
            exact = _Svc(proto, vip, r.choice([80, 53, 443]))
            lines.append(f"-A {exact.ident} {self.sched()}")
            self.add_servers(exact, lines, r.randint(2, 6))
            svcs += [(z, exact)]
        nets = {v6: [self.network(v6) for _ in range(4)] for v6 in (False, True)}
        per = max(1, n // (2 * len(svcs)))
        for j in range(2):
            if j:
                lines = []
                for z, _exact in svcs:
                    self.churn(z, lines, ("delete", "to0", "add"))
            flows = []
            for z, exact in svcs:
                dports = [exact.port, exact.port, 20, 21, 1, 1023, 1024, 65535] + [
                    r.randint(1, 65535) for _ in range(8)
                ]
                flows += self.flows_for(z, nets[z.v6], per, dports)
            r.shuffle(flows)
            phases.append(Phase(lines, flows))
        return phases

    def _fwmark(self, n: int, meta: dict) -> list[Phase]:
        r = self.rnd
        lines: list[str] = []
        rules = []
        svcs = []
        marks = r.sample(range(1, 1000), 6)
        for i, (v6, persistent) in enumerate(
            ((False, False), (False, True), (True, True), (True, False))
        ):
            s = _Svc("fwmark", None, 0, mark=marks[i], v6=v6)
            s.opts = self.persist_opts(s) if persistent else ""
            lines.append(f"-A {s.ident} {self.sched()} {s.opts}".strip())
            self.add_servers(s, lines, r.randint(3, 10), methods=("-m", "-g"))
            vip = self.vip(v6)
            self.mark_dest[(s.mark, v6)] = (vip, s.mark)
            rules.append((vip, s.mark))
            svcs.append(s)
        # precedence: a marked VIP that also has an exact service -> fwmark wins
        exact = _Svc("tcp", self.vip(False), 80)
        lines.append(f"-A {exact.ident} -s mh")
        self.add_servers(exact, lines, 3)
        rules.append((exact.vip, svcs[0].mark))
        # a mark with no fwmark service of that family -> the exact service
        exact6 = _Svc("udp", self.vip(True), 53)
        lines.append(f"-A {exact6.ident} -s mh -b mh-port")
        self.add_servers(exact6, lines, 3)
        rules.append((exact6.vip, svcs[0].mark))  # svcs[0] is IPv4 only
        unmarked = _Svc("tcp", self.vip(False), 443)
        lines.append(f"-A {unmarked.ident} -s mh")
        self.add_servers(unmarked, lines, 2)
        rules.append((unmarked.vip, marks[5]))  # no service for marks[5]
        meta["guest_setup"] = [self._mark_rules(rules)]
        nets = {v6: [self.network(v6) for _ in range(4)] for v6 in (False, True)}
        phases = []
        per = max(1, n // (3 * 7))
        for j in range(3):
            if j:
                lines = []
                for s in svcs:
                    self.churn(s, lines, ("delete", "to0", "add"))
            flows = []
            for s in svcs:
                flows += self.flows_for(
                    s, nets[s.v6], per, [80, 443, 53, 20, r.randint(1, 65535)]
                )
            for s, mark in (
                (exact, svcs[0].mark),
                (exact6, svcs[0].mark),
                (unmarked, marks[5]),
            ):
                for f in self.flows_for(s, nets[s.v6], per):
                    flows.append(
                        Flow(f.proto, f.saddr, f.sport, f.daddr, f.dport, mark)
                    )
            r.shuffle(flows)
            phases.append(Phase(lines, flows))
        return phases

    @staticmethod
    def _mark_rules(rules) -> str:
        body = "\n".join(
            f"        {'ip6' if ':' in vip else 'ip'} daddr {vip} meta mark set {mark}"
            for vip, mark in rules
        )
        return (
            "nft -f - <<'NFT'\ntable inet mxmark {\n    chain out {\n"
            "        type route hook output priority mangle;\n"
            f"{body}\n    }}\n}}\nNFT"
        )

    def _ftp(self, n: int, meta: dict) -> list[Phase]:
        r = self.rnd
        lines: list[str] = []
        groups = []
        for v6, persistent in (
            (False, False),
            (False, True),
            (True, True),
            (True, False),
        ):
            vip = self.vip(v6)
            ftp = _Svc("tcp", vip, 21)
            ftp.opts = self.persist_opts(ftp) if persistent else ""
            lines.append(f"-A {ftp.ident} {self.sched()} {ftp.opts}".strip())
            self.add_servers(ftp, lines, r.randint(2, 8))
            other = _Svc("tcp", vip, 80)
            lines.append(f"-A {other.ident} -s mh")
            self.add_servers(other, lines, 2)
            udp = _Svc("udp", vip, 53)
            lines.append(f"-A {udp.ident} -s mh -b mh-port")
            self.add_servers(udp, lines, 2)
            zero = None
            if v6 == persistent:  # two of the four VIPs also get a port-zero service
                zero = _Svc("tcp", vip, 0)
                zero.opts = self.persist_opts(zero)
                lines.append(f"-A {zero.ident} -s mh {zero.opts}")
                self.add_servers(zero, lines, 3)
            groups.append((ftp, other, udp, zero))
        nets = {v6: [self.network(v6) for _ in range(4)] for v6 in (False, True)}
        per = max(1, n // (2 * 4 * 2))
        phases = []
        for j in range(2):
            if j:
                lines = []
                for ftp, *_ in groups:
                    self.churn(ftp, lines, ("delete", "add"))
            flows = []
            for ftp, _other, udp, _zero in groups:
                dports = [21, 21, 20, 80, 22, 1023, 1024, 2121, 65535] + [
                    r.randint(1, 65535) for _ in range(6)
                ]
                flows += self.flows_for(ftp, nets[ftp.v6], per, dports)
                flows += self.flows_for(udp, nets[ftp.v6], per // 3, [53, 21, 20, 5353])
            r.shuffle(flows)
            phases.append(Phase(lines, flows))
        return phases

    def _toggle(self, n: int, meta: dict) -> list[Phase]:
        r = self.rnd
        lines: list[str] = []
        svcs = []
        for proto, v6 in (("tcp", False), ("udp", True), ("udp", False)):
            s = _Svc(proto, self.vip(v6), r.choice([80, 53, 8080]))
            s.opts = self.persist_opts(s)
            s.sched = "-s mh -b mh-port"  # per-port hashing: persistence shows
            lines.append(f"-A {s.ident} {s.sched} {s.opts}")
            self.add_servers(s, lines, r.randint(4, 12))
            svcs.append(s)
        nets = {v6: [self.network(v6) for _ in range(4)] for v6 in (False, True)}
        phases = []
        per = max(1, n // (5 * len(svcs)))
        for j in range(5):
            if j:
                lines = []
                for s in svcs:
                    if j in (1, 3):  # -E without -p: persistence off
                        lines.append(f"-E {s.ident} {s.sched}")
                    elif j == 2:  # back on: the old templates are followed again
                        lines.append(f"-E {s.ident} {s.sched} {s.opts}")
                    else:  # on with another mask
                        lines.append(f"-E {s.ident} {s.sched} {self.persist_opts(s)}")
                    if j == 3:
                        self.churn(s, lines, ("delete", "add"))
            flows = [f for s in svcs for f in self.flows_for(s, nets[s.v6], per)]
            r.shuffle(flows)
            phases.append(Phase(lines, flows))
        return phases

    def _quiescent(self, n: int, meta: dict) -> list[Phase]:
        phases = self._persist(n, meta, self.rnd.random() < 0.5)
        meta["guest_setup"] = ["sysctl -qw net.ipv4.vs.expire_quiescent_template=1"]
        meta["sysctl"] = {"expire_quiescent_template": 1}
        return phases

    def _ops(self, n: int, meta: dict) -> list[Phase]:
        r = self.rnd
        lines: list[str] = []
        svcs = []
        for v6, persistent in (
            (False, False),
            (False, True),
            (True, False),
            (True, True),
        ):
            s = _Svc("udp", self.vip(v6), r.choice([53, 123, 5353]))
            s.opts = ("-o " + (self.persist_opts(s) if persistent else "")).strip()
            s.methods = ("-m",)  # NAT: the forwarded datagram names the real server
            lines.append(f"-A {s.ident} {self.sched()} {s.opts}")
            self.add_servers(s, lines, r.randint(3, 10), methods=("-m",))
            svcs.append(s)
        # fwmark -o: one-packet only for its UDP packets
        fw = _Svc("fwmark", None, 0, mark=r.randint(1, 999), v6=False)
        fw.methods = ("-m",)
        lines.append(f"-A {fw.ident} -s mh -b mh-port -o")
        self.add_servers(fw, lines, 4, methods=("-m",))
        vip = self.vip(False)
        self.mark_dest[(fw.mark, False)] = (vip, fw.mark)
        svcs.append(fw)
        meta["guest_setup"] = [OPS_SETUP, self._mark_rules([(vip, fw.mark)])]
        meta["after_flows"] = OPS_AFTER
        nets = {v6: [self.network(v6) for _ in range(4)] for v6 in (False, True)}
        phases = []
        per = max(1, n // (2 * len(svcs)))
        for j in range(2):
            if j:
                lines = []
                for s in svcs:
                    self.churn(s, lines, ("delete", "add"))
            flows = [f for s in svcs for f in self.flows_for(s, nets[s.v6], per)]
            r.shuffle(flows)
            phases.append(Phase(lines, flows))
        return phases


def generate(seed: int, n_flows: int = 2000) -> Scenario:
    """The decision scenario of ``seed`` (theme ``THEMES[seed % len(THEMES)]``)."""
    return Generator(seed).scenario(n_flows)


def observed_ops(files: dict) -> dict:
    """{(client address, client port): (real server address, port)} of the UDP
    datagrams IPVS forwarded in one phase (the nft sets of OPS_SETUP)."""
    out = {}
    for name in ("seen4", "seen6"):
        text = files.get(name, "")
        if "elements = {" not in text:
            continue
        body = text.split("elements = {", 1)[1].split("}", 1)[0]
        for el in body.replace("\n", " ").split(","):
            parts = [p.strip() for p in el.split(" . ")]
            if len(parts) != 4:
                continue
            c, cp, d, dp = parts
            out[(ipaddress.ip_address(c), int(cp))] = (
                str(ipaddress.ip_address(d)),
                int(dp),
            )
    return out
