"""atheris: `maglevx` command-line arguments, files and stdin (maglevx.cli.main)."""

import os
import tempfile

import _harness
from _harness import oracles

TMP = tempfile.mkdtemp(prefix="maglevx-fuzz-cli-")
FILES = {
    "history": oracles.FLOW_HISTORY,
    "bad-history": oracles.FLOW_HISTORY + "-a -t 10.0.0.1:80 -r 10.1.0.9:80 -w x\n",
    "snapshot": "TCP  10.0.0.1:80 mh (mh-port)\n  -> 10.1.0.1:80  Masq  1  0  0\n",
    "flows": "tcp,192.0.2.1,1,10.0.0.1,80\n",
    "fuzzed": "",
}
for _name, _text in FILES.items():
    with open(os.path.join(TMP, _name), "w") as _f:
        _f.write(_text)
os.mkdir(os.path.join(TMP, "dir"))
with open(os.path.join(TMP, "latin1"), "wb") as _f:
    _f.write(b"tcp,192.0.2.1,1,10.0.0.1,80\n\xe9\n")

TOKENS = [
    "predict",
    "predict",
    "--history",
    "--snapshot",
    "--variant",
    "--word-size",
    "--table-size",
    "--no-port-hash",
    "-",
    "upstream",
    "backport",
    "32",
    "64",
    "16",
    "4093",
    "251",
    "131071",
    "4000",
    "x",
    "--help",
    "--hist",
    "--",
    "--history=",
    "--table-size=",
    "-h",
    "-",
    "",
] + [os.path.join(TMP, n) for n in [*FILES, "dir", "latin1", "missing"]]


def test(inp: _harness.Input) -> None:
    """One command line with stdin."""
    argv = [inp.choose(TOKENS) for _ in range(inp.fdp.ConsumeIntInRange(0, 8))]
    if inp.mode == 0 and argv:
        argv[inp.fdp.ConsumeIntInRange(0, len(argv) - 1)] = (
            inp.fdp.ConsumeUnicodeNoSurrogates(40)
        )
    if inp.mode == 1:
        argv = ["predict", "--history", os.path.join(TMP, "history"), *argv]
    stdin = inp.fdp.ConsumeUnicodeNoSurrogates(200)
    with open(os.path.join(TMP, "fuzzed"), "w", encoding="utf-8") as f:
        f.write(stdin)
    oracles.check_cli(argv, stdin)


if __name__ == "__main__":
    _harness.run(test)
