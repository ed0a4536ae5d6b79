"""atheris: flow CSV (maglevx.predict): the slow path vs the C scanner."""

import _harness
from _harness import oracles

from maglevx.errors import MaglevxError
from maglevx.model import Director

DIRECTORS = {}


def director(inp: _harness.Input) -> Director:
    """The director FLOW_HISTORY builds with the input's parameters."""
    params = inp.params()
    key = tuple(sorted(params.items()))
    if key not in DIRECTORS:
        DIRECTORS[key] = Director.from_history(oracles.FLOW_HISTORY, **params)
    return DIRECTORS[key]


def test(inp: _harness.Input) -> None:
    """Flow lines through both paths, or raw bytes through the C scanner."""
    d = director(inp)
    if inp.mode == 1:  # raw bytes, maybe not UTF-8: the C scanner only
        oracles.check_stream(d, inp.data[1:], block_bytes=1 + inp.data[-1] % 97)
        return
    text = inp.text(oracles.gen_flows)
    try:
        oracles.check_flows(d, text)
    except MaglevxError:
        pass
    oracles.check_stream(d, text.encode("utf-8"), block_bytes=1 + len(text) % 97)


if __name__ == "__main__":
    _harness.run(test)
