"""``maglevx watch``: a Prometheus exporter and change journal for a live director.

Every ``--interval`` seconds it reads the director (:mod:`maglevx.live`); when
the configuration changed it writes the change to the journal as ``ipvsadm -R``
lines (:mod:`maglevx.journal`) and rebuilds the model from the journal (a
history, so ``last_weight`` after an edit to weight 0 and re-adds are known
exactly from then on). It samples ``/proc/net/ip_vs_conn`` and checks every
connection it has not seen before against the prediction.

Served on ``--listen`` (default ``127.0.0.1:9753``):

- ``/metrics``: per mh service the table fingerprint (``maglevx_table_info``),
  each real server's share of slots, the fraction of new flows that would be
  refused (drained or overloaded servers that still hold slots), verify
  counters and the time of the last change; read errors as
  ``maglevx_read_errors_total`` and ``maglevx_up``;
- ``/state.json``: what ``maglevx consistency http://HOST:PORT`` compares.

A read error (e.g. netlink refusing while the host is busy) is counted and the
last good state kept: the exporter never stops serving because of one.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from maglevx import journal, live, netlink
from maglevx.errors import MaglevxError
from maglevx.model import Director, DirectorParams, VirtualService
from maglevx.tools import verify as verify_tool

DEFAULT_LISTEN = "127.0.0.1:9753"
REFUSED_SAMPLE = 1 << 16  # synthetic clients per fallback service


def refused_fraction(svc: VirtualService, sample: int = REFUSED_SAMPLE) -> float:
    """The fraction of new flows the service would refuse (no destination).

    Without mh-fallback, exactly the share of slots that are empty or whose
    real server is unavailable; with it, estimated on *sample* synthetic
    clients (the probes decide) unless every slot is available (0) or no
    real server is (1).
    """
    snap = svc.snapshot
    table = snap.table
    if len(table) == 0:
        return 1.0
    avail = np.append(np.asarray(snap.avail, bool), False)
    idx = np.where(table == 0xFFFF, len(snap.servers), table.astype(np.int64))
    refused_slots = ~avail[idx]
    if not svc.fallback or not refused_slots.any():
        return float(refused_slots.mean())
    if not avail.any():
        return 1.0
    rng = np.random.default_rng(1)
    folds = rng.integers(0, 2**32, sample, dtype=np.uint64).astype(np.uint32)
    ports = rng.integers(1024, 65536, sample).astype(np.uint16)
    # the hash sees an address only through its 32-bit fold: IPv4-style folds
    # stand for IPv6 clients too
    found = snap.lookup_many(folds, ports, "tcp", family=4)
    return float((np.asarray(found) < 0).mean())


def slot_shares(svc: VirtualService) -> dict[str, float]:
    """Each real server's share of the slots, by ``addr:port``."""
    snap = svc.snapshot
    table = snap.table
    counts = np.bincount(
        table[table != 0xFFFF].astype(np.int64), minlength=len(snap.servers)
    )
    m = max(len(table), 1)
    return {rs.endpoint: float(counts[i]) / m for i, rs in enumerate(snap.servers)}


class Watcher:
    """Polls the director, keeps the journal, the model and the metrics' values."""

    def __init__(
        self,
        *,
        journal_path: str | None = None,
        source: str = "auto",
        conn_path: str = live.PROC_CONN,
        verify_sample: int = 10000,
        overrides: dict[str, Any] | None = None,
        reader: Any = None,
    ) -> None:
        self.source = source
        self.conn_path = conn_path
        self.verify_sample = verify_sample
        self.overrides = overrides or {}
        self.reader = reader or (lambda: live.read_live(self.source, **self.overrides))
        self.journal = journal.Journal(journal_path) if journal_path else None
        self.lock = threading.Lock()
        self.state: live.LiveDirector | None = None
        self.history: list[str] = []
        self.director: Director | None = None
        self.fingerprints: dict[str, str] = {}
        self.last_change: dict[str, float] = {}
        self.errors: Counter[str] = Counter()
        self.last_error = ""
        self.up = False
        self.polls = 0
        self.verify_counts: dict[str, Counter[str]] = {}
        self._seen: set[tuple[Any, ...]] = set()

    # -- one poll --------------------------------------------------------------
    def poll(self) -> None:
        """Read once; never raises for a read error (counted instead)."""
        try:
            state = self.reader()
        except (MaglevxError, OSError) as exc:
            kind = (
                "permission"
                if "root" in str(exc)
                else ("no_ipvs" if "no IPVS" in str(exc) else "read")
            )
            with self.lock:
                self.errors[kind] += 1
                self.last_error = str(exc)
                self.up = False
            return
        now = time.time()
        with self.lock:
            self.up = True
            old = self.state
            if old is None:
                lines = journal.baseline(state.services)
                note = f"baseline ({state.facts.describe()})"
            else:
                lines = journal.diff(old.services, state.services)
                note = "change"
            if lines:
                self.history += lines
                if self.journal is not None:
                    self.journal.write(lines, note)
                self.director = self._from_history(state.director.params)
            self.state = state
            fps = {s.name: live.fingerprint(s) for s in self._mh()}
            for name, fp in fps.items():
                if self.fingerprints.get(name) != fp or name not in self.last_change:
                    self.last_change[name] = now
            self.fingerprints = fps
        self._verify()
        with self.lock:
            self.polls += 1  # last: a scrape that sees the count sees it all

    def _from_history(self, params: DirectorParams) -> Director:
        d = Director.from_params(params)
        d.apply_history("\n".join(self.history) + "\n", source="<journal>")
        return d

    def _mh(self) -> list[VirtualService]:
        if self.director is None:
            return []
        return [s for s in self.director.services if s.scheduler == "mh"]

    def _verify(self) -> None:
        """Check connections not seen in the previous sample."""
        try:
            conns = live.read_connections(self.conn_path, self.verify_sample)
        except MaglevxError as exc:
            with self.lock:
                self.errors["conn"] += 1
                self.last_error = str(exc)
            return
        seen: set[tuple[Any, ...]] = {
            (c.proto, c.saddr, c.sport, c.daddr, c.dport, c.raddr, c.rport)
            for c in conns
        }
        new = [
            c
            for c in conns
            if (c.proto, c.saddr, c.sport, c.daddr, c.dport, c.raddr, c.rport)
            not in self._seen
        ]
        self._seen = seen
        with self.lock:
            director = self.director
            history = "\n".join(self.history) + "\n"
        if director is None or not new:
            return
        rep = verify_tool.verify(director, new, history=history)
        by_service: dict[str, Counter[str]] = {}
        for c in rep.mismatches:
            by_service.setdefault(c.service, Counter())["not_as_predicted"] += 1
        for c in rep.caveats:
            by_service.setdefault(c.service, Counter())["explained"] += 1
        checked = Counter(
            s.name
            for c in new
            if (s := director.find_service((c.proto, c.daddr, c.dport))) is not None
            and s.scheduler == "mh"
        )
        with self.lock:
            for name, n in checked.items():
                cnt = self.verify_counts.setdefault(name, Counter())
                bad = by_service.get(name, Counter())
                cnt["checked"] += n
                cnt["not_as_predicted"] += bad["not_as_predicted"]
                cnt["explained"] += bad["explained"]
                cnt["as_predicted"] += n - bad["not_as_predicted"] - bad["explained"]

    # -- output ------------------------------------------------------------------
    def state_json(self) -> dict[str, Any]:
        """``/state.json``: the last good read, the journal and fingerprints."""
        with self.lock:
            if self.state is None:
                return {"version": 1, "up": False, "error": self.last_error}
            out = self.state.to_json()
            out.update(
                up=self.up,
                polls=self.polls,
                fingerprints=dict(self.fingerprints),
                journal=list(self.history),
                error=self.last_error,
            )
            return out

    def collect(self) -> Iterator[Any]:
        """prometheus_client collector protocol."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self.lock:
            up = GaugeMetricFamily("maglevx_up", "1 if the last read of IPVS succeeded")
            up.add_metric([], 1.0 if self.up else 0.0)
            yield up
            err = CounterMetricFamily(
                "maglevx_read_errors", "Failed reads of IPVS", labels=["kind"]
            )
            for kind in ("read", "permission", "no_ipvs", "conn", "serve"):
                err.add_metric([kind], float(self.errors[kind]))
            yield err
            polls = CounterMetricFamily("maglevx_polls", "Successful reads of IPVS")
            polls.add_metric([], float(self.polls))
            yield polls
            if self.state is not None:
                f = self.state.facts
                d = self.state.director
                info = GaugeMetricFamily(
                    "maglevx_director_info",
                    "The director's kernel and parameters",
                    labels=["release", "variant", "word_size", "table_size", "module"],
                )
                info.add_metric(
                    [
                        f.release,
                        d.variant,
                        str(d.word_size),
                        str(d.table_size),
                        f.mh_module or "none",
                    ],
                    1.0,
                )
                yield info
            table = GaugeMetricFamily(
                "maglevx_table_info",
                "Table fingerprint of an mh service (1)",
                labels=["service", "fingerprint"],
            )
            share = GaugeMetricFamily(
                "maglevx_slot_share",
                "A real server's share of the table's slots",
                labels=["service", "server"],
            )
            refused = GaugeMetricFamily(
                "maglevx_refused_new_flows_ratio",
                "Fraction of new flows the service would refuse (no destination)",
                labels=["service"],
            )
            changed = GaugeMetricFamily(
                "maglevx_last_change_timestamp_seconds",
                "When the service's table last changed (or watch started)",
                labels=["service"],
            )
            for svc in self._mh():
                table.add_metric([svc.name, self.fingerprints.get(svc.name, "")], 1.0)
                for ep, v in slot_shares(svc).items():
                    share.add_metric([svc.name, ep], v)
                refused.add_metric([svc.name], refused_fraction(svc))
                changed.add_metric([svc.name], self.last_change.get(svc.name, 0.0))
            yield from (table, share, refused, changed)
            ver = CounterMetricFamily(
                "maglevx_verify_connections",
                "Connections checked against the prediction, by result",
                labels=["service", "result"],
            )
            for name, cnt in sorted(self.verify_counts.items()):
                for result in (
                    "checked",
                    "as_predicted",
                    "not_as_predicted",
                    "explained",
                ):
                    ver.add_metric([name, result], float(cnt[result]))
            yield ver


def _registry(watcher: Watcher) -> Any:
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        raise MaglevxError(
            "maglevx watch needs prometheus_client: pip install 'maglevx[watch]'"
        ) from None
    registry = CollectorRegistry()
    registry.register(watcher)  # type: ignore[arg-type]
    return registry


def metrics_text(watcher: Watcher) -> str:
    """The metrics in Prometheus' text format (what ``/metrics`` serves)."""
    from prometheus_client import generate_latest

    return str(generate_latest(_registry(watcher)).decode())


def _handler(watcher: Watcher, registry: Any) -> type[BaseHTTPRequestHandler]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            try:
                self._get()
            except Exception as exc:  # noqa: BLE001 - keep serving, say why
                with watcher.lock:
                    watcher.errors["serve"] += 1
                    watcher.last_error = f"{type(exc).__name__}: {exc}"
                self.send_error(500, watcher.last_error[:200])

        def _get(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype = generate_latest(registry), CONTENT_TYPE_LATEST
            elif path == "/state.json":
                body = json.dumps(watcher.state_json()).encode()
                ctype = "application/json"
            elif path == "/":
                body = b"maglevx watch: /metrics /state.json\n"
                ctype = "text/plain"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``:PORT`` (all addresses) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise MaglevxError(f"{text!r} is not HOST:PORT", field="--listen")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(
    watcher: Watcher,
    listen: str,
    interval: float,
    stop: threading.Event | None = None,
    ready: Any = None,
) -> None:
    """Serve the metrics and poll every *interval* seconds until *stop* is set."""
    registry = _registry(watcher)
    host, port = parse_listen(listen)
    try:
        server = ThreadingHTTPServer((host, port), _handler(watcher, registry))
    except OSError as exc:
        raise MaglevxError(f"cannot listen on {listen}: {exc.strerror}") from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop = stop or threading.Event()
    try:
        watcher.poll()
        if ready is not None:
            ready(server.server_address)
        while not stop.wait(interval):
            watcher.poll()
    finally:
        server.shutdown()
        server.server_close()
        if watcher.journal is not None:
            watcher.journal.close()


def fetch_state(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """An exporter's ``/state.json`` (``url`` is ``http://HOST:PORT[/...]``)."""
    import urllib.error
    import urllib.request

    base = url.rstrip("/")
    if base.endswith("/metrics") or base.endswith("/state.json"):
        base = base.rsplit("/", 1)[0]
    try:
        with urllib.request.urlopen(base + "/state.json", timeout=timeout) as r:
            state = json.loads(r.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise MaglevxError(
            f"cannot read {base}/state.json: {exc}", source=url
        ) from None
    if not state.get("services") and not state.get("up", True):
        raise MaglevxError(
            f"the exporter has no good read: {state.get('error')}", source=url
        )
    return state


def journal_lines(services: Iterable[netlink.LiveService]) -> list[str]:
    """A baseline journal of *services* (what ``watch`` writes first)."""
    return journal.baseline(services)
