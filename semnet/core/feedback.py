"""Receiver reports: a second, small wire message, from the receiver back to the sender.

Like an RTCP receiver report block (RFC 3550 §6.4.2, A.3, A.8), one per stream, sent over the
reverse path (the proxy's reverse direction), so the network can lose, delay or corrupt it. The
format is fixed-size, in network byte order (docs/feedback.md has the table):

    magic 0x52 | version | flags | reserved | stream u16 | fraction lost u16 (Q15)
    report number u32 | highest seq u32 | cumulative lost u32 | jitter u32 (µs)
    mean burst u32 (Q16.16 datagrams) | frames u32 | crc32 u32 [| 16-byte tag]

Sealed as data datagrams are (semnet.core.wire): the tag covers every byte before it with the
crc read as zero, the crc covers every byte. The parser is strict and raises only WireError,
with the data parser's reason slugs. Sans-IO: the receiver side (:class:`StreamStats`) is fed
arrivals and builds reports, the sender side (:class:`ReportBook`) is fed bytes and clock
readings and keeps the latest report per stream of its own.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from semnet.core.auth import TAG_SIZE, Replay, ReplayWindow, tag, tag_ok
from semnet.core.seqnum import WINDOW, SequenceTracker, seq_diff
from semnet.errors import ConfigError, WireError

MAGIC = 0x52  # data datagrams use 0x53: neither parser takes the other's
VERSION = 1
FLAG_AUTHENTICATED = 0x02  # the data format's bit
FRACTION_ONE = 1 << 15  # fraction lost 1.0 on the wire; more is impossible
BURST_ONE = 1 << 16  # one datagram of mean burst on the wire
JITTER_UNIT = 1e-6  # seconds per jitter unit on the wire
U32 = 0xFFFFFFFF

_REPORT = struct.Struct(">BBBBHHIIIIIII")
_CRC_OFFSET = 32
SIZE = _REPORT.size
SIGNED_SIZE = SIZE + TAG_SIZE
assert SIZE == 36

# Reasons a sender refuses a report: the parser's, then the sender's own checks.
REFUSALS = (
    "truncated",
    "oversized",
    "bad_magic",
    "bad_version",
    "bad_flags",
    "bad_field",
    "checksum",
    "auth",
    "auth_no_key",
    "unauthenticated",
    "unknown_stream",  # not a stream this sender sends
    "impossible",  # its highest seq is one this sender has not sent
    "regressed",  # its highest seq is further behind the kept report's than the window
    "replay",  # its report number is older than the replay window
    "duplicate",  # its report number was seen (a network copy, or a replay)
    "superseded",  # a newer report is already kept (reordered on the way)
)


def _u32(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= U32:
        raise ConfigError(f"{name}={value!r} is not a u32")


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """One stream's report; the floats are stored rounded to what the wire carries, so that
    encode→parse returns an equal object."""

    stream: int
    number: int  # counts the receiver's reports: the replay window runs on it
    highest: int  # highest sequence number received (u32)
    fraction_lost: float  # since the previous report of the stream, in [0, 1]
    cumulative_lost: int  # expected minus received since the stream began
    jitter: float  # seconds, RFC 3550 A.8 against the sender's pacing schedule
    mean_burst: float  # datagrams per loss run settled since the previous report; 0: none
    frames: int  # frames of the stream the receiver delivered

    def __post_init__(self) -> None:
        if not isinstance(self.stream, int) or not 0 <= self.stream <= 0xFFFF:
            raise ConfigError(f"stream={self.stream!r} is not a u16")
        for name in ("number", "highest", "cumulative_lost", "frames"):
            _u32(name, getattr(self, name))
        if not 0.0 <= self.fraction_lost <= 1.0:
            raise ConfigError(f"fraction_lost={self.fraction_lost!r} is not in [0, 1]")
        if not 0.0 <= self.jitter <= U32 * JITTER_UNIT:
            raise ConfigError(f"jitter={self.jitter!r} s is out of range")
        if not (self.mean_burst == 0.0 or 1.0 <= self.mean_burst <= U32 / BURST_ONE):
            raise ConfigError(f"mean_burst={self.mean_burst!r}: 0 or a run of >= 1 datagram")
        object.__setattr__(self, "fraction_lost", _fraction(self.fraction_lost) / FRACTION_ONE)
        object.__setattr__(self, "jitter", round(self.jitter / JITTER_UNIT) * JITTER_UNIT)
        object.__setattr__(self, "mean_burst", _burst(self.mean_burst) / BURST_ONE)


def _fraction(value: float) -> int:
    return round(value * FRACTION_ONE)


def _burst(value: float) -> int:
    return round(value * BURST_ONE)


def _crc(data: bytes | bytearray) -> int:
    """CRC-32 of the report with its crc field read as zero."""
    view = memoryview(data)
    crc = zlib.crc32(view[:_CRC_OFFSET])
    crc = zlib.crc32(b"\0\0\0\0", crc)
    return zlib.crc32(view[SIZE:], crc)


def encode(report: ReceiverReport, key: bytes | None = None) -> bytes:
    """Serialise a report, tagged when ``key`` is given."""
    buf = bytearray(SIGNED_SIZE if key is not None else SIZE)
    _REPORT.pack_into(
        buf,
        0,
        MAGIC,
        VERSION,
        FLAG_AUTHENTICATED if key is not None else 0,
        0,
        report.stream,
        _fraction(report.fraction_lost),
        report.number,
        report.highest,
        report.cumulative_lost,
        round(report.jitter / JITTER_UNIT),
        _burst(report.mean_burst),
        report.frames,
        0,
    )
    if key is not None:
        buf[SIZE:] = tag(key, memoryview(buf)[:SIZE])
    struct.pack_into(">I", buf, _CRC_OFFSET, _crc(buf))
    return bytes(buf)


def parse(data: bytes, key: bytes | None = None) -> ReceiverReport:
    """Validate and decode one report; raises only WireError, whatever the bytes. With ``key``
    only reports with a valid tag pass; without one, tagged reports are ``auth_no_key``."""
    n = len(data)
    if n < SIZE:
        raise WireError("truncated", f"{n} bytes < report {SIZE}")
    magic, version, flags, reserved, stream, fraction, *counts, crc = _REPORT.unpack_from(data)
    if magic != MAGIC:  # before the size: a data datagram here is told apart as such
        raise WireError("bad_magic", f"0x{magic:02x}")
    if version != VERSION:
        raise WireError("bad_version", str(version))
    if n > SIGNED_SIZE:
        raise WireError("oversized", f"{n} bytes > signed report {SIGNED_SIZE}")
    if crc != _crc(data):
        raise WireError("checksum")
    if flags & ~FLAG_AUTHENTICATED:
        raise WireError("bad_flags", f"0x{flags:02x}")
    if flags & FLAG_AUTHENTICATED:
        if key is None:
            raise WireError("auth_no_key", "signed report, no key configured")
        if n != SIGNED_SIZE:
            raise WireError("truncated", f"{n} bytes < signed report {SIGNED_SIZE}")
        signed = bytearray(data[:SIZE])
        signed[_CRC_OFFSET:SIZE] = b"\0\0\0\0"
        if not tag_ok(key, signed, memoryview(data)[SIZE:]):
            raise WireError("auth", "tag does not match")
    elif n != SIZE:
        raise WireError("oversized", f"{n} bytes > report {SIZE}")
    elif key is not None:
        raise WireError("unauthenticated", "no tag, and a key is configured")
    if reserved:
        raise WireError("bad_field", f"reserved byte 0x{reserved:02x}")
    if fraction > FRACTION_ONE:
        raise WireError("bad_field", f"fraction lost {fraction}/{FRACTION_ONE} > 1")
    number, highest, lost, jitter, burst, frames = counts
    try:
        return ReceiverReport(
            stream,
            number,
            highest,
            fraction / FRACTION_ONE,
            lost,
            jitter * JITTER_UNIT,
            burst / BURST_ONE,
            frames,
        )
    except ConfigError as exc:
        raise WireError("bad_field", str(exc)) from None


# -- receiver side ---------------------------------------------------------------------------


@dataclass(slots=True)
class StreamStats:
    """What a receiver keeps per stream for its reports, beside the stream's sequence tracker.

    Jitter is RFC 3550 A.8's estimator with the sender's pacing schedule as the timestamps:
    datagrams of one frame leave ``pace`` seconds per byte apart (``pace`` comes with the frame's
    announcement), so the transit difference of two consecutive arrivals of a frame is their
    arrival gap minus their sequence gap times one datagram's pacing interval. Gaps between
    frames are skipped: the time a sender spends between frames is not in the schedule. Until a
    pace is known the jitter stays 0.
    """

    source: object = None  # where the stream's last accepted datagram came from
    pace: float = 0.0  # seconds per byte of the sender's pacing; 0: unknown
    frames: int = 0  # frames of the stream delivered
    heard: bool = False  # a datagram was accepted since the last report
    jitter: float = 0.0  # seconds
    _last: tuple[int, int, float] | None = None  # (frame, seq, arrival) of the last arrival
    _prior: tuple[int, int, int, int] = (0, 0, 0, 0)  # tracker counts at the last report

    def arrived(self, frame: int, seq: int, now: float, size: int, source: object) -> None:
        """One accepted datagram of ``frame``; ``size`` is its frame's datagram size."""
        self.heard = True
        if source is not None:
            self.source = source
        if not self.pace:
            return
        last, self._last = self._last, (frame, seq, now)
        if last is None or last[0] != frame:
            return
        transit = (now - last[2]) - seq_diff(seq, last[1]) * size * self.pace
        self.jitter += (abs(transit) - self.jitter) / 16

    def report(self, stream: int, number: int, tracker: SequenceTracker) -> ReceiverReport:
        """The report of the interval since the last one (RFC 3550 A.3); starts the next."""
        expected, lost = tracker.expected, tracker.lost
        prior_expected, prior_lost, prior_runs, prior_run_lost = self._prior
        interval, lost_interval = expected - prior_expected, lost - prior_lost
        fraction = 0.0
        if interval > 0 and lost_interval > 0:  # late arrivals can make an interval's loss < 0
            fraction = min(1.0, lost_interval / interval)
        runs, run_lost = tracker.loss_runs - prior_runs, tracker.run_lost - prior_run_lost
        burst = min(run_lost / runs, U32 / BURST_ONE) if runs else 0.0
        tracker.split_run()
        self._prior = (expected, lost, tracker.loss_runs, tracker.run_lost)
        self.heard = False
        return ReceiverReport(
            stream,
            number,
            0 if tracker.highest is None else tracker.highest,
            fraction,
            min(max(lost, 0), U32),
            min(self.jitter, U32 * JITTER_UNIT),
            burst,
            min(self.frames, U32),
        )


# -- sender side -----------------------------------------------------------------------------


HISTORY = 32  # reports kept per stream for the loss over several of them
LOSS_SPAN = 24  # datagrams the loss estimate spans at least, when the reports reach that far


@dataclass(slots=True)
class _Kept:
    window: ReplayWindow
    sent: tuple[int, int] | None = None  # (first, last) seq this sender put on the wire
    report: ReceiverReport | None = None
    at: float = 0.0  # clock reading when it arrived
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))  # (at, report)


class ReportBook:
    """The sender's side: the latest report of each of its own streams, refusals by reason.

    State exists only for the streams given at start, so a flood of reports (any stream, any
    number) costs counters, not memory. A report is ``impossible`` unless its highest seq lies
    within what this sender sent on the stream; a newer report whose highest seq goes back by
    more than ``WINDOW`` is ``regressed``. A report older than ``timeout`` seconds is stale:
    :meth:`latest` then answers None, as if there were none.
    """

    def __init__(
        self, streams: Iterable[int], key: bytes | None = None, timeout: float = 2.0
    ) -> None:
        if not timeout > 0:
            raise ConfigError(f"feedback timeout: must be > 0 seconds, got {timeout}")
        self.key = key
        self.timeout = timeout
        self.accepted = 0
        self.refused: dict[str, int] = {}
        self._kept = {s: _Kept(ReplayWindow()) for s in streams}

    @property
    def streams(self) -> list[int]:
        return list(self._kept)

    def sent(self, stream: int, first: int, last: int) -> None:
        """Datagrams ``first``..``last`` of ``stream`` are going on the wire."""
        kept = self._kept[stream]
        kept.sent = (first if kept.sent is None else kept.sent[0], last)

    def receive(self, data: bytes, now: float) -> str:
        """Take one datagram off the reverse path: '' when kept, else the reason, counted."""
        reason = self._judge(data, now)
        if reason:
            self.refused[reason] = self.refused.get(reason, 0) + 1
        else:
            self.accepted += 1
        return reason

    def _judge(self, data: bytes, now: float) -> str:
        try:
            report = parse(data, self.key)
        except WireError as exc:
            return exc.reason
        kept = self._kept.get(report.stream)
        if kept is None:
            return "unknown_stream"
        if kept.sent is None or not (
            0 <= seq_diff(report.highest, kept.sent[0]) <= seq_diff(kept.sent[1], kept.sent[0])
        ):
            return "impossible"
        if kept.report is not None and seq_diff(report.highest, kept.report.highest) < -WINDOW:
            return "regressed"
        newest = kept.window.highest
        verdict = kept.window.check(report.number)
        if verdict is Replay.OLD:
            return "replay"
        if verdict is Replay.DUPLICATE:
            return "duplicate"
        if newest is not None and seq_diff(report.number, newest) < 0:
            return "superseded"
        kept.report, kept.at = report, now
        kept.history.append((now, report))
        return ""

    def age(self, stream: int, now: float) -> float | None:
        """Seconds since the stream's latest report arrived; None if none did."""
        kept = self._kept.get(stream)
        if kept is None or kept.report is None:
            return None
        return max(0.0, now - kept.at)

    def last(self, stream: int) -> ReceiverReport | None:
        """The latest report of the stream, fresh or stale."""
        kept = self._kept.get(stream)
        return None if kept is None else kept.report

    def latest(self, stream: int, now: float) -> ReceiverReport | None:
        """The latest report of the stream unless it is stale (older than ``timeout``)."""
        age = self.age(stream, now)
        return None if age is None or age > self.timeout else self.last(stream)

    def loss(self, stream: int, now: float, span: int = LOSS_SPAN) -> float | None:
        """The fraction lost over at least ``span`` datagrams where the fresh reports reach that
        far: RTCP's interval loss taken across reports (lost and expected from their cumulative
        counts), steadier than one report's few datagrams. None without a fresh report."""
        latest = self.latest(stream, now)
        if latest is None:
            return None
        base = None
        for at, old in reversed(self._kept[stream].history):
            if now - at > self.timeout:
                break
            base = old
            if seq_diff(latest.highest, old.highest) >= span:
                break
        expected = 0 if base is None else seq_diff(latest.highest, base.highest)
        if expected <= 0:
            return latest.fraction_lost
        lost = latest.cumulative_lost - base.cumulative_lost
        return min(1.0, max(0.0, lost / expected))
