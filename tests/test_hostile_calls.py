"""Every function reachable from Python checks its buffers (issue 17).

Short, lying, read-only, non-contiguous and uninitialised inputs end in a
Python exception, never in a crash or a silent answer.
"""

import numpy as np
import pytest

from maglevx import _core, _fastcsv, _twin

TABLE = _core.build_table(251, 64, [1, 2, 3], [80, 80, 80], [1, 1, 1])
AVAIL = np.ones(3, np.uint8)


class LyingArray(np.ndarray):
    """An ndarray subclass whose Python-level shape lies."""

    @property
    def shape(self):  # noqa: D102
        return (10**6,)


def test_scheduler_cannot_be_uninitialised():
    with pytest.raises(TypeError):
        _core.Scheduler.__new__(_core.Scheduler)
    with pytest.raises(TypeError):
        _core.Scheduler()


def test_reinit_cannot_change_a_scheduler():
    s = _core.Scheduler(251, 64, TABLE, AVAIL, False)
    want = s.lookup_many(np.arange(50, dtype=np.uint32))
    try:  # __cinit__ ran once; a second __init__ may not touch the state
        s.__init__(131071, 64, np.zeros(131071, np.uint16), AVAIL, False)
    except TypeError:
        pass
    assert s.m == 251
    np.testing.assert_array_equal(s.lookup_many(np.arange(50, dtype=np.uint32)), want)


@pytest.mark.parametrize("core", [_core, _twin])
def test_scheduler_checks_table_and_avail(core):
    with pytest.raises(ValueError):
        core.Scheduler(251, 64, TABLE[:100], AVAIL, False)
    with pytest.raises(ValueError, match="beyond avail"):
        core.Scheduler(251, 64, TABLE, np.zeros(0, np.uint8), False)
    hostile = np.full(251, 65000, np.uint16)
    with pytest.raises(ValueError, match="beyond avail"):
        core.Scheduler(251, 64, hostile, AVAIL, False)
    with pytest.raises(ValueError):
        core.Scheduler(4000, 64, TABLE, AVAIL, False)  # not a prime of the kernel


@pytest.mark.parametrize("core", [_core, _twin])
def test_lookup_many_checks_the_buffers_not_the_attributes(core):
    s = core.Scheduler(251, 64, TABLE, AVAIL, True)
    folds = np.arange(8, dtype=np.uint32)
    lying = np.zeros(2, np.uint32).view(LyingArray)
    with pytest.raises(ValueError):
        s.lookup_many(folds, None, lying)  # 2 slots for 8 results
    readonly = np.zeros(8, np.uint32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError):
        s.lookup_many(folds, None, readonly)
    with pytest.raises(ValueError):
        s.lookup_many(np.arange(16, dtype=np.uint32)[::2])  # not contiguous
    with pytest.raises(ValueError):
        s.lookup_many(folds, np.zeros(3, np.uint16))  # short ports
    with pytest.raises((ValueError, TypeError)):
        s.lookup_many(folds.astype(np.int64))  # wrong type
    with pytest.raises(ValueError):
        s.lookup_many6(np.zeros((4, 3), np.uint32))
    with pytest.raises(ValueError):
        s.lookup_many6(np.zeros((4, 15), np.uint8))
    assert s.lookup_many(np.zeros(0, np.uint32)).shape == (0,)


@pytest.mark.parametrize("core", [_core, _twin])
def test_hsiphash_of_nothing(core):
    assert core.hsiphash(64, b"", 0, 0) == core.hsiphash(64, bytearray(), 0, 0)
    assert core.hsiphash(32, b"", 0, 0) == core.hsiphash(32, bytearray(), 0, 0)


def test_fastcsv_entry_points_check_their_arguments():
    buf = b"tcp,1.2.3.4,1,10.0.0.1,80\n"
    with pytest.raises(ValueError):
        _fastcsv.line_end(buf, 0, 4096)
    with pytest.raises(ValueError):
        _fastcsv.line_end(buf, 5, 2)
    sc = _fastcsv.FlowScanner()
    big = [np.zeros(64, t) for t in (np.int32, np.uint32, np.uint16)]
    small = [big[0], np.zeros(1, np.uint32), big[2]]
    with pytest.raises(ValueError):  # sizes from one array, writes to a shorter one
        sc.scan(buf, 0, len(buf), *small)
    with pytest.raises(ValueError):
        sc.scan(buf, 0, len(buf) + 100, *big)
    with pytest.raises(ValueError):
        sc.scan(buf, -1, len(buf), *big)
    status, n, stop, lines = sc.scan(buf, 0, len(buf), *big)
    assert (n, stop, lines) == (1, len(buf), 1)
