"""Fuzzing `ipvsadm -R` histories: never a crash, always one clear located error.

The oracle (fuzz/oracles.py) is the one the atheris harness fuzz/fuzz_history.py
uses; the regression tests pin the bugs fuzzing found.
"""

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import oracles  # noqa: E402

from maglevx import Director  # noqa: E402
from maglevx.errors import MaglevxError  # noqa: E402

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PARAMS = st.fixed_dictionaries(
    {
        "variant": st.sampled_from(["upstream", "backport"]),
        "word_size": st.sampled_from([64, 32]),
        "table_size": st.sampled_from([251, 509]),
    }
)


@FUZZ
@given(data=st.data(), n=st.integers(0, 12), params=PARAMS)
def test_generated_histories(data, n, params):
    text = oracles.gen_history(lambda seq: data.draw(st.sampled_from(seq)), n)
    d = oracles.check_history(text, **params)
    if d is not None:
        oracles.check_director(d)


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text(text):
    oracles.check_history(text)


@FUZZ
@given(
    lines=st.lists(
        st.lists(
            st.sampled_from(
                [
                    "-A",
                    "-a",
                    "-e",
                    "-d",
                    "-t",
                    "-r",
                    "-w",
                    "-s",
                    "mh",
                    "-b",
                    "-p",
                    "10.0.0.1:80",
                    "10.1.0.1:80",
                    "0",
                    "1",
                    "mh-port",
                    "'",
                    "#",
                    "-6",
                ]
            ),  # fmt: skip
            max_size=8,
        ).map(" ".join),
        max_size=8,
    )
)
def test_token_soup(lines):
    oracles.check_history("\n".join(lines))


# -- regressions found by fuzzing ------------------------------------------


@pytest.mark.parametrize(
    "line,field",
    [
        ("-A -t 10.0.0.1:80 -s mh -p " + "9" * 5000, "-p"),
        ("-A -t 10.0.0.1:" + "9" * 5000 + " -s mh", "-t"),
        ("-A -f " + "1" * 4400 + " -s mh", "-f"),
    ],
)
def test_numbers_with_thousands_of_digits(line, field):
    # int() refuses > 4300 digits with a bare ValueError
    with pytest.raises(MaglevxError) as exc:
        Director.from_history(line, source="h.txt")
    assert str(exc.value).startswith(f"h.txt:1: field '{field}': ")
    assert "digits) is outside" in str(exc.value)


def test_leading_zeros_still_accepted_like_strtol():
    d = Director.from_history(
        "-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -w " + "0" * 40 + "7"
    )
    assert d.services[0].real_servers[0].weight == 7


def test_ipv6_zone_index_refused():
    # fe80::1%eth0 and fe80::1 compared unequal: an add then a delete of the
    # "same" server failed; ipvsadm's inet_pton() refuses zones outright
    with pytest.raises(MaglevxError, match=r"h\.txt:1: field '-t': .*zone"):
        Director.from_history("-A -t [fe80::1%eth0]:80 -s mh", source="h.txt")


@pytest.mark.parametrize("sep", ["\x0c", "\x0b", "\x1c", "\x85", "\u2028"])
def test_line_numbers_count_only_real_line_ends(sep):
    # str.splitlines() split at form feeds & co: errors named the wrong line
    text = f"-A -t 10.0.0.1:80 -s mh {sep} \n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -w x\n"
    with pytest.raises(MaglevxError) as exc:
        Director.from_history(text, source="h.txt")
    assert exc.value.line == 2


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_line_numbers_with_any_line_end(eol):
    text = eol.join(["# c", "-A -t 10.0.0.1:80 -s mh", "", "-a -t 10.0.0.1:80 -w 1"])
    with pytest.raises(MaglevxError) as exc:
        Director.from_history(text, source="h.txt")
    assert str(exc.value) == "h.txt:4: no real server given (-r)"


def test_error_text_is_one_line_whatever_the_source_name():
    with pytest.raises(MaglevxError) as exc:
        Director.from_history("-Q", source="odd\nname\x1b.txt")
    assert len(str(exc.value).splitlines()) == 1
    assert str(exc.value).startswith("odd\\nname\\x1b.txt:1: ")
