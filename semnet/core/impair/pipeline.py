"""The impairment pipeline: netem_enqueue re-expressed as a sans-IO per-datagram function.

``Impairment.process(data, now)`` returns the copies to send and when; the caller owns the
clock and the sockets. Stages run in netem's order and draw from one seeded generator in
netem's order: duplicate, loss, corrupt (+ the bit), limit, then for each copy reorder or
delay (jitter), rate and slot. A stage that is off draws nothing.

semnet's ``link`` stage (a wireless hop, docs/wireless.md) runs before all of them, once per
input datagram: it draws from its own numpy generator, seeded from this generator when the spec
is set (one 64-bit draw, taken only when a link is configured, so other specs' fates are
unchanged). A datagram the link loses draws nothing else. With ``errors bits`` the link is
paper 003's access node instead (semnet.core.access_node): it loses nothing but flips payload
bits by importance class, from an interface given with :meth:`Impairment.set_interface`; a
datagram naming no class of the interface is dropped (reason ``class``).

Fate of one input datagram (``last_fate``): ``action`` is ``drop:link``, ``drop:loss``,
``drop:limit``, or ``pass`` followed by any of ``+duplicate`` (two copies left), ``+corrupt``
(a copy had a bit flipped), ``+reorder`` (a copy jumped the queue), in that order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from semnet.core.impair.crandom import u32_source
from semnet.core.impair.dist import table, tabledist
from semnet.core.impair.loss import make_loss
from semnet.core.impair.queue import HeldQueue, SlotGate, packet_time_ns
from semnet.core.impair.spec import S32_MAX, Chance, ImpairSpec
from semnet.core.impair.units import percent_to_u32
from semnet.core.wire import peek_importance
from semnet.errors import ConfigError

if TYPE_CHECKING:
    from semnet.core.access_node import AccessNode
    from semnet.core.interface import Interface
    from semnet.core.wireless import LinkSlots

DROP_REASONS = ("loss", "limit")  # always counted; "link" is added once a link is configured
_NS = 1e9


class Emission(NamedTuple):
    """One copy to send: ``data`` at ``release_at`` (seconds on the caller's clock, >= now).

    A NamedTuple, not a frozen dataclass: one is built per datagram in the proxy's hot path and
    a tuple costs about a third as much to make.
    """

    release_at: float
    data: bytes


@dataclass(frozen=True, slots=True)
class Fate:
    """What happened to input datagram number ``ordinal`` (0-based); delays in seconds.

    ``delay``/``bit`` describe the original copy (``bit`` = index of the flipped bit, byte
    ``bit // 8``, mask ``1 << bit % 8``; -1 = none). ``dup_delay``/``dup_bit`` describe the
    duplicate when one was emitted (``dup_delay`` None otherwise).
    """

    ordinal: int
    action: str
    delay: float = 0.0
    bit: int = -1
    dup_delay: float | None = None
    dup_bit: int = -1

    @property
    def dropped(self) -> bool:
        return self.action.startswith("drop:")


def _zero_drops() -> dict[str, int]:
    return dict.fromkeys(DROP_REASONS, 0)


@dataclass(slots=True)
class ImpairCounters:
    """Running totals, all derivable from the fates: ``emitted == received + duplicated - dropped``.

    ``dropped_by_reason`` counts input datagrams; ``duplicated`` counts extra copies emitted
    (netem re-runs loss on a duplicate; one it drops just never existed); ``corrupted`` counts
    emitted copies with a flipped bit; ``reordered`` counts datagrams with ``+reorder``.
    ``class_bits`` and ``class_flips``: payload bits an access node carried and flipped, by
    importance class.
    """

    received: int = 0
    emitted: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=_zero_drops)
    class_bits: dict[int, int] = field(default_factory=dict)
    class_flips: dict[int, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_reason.values())


def flip_bit(data: bytes, bit: int) -> bytes:
    """``data`` with bit ``bit`` (byte ``bit // 8``, mask ``1 << bit % 8``) inverted."""
    buf = bytearray(data)
    buf[bit >> 3] ^= 1 << (bit & 7)
    return bytes(buf)


def release_time(now: float, release_ns: int) -> float:
    """Seconds for an integer-ns release: a function of the instant alone (so equal instants
    compare equal and order is kept), never before ``now`` despite ns rounding."""
    return max(now, release_ns / _NS)


def compose_action(n_copies: int, corrupted: bool, reordered: bool) -> str:
    """The ``pass[+duplicate][+corrupt][+reorder]`` action word for an emitted datagram."""
    return (
        "pass"
        + ("+duplicate" if n_copies == 2 else "")
        + ("+corrupt" if corrupted else "")
        + ("+reorder" if reordered else "")
    )


@dataclass(slots=True)
class _Copy:
    """One admitted copy: its bytes, release time, flipped bit, and the duplicate it spawned."""

    data: bytes
    release_ns: int
    bit: int
    reordered: bool
    dup: _Copy | str | None


class ImpairModel(Protocol):
    """What a driver (the proxy) needs of one direction's model, live or replayed.

    ``held`` is the queue that ``limit`` bounds; a model that replaces another takes over the
    old one's ``held`` (and ``counters``), so copies still in flight keep counting against the
    limit. ``link`` is the wireless stage and ``node`` the bit-error one (paper 003's access
    node), each None when there is none.
    """

    counters: ImpairCounters
    held: HeldQueue
    link: LinkSlots | None
    node: AccessNode | None

    @property
    def last_fate(self) -> Fate | None: ...

    def process(self, data: bytes, now: float) -> list[Emission]: ...

    def feed_frame(self, datagrams: Sequence[bytes]) -> None: ...


_PASS = ("pass", 0, -1, None, -1)
_DROP_LOSS = ("drop:loss", 0, -1, None, -1)
_DROP_LINK = ("drop:link", 0, -1, None, -1)
_DROP_CLASS = ("drop:class", 0, -1, None, -1)


class Impairment:
    """One direction's netem, fed datagrams and clock values; one seed drives every choice."""

    def __init__(self, spec: ImpairSpec, seed: int, interface: Interface | None = None) -> None:
        self.interface = interface  # what an ``errors bits`` link protects (paper 003)
        self.node: AccessNode | None = None  # the bit-error link stage, when the spec has one
        self._rng = random.Random(seed)
        self.counters = ImpairCounters()
        self.held = HeldQueue()
        self._ordinal = -1
        self._fate: tuple[str, int, int, int | None, int] | None = None
        self._tfifo_last: int | None = None  # latest time_to_send given a delayed copy
        self._last_release: int | None = None
        self._reorder_count = 0
        self.link: LinkSlots | None = None  # the wireless link stage, when the spec has one
        self.set_spec(spec)

    def set_spec(self, spec: ImpairSpec) -> None:
        """Switch to ``spec`` from the next datagram, like ``tc qdisc change``.

        Counters, the random stream and the queue (held copies, the rate reference, the reorder
        gap counter) carry over; loss-chain states, correlation memories and the slot schedule
        restart, as netem's do on a change. ConfigError, changing nothing, for a bit-error link
        without an interface.
        """
        if spec.link is not None and spec.link.bit_errors and self.interface is None:
            raise ConfigError(
                "link errors bits: no interface to protect; give the proxy one "
                "(interface: FILE, or semnet ctl proxy interface set FILE)"
            )
        rng = self._rng
        self.spec = spec
        delay = spec.delay
        self._latency = delay.time_ns if delay else 0
        self._jitter = min(delay.jitter_ns, S32_MAX) if delay else 0  # netem clamps to INT_MAX
        self._delay_draw = u32_source(rng, delay.corr) if delay and self._jitter else None
        self._dist = table(delay.distribution) if delay else None
        self._inorder = bool(delay and delay.inorder)
        self._loss = make_loss(spec.loss, rng)
        self._dup_p, self._dup_draw = _chance(spec.duplicate, rng)
        reorder = spec.reorder
        self._reorder_p, self._reorder_draw = _chance(
            Chance(reorder.percent, reorder.corr) if reorder else None, rng
        )
        self._gap = reorder.gap if self._reorder_p else 0
        self._corrupt_p, self._corrupt_draw = _chance(spec.corrupt, rng)
        self._rate = spec.rate
        slot = spec.slot
        active_slot = slot is not None and bool(slot.max_ns or slot.distribution)
        self._slot = SlotGate(slot, rng) if active_slot else None
        self._limit = spec.limit
        self._set_link(spec, rng)
        queue_stages = (
            self._dup_p,
            self._corrupt_p,
            self._gap,
            self._latency,
            self._jitter,
            self._rate,
            self._slot,
            self._inorder,
            self.link,
            self.node,
        )
        # nothing can be held or changed: process() may skip the queue bookkeeping
        self._loss_only = not any(queue_stages)

    def _set_link(self, spec: ImpairSpec, rng: random.Random) -> None:
        """(Re)start the link stage: a fresh slot and generator; queued importances carry over."""
        old, link = self.link, spec.link
        self.link = self.node = None
        if link is None:
            return
        if link.bit_errors:
            from semnet.core.access_node import AccessNode  # numpy only with a link

            self.node = AccessNode(link, self.interface, seed=rng.getrandbits(64))
            self.counters.dropped_by_reason.setdefault("class", 0)
            return
        from semnet.core.wireless import LinkSlots  # numpy only when a link is configured

        self.link = LinkSlots(
            link.channel,
            link.snr_db,
            link.blocklength,
            link.coderate,
            link.subcarriers,
            link.power,
            seed=rng.getrandbits(64),
        )
        if old is not None:
            self.link.pending.extend(old.pending)
            self.link.slots_pending.extend(old.slots_pending)
        self.counters.dropped_by_reason.setdefault("link", 0)

    def set_interface(self, interface: Interface) -> None:
        """The source's interface for a bit-error link, from the next datagram (kept for a
        later spec that has one)."""
        self.interface = interface
        if self.node is not None:
            self.node.reallocate(interface)

    def feed_importance(self, values: Iterable[float]) -> None:
        """Queue semantic importances in [0, 1] for the next datagrams, one per datagram.

        Only the link stage reads them (``power semantic``); without a link they are dropped.
        A slot is allocated when its first datagram arrives, from the values queued by then;
        a datagram with no queued value counts as 1.0 (uniform importance).
        """
        if self.link is not None:
            self.link.feed(values)

    def feed_frame(self, datagrams: Sequence[bytes]) -> None:
        """A wireless link sends a frame in slots of up to B of its datagrams, each powered by
        the importance it carries (1 where none): queue those slots before the datagrams come
        (its transmitter holds them). Without a link nothing happens."""
        if self.link is None:
            return
        values = [1.0 if v is None else v for v in map(peek_importance, datagrams)]
        b = self.link.subcarriers
        for i in range(0, len(values), b):
            self.link.feed_slot(values[i : i + b])

    @property
    def last_fate(self) -> Fate | None:
        """Fate of the most recent input datagram; None before the first one."""
        if self._fate is None:
            return None
        action, delay_ns, bit, dup_ns, dup_bit = self._fate
        return Fate(
            self._ordinal,
            action,
            delay_ns / _NS,
            bit,
            None if dup_ns is None else dup_ns / _NS,
            dup_bit,
        )

    def queue_depth(self, now: float) -> int:
        """Copies released after ``now`` (netem's queue length, which ``limit`` bounds)."""
        return self.held.depth(round(now * _NS))

    def process(self, data: bytes, now: float) -> list[Emission]:
        """Impair one datagram arriving at ``now``: [] when dropped, two copies when duplicated.

        Copies are listed in netem's enqueue order (a duplicate first); send each at its
        ``release_at``, ties in list order.
        """
        self._ordinal += 1
        counters = self.counters
        counters.received += 1
        if self._loss_only and not self.held.heap:
            loss = self._loss
            if loss is not None and loss():
                counters.dropped_by_reason["loss"] += 1
                self._fate = _DROP_LOSS
                return []
            counters.emitted += 1
            self._fate = _PASS
            return [Emission(now, data)]
        return self._process_queued(data, now)

    def _process_queued(self, data: bytes, now: float) -> list[Emission]:
        counters = self.counters
        if self.node is not None:
            flipped = self.node.pass_through(data)
            if flipped is None:
                drops = counters.dropped_by_reason
                drops["class"] = drops.get("class", 0) + 1
                self._fate = _DROP_CLASS
                return []
            data, cls = flipped.data, flipped.cls
            counters.class_bits[cls] = counters.class_bits.get(cls, 0) + flipped.bits
            counters.class_flips[cls] = counters.class_flips.get(cls, 0) + flipped.flips
        link = self.link
        if link is not None and link.lost():
            drops = counters.dropped_by_reason  # counters may be swapped in without the key
            drops["link"] = drops.get("link", 0) + 1
            self._fate = _DROP_LINK
            return []
        now_ns = round(now * _NS)
        result = self._admit(data, now_ns, True)
        if isinstance(result, str):
            counters.dropped_by_reason[result] += 1
            self._fate = ("drop:" + result, 0, -1, None, -1)
            return []
        copies = [result]
        if isinstance(result.dup, _Copy):  # a duplicate that its own loss draw dropped is moot
            counters.duplicated += 1
            copies.insert(0, result.dup)
        emissions = []
        for copy in copies:
            counters.emitted += 1
            counters.corrupted += copy.bit >= 0
            emissions.append(Emission(release_time(now, copy.release_ns), copy.data))
        reordered = any(c.reordered for c in copies)
        counters.reordered += reordered
        emitted_dup = copies[0] if len(copies) == 2 else None
        action = compose_action(len(copies), any(c.bit >= 0 for c in copies), reordered)
        self._fate = (
            action,
            result.release_ns - now_ns,
            result.bit,
            None if emitted_dup is None else emitted_dup.release_ns - now_ns,
            -1 if emitted_dup is None else emitted_dup.bit,
        )
        return emissions

    def _admit(self, data: bytes, now_ns: int, may_duplicate: bool) -> _Copy | str:
        """netem_enqueue for one copy: the admitted copy, or why it was dropped."""
        duplicate = may_duplicate and self._dup_p and self._dup_p >= self._dup_draw()
        lost = self._loss is not None and self._loss()
        if lost and not duplicate:
            return "loss"
        # netem counts copies as 1 + duplicate - loss: a duplicate cancels a loss.
        clone = data if duplicate and not lost else None
        bit = -1
        if self._corrupt_p and self._corrupt_p >= self._corrupt_draw() and data:
            bit = self._rng.randrange(len(data) * 8)
            data = flip_bit(data, bit)
        if self.held.depth(now_ns) >= self._limit:
            return "limit"
        # the duplicate re-enters the qdisc (loss, corrupt, limit, delay) before the original
        dup = self._admit(clone, now_ns, False) if clone is not None else None
        release_ns, reordered = self._schedule(len(data), now_ns)
        return _Copy(data, release_ns, bit, reordered, dup)

    def _schedule(self, size: int, now_ns: int) -> tuple[int, bool]:
        """Release time of an admitted copy, and whether it jumped the queue (reorder)."""
        gap = self._gap
        if gap and self._reorder_count >= gap - 1 and self._reorder_p >= self._reorder_draw():
            self._reorder_count = 0
            return now_ns, True
        due = now_ns + self._latency
        if self._jitter:
            due = now_ns + tabledist(self._latency, self._jitter, self._delay_draw(), self._dist)
        last = self._tfifo_last
        if self._rate is not None:
            if self.held and last is not None:
                due = max(due, last)
            due += packet_time_ns(size, self._rate)
        if last is None or due > last:
            self._tfifo_last = due
        self._reorder_count += 1
        release = max(now_ns, due if self._slot is None else self._slot.send_time(due, size))
        floor = self._last_release
        if floor is not None and floor > release:
            if self._inorder:
                release = floor
        else:
            self._last_release = release
        if release > now_ns:
            self.held.push(release)
        return release, False


def _chance(spec: Chance | None, rng: random.Random) -> tuple[int, Callable[[], int] | None]:
    """(threshold u32, draw) for a ``P [CORR]`` stage; threshold 0 means off and draws nothing."""
    threshold = percent_to_u32(spec.percent) if spec is not None else 0
    return threshold, (u32_source(rng, spec.corr) if threshold else None)
