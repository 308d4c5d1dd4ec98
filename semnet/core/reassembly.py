"""Receiver-side reassembly: datagrams keyed by (stream, frame) in, assembled frames out.

A sans-IO state machine: fed datagrams and clock readings, it returns frames, complete the moment
their last datagram arrives or incomplete at their deadline, when evicted, or at flush. Every
structure is bounded (frames in flight, buffered bytes, remembered deliveries, tracked streams),
so a flood or a garbage stream costs counters, not memory. Each datagram lands in exactly one
bucket: ``datagrams == accepted + duplicates + late + malformed``.

A stream may hold at most ``max_stream_frames`` frames in flight, so a flood on one stream evicts
its own frames, not another stream's; and when a cap must evict, frames announced on the side
channel (a sender waits for them) go last, so a flood of unannounced frames on many streams
evicts its own. With a key, only authenticated datagrams get in, and an anti-replay window per
stream refuses authentic datagrams older than the window (``replay``).

Beside each stream's sequence tracker it keeps what a receiver report needs (jitter, frames
delivered, where the stream's datagrams come from: :class:`semnet.core.feedback.StreamStats`);
:meth:`Reassembler.heard` lists the streams that have something to report.

Clock readings must come from a monotonic clock; one that steps back is treated as standing
still, so deadlines stay ordered by first arrival and expire in that order.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from semnet.core import coded, packetize
from semnet.core.auth import Replay, ReplayWindow
from semnet.core.feedback import StreamStats
from semnet.core.seqnum import SeqClass, SequenceTracker, seq_diff
from semnet.core.wire import Datagram, FrameDescriptor, parse
from semnet.errors import ConfigError, WireError

FrameKey = tuple[int, int]  # (stream, frame)


@dataclass(slots=True)
class AssembledFrame:
    """What arrived of one frame; ``datagrams`` maps index to the first copy received."""

    stream: int
    frame: int
    descriptor: FrameDescriptor
    datagrams: dict[int, Datagram]
    count: int
    complete: bool
    first_arrival: float
    last_arrival: float
    size: int = 0  # wire bytes of the held datagrams, what the max_bytes cap counts

    @property
    def received(self) -> int:
        """Distinct datagrams of this frame that arrived."""
        return len(self.datagrams)

    @property
    def missing(self) -> int:
        """Datagrams of this frame that have not arrived."""
        return self.count - len(self.datagrams)


# Every reason a datagram is counted malformed under: the parser's WireError reasons, the
# reassembler's own, and the decoder's for entropy-coded runs. Metrics export each from zero.
MALFORMED_REASONS = (
    "truncated",
    "bad_magic",
    "bad_version",
    "bad_flags",
    "bad_field",
    "oversized",
    "payload_length",
    "unknown_class",
    "checksum",
    "auth",
    "auth_no_key",
    "unauthenticated",
    "replay",
    "inconsistent",
    "overlap",
    "entropy",
)
EVICTION_CAPS = ("max_frames", "max_bytes", "max_stream_frames")


@dataclass(slots=True)
class ReassemblyCounters:
    """Monotone counts for metrics; see the module docstring for the identity they keep."""

    datagrams: int = 0  # offered or ingested, well-formed or not
    accepted: int = 0  # stored in a frame (reordered ones included)
    duplicates: int = 0  # a copy of a held (frame, index) or of a recently seen seq
    reordered: int = 0  # accepted although older than the stream's highest seq
    late: int = 0  # for a frame already delivered
    malformed: int = 0  # total of malformed_by_reason
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    evicted_frames: int = 0  # delivered incomplete to respect a cap; total of the next
    evicted_by_reason: dict[str, int] = field(default_factory=dict)  # cap name -> frames
    evicted_streams: int = 0  # sequence trackers forgotten to respect max_streams
    frames_complete: int = 0
    frames_incomplete: int = 0  # at deadline, on eviction or at flush

    def count_malformed(self, reason: str) -> None:
        """Count one dropped datagram under its reason slug."""
        self.malformed += 1
        self.malformed_by_reason[reason] = self.malformed_by_reason.get(reason, 0) + 1

    def reclassify_malformed(self, reason: str, n: int) -> None:
        """Move ``n`` accepted datagrams to malformed: their payload failed a check that only
        decoding can make (an entropy-coded stream), after they were stored in a frame."""
        self.accepted -= n
        self.malformed += n
        self.malformed_by_reason[reason] = self.malformed_by_reason.get(reason, 0) + n

    def count_eviction(self, cap: str) -> None:
        """Count one frame cut short by the cap named ``cap``."""
        self.evicted_frames += 1
        self.evicted_by_reason[cap] = self.evicted_by_reason.get(cap, 0) + 1


class Reassembler:
    """Groups datagrams into frames and decides when each frame is done.

    ``deadline`` is seconds after a frame's first datagram at which it is delivered as is.
    ``recent`` delivered keys are remembered so later datagrams for them count as late instead
    of starting a phantom frame; ``max_streams`` sequence trackers (and replay windows) are
    kept, least recent first out. ``key`` switches on authentication.
    """

    def __init__(
        self,
        deadline: float = 1.0,
        max_frames: int = 64,
        max_bytes: int = 64 * 2**20,
        recent: int = 1024,
        max_streams: int = 64,
        max_stream_frames: int = 16,
        key: bytes | None = None,
    ) -> None:
        if not deadline > 0:
            raise ConfigError(f"deadline: must be > 0 seconds, got {deadline}")
        for name, value in (
            ("max_frames", max_frames),
            ("max_bytes", max_bytes),
            ("recent", recent),
            ("max_streams", max_streams),
            ("max_stream_frames", max_stream_frames),
        ):
            if value < 1:
                raise ConfigError(f"{name}: must be >= 1, got {value}")
        self.deadline = deadline
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.recent = recent
        self.max_streams = max_streams
        self.max_stream_frames = max_stream_frames
        self.key = key
        self.counters = ReassemblyCounters()
        self._pending: OrderedDict[FrameKey, AssembledFrame] = OrderedDict()
        self._per_stream: dict[int, int] = {}  # frames in flight per stream
        self._announced: OrderedDict[FrameKey, float] = OrderedDict()  # evicted last; -> pace
        self._delivered: OrderedDict[FrameKey, None] = OrderedDict()
        self._trackers: OrderedDict[int, SequenceTracker] = OrderedDict()
        self._windows: dict[int, ReplayWindow] = {}  # keyed like _trackers, evicted with them
        self._stats: dict[int, StreamStats] = {}  # likewise
        self._buffered = 0
        self._clock = float("-inf")

    @property
    def pending_frames(self) -> int:
        """Frames in flight (some datagrams held, not yet delivered)."""
        return len(self._pending)

    def is_pending(self, stream: int, frame: int) -> bool:
        """Whether datagrams of this frame arrived and it has not been delivered yet."""
        return (stream, frame) in self._pending

    @property
    def buffered_bytes(self) -> int:
        """Wire bytes of the datagrams held by frames in flight."""
        return self._buffered

    def tracker(self, stream: int) -> SequenceTracker | None:
        """The sequence tracker of ``stream`` (loss estimate, jumps), None if not tracked."""
        return self._trackers.get(stream)

    def stats(self, stream: int) -> StreamStats | None:
        """What the stream's reports need beside its tracker, None if not tracked."""
        return self._stats.get(stream)

    def heard(self) -> list[tuple[int, SequenceTracker, StreamStats]]:
        """The streams a datagram was accepted on since their last report, with their state."""
        return [(s, self._trackers[s], st) for s, st in self._stats.items() if st.heard]

    def ingest(self, data: bytes, now: float, source: object = None) -> list[AssembledFrame]:
        """Parse and validate raw bytes, then offer them; malformed ones are counted, not raised.
        ``source`` (an address) is remembered per stream when the datagram is accepted: the
        stream's reports go back there."""
        out = self.poll(now)
        try:
            dg = parse(data, self.key)
            (coded if dg.descriptor.entropy else packetize).check_payload(dg)
        except WireError as exc:
            self.counters.datagrams += 1
            self.counters.count_malformed(exc.reason)
            return out
        out.extend(self._take(dg, len(data), source))
        return out

    def offer(self, dg: Datagram, size: int, now: float) -> list[AssembledFrame]:
        """Take one parsed datagram of ``size`` wire bytes; returns the frames it finished.

        Frames whose deadline passed by ``now`` are delivered first, so the outcome does not
        depend on how often the caller polls.
        """
        out = self.poll(now)
        out.extend(self._take(dg, size))
        return out

    def _take(self, dg: Datagram, size: int, source: object = None) -> list[AssembledFrame]:
        """File one datagram at the current clock; returns the frames it completed or evicted."""
        out: list[AssembledFrame] = []
        c = self.counters
        c.datagrams += 1
        key = (dg.stream, dg.frame)
        frame = self._pending.get(key)
        if frame is not None:
            if dg.index in frame.datagrams:
                c.duplicates += 1
                return out
            if dg.count != frame.count or dg.descriptor != frame.descriptor:
                c.count_malformed("inconsistent")
                return out
        seq_class = self._track(dg.stream, dg.seq)
        if seq_class is Replay.OLD:
            c.count_malformed("replay")
            return out
        if seq_class is SeqClass.DUPLICATE or seq_class is Replay.DUPLICATE:
            c.duplicates += 1
            return out
        if key in self._delivered:
            c.late += 1
            return out
        c.accepted += 1
        if seq_class is SeqClass.REORDERED:
            c.reordered += 1
        now = self._clock
        stats = self._stats[dg.stream]
        if frame is None and self._announced.get(key):
            stats.pace = self._announced[key]
        stats.arrived(dg.frame, dg.seq, now, dg.descriptor.datagram_size, source)
        if frame is None:
            frame = AssembledFrame(
                dg.stream, dg.frame, dg.descriptor, {}, dg.count, False, now, now
            )
            self._pending[key] = frame
            self._per_stream[dg.stream] = self._per_stream.get(dg.stream, 0) + 1
        frame.datagrams[dg.index] = dg
        frame.last_arrival = now
        frame.size += size
        self._buffered += size
        if len(frame.datagrams) == frame.count:
            frame.complete = True
            out.append(self._deliver(key))
        if self._per_stream.get(dg.stream, 0) > self.max_stream_frames:
            c.count_eviction("max_stream_frames")
            out.append(self._deliver(self._victim(dg.stream)))
        while self._pending and (
            len(self._pending) > self.max_frames or self._buffered > self.max_bytes
        ):
            c.count_eviction("max_frames" if len(self._pending) > self.max_frames else "max_bytes")
            out.append(self._deliver(self._victim()))
        return out

    def _victim(self, stream: int | None = None) -> FrameKey:
        """The frame a cap evicts: the oldest unannounced one (of ``stream`` if given), else the
        oldest. Scans at most the frames in flight, and announced ones are few."""
        oldest = None
        for key in self._pending:
            if stream is None or key[0] == stream:
                if key not in self._announced:
                    return key
                oldest = oldest or key
        return oldest

    def poll(self, now: float) -> list[AssembledFrame]:
        """Deliver, incomplete, every frame whose deadline is at or before ``now``."""
        self._clock = max(self._clock, now)
        out = []
        while self._pending:
            key, frame = next(iter(self._pending.items()))
            if frame.first_arrival + self.deadline > self._clock:
                break
            out.append(self._deliver(key))
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to deliver, None while nothing is pending."""
        if not self._pending:
            return None
        return next(iter(self._pending.values())).first_arrival + self.deadline

    def flush(self) -> list[AssembledFrame]:
        """Deliver every pending frame as it stands (shutdown)."""
        return [self._deliver(key) for key in list(self._pending)]

    def announce(self, stream: int, frame: int, first_seq: int, pace: float = 0.0) -> None:
        """A sender said, on the reliable (and, with a key, signed) side channel, that it sends
        ``frame`` from ``first_seq`` on, paced ``pace`` seconds per byte (0: not said; the jitter
        of its reports is measured against that pace). The frame is evicted last. If
        ``first_seq`` is not ahead of what the stream has seen, the sender restarted: forget the
        stream's sequence state (and report statistics) so the new numbers are not taken for
        duplicates, replays or a jump."""
        self._announced[(stream, frame)] = pace
        if len(self._announced) > self.recent:
            self._announced.popitem(last=False)
        tracker = self._trackers.get(stream)
        if tracker is not None and seq_diff(first_seq, tracker.highest) <= 0:
            self._trackers[stream] = SequenceTracker()
            self._stats[stream] = StreamStats(source=self._stats[stream].source)
        window = self._windows.get(stream)
        if window is not None and seq_diff(first_seq, window.highest) <= 0:
            window.restart(first_seq)

    def _track(self, stream: int, seq: int) -> SeqClass | Replay:
        """Classify ``seq`` on its stream's replay window (with a key) and tracker, making room
        for a new stream if needed."""
        tracker = self._trackers.get(stream)
        if tracker is None:
            if len(self._trackers) >= self.max_streams:
                old, _ = self._trackers.popitem(last=False)
                self._windows.pop(old, None)
                del self._stats[old]
                self.counters.evicted_streams += 1
            tracker = self._trackers[stream] = SequenceTracker()
            self._stats[stream] = StreamStats()
        else:
            self._trackers.move_to_end(stream)
        if self.key is not None:
            window = self._windows.get(stream)
            if window is None:
                window = self._windows[stream] = ReplayWindow()
            verdict = window.check(seq)
            if verdict is not Replay.NEW:
                return verdict
        return tracker.update(seq)

    def _deliver(self, key: FrameKey) -> AssembledFrame:
        """Take a frame out of flight, remember its key, count it complete or incomplete."""
        frame = self._pending.pop(key)
        self._announced.pop(key, None)
        left = self._per_stream[key[0]] - 1
        if left:
            self._per_stream[key[0]] = left
        else:
            del self._per_stream[key[0]]
        self._buffered -= frame.size
        stats = self._stats.get(key[0])
        if stats is not None:
            stats.frames += 1
        self._delivered[key] = None
        if len(self._delivered) > self.recent:
            self._delivered.popitem(last=False)
        if frame.complete:
            self.counters.frames_complete += 1
        else:
            self.counters.frames_incomplete += 1
        return frame
