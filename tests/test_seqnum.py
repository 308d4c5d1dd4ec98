"""Serial-number arithmetic across the 2**32 wrap and the per-stream sequence tracker."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semnet.core.seqnum import (
    MAX_DROPOUT,
    MAX_MISORDER,
    SEQ_MOD,
    SeqClass,
    SequenceTracker,
    seq_add,
    seq_diff,
    seq_lt,
)
from semnet.errors import ConfigError

u32 = st.integers(0, SEQ_MOD - 1)
IN, RE, DUP, JUMP, RESYNC = (
    SeqClass.IN_ORDER,
    SeqClass.REORDERED,
    SeqClass.DUPLICATE,
    SeqClass.JUMP,
    SeqClass.RESYNC,
)


def feed(tracker: SequenceTracker, seqs: list[int]) -> list[SeqClass]:
    return [tracker.update(s) for s in seqs]


def assert_tracker_identity(t: SequenceTracker) -> None:
    assert t.received == t.in_order + t.reordered + t.duplicates + t.jumps + t.resyncs


# --- arithmetic ---------------------------------------------------------------------------


def test_add_wraps_both_ways() -> None:
    assert seq_add(SEQ_MOD - 1, 1) == 0
    assert seq_add(SEQ_MOD - 2, 5) == 3
    assert seq_add(0, -1) == SEQ_MOD - 1
    assert seq_add(3, -5) == SEQ_MOD - 2


def test_diff_across_wrap() -> None:
    assert seq_diff(0, SEQ_MOD - 1) == 1
    assert seq_diff(SEQ_MOD - 1, 0) == -1
    assert seq_diff(5, SEQ_MOD - 5) == 10
    assert seq_diff(7, 7) == 0


def test_half_way_point_is_defined_and_unordered() -> None:
    half = 1 << 31
    assert seq_diff(half, 0) == half
    assert seq_diff(0, half) == half
    assert not seq_lt(0, half)
    assert not seq_lt(half, 0)
    assert seq_lt(0, half - 1)
    assert seq_lt(SEQ_MOD - 1, 0)
    assert not seq_lt(0, SEQ_MOD - 1)


@given(u32, st.integers(-(1 << 31) + 1, 1 << 31))
def test_diff_inverts_add(a: int, n: int) -> None:
    assert seq_diff(seq_add(a, n), a) == n


@given(u32, u32)
def test_diff_range_and_antisymmetry(a: int, b: int) -> None:
    d = seq_diff(a, b)
    assert -(1 << 31) < d <= 1 << 31
    if d != 1 << 31:
        assert seq_diff(b, a) == -d
        assert seq_lt(a, b) == (d < 0)
        assert seq_lt(b, a) == (d > 0)
    assert not (seq_lt(a, b) and seq_lt(b, a))


# --- tracker classification ---------------------------------------------------------------


def test_in_order_reorder_duplicate() -> None:
    t = SequenceTracker()
    assert feed(t, [10, 11, 13, 12, 13, 12, 11, 14]) == [IN, IN, IN, RE, DUP, DUP, DUP, IN]
    assert (t.received, t.in_order, t.reordered, t.duplicates) == (8, 4, 1, 3)
    assert (t.expected, t.lost, t.highest) == (5, 0, 14)
    assert_tracker_identity(t)


def test_loss_estimate_and_late_arrival_lowers_it() -> None:
    t = SequenceTracker()
    feed(t, [100, 101, 104, 105])
    assert (t.expected, t.lost) == (6, 2)
    assert t.update(102) is RE
    assert (t.expected, t.lost) == (6, 1)


def test_reorder_before_first_moves_base() -> None:
    t = SequenceTracker()
    assert feed(t, [50, 51, 47]) == [IN, IN, RE]
    assert (t.expected, t.lost) == (5, 2)


def test_wrap_at_u32_max() -> None:
    t = SequenceTracker()
    top = SEQ_MOD - 1
    out = feed(t, [top - 1, top, 0, 1, top, 0, 3, 2])
    assert out == [IN, IN, IN, IN, DUP, DUP, IN, RE]
    assert t.cycles == 1
    assert t.extended_max == SEQ_MOD + 3
    assert (t.expected, t.lost) == (6, 0)


def test_dropout_and_misorder_bounds() -> None:
    t = SequenceTracker()
    t.update(1000)
    assert t.update(1000 + MAX_DROPOUT) is IN
    assert t.update(1000 + 2 * MAX_DROPOUT + 1) is JUMP
    base = 1000 + MAX_DROPOUT
    assert t.update(base - MAX_MISORDER) is RE
    assert t.update(base - MAX_MISORDER - 1) is JUMP
    assert t.highest == base


def test_jump_then_two_sequential_resyncs() -> None:
    t = SequenceTracker()
    feed(t, [0, 1, 2])
    far = 1 << 30
    assert feed(t, [far, far + 1, far + 2, 3]) == [JUMP, RESYNC, IN, JUMP]
    assert t.highest == far + 2
    assert (t.jumps, t.resyncs) == (2, 1)
    # epochs: 0..2 (3 expected, 3 received), far..far+2 (3 expected, 3 received)
    assert (t.expected, t.lost) == (6, 0)
    assert_tracker_identity(t)


def test_jump_not_confirmed_by_consecutive_datagram_does_not_resync() -> None:
    t = SequenceTracker()
    feed(t, [0, 1])
    far = 1 << 20
    assert feed(t, [far, 2, far + 1]) == [JUMP, IN, JUMP]
    assert t.highest == 2
    assert t.update(far + 2) is RESYNC
    assert t.highest == far + 2


def test_backward_restart_resyncs_across_wrap() -> None:
    t = SequenceTracker()
    feed(t, [5000, 5001])
    assert feed(t, [SEQ_MOD - 1, 0, 1]) == [JUMP, RESYNC, IN]
    assert t.highest == 1
    assert t.cycles == 0
    assert (t.expected, t.lost) == (2 + 3, 0)


def test_bad_config_rejected() -> None:
    with pytest.raises(ConfigError, match="max_misorder"):
        SequenceTracker(max_misorder=2000, window=1024)
    with pytest.raises(ConfigError, match="max_dropout"):
        SequenceTracker(max_dropout=1 << 31)


@given(
    start=st.one_of(st.just(SEQ_MOD - 40), u32),
    n=st.integers(1, 400),
    seed=st.integers(0, 2**32 - 1),
)
def test_lost_is_exact_under_bounded_reorder_and_duplication(start: int, n: int, seed: int) -> None:
    """Drop, locally shuffle (blocks of <= 40) and duplicate: the A.1 estimate is exact."""
    rng = random.Random(seed)
    offsets = [i for i in range(n) if i == 0 or rng.random() > 0.2]
    arrivals: list[int] = []
    for lo in range(0, len(offsets), 40):
        block = offsets[lo : lo + 40]
        rng.shuffle(block)
        for o in block:
            arrivals.append(o)
            if rng.random() < 0.1:
                arrivals.append(o)
    t = SequenceTracker()
    classes = feed(t, [seq_add(start, o) for o in arrivals])
    distinct = len(set(arrivals))
    span = max(arrivals) - min(arrivals) + 1
    assert JUMP not in classes and RESYNC not in classes
    assert t.duplicates == len(arrivals) - distinct
    assert t.in_order + t.reordered == distinct
    assert t.expected == span
    assert t.lost == span - distinct
    assert t.highest == seq_add(start, max(arrivals))
    assert_tracker_identity(t)


@given(st.lists(u32, max_size=300))
def test_never_crashes_on_arbitrary_input(seqs: list[int]) -> None:
    t = SequenceTracker()
    feed(t, seqs)
    assert t.received == len(seqs)
    assert t.expected >= 0
    assert_tracker_identity(t)
