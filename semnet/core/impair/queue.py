"""Queue-side state of netem, computed at enqueue time: held packets, rate and slots.

netem decides ``time_to_send`` when a packet is enqueued (rate from the last queued packet's
departure) and applies slots when it dequeues. A sans-IO model must answer at arrival, so slots
are applied here in arrival order, which equals netem's dequeue order whenever jitter does not
reorder packets (see docs/netem.md). All times are integer nanoseconds on the caller's clock.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from semnet.core.impair.dist import table, tabledist
from semnet.core.impair.spec import Rate, Slot

_NS_PER_S = 1_000_000_000
_UNLIMITED = 2**31 - 1  # netem turns 0 packets/bytes into INT_MAX


class HeldQueue:
    """Release times of copies still held (released strictly after ``now``): netem's qlen."""

    __slots__ = ("heap",)

    def __init__(self) -> None:
        self.heap: list[int] = []  # public so the per-datagram fast path can test it directly

    def push(self, release_ns: int) -> None:
        heapq.heappush(self.heap, release_ns)

    def depth(self, now_ns: int) -> int:
        heap = self.heap
        while heap and heap[0] <= now_ns:
            heapq.heappop(heap)
        return len(heap)

    def __bool__(self) -> bool:
        return bool(self.heap)


def packet_time_ns(size: int, rate: Rate) -> int:
    """Serialisation time of ``size`` bytes: netem's packet_time_ns with overheads and cells.

    netem wraps a length that a negative overhead drives below zero (u64); we clamp at 0.
    """
    length = max(0, size + rate.packet_overhead)
    if rate.cell_size:
        cells = -(-length // rate.cell_size)
        length = max(0, cells * (rate.cell_size + rate.cell_overhead))
    return length * _NS_PER_S // rate.bytes_per_s


class SlotGate:
    """netem's slots: packets leave only when a slot opens, up to a packet and byte budget.

    A packet due after the current opening restarts the wait from its own due time (netem's
    ``slot_next < time_to_send`` check); when a budget runs out the next opening is drawn from
    the moment the last packet left.
    """

    __slots__ = ("_next_wait", "_packets", "_bytes", "_open_at", "_packets_left", "_bytes_left")

    def __init__(self, slot: Slot, rng: random.Random) -> None:
        self._packets = slot.packets or _UNLIMITED
        self._bytes = slot.bytes or _UNLIMITED
        self._next_wait = _wait_source(slot, rng)
        self._open_at: int | None = None
        self._packets_left = self._packets
        self._bytes_left = self._bytes

    def _reopen(self, from_ns: int) -> None:
        self._open_at = from_ns + self._next_wait()
        self._packets_left = self._packets
        self._bytes_left = self._bytes

    def send_time(self, due_ns: int, size: int) -> int:
        """When a packet due at ``due_ns`` leaves, consuming its share of the slot."""
        if self._open_at is None or self._open_at < due_ns:
            self._reopen(due_ns)
        sent = self._open_at
        self._packets_left -= 1
        self._bytes_left -= size
        if self._packets_left <= 0 or self._bytes_left <= 0:
            self._reopen(sent)
        return sent


def _wait_source(slot: Slot, rng: random.Random) -> Callable[[], int]:
    bits = rng.getrandbits
    if slot.distribution is None:
        low, span = slot.min_ns, slot.max_ns - slot.min_ns
        return lambda: low + ((bits(32) * span) >> 32)
    dist = table(slot.distribution)
    mu, sigma = slot.delay_ns, min(slot.jitter_ns, _UNLIMITED)
    return lambda: max(0, tabledist(mu, sigma, bits(32), dist))
