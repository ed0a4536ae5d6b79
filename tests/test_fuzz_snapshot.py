"""Fuzzing `ipvsadm -Ln --nosort` snapshots: no crash, one clear located error."""

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


@FUZZ
@given(data=st.data(), n=st.integers(0, 12), table_size=st.sampled_from([251, 509]))
def test_generated_snapshots(data, n, table_size):
    text = oracles.gen_snapshot(lambda seq: data.draw(st.sampled_from(seq)), n)
    d = oracles.check_snapshot(text, table_size=table_size)
    if d is not None:
        oracles.check_director(d)


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text(text):
    oracles.check_snapshot(text)


# -- regressions found by fuzzing ------------------------------------------

SVC = "TCP  10.0.0.1:80 mh\n"


@pytest.mark.parametrize(
    "text,field",
    [
        (SVC + "  -> 10.1.0.1:80  Masq  " + "9" * 5000 + "  0  0\n", "Weight"),
        ("TCP  10.0.0.1:80 mh persistent " + "9" * 5000 + "\n", "persistent"),
        ("FWM  " + "9" * 5000 + " mh\n", "FWM"),
    ],
)
def test_numbers_with_thousands_of_digits(text, field):
    with pytest.raises(MaglevxError) as exc:
        Director.from_snapshot(text, source="s.txt")
    assert str(exc.value).startswith(f"s.txt:{text.count(chr(10))}: field '{field}': ")


@pytest.mark.parametrize("digits", ["٣", "３", "߁"])
def test_other_scripts_digits_are_not_weights(digits):
    # re's \d matched them and int() read them: "٣" silently became weight 3
    with pytest.raises(MaglevxError, match=r"^s\.txt:2: not a real server line"):
        Director.from_snapshot(SVC + f"  -> 10.1.0.1:80  Masq  {digits}  0  0\n",
                               source="s.txt")  # fmt: skip


def test_more_real_servers_than_slots_is_refused():
    # the kernel kept an older table (ip_vs_mh_reassign() -EINVAL) that a
    # listing cannot show; predicting from an empty table was silently wrong
    rs = "".join(
        f"  -> 10.1.{i // 250}.{i % 250 + 1}:80  Masq  1  0  0\n" for i in range(252)
    )
    with pytest.raises(MaglevxError) as exc:
        Director.from_snapshot(SVC + rs, source="s.txt", table_size=251)
    assert str(exc.value).startswith("s.txt:253: TCP 10.0.0.1:80 lists more than 251")
    # other schedulers have no table: fine
    Director.from_snapshot(SVC.replace("mh", "wlc") + rs, table_size=251)


def test_ipv6_zone_index_refused():
    with pytest.raises(MaglevxError, match=r"field 'RemoteAddress:Port': .*zone"):
        Director.from_snapshot(SVC.replace("10.0.0.1:80", "[fe80::1]:80")
                               + "  -> [fe80::2%1]:80  Masq  1  0  0\n")  # fmt: skip
