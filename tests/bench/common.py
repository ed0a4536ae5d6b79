"""Directors and flows the benchmarks share."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from maglevx import Director, VirtualService

FLOWS = int(os.environ.get("MAGLEVX_BENCH_BULK_FLOWS", "1000000"))
ROUNDS = int(os.environ.get("MAGLEVX_BENCH_ROUNDS", "7"))


def rip(family: int, i: int) -> str:
    """The i-th real server's address:port, as ipvsadm writes it."""
    if family == 4:
        return f"10.{1 + i // 65536}.{i // 256 % 256}.{i % 256}:80"
    return f"[fd00:1::{i // 65536:x}:{i % 65536:x}]:80"


def service(
    family: int = 4,
    servers: int = 100,
    table_size: int = 4093,
    flags: str = "mh-port",
    weights: str = "equal",
    word_size: int = 64,
) -> VirtualService:
    """One mh virtual service of *servers* real servers (list order kept).

    *weights*: ``equal`` (all 1) or ``mixed`` (1..100, fixed pseudo-random).
    """
    vip = "10.0.0.1:80" if family == 4 else "[fd00::1]:80"
    rng = np.random.default_rng(servers)
    w = [1] * servers if weights == "equal" else rng.integers(1, 101, servers).tolist()
    header = f"-A -t {vip} -s mh" + (f" -b {flags}" if flags else "")
    d = Director.from_history([header], table_size=table_size, word_size=word_size)
    svc = d.services[0]
    # as `-a` lines would leave them, without parsing thousands of lines
    for i in range(servers):
        address, _, port = rip(family, i).rpartition(":")
        svc.add_server(address.strip("[]"), int(port), weight=w[i], forward="masq")
    return svc


def flows(family: int, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n random client addresses (uint32, or (n, 4) words) and ports."""
    rng = np.random.default_rng(seed)
    shape = (n,) if family == 4 else (n, 4)
    return (
        rng.integers(0, 2**32, shape, dtype=np.uint32),
        rng.integers(0, 65536, n, dtype=np.uint16),
    )


def best_seconds(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    """The fastest of *rounds* calls of *fn*, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
