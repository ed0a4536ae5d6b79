"""atheris: ``ipvsadm -Ln --nosort`` snapshots (maglevx.ipvsadm.apply_snapshot)."""

import _harness
from _harness import oracles


def test(inp: _harness.Input) -> None:
    """One snapshot."""
    text = inp.text(oracles.gen_snapshot)
    d = oracles.check_snapshot(text, **inp.params())
    if d is not None:
        oracles.check_director(d)


if __name__ == "__main__":
    _harness.run(test)
