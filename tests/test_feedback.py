"""Receiver reports: the wire format, the statistics behind them, the sender's book, and the loop
over real sockets and real daemons (the proxy's reverse direction carries them)."""

from __future__ import annotations

import dataclasses
import json
import socket
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core import feedback as fb
from semnet.core import wire
from semnet.core.auth import TAG_SIZE
from semnet.core.packetize import packetize
from semnet.core.reassembly import Reassembler
from semnet.core.seqnum import MAX_MISORDER, SEQ_MOD, SeqClass, SequenceTracker
from semnet.core.wire import FrameDescriptor, PartitionSpec, QuantKind, QuantSpec, Scheme
from semnet.errors import ConfigError, WireError

KEY = b"0123456789abcdef"
REPORT = fb.ReceiverReport(7, 0x01020304, 0xFFFFFFF0, 0.25, 12, 0.000250, 1.5, 9)
# The bytes of REPORT, unsigned and signed with KEY: a change of format must be deliberate.
FIXTURE = bytes.fromhex("520100000007200001020304fffffff00000000c000000fa0001800000000009155f3ad2")
SIGNED_FIXTURE = bytes.fromhex(
    "520102000007200001020304fffffff00000000c000000fa00018000000000092f4162b4"
    "6f0f09fba8340c7488c354c531992f53"
)


def reseal(data: bytes | bytearray) -> bytes:
    """Recompute the crc (bytes 32..35, read as zero) as the spec says: to reach the checks
    behind it with a field corrupted on purpose."""
    buf = bytearray(data)
    buf[32:36] = b"\0\0\0\0"
    struct.pack_into(">I", buf, 32, zlib.crc32(buf))
    return bytes(buf)


def reason(data: bytes, key: bytes | None = None) -> str:
    with pytest.raises(WireError) as err:
        fb.parse(data, key)
    return err.value.reason


# --- format -------------------------------------------------------------------------------


def test_fixture_bytes() -> None:
    assert fb.encode(REPORT) == FIXTURE and fb.parse(FIXTURE) == REPORT
    assert fb.encode(REPORT, KEY) == SIGNED_FIXTURE and fb.parse(SIGNED_FIXTURE, KEY) == REPORT
    assert len(FIXTURE) == fb.SIZE == 36 and len(SIGNED_FIXTURE) == fb.SIGNED_SIZE == 52


u32 = st.integers(0, SEQ_MOD - 1)


@given(
    stream=st.integers(0, 0xFFFF),
    counts=st.tuples(u32, u32, u32, u32),
    fraction=st.floats(0, 1),
    jitter=st.floats(0, 4000),
    burst=st.one_of(st.just(0.0), st.floats(1, 65535)),
    signed=st.booleans(),
)
def test_round_trip(stream, counts, fraction, jitter, burst, signed) -> None:
    number, highest, lost, frames = counts
    report = fb.ReceiverReport(stream, number, highest, fraction, lost, jitter, burst, frames)
    key = KEY if signed else None
    assert fb.parse(fb.encode(report, key), key) == report
    assert abs(report.fraction_lost - fraction) <= 0.5 / fb.FRACTION_ONE
    assert abs(report.jitter - jitter) <= 0.5e-6 + 1e-9 and abs(report.mean_burst - burst) < 1e-4


@pytest.mark.parametrize(
    "field",
    [
        {"stream": 65536},
        {"number": -1},
        {"highest": SEQ_MOD},
        {"fraction_lost": 1.01},
        {"fraction_lost": float("nan")},
        {"jitter": -1e-3},
        {"mean_burst": 0.5},
        {"cumulative_lost": 1.0},
    ],
)
def test_report_refuses_values_the_wire_cannot_carry(field) -> None:
    values = {
        "stream": 1,
        "number": 0,
        "highest": 0,
        "fraction_lost": 0.0,
        "cumulative_lost": 0,
        "jitter": 0.0,
        "mean_burst": 0.0,
        "frames": 0,
    }
    with pytest.raises(ConfigError):
        fb.ReceiverReport(**{**values, **field})


@pytest.mark.parametrize("key", [None, KEY])
def test_every_truncation_is_refused(key) -> None:
    data = fb.encode(REPORT, key)
    for n in range(len(data)):
        r = reason(data[:n], key)
        assert r == "truncated" if n < fb.SIZE else r in ("checksum", "truncated")


@pytest.mark.parametrize("key", [None, KEY])
def test_every_flipped_bit_is_refused(key) -> None:
    data = fb.encode(REPORT, key)
    for bit in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << bit % 8
        expected = {0: "bad_magic", 1: "bad_version"}.get(bit // 8, "checksum")
        assert reason(bytes(flipped), key) == expected, bit


def corrupt(offset: int, value: bytes, key: bytes | None = None) -> bytes:
    buf = bytearray(fb.encode(REPORT, key))
    buf[offset : offset + len(value)] = value
    return reseal(buf)


@pytest.mark.parametrize(
    ("data", "key", "why"),
    [
        (corrupt(0, b"\x53"), None, "bad_magic"),  # a data datagram's magic
        (corrupt(1, b"\x02"), None, "bad_version"),
        (corrupt(2, b"\x01"), None, "bad_flags"),
        (corrupt(2, b"\x80"), None, "bad_flags"),
        (corrupt(3, b"\x01"), None, "bad_field"),  # reserved
        (corrupt(6, struct.pack(">H", fb.FRACTION_ONE + 1)), None, "bad_field"),  # > 1
        (corrupt(6, b"\xff\xff"), None, "bad_field"),
        (corrupt(24, struct.pack(">I", fb.BURST_ONE // 2)), None, "bad_field"),  # half a datagram
        (reseal(fb.encode(REPORT) + b"\0"), None, "oversized"),
        (reseal(fb.encode(REPORT) + bytes(16)), None, "oversized"),  # a tag, no flag
        (reseal(fb.encode(REPORT, KEY) + b"\0"), KEY, "oversized"),
        (reseal(fb.encode(REPORT, KEY)[:-1]), KEY, "truncated"),
        (corrupt(40, b"\0\0\0\0", KEY), KEY, "auth"),  # tag altered, crc made to match
        (corrupt(4, b"\0\x08", KEY), KEY, "auth"),  # stream altered
        (fb.encode(REPORT, KEY), KEY[::-1], "auth"),  # another key
        (fb.encode(REPORT), KEY, "unauthenticated"),
        (fb.encode(REPORT, KEY), None, "auth_no_key"),
    ],
)
def test_field_corruption_names_its_reason(data, key, why) -> None:
    assert reason(data, key) == why


def test_data_datagrams_and_reports_are_told_apart() -> None:
    assert reason(frames(1, 0, 1)[0]) == "bad_magic"
    with pytest.raises(WireError) as err:
        wire.parse(SIGNED_FIXTURE)
    assert err.value.reason == "bad_magic"


def test_garbage_never_raises_anything_but_wire_error() -> None:
    rng = np.random.default_rng(0)
    for n in range(fb.SIGNED_SIZE + 4):
        for _ in range(20):
            data = bytearray(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            if n > 1:
                data[:2] = b"\x52\x01"
            for key in (None, KEY):
                with pytest.raises(WireError):
                    fb.parse(bytes(data), key)


# --- statistics ---------------------------------------------------------------------------

DESC = FrameDescriptor(
    codec_id=1,
    image_h=64,
    image_w=64,
    latent=(4, 8, 8),
    quant=QuantSpec(QuantKind.ROUND, 8, -1.0, 1.0),
    partition=PartitionSpec(Scheme.CHANNEL),
    interleave=False,
    seed=0,
    datagram_size=wire.HEADER_SIZE + 64,
)  # 4 datagrams a frame
SIGNED_DESC = dataclasses.replace(
    DESC, authenticated=True, datagram_size=DESC.datagram_size + TAG_SIZE
)


def frames(
    stream: int, first_frame: int, n: int, first_seq: int = 0, key: bytes | None = None
) -> list[bytes]:
    desc = DESC if key is None else SIGNED_DESC
    q = np.zeros(desc.latent, np.uint16)
    out = []
    for i in range(n):
        out += packetize(q, desc, stream, first_frame + i, first_seq + 4 * i, key)
    return out


def run_lengths(missing: np.ndarray) -> list[int]:
    """Lengths of the runs of True in ``missing``."""
    runs, run = [], 0
    for m in missing:
        if m:
            run += 1
        elif run:
            runs, run = [*runs, run], 0
    return [*runs, run] if run else runs


def test_loss_runs_settle_past_the_reorder_horizon() -> None:
    t = SequenceTracker()
    missing = {10, 11, 12, 40, 70, 71}
    for s in range(200):
        if s not in missing:
            t.update(s)
        if s == 40 + MAX_MISORDER:  # 40 is settled only now; 10-12 were before
            assert (t.loss_runs, t.run_lost) == (1, 3)
        if s == 41 + MAX_MISORDER:
            assert (t.loss_runs, t.run_lost) == (2, 4)
    assert (t.loss_runs, t.run_lost, t.lost) == (3, 6, 6)


def test_a_reordered_arrival_is_not_a_loss_run() -> None:
    t = SequenceTracker()
    for s in [0, 1, 3, 4, 2, *range(5, 300)]:
        t.update(s)
    assert (t.loss_runs, t.run_lost, t.lost) == (0, 0, 0)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0, 0.6),
    spread=st.integers(0, MAX_MISORDER - 1),
    reads=st.lists(st.integers(0, 3000), max_size=5),
)
def test_loss_runs_match_a_brute_force_count(seed, loss, spread, reads) -> None:
    """Whatever the reordering (within the horizon), duplication and the moments they are
    read, the settled runs are those of the numbers that never arrived."""
    rng = np.random.default_rng(seed)
    kept = [s for s in range(3000) if rng.random() >= loss]
    order = sorted(kept, key=lambda s: s + rng.uniform(0, spread))
    # copies of recent datagrams: two copies of old neighbours in a row would be, rightly,
    # a sender restart (RFC 3550 A.1 resync), which this count does not model
    recent = max(0, len(order) - MAX_MISORDER // 2)
    order += [order[i] for i in rng.integers(recent, len(order), 30)] if order else []
    t, arrived = SequenceTracker(), set()
    for step, s in enumerate(order):
        if t.update(s) in (SeqClass.IN_ORDER, SeqClass.REORDERED):
            arrived.add(s)
        if step in reads:
            assert t.loss_runs >= 0  # reading settles a batch: must not change the outcome
    if not arrived:
        return
    target = max(arrived) - MAX_MISORDER
    runs = run_lengths(np.array([s not in arrived for s in range(min(arrived), target)]))
    assert t.resyncs == 0
    assert (t.loss_runs, t.run_lost) == (len(runs), sum(runs))


@pytest.mark.parametrize(("split", "runs"), [(False, 1), (True, 2)])
def test_split_run_counts_the_rest_of_a_run_as_a_new_one(split: bool, runs: int) -> None:
    t = SequenceTracker()
    for s in [*range(100), 250]:  # 100..199 missing; 100..149 settle at 250
        t.update(s)
    assert (t.loss_runs, t.run_lost) == (1, 50)
    if split:
        t.split_run()
    t.update(300)  # 150..199 settle
    assert (t.loss_runs, t.run_lost) == (runs, 100)


def test_interval_fraction_and_cumulative_loss() -> None:
    """RFC 3550 A.3: fraction = lost in the interval / expected in the interval."""
    t, stats = SequenceTracker(), fb.StreamStats()
    for s in range(100):
        if s % 5 != 1:  # 20 of 100 lost
            t.update(s)
    first = stats.report(1, 10, t)
    assert (first.highest, first.cumulative_lost, first.number, first.stream) == (99, 20, 10, 1)
    assert first.fraction_lost == pytest.approx(0.2, abs=1e-4)
    for s in range(100, 200):  # none lost
        t.update(s)
    second = stats.report(1, 11, t)
    assert (second.fraction_lost, second.cumulative_lost, second.highest) == (0.0, 20, 199)
    t.update(250)  # 50 missing
    third = stats.report(1, 12, t)
    assert third.fraction_lost == pytest.approx(50 / 51, abs=1e-4) and third.cumulative_lost == 70
    for s in range(201, 250):  # they were only late: the interval's loss is negative, so 0
        t.update(s)
    fourth = stats.report(1, 13, t)
    assert (fourth.fraction_lost, fourth.cumulative_lost) == (0.0, 21)


def test_mean_burst_covers_the_interval() -> None:
    t, stats = SequenceTracker(), fb.StreamStats()
    for s in range(0, 1000, 4):  # runs of 3
        t.update(s)
    assert stats.report(1, 0, t).mean_burst == 3.0
    assert stats.report(1, 1, t).mean_burst == 0.0  # nothing settled since


def test_mean_burst_matches_a_brute_force_count() -> None:
    """Each report's mean burst is over the numbers settled in its interval (runs cut at the
    report before), settled meaning more than MAX_MISORDER behind the highest."""
    rng = np.random.default_rng(3)
    missing = np.repeat(rng.random(1500) < 0.3, rng.integers(1, 6, 1500))[:4000]
    missing[0] = False
    received = [s for s in range(len(missing)) if not missing[s]]
    t, stats, settled = SequenceTracker(), fb.StreamStats(), 0
    for chunk in np.array_split(received, 9):
        for s in chunk:
            t.update(int(s))
        limit = int(chunk[-1]) - MAX_MISORDER  # numbers below this are settled
        runs = run_lengths(missing[settled:limit])
        expected = sum(runs) / len(runs) if runs else 0.0
        assert stats.report(1, 0, t).mean_burst == pytest.approx(expected, abs=1e-4)
        settled = limit


def rfc3550_jitter(arrivals: list[float], schedule: list[float]) -> float:
    """RFC 3550 A.8 as written, with the send schedule as the timestamps."""
    jitter, last = 0.0, None
    for r, s in zip(arrivals, schedule, strict=True):
        transit = r - s
        if last is not None:
            jitter += (abs(transit - last) - jitter) / 16
        last = transit
    return jitter


def test_jitter_is_rfc3550_against_the_pacing_schedule() -> None:
    pace, size = 1e-6, 1000  # a datagram every ms
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 3e-4, 200)
    arrivals = [0.5 + i * 1e-3 + noise[i] for i in range(200)]
    stats = fb.StreamStats(pace=pace)
    for i, r in enumerate(arrivals):
        stats.arrived(7, 100 + i, r, size, None)
    expected = rfc3550_jitter(arrivals, [i * 1e-3 for i in range(200)])
    assert stats.jitter == pytest.approx(expected) and stats.jitter > 5e-5


def test_jitter_is_zero_on_schedule_and_skips_the_gaps_between_frames() -> None:
    stats = fb.StreamStats(pace=1e-6)
    for frame in range(5):
        start = 10.0 * frame  # long pauses between frames are not jitter
        for i in range(10):
            stats.arrived(frame, frame * 10 + i, start + i * 1e-3, 1000, None)
    assert stats.jitter == pytest.approx(0.0, abs=1e-12)
    stats.arrived(5, 60, 100.0, 1000, None)
    stats.arrived(5, 62, 100.003, 1000, None)  # one lost: 2 ms scheduled, 3 ms taken
    assert stats.jitter == pytest.approx(1e-3 / 16)


def test_jitter_waits_for_a_pace() -> None:
    stats = fb.StreamStats()
    for i in range(10):
        stats.arrived(1, i, i * 0.01, 1000, None)
    assert stats.jitter == 0.0


def test_reassembler_keeps_what_reports_need_per_stream() -> None:
    r = Reassembler(max_streams=2)
    assert r.heard() == []
    r.announce(1, 0, 0, pace=1e-6)
    for d in frames(1, 0, 2):
        r.ingest(d, 0.0, ("10.0.0.1", 5))
    r.ingest(b"garbage", 0.0, ("10.6.6.6", 6))  # refused: no stream, no address
    ((stream, tracker, stats),) = r.heard()
    assert (stream, stats.source, stats.frames, stats.pace) == (1, ("10.0.0.1", 5), 2, 1e-6)
    assert tracker is r.tracker(1) and stats is r.stats(1)
    report = stats.report(1, 0, tracker)
    assert (report.highest, report.frames) == (7, 2) and r.heard() == []
    for d in frames(1, 0, 2):  # duplicates and late ones are not news
        r.ingest(d, 0.1, ("10.6.6.6", 6))
    assert r.heard() == [] and stats.source == ("10.0.0.1", 5)
    for s in (2, 3):
        r.ingest(frames(s, 0, 1)[0], 0.2, ("10.0.0.2", 5))
    assert r.stats(1) is None and r.counters.evicted_streams == 1  # forgotten with its tracker
    assert sorted(s for s, _, _ in r.heard()) == [2, 3]


def test_a_restarted_sender_starts_fresh_statistics() -> None:
    r = Reassembler()
    for d in frames(1, 0, 3, first_seq=1000):
        r.ingest(d, 0.0, ("10.0.0.1", 5))
    r.announce(1, 50, 0)  # numbers behind what was seen: a restart
    assert r.stats(1).frames == 0 and r.stats(1).source == ("10.0.0.1", 5)
    assert r.tracker(1).highest is None


# --- the sender's book --------------------------------------------------------------------


def report(number: int, highest: int = 105, stream: int = 1, **kw) -> fb.ReceiverReport:
    values = {"fraction_lost": 0.1, "cumulative_lost": 3, "jitter": 1e-4, "mean_burst": 1.0}
    values.update(kw)
    return fb.ReceiverReport(stream, number, highest, frames=2, **values)


def book(key: bytes | None = None) -> fb.ReportBook:
    b = fb.ReportBook([1], key, timeout=2.0)
    b.sent(1, 100, 199)
    return b


def test_book_keeps_the_latest_and_it_goes_stale() -> None:
    b = book()
    assert b.latest(1, 0.0) is None and b.age(1, 0.0) is None
    assert b.receive(fb.encode(report(5)), 10.0) == ""
    assert b.receive(fb.encode(report(6, 150)), 11.0) == ""
    assert b.latest(1, 11.5) == report(6, 150) and b.age(1, 11.5) == 0.5
    assert b.latest(1, 13.5) is None and b.last(1) == report(6, 150)  # stale, still known
    assert b.age(1, 14.0) > b.age(1, 13.5)
    assert b.accepted == 2 and b.refused == {}


def test_book_loss_spans_several_reports() -> None:
    """Three reports of 8 datagrams each (lost 0, 4, 2): the loss over the last 16 is their
    cumulative difference, 6 of 16, not the latest report's own 2 of 8."""
    b = book()
    assert b.loss(1, 0.0) is None
    reports = [(100, 0, 0.0), (108, 4, 0.5), (116, 6, 0.25)]  # (highest, cumulative, fraction)
    for n, (highest, lost, fraction) in enumerate(reports):
        r = report(n, highest, cumulative_lost=lost, fraction_lost=fraction)
        assert b.receive(fb.encode(r), 10.0 + n * 0.2) == ""
    assert b.loss(1, 10.5, span=16) == 6 / 16
    assert b.loss(1, 10.5, span=8) == 2 / 8  # far enough after one report
    assert b.loss(1, 12.3, span=16) == 0.25  # the older ones are stale: the latest alone
    assert b.loss(1, 20.0) is None


def test_book_refuses_by_reason() -> None:
    b = book(KEY)
    seal = lambda r: fb.encode(r, KEY)  # noqa: E731
    cases = [
        (seal(report(1, stream=2)), "unknown_stream"),
        (seal(report(1, highest=200)), "impossible"),  # not sent yet
        (seal(report(1, highest=99)), "impossible"),  # before this run's first
        (fb.encode(report(1)), "unauthenticated"),
        (seal(report(1))[:-1], "checksum"),  # cut short: its crc no longer matches
        (seal(report(10)), ""),
        (seal(report(10)), "duplicate"),  # a copy, or a replay inside the window
        (seal(report(9)), "superseded"),  # reordered on the way back
        (seal(report(2000)), ""),
        (seal(report(100)), "replay"),  # older than the window
    ]
    for data, why in cases:
        assert b.receive(data, 1.0) == why
    b.sent(1, 0, 5000)
    assert b.receive(seal(report(2001, highest=4000)), 1.0) == ""
    assert b.receive(seal(report(2002, highest=2000)), 1.0) == "regressed"
    assert b.receive(seal(report(2003, highest=3500)), 1.0) == ""  # back, inside the window
    assert b.accepted == 4
    assert sum(b.refused.values()) == 9 and set(b.refused) <= set(fb.REFUSALS)


def test_a_report_flood_costs_counters_not_memory() -> None:
    b = book()
    rng = np.random.default_rng(2)
    for i in range(20000):
        r = report(i, highest=int(rng.integers(0, SEQ_MOD)), stream=int(rng.integers(0, 65536)))
        b.receive(fb.encode(r) if i % 2 else rng.bytes(int(rng.integers(0, 60))), float(i))
    assert b.streams == [1] and len(b.refused) <= len(fb.REFUSALS)
    assert b.accepted + sum(b.refused.values()) == 20000


def test_reports_cross_real_udp_sockets() -> None:
    """A receiver socket reassembles signed datagrams from a connected sender socket, answers
    with a report to where they came from, and the sender's book keeps it."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        tx.connect(rx.getsockname())  # as the sender's socket is: it hears only that peer
        rx.settimeout(5.0)
        tx.settimeout(5.0)
        sent = [d for i, d in enumerate(frames(3, 0, 10, 500, KEY)) if i not in (5, 6, 7, 21)]
        for d in sent:
            tx.send(d)
        r = Reassembler(key=KEY)
        for _ in sent:
            data, addr = rx.recvfrom(2048)
            r.ingest(data, time.monotonic(), addr)
        ((stream, tracker, stats),) = r.heard()
        assert stats.source == tx.getsockname()
        rx.sendto(fb.encode(stats.report(stream, 1, tracker), KEY), stats.source)
        b = fb.ReportBook([3], KEY)
        b.sent(3, 500, 539)
        assert b.receive(tx.recv(2048), time.monotonic()) == ""
        got = b.latest(3, time.monotonic())
        assert (got.highest, got.cumulative_lost, got.frames) == (539, 4, 8)
        assert got.fraction_lost == pytest.approx(4 / 40, abs=1e-4)
        assert got.mean_burst == 0.0  # 40 datagrams: none settled past the reorder horizon


# --- real daemons ---------------------------------------------------------------------------


def wait_for(condition, what: str, timeout: float = 60.0):
    """Poll until ``condition()`` is truthy (a bound against hanging, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


@pytest.mark.slow
def test_reports_ride_the_reverse_path_and_go_stale_when_it_loses_them(tmp_path) -> None:
    from skimage import data as samples

    from semnet.client import request
    from semnet.testbed import LocalTestbed, by_label, metric, metric_totals

    photo = np.ascontiguousarray(samples.astronaut()[96:288, 128:384])
    one_thread = {"threads": 1}
    with LocalTestbed(
        tmp_path,
        impair="loss random 20%",
        seed=5,
        sender={**one_thread, "feedback_timeout": 2.0, "datagram_size": 200},
        receiver={**one_thread, "report_interval": 0.1},
        auth_key=b"feedback-test-key-0123456789abcdef",
    ) as bed:

        def totals(name: str) -> dict:
            return metric_totals(bed.metrics(name))

        def feedback(name: str, tx: dict | None = None) -> float:
            return metric(tx or totals("sender"), f"semnet_sender_feedback_{name}", stream="1")

        def reverse(name: str) -> int:
            return int(metric(totals("proxy"), name, direction="reverse"))

        def heard(tx: dict) -> int:
            kept = metric(tx, "semnet_sender_feedback_reports_total")
            return int(kept + metric(tx, "semnet_sender_feedback_refused_total"))

        tx = totals("sender")
        assert by_label(tx, "semnet_sender_feedback_refused_total", "reason") == dict.fromkeys(
            fb.REFUSALS, 0
        )
        assert (
            feedback("stale", tx) == 1.0 and metric(tx, "semnet_sender_feedback_reports_total") == 0
        )

        # Reports arrive, signed, through the proxy's reverse direction, and see the loss.
        answers = []
        for i in range(8):
            answers.append(bed.send(photo, f"a{i}.png"))
            if i >= 2 and feedback("fraction_lost") > 0:
                break
        tx = totals("sender")
        assert metric(tx, "semnet_sender_feedback_reports_total") > 0
        assert feedback("fraction_lost", tx) > 0 and feedback("stale", tx) == 0.0
        assert metric(tx, "semnet_sender_feedback_refused_total") == 0
        dropped = metric(
            totals("proxy"), "semnet_proxy_datagrams_dropped_total", direction="forward"
        )
        assert 0 < feedback("cumulative_lost", tx) <= dropped
        shown = [a["receiver_report"] for a in answers if a["receiver_report"] is not None]
        assert shown and all(0 <= r["fraction_lost"] <= 1 and r["stream"] == 1 for r in shown)

        # The reverse identity: every report the receiver sent reached the proxy, and every one
        # the proxy let through reached the sender.
        def sent_by_receiver() -> int:
            return int(metric(totals("receiver"), "semnet_receiver_reports_sent_total"))

        wait_for(
            lambda: sent_by_receiver() == reverse("semnet_proxy_datagrams_in_total"),
            "proxy intake",
        )
        wait_for(
            lambda: heard(totals("sender")) == reverse("semnet_proxy_datagrams_out_total"),
            "sender intake",
        )

        # The reverse path now loses every report: none arrives, the latest ages and goes stale.
        body = json.dumps({"reverse": "loss random 100%"}).encode()
        request(f"http://{bed.http['proxy']}/impairment", body, "PUT", timeout=10.0, key=bed.key)
        let_through = reverse("semnet_proxy_datagrams_out_total")
        wait_for(lambda: heard(totals("sender")) == let_through, "reports in flight")
        before = totals("sender")
        bed.send(photo, "b.png")
        wait_for(
            lambda: reverse("semnet_proxy_datagrams_dropped_total") > 0, "reports lost on the way"
        )
        after = totals("sender")
        assert heard(after) == heard(before) == let_through
        assert feedback("age_seconds", after) > feedback("age_seconds", before)
        wait_for(lambda: feedback("stale") == 1.0, "a stale report")
        assert bed.send(photo, "c.png")["receiver_report"] is None
        assert bed.accounting().closes  # reports are not in the data direction's identity


@pytest.mark.parametrize(
    ("cls", "key", "value", "ok"),
    [
        ("ReceiverConfig", "report_interval", 0, True),
        ("ReceiverConfig", "report_interval", 0.1, True),
        ("ReceiverConfig", "report_interval", 0.05, False),  # would outrun its numbering
        ("ReceiverConfig", "report_interval", -1, False),
        ("SenderConfig", "feedback_timeout", 0.5, True),
        ("SenderConfig", "feedback_timeout", 0, False),
    ],
)
def test_config_keys(cls: str, key: str, value: float, ok: bool) -> None:
    from semnet.config import load
    from semnet.daemons import config

    if ok:
        assert getattr(load(getattr(config, cls), {key: value}), key) == value
    else:
        with pytest.raises(ConfigError, match=key):
            load(getattr(config, cls), {key: value})
