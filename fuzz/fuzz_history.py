"""atheris: ``ipvsadm -R`` histories (maglevx.ipvsadm.apply_history)."""

import _harness
from _harness import oracles


def test(inp: _harness.Input) -> None:
    """One history."""
    text = inp.text(oracles.gen_history)
    d = oracles.check_history(text, **inp.params())
    if d is not None:
        oracles.check_director(d)


if __name__ == "__main__":
    _harness.run(test)
