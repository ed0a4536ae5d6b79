"""Plumbing shared by the atheris harnesses: instrumented imports, decoding."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["maglevx"]):
    import maglevx  # noqa: F401
    import maglevx.captures  # noqa: F401
    import maglevx.cli  # noqa: F401
    import maglevx.ipvsadm  # noqa: F401
    import maglevx.predict  # noqa: F401

import oracles  # noqa: E402

TABLE_SIZES = (251, 251, 509, 4093)


class Input:
    """A fuzzer input: a mode byte, then structured choices or raw text."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.fdp = atheris.FuzzedDataProvider(data[1:])
        self.mode = data[0] % 4 if data else 0

    def choose(self, seq: Sequence[Any]) -> Any:
        return seq[self.fdp.ConsumeIntInRange(0, len(seq) - 1)]

    def text(
        self, generate: Callable[[Callable[[Sequence[Any]], Any], int], str]
    ) -> str:
        """Raw UTF-8 (modes 0, 1), arbitrary code points (2), or generated (3)."""
        if self.mode in (0, 1):
            return self.data[1:].decode("utf-8", "replace")
        if self.mode == 2:
            return self.fdp.ConsumeUnicodeNoSurrogates(4096)
        return generate(self.choose, self.fdp.ConsumeIntInRange(0, 10))

    def params(self) -> dict[str, Any]:
        b = self.data[-1] if self.data else 0
        return {
            "variant": ("upstream", "backport")[b & 1],
            "word_size": (64, 32)[b >> 1 & 1],
            "table_size": TABLE_SIZES[b >> 2 & 3],
            "backport_hash_port": not b & 16,
        }


def run(test: Callable[[Input], None]) -> None:
    """Atheris main loop; known, routed bugs are skipped (see oracles)."""

    def one(data: bytes) -> None:
        try:
            test(Input(data))
        except AssertionError:
            raise
        except oracles.KnownBug:
            pass
        except Exception as exc:
            if not oracles.is_known_bug(exc):
                raise

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
