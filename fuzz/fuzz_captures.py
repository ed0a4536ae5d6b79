"""atheris: `/proc/net/ip_vs_conn` and `conntrack -L` dumps (maglevx.captures)."""

import _harness
from _harness import oracles
from fuzz_flows import director


def test(inp: _harness.Input) -> None:
    """One dump, ip_vs_conn or conntrack."""
    fmt = ("ip_vs_conn", "conntrack")[inp.data[-1] >> 5 & 1 if inp.data else 0]
    gen = oracles.gen_ip_vs_conn if fmt == "ip_vs_conn" else oracles.gen_conntrack
    if inp.mode == 1:
        data = inp.data[1:]
    else:
        data = inp.text(gen).encode("utf-8")
    oracles.check_capture(director(inp), data, fmt)


if __name__ == "__main__":
    _harness.run(test)
