"""Fate traces: record what an Impairment did, and replay it so other runs see the same network.

Two text formats, one record per line, ``#`` starts a comment (see docs/netem.md):

* fate trace (written by :class:`FateRecorder`)::

      # semnet fate trace v1
      0 pass 20.000000
      1 drop:loss 0.000000
      2 pass+corrupt 20.512000 bit=1234
      3 pass+duplicate 20.000000 dup=21.300000

  ``ORDINAL ACTION DELAY_MS [bit=N] [dup=DELAY_MS] [dupbit=N]``, delays in milliseconds with
  nanosecond resolution, so a replay reproduces delays exactly;
* measured trace: ``0`` (delivered) or ``1`` (lost), optionally followed by the delay
  (``0 12.5ms``; a bare number is milliseconds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from semnet.core.impair.pipeline import (
    Emission,
    Fate,
    ImpairCounters,
    compose_action,
    flip_bit,
    release_time,
)
from semnet.core.impair.queue import HeldQueue
from semnet.core.impair.spec import DEFAULT_LIMIT
from semnet.core.impair.units import MAX_TIME_NS, parse_int, parse_number, parse_time
from semnet.errors import ConfigError

HEADER = "# semnet fate trace v1: ordinal action delay_ms [bit=N] [dup=DELAY_MS] [dupbit=N]"
_ACTION = re.compile(
    r"(?:drop:(?:loss|limit|link|class)|pass(\+duplicate)?(\+corrupt)?(\+reorder)?)\Z"
)
_NS = 1e9


def _ms(seconds: float) -> str:
    ns = round(seconds * _NS)
    return f"{ns // 1_000_000}.{ns % 1_000_000:06d}"


def _delay_s(token: str, where: str) -> float:
    """A trace delay: a tc time with unit, or a bare number of milliseconds; in seconds."""
    if token[-1:].isalpha():
        return parse_time(token, where) / _NS
    ns = parse_number(token, where) * 1e6
    if ns > MAX_TIME_NS:
        raise ConfigError(f"{where}: {token!r} ms is above 3600s, the longest time semnet holds")
    return round(ns) / _NS


def format_fate(fate: Fate) -> str:
    """One fate-trace line (no newline)."""
    parts = [str(fate.ordinal), fate.action, _ms(fate.delay)]
    if fate.bit >= 0:
        parts.append(f"bit={fate.bit}")
    if fate.dup_delay is not None:
        parts.append(f"dup={_ms(fate.dup_delay)}")
    if fate.dup_bit >= 0:
        parts.append(f"dupbit={fate.dup_bit}")
    return " ".join(parts)


class FateRecorder:
    """Writes one line per fate to a text stream, header first."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        stream.write(HEADER + "\n")

    def record(self, fate: Fate) -> None:
        self._stream.write(format_fate(fate) + "\n")


def _parse_fate_line(words: list[str], where: str) -> Fate:
    ordinal = parse_int(words[0], f"{where} ordinal", 0, 2**63 - 1)
    action = words[1]
    flags = _ACTION.match(action)
    if flags is None:
        raise ConfigError(f"{where}: unknown action {action!r}")
    extras: dict[str, str] = {}
    for word in words[3:]:
        key, sep, value = word.partition("=")
        if not sep or key not in ("bit", "dup", "dupbit") or key in extras:
            raise ConfigError(f"{where}: unexpected field {word!r}")
        extras[key] = value
    bit = parse_int(extras["bit"], f"{where} bit", 0, 2**31) if "bit" in extras else -1
    dup_bit = parse_int(extras["dupbit"], f"{where} dupbit", 0, 2**31) if "dupbit" in extras else -1
    dup_delay = _delay_s(extras["dup"], f"{where} dup") if "dup" in extras else None
    duplicate, corrupt = bool(flags.group(1)), bool(flags.group(2))
    if duplicate != (dup_delay is not None) or (dup_bit >= 0 and dup_delay is None):
        raise ConfigError(f"{where}: '+duplicate' and dup= must come together")
    if corrupt != (bit >= 0 or dup_bit >= 0):
        raise ConfigError(f"{where}: '+corrupt' and bit=/dupbit= must come together")
    return Fate(ordinal, action, _delay_s(words[2], f"{where} delay"), bit, dup_delay, dup_bit)


def _parse_measured_line(words: list[str], where: str, ordinal: int) -> Fate:
    if words[0] not in ("0", "1") or len(words) > 2:
        raise ConfigError(f"{where}: expected '0' or '1' and an optional delay, got {words!r}")
    if words[0] == "1":
        return Fate(ordinal, "drop:loss")
    return Fate(ordinal, "pass", _delay_s(words[1], f"{where} delay") if len(words) > 1 else 0.0)


def parse_trace(lines: Iterable[str]) -> list[Fate]:
    """Fates from either format (decided by the first record; the file may not mix them)."""
    fates: list[Fate] = []
    fate_format: bool | None = None
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"trace line {number}"
        is_fate = len(words) >= 3 and words[1][:4] in ("pass", "drop")
        if fate_format is None:
            fate_format = is_fate
        if is_fate != fate_format:
            raise ConfigError(f"{where}: mixes fate and measured records")
        if fate_format:
            fate = _parse_fate_line(words, where)
            if fates and fate.ordinal != fates[-1].ordinal + 1:
                raise ConfigError(
                    f"{where}: ordinal {fate.ordinal} does not follow {fates[-1].ordinal}"
                )
        else:
            fate = _parse_measured_line(words, where, len(fates))
        fates.append(fate)
    return fates


def load_trace(path: str | Path) -> list[Fate]:
    """:func:`parse_trace` on a file."""
    with open(path, encoding="utf-8") as stream:
        return parse_trace(stream)


class ReplayImpairment:
    """Applies a recorded fate sequence with :class:`Impairment`'s interface.

    Datagram i gets record i (records loop when ``loop``; otherwise datagrams past the end pass
    untouched): the same drops, delays, duplicates and flipped bits. A recorded bit beyond a
    shorter datagram wraps modulo its length in bits, so codecs with other sizes still see one
    flipped bit. The recorded drops already contain the recording's limit drops; ``limit`` still
    bounds the copies held, as a guard for traces replayed faster than they were recorded (a
    datagram that finds it full is ``drop:limit``).
    """

    link = None  # a replay has no wireless stage: the recorded drops include its losses
    node = None  # nor an access node: a trace records fates, not the bits a hop flipped

    def __init__(
        self, fates: Sequence[Fate], loop: bool = True, limit: int = DEFAULT_LIMIT
    ) -> None:
        if not fates:
            raise ConfigError("trace: no records")
        self._fates = fates
        self._loop = loop
        self._limit = limit
        self.counters = ImpairCounters()
        self.held = HeldQueue()
        self._ordinal = -1
        self.last_fate: Fate | None = None

    def feed_frame(self, datagrams: Sequence[bytes]) -> None:
        """Nothing to queue: there is no link stage (as :meth:`Impairment.feed_frame` without
        one)."""

    def queue_depth(self, now: float) -> int:
        """Copies released after ``now``."""
        return self.held.depth(round(now * _NS))

    def _copy(self, data: bytes, now: float, delay: float, bit: int) -> tuple[Emission, int]:
        if bit >= 0 and data:
            bit %= len(data) * 8
            data = flip_bit(data, bit)
            self.counters.corrupted += 1
        else:
            bit = -1
        self.counters.emitted += 1
        now_ns = round(now * _NS)
        release_ns = now_ns + round(delay * _NS)
        if release_ns > now_ns:
            self.held.push(release_ns)
        return Emission(release_time(now, release_ns), data), bit

    def process(self, data: bytes, now: float) -> list[Emission]:
        """Replay the next record on ``data`` arriving at ``now``."""
        self._ordinal += 1
        ordinal = self._ordinal
        counters = self.counters
        counters.received += 1
        n = len(self._fates)
        if not self._loop and ordinal >= n:
            record = Fate(ordinal, "pass")
        else:
            record = self._fates[ordinal % n]
        if not record.dropped and self.held.depth(round(now * _NS)) >= self._limit:
            record = Fate(ordinal, "drop:limit")
        if record.dropped:
            reason = record.action.removeprefix("drop:")
            counters.dropped_by_reason[reason] = counters.dropped_by_reason.get(reason, 0) + 1
            self.last_fate = Fate(ordinal, record.action)
            return []
        emissions = []
        dup_bit = -1
        if record.dup_delay is not None:
            counters.duplicated += 1
            emission, dup_bit = self._copy(data, now, record.dup_delay, record.dup_bit)
            emissions.append(emission)
        emission, bit = self._copy(data, now, record.delay, record.bit)
        emissions.append(emission)
        reordered = "+reorder" in record.action
        counters.reordered += reordered
        action = compose_action(len(emissions), bit >= 0 or dup_bit >= 0, reordered)
        self.last_fate = Fate(ordinal, action, record.delay, bit, record.dup_delay, dup_bit)
        return emissions
