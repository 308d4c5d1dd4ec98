"""Serial-number arithmetic on u32 (RFC 1982) and a per-stream sequence tracker (RFC 3550 A.1).

Sequence numbers wrap at 2**32, so "newer" is only defined within half the space: every
comparison here goes through :func:`seq_diff`, never through ``<`` on raw values.
"""

from __future__ import annotations

import enum

from semnet.errors import ConfigError

SEQ_BITS = 32
SEQ_MOD = 1 << SEQ_BITS
SEQ_MASK = SEQ_MOD - 1
_HALF = 1 << (SEQ_BITS - 1)

MAX_DROPOUT = 3000
MAX_MISORDER = 100
WINDOW = 1024


def seq_add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32; ``n`` may be negative (stepping back is as common as forward)."""
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance from ``b`` to ``a`` in (-2**31, 2**31]: positive when ``a`` is newer.

    RFC 1982 leaves the exact half-way point undefined; it maps to +2**31 here so the result is
    always defined, and :func:`seq_lt` treats that point as unordered.
    """
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d > _HALF else d


def seq_lt(a: int, b: int) -> bool:
    """True when ``a`` precedes ``b``; False both ways for values exactly 2**31 apart."""
    return 0 < seq_diff(b, a) < _HALF


class SeqClass(enum.Enum):
    """How one sequence number relates to what the tracker has seen on its stream."""

    IN_ORDER = "in_order"  # the first one, or ahead of the highest by at most max_dropout
    REORDERED = "reordered"  # behind the highest by at most max_misorder, not seen before
    DUPLICATE = "duplicate"  # seen before, within the recent window
    JUMP = "jump"  # too far ahead or behind: a restart, a corrupt header, or a stray
    RESYNC = "resync"  # the sequential successor of a jump: the stream restarted there


class SequenceTracker:
    """Classifies one stream's sequence numbers and estimates loss like RFC 3550 A.1.

    Differences from A.1, on purpose: there is no probation for a new stream (its first datagram
    counts, since every datagram stands alone); a jump must be confirmed by the very next datagram
    (two consecutive sequential ones), and the confirmed jump datagram counts in the new epoch;
    duplicates are recognised with a bitmap of the last ``window`` numbers and never counted as
    received, so ``lost`` never goes negative from duplication; a reordered datagram older than
    the epoch's first moves the base back instead of making ``lost`` negative.

    ``received == in_order + reordered + duplicates + jumps + resyncs`` always holds.

    Loss runs (bursts) are counted once they are settled: a number more than ``max_misorder``
    behind the highest can no longer arrive as reordered, so whether it arrived is final there.
    ``loss_runs`` counts runs of missing numbers settled so far and ``run_lost`` the numbers in
    them. They are settled in batches, with a few big-integer operations, when read or before
    the bitmap forgets them: the per-datagram path pays one comparison.
    """

    def __init__(
        self, max_dropout: int = MAX_DROPOUT, max_misorder: int = MAX_MISORDER, window: int = WINDOW
    ) -> None:
        if not 0 < max_dropout < _HALF:
            raise ConfigError(f"max_dropout: must be in (0, 2**31), got {max_dropout}")
        if not 0 < max_misorder < window:
            raise ConfigError(f"max_misorder: must be in (0, window={window}), got {max_misorder}")
        self.max_dropout = max_dropout
        self.max_misorder = max_misorder
        self.window = window
        self._window_mask = (1 << window) - 1
        self.received = 0
        self.in_order = 0
        self.reordered = 0
        self.duplicates = 0
        self.jumps = 0
        self.resyncs = 0
        self._max_seq: int | None = None
        self._max_ext = 0  # highest seq extended with wrap cycles (cycles * 2**32 + max_seq)
        self._base_ext = 0  # extended seq of the current epoch's first datagram
        self._seen = 0  # bit i set: seq (max_seq - i) arrived
        self._bad_seq: int | None = None  # seq that would confirm the last jump
        self._counted = 0  # distinct datagrams counted in the current epoch
        self._expected_prior = 0  # expected and counted in epochs closed by a resync
        self._counted_prior = 0
        self._loss_runs = 0  # runs of settled missing numbers (split_run cuts one in two)
        self._run_lost = 0  # settled missing numbers, all runs together
        self._in_run = False  # the newest settled number is missing
        self._settle_from = 0  # extended seq of the oldest number not settled yet

    @property
    def highest(self) -> int | None:
        """The highest sequence number seen (u32), None before the first."""
        return self._max_seq

    @property
    def extended_max(self) -> int:
        """Highest sequence number with its wrap cycles: ``cycles * 2**32 + highest``."""
        return self._max_ext

    @property
    def cycles(self) -> int:
        """How many times the sequence number wrapped in the current epoch."""
        return self._max_ext >> SEQ_BITS

    @property
    def loss_runs(self) -> int:
        """Runs of consecutive missing numbers, counted once settled."""
        self._settle(self._seen)
        return self._loss_runs

    @property
    def run_lost(self) -> int:
        """Missing numbers in the runs of :attr:`loss_runs`."""
        self._settle(self._seen)
        return self._run_lost

    @property
    def expected(self) -> int:
        """Datagrams the sender sent over the tracked epochs (A.1: extended_max - base + 1)."""
        if self._max_seq is None:
            return 0
        return self._expected_prior + self._max_ext - self._base_ext + 1

    @property
    def lost(self) -> int:
        """Expected minus distinct datagrams received; datagrams arriving later lower it."""
        return self.expected - self._counted_prior - self._counted

    def update(self, seq: int) -> SeqClass:
        """Feed one sequence number (u32); returns its class and updates the counts."""
        seq &= SEQ_MASK
        self.received += 1
        if self._max_seq is None:
            self._start_epoch(seq, seq, 0b1)
            self.in_order += 1
            return SeqClass.IN_ORDER
        d = seq_diff(seq, self._max_seq)
        if 0 < d <= self.max_dropout:
            self._max_seq = seq
            self._max_ext += d
            shifted = (self._seen << d) | 1
            if self._max_ext - self._settle_from >= self.window:  # about to leave the bitmap
                self._settle(shifted)
            self._seen = shifted & self._window_mask
            self._counted += 1
            self._bad_seq = None
            self.in_order += 1
            return SeqClass.IN_ORDER
        if -self.window < d <= 0 and self._seen >> -d & 1:
            self.duplicates += 1
            return SeqClass.DUPLICATE
        if -self.max_misorder <= d < 0:
            self._seen |= 1 << -d
            self._base_ext = min(self._base_ext, self._max_ext + d)
            # moves only with the epoch's first, which moves back only before anything settles
            self._settle_from = min(self._settle_from, self._max_ext + d)
            self._counted += 1
            self._bad_seq = None
            self.reordered += 1
            return SeqClass.REORDERED
        if seq == self._bad_seq:
            self._settle(self._seen)
            self._expected_prior = self.expected
            self._counted_prior += self._counted
            self._start_epoch(seq, seq - 1, 0b11)
            self.resyncs += 1
            return SeqClass.RESYNC
        self._bad_seq = seq_add(seq, 1)
        self.jumps += 1
        return SeqClass.JUMP

    def split_run(self) -> None:
        """End the loss run in progress here: its later losses count as a new run. A report
        calls this so that each interval's mean burst covers its own losses only."""
        self._settle(self._seen)
        self._in_run = False

    def _settle(self, seen: int) -> None:
        """Count the numbers from ``_settle_from`` up to ``max_misorder`` behind the highest;
        bit i of ``seen`` is ``max_seq - i`` (it may hold more than the window's bits)."""
        target = self._max_ext - self.max_misorder  # numbers below this are settled
        n = target - self._settle_from
        if n <= 0:
            return
        mask = (1 << n) - 1
        missing = ~(seen >> (self.max_misorder + 1)) & mask  # bit n-1: the oldest
        if missing:
            starts = missing & ~(missing >> 1)  # missing, and the number before it arrived
            runs = starts.bit_count() - (self._in_run and missing >> (n - 1) & 1)
            self._loss_runs += runs
            self._run_lost += missing.bit_count()
        self._in_run = bool(missing & 1)
        self._settle_from = target

    def _start_epoch(self, seq: int, base_ext: int, seen: int) -> None:
        """Restart the extended numbering at ``seq``, counting the datagrams marked in ``seen``."""
        self._max_seq = seq
        self._max_ext = seq
        self._base_ext = base_ext
        self._seen = seen
        self._counted = seen.bit_count()
        self._bad_seq = None
        self._in_run = False
        self._settle_from = base_ext
