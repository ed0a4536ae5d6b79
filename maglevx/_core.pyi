"""Type stubs for the C extension (same API as maglevx._twin)."""

from typing import Any

import numpy as np
import numpy.typing as npt

PRIMES: tuple[int, ...]
HASH1_KEY: int
HASH2_KEY: int
SLOT_EMPTY: int
NONE: int
MAX_DESTS: int
KERNEL_REFERENCE: str

def hsiphash(word_size: int, data: bytes, k0: int, k1: int) -> int: ...
def tab_bits(m: int) -> int: ...
def hashkey(
    word_size: int,
    key: int,
    fold: int,
    port: int,
    offset: int,
    *,
    byte_order: str = "little",
    hash_key: bytes | None = None,
) -> int: ...
def slot(
    m: int,
    word_size: int,
    fold: int,
    port: int,
    *,
    byte_order: str = "little",
    hash_key: bytes | None = None,
) -> int: ...
def quantize(m: int, weights: npt.ArrayLike) -> tuple[int, int, list[int]]: ...
def build_table(
    m: int,
    word_size: int,
    folds: npt.ArrayLike,
    ports: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    byte_order: str = "little",
    hash_key: bytes | None = None,
) -> npt.NDArray[np.uint16]: ...
def parse_addresses(family: int, texts: Any) -> tuple[npt.NDArray[Any], int]: ...

class Scheduler:
    fallback: bool
    table: npt.NDArray[np.uint16]
    avail: npt.NDArray[np.uint8]
    m: int
    word_size: int
    byte_order: str
    hash_key: bytes | None
    def __init__(
        self,
        m: int,
        word_size: int,
        table: npt.ArrayLike,
        avail: npt.ArrayLike,
        fallback: bool,
        *,
        byte_order: str = "little",
        hash_key: bytes | None = None,
    ) -> None: ...
    def lookup(self, fold: int, port: int) -> int: ...
    def trace(self, fold: int, port: int) -> list[tuple[int, int]]: ...
    def lookup_text(self, family: int, text: str, port: int) -> int: ...
    def lookup_many(
        self,
        folds: npt.NDArray[np.uint32],
        ports: npt.NDArray[np.uint16] | None = None,
        out: npt.NDArray[np.uint32] | None = None,
    ) -> npt.NDArray[np.uint32]: ...
    def lookup_many6(
        self,
        addrs: npt.NDArray[np.uint32] | npt.NDArray[np.uint8],
        ports: npt.NDArray[np.uint16] | None = None,
        out: npt.NDArray[np.uint32] | None = None,
    ) -> npt.NDArray[np.uint32]: ...
