"""Reassembler: completion in any order, deadlines, late and duplicate datagrams, caps, garbage."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core import wire
from semnet.core.packetize import packetize
from semnet.core.reassembly import AssembledFrame, Reassembler
from semnet.core.seqnum import SEQ_MOD, seq_add
from semnet.core.wire import (
    Datagram,
    FrameDescriptor,
    PartitionSpec,
    QuantKind,
    QuantSpec,
    Scheme,
)
from semnet.errors import ConfigError


def descriptor(seed: int = 0, latent: tuple[int, int, int] = (4, 8, 8)) -> FrameDescriptor:
    """8-bit values, 64 payload bytes per datagram: a (4, 8, 8) latent travels in 4 datagrams."""
    return FrameDescriptor(
        codec_id=1,
        image_h=64,
        image_w=64,
        latent=latent,
        quant=QuantSpec(QuantKind.ROUND, 8, -1.0, 1.0),
        partition=PartitionSpec(Scheme.CHANNEL),
        interleave=False,
        seed=seed,
        datagram_size=wire.HEADER_SIZE + 64,
    )


DESC = descriptor()


def frame_bytes(
    stream: int, frame: int, first_seq: int = 0, desc: FrameDescriptor = DESC
) -> list[bytes]:
    rng = np.random.default_rng(frame)
    q = rng.integers(0, 1 << desc.quant.bits, size=desc.latent, dtype=np.uint16)
    return packetize(q, desc, stream, frame, first_seq)


def check(r: Reassembler) -> None:
    """The invariants every scenario must end (and pass) through."""
    c = r.counters
    assert c.datagrams == c.accepted + c.duplicates + c.late + c.malformed
    assert c.malformed == sum(c.malformed_by_reason.values())
    assert 0 <= c.reordered <= c.accepted
    assert c.evicted_frames <= c.frames_incomplete
    assert r.pending_frames <= r.max_frames
    assert 0 <= r.buffered_bytes <= r.max_bytes
    assert (r.next_deadline() is None) == (r.pending_frames == 0)


def run(r: Reassembler, data: list[bytes], now: float = 0.0) -> list[AssembledFrame]:
    out: list[AssembledFrame] = []
    for d in data:
        out += r.ingest(d, now)
        check(r)
    return out


def test_count_matches_layout() -> None:
    assert len(frame_bytes(0, 0)) == 4


def test_in_order_frame_completes_on_last_datagram() -> None:
    r = Reassembler()
    data = frame_bytes(3, 77, first_seq=10)
    assert run(r, data[:-1]) == []
    assert r.pending_frames == 1
    assert r.buffered_bytes == sum(map(len, data[:-1]))
    (f,) = r.ingest(data[-1], 0.5)
    assert (f.stream, f.frame, f.count, f.received, f.missing) == (3, 77, 4, 4, 0)
    assert f.complete and f.descriptor == DESC
    assert (f.first_arrival, f.last_arrival) == (0.0, 0.5)
    assert [f.datagrams[i].payload for i in range(4)] == [wire.parse(d).payload for d in data]
    c = r.counters
    assert (c.datagrams, c.accepted, c.frames_complete, c.frames_incomplete) == (4, 4, 1, 0)
    assert (r.pending_frames, r.buffered_bytes, r.next_deadline()) == (0, 0, None)
    check(r)


@settings(max_examples=60, deadline=None)
@given(
    order=st.permutations(range(4)),
    dups=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 8)), max_size=6),
    first_seq=st.one_of(st.just(SEQ_MOD - 2), st.integers(0, SEQ_MOD - 1)),
)
def test_any_order_with_duplicates_delivers_once(
    order: list[int], dups: list[tuple[int, int]], first_seq: int
) -> None:
    data = frame_bytes(1, 5, first_seq)
    arrivals = list(order)
    for index, pos in dups:
        arrivals.insert(min(pos, len(arrivals)), index)
    r = Reassembler()
    delivered: list[AssembledFrame] = []
    seen: set[int] = set()
    highest = -1
    reordered = 0
    for step, index in enumerate(arrivals):
        out = r.ingest(data[index], step * 0.01)
        if index not in seen:
            seen.add(index)
            reordered += index < highest
            highest = max(highest, index)
            assert len(out) == (len(seen) == 4)  # delivered the moment the last one lands
        else:
            assert out == []
        delivered += out
        check(r)
    (f,) = delivered
    assert f.complete and f.received == 4 and f.missing == 0
    assert {i: dg.seq for i, dg in f.datagrams.items()} == {
        i: seq_add(first_seq, i) for i in range(4)
    }
    c = r.counters
    assert c.datagrams == len(arrivals)
    assert (c.accepted, c.duplicates, c.late, c.malformed) == (4, len(dups), 0, 0)
    assert c.reordered == reordered
    assert (c.frames_complete, c.frames_incomplete, c.evicted_frames) == (1, 0, 0)


def test_deadline_delivers_incomplete_then_late() -> None:
    r = Reassembler(deadline=1.0)
    data = frame_bytes(0, 9)
    assert run(r, [data[0]], 10.0) == []
    assert r.ingest(data[2], 10.3) == []
    assert r.next_deadline() == 11.0
    assert r.poll(10.99) == []
    (f,) = r.poll(11.0)
    assert not f.complete
    assert (f.received, f.missing, sorted(f.datagrams)) == (2, 2, [0, 2])
    assert (f.first_arrival, f.last_arrival) == (10.0, 10.3)
    assert r.poll(20.0) == []
    assert run(r, [data[1], data[3]], 11.5) == []
    c = r.counters
    assert (c.accepted, c.late, c.frames_incomplete, c.frames_complete) == (2, 2, 1, 0)
    assert r.pending_frames == 0
    check(r)


def test_offer_expires_due_frames_first_so_polling_cadence_does_not_matter() -> None:
    r = Reassembler(deadline=0.5)
    a, b = frame_bytes(0, 1), frame_bytes(0, 2, first_seq=4)
    run(r, a[:3], 0.0)
    out = r.ingest(b[0], 0.6)  # frame 1 is due: delivered before b[0] is taken
    assert [(f.frame, f.complete, f.missing) for f in out] == [(1, False, 1)]
    assert r.ingest(a[3], 0.6) == []
    assert r.counters.late == 1
    check(r)


def test_clock_stepping_back_stands_still() -> None:
    r = Reassembler(deadline=1.0)
    data = frame_bytes(0, 1)
    r.ingest(data[0], 5.0)
    r.ingest(data[1], 4.0)
    assert r.next_deadline() == 6.0
    (f,) = r.poll(6.0)
    assert (f.first_arrival, f.last_arrival) == (5.0, 5.0)


def test_retransmitted_frame_after_completion_is_late() -> None:
    r = Reassembler()
    (f,) = run(r, frame_bytes(2, 40, first_seq=0))
    assert f.complete
    assert run(r, frame_bytes(2, 40, first_seq=4)) == []
    c = r.counters
    assert (c.accepted, c.late, c.duplicates, c.frames_complete) == (4, 4, 0, 1)
    check(r)


def test_recent_set_is_bounded_fifo() -> None:
    r = Reassembler(recent=2)
    for frame in range(3):
        run(r, frame_bytes(0, frame, first_seq=4 * frame))
    # frame 0 fell out of the 2 remembered keys: its datagrams start a new frame
    assert run(r, frame_bytes(0, 0, first_seq=12)[:1]) == []
    assert r.pending_frames == 1
    # frame 2 is still remembered
    assert run(r, frame_bytes(0, 2, first_seq=13)[:1]) == []
    assert r.counters.late == 1
    check(r)


def test_inconsistent_descriptor_or_count_is_malformed() -> None:
    r = Reassembler()
    data = frame_bytes(0, 3)
    run(r, data[:2])
    other = frame_bytes(0, 3, first_seq=2, desc=descriptor(seed=99))
    assert run(r, [other[2]]) == []
    dg = wire.parse(data[3])
    recounted = Datagram(dg.stream, 7, dg.frame, dg.index, 5, dg.descriptor, dg.payload)
    assert r.offer(recounted, len(data[3]), 0.0) == []
    c = r.counters
    assert c.malformed_by_reason == {"inconsistent": 2}
    assert (c.accepted, c.malformed) == (2, 2)
    # the stream tracker did not see the rejected seqs: the genuine ones still count
    (f,) = run(r, data[2:])
    assert f.complete
    check(r)


def test_seq_flagged_duplicate_by_stream_tracker_is_dropped() -> None:
    r = Reassembler()
    run(r, frame_bytes(0, 1, first_seq=100))
    # a different frame reusing seq 101 (already seen on stream 0)
    assert run(r, frame_bytes(0, 2, first_seq=101)[:1]) == []
    c = r.counters
    assert (c.duplicates, c.late, r.pending_frames) == (1, 0, 0)
    check(r)


def test_single_datagram_frame_completes_at_once() -> None:
    small = descriptor(latent=(1, 8, 8))
    r = Reassembler()
    (data,) = frame_bytes(4, 1, desc=small)
    (f,) = r.ingest(data, 0.0)
    assert f.complete and f.count == 1
    check(r)


def test_flush_delivers_everything_pending() -> None:
    r = Reassembler()
    run(r, frame_bytes(0, 1)[:2] + frame_bytes(1, 1)[:1])
    out = r.flush()
    assert [(f.stream, f.frame, f.received, f.complete) for f in out] == [
        (0, 1, 2, False),
        (1, 1, 1, False),
    ]
    assert (r.pending_frames, r.buffered_bytes, r.flush()) == (0, 0, [])
    assert r.counters.frames_incomplete == 2
    check(r)


def bogus(stream: int, frame: int, seq: int, template: Datagram) -> bytes:
    """First datagram of a frame of 4 whose other three never come."""
    t = template
    return wire.encode(Datagram(stream, seq, frame, 0, t.count, t.descriptor, t.payload))


def test_flood_is_bounded_and_legit_frame_still_completes() -> None:
    max_frames = 32
    template = wire.parse(frame_bytes(0, 0)[0])
    r = Reassembler(max_frames=max_frames, max_bytes=1 << 20, max_stream_frames=max_frames)
    legit = frame_bytes(1, 5)
    delivered: list[AssembledFrame] = []
    n = 10_000
    for i in range(n):
        delivered += r.ingest(bogus(7, 1000 + i, i, template), i * 1e-6)
        if i % 5 == 0 and i // 5 < len(legit):
            delivered += r.ingest(legit[i // 5], i * 1e-6)
        assert r.pending_frames <= max_frames
        assert r.buffered_bytes <= r.max_bytes
    complete = [f for f in delivered if f.complete]
    assert [(f.stream, f.frame) for f in complete] == [(1, 5)]
    c = r.counters
    assert c.evicted_frames == n - max_frames
    assert c.frames_incomplete == c.evicted_frames
    assert c.accepted == n + len(legit)
    check(r)


def test_byte_cap_evicts_oldest() -> None:
    template = wire.parse(frame_bytes(0, 0)[0])
    size = len(bogus(7, 0, 0, template))
    r = Reassembler(max_frames=1000, max_bytes=10 * size)
    out = []
    for i in range(500):
        out += r.ingest(bogus(7, i, i, template), 0.0)
        assert r.buffered_bytes <= 10 * size
    assert r.pending_frames == 10
    assert [f.frame for f in out] == list(range(490))
    assert r.counters.evicted_frames == 490
    check(r)


def test_stream_trackers_are_bounded() -> None:
    r = Reassembler(max_streams=4)
    for stream in range(10):
        run(r, frame_bytes(stream, 1)[:1])
    assert r.counters.evicted_streams == 6
    assert r.tracker(0) is None
    tracker = r.tracker(9)
    assert tracker is not None and tracker.received == 1
    check(r)


def test_truncated_and_corrupted_bytes_counted_by_reason() -> None:
    r = Reassembler()
    good = frame_bytes(0, 1)[0]
    short = wire.parse(good)
    payload_short = wire.encode(
        Datagram(0, 0, 1, 0, short.count, short.descriptor, short.payload[:-1])
    )
    flipped = bytearray(good)
    flipped[-1] ^= 0x40
    run(r, [good[:10], good[:-1], bytes(flipped), payload_short, b""])
    assert r.counters.malformed_by_reason == {
        "truncated": 2,
        "checksum": 2,
        "payload_length": 1,
    }
    assert (r.counters.accepted, r.pending_frames) == (0, 0)
    check(r)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    r = Reassembler()
    assert r.ingest(data, 0.0) == []
    assert r.counters.malformed == 1
    check(r)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_mix_keeps_every_invariant(seed: int) -> None:
    """Several streams and frames, loss, duplicates, reorder, garbage, clock jumps, tight caps."""
    rng = random.Random(seed)
    r = Reassembler(deadline=0.05, max_frames=6, max_bytes=12 * 116, recent=8, max_streams=2)
    pool: list[bytes] = []
    for stream in range(3):
        for frame in range(6):
            pool += frame_bytes(stream, frame, first_seq=seq_add(SEQ_MOD - 10, 4 * frame))
    arrivals = [d for d in pool if rng.random() > 0.2]
    arrivals += rng.choices(pool, k=len(pool) // 4)
    rng.shuffle(arrivals)
    now = 0.0
    delivered: list[AssembledFrame] = []
    for d in arrivals:
        now += rng.choice([0.0, 0.001, 0.02])
        if rng.random() < 0.05:
            d = bytes(rng.getrandbits(8) for _ in range(rng.randrange(80)))
        delivered += r.ingest(d, now)
        if rng.random() < 0.1:
            delivered += r.poll(now)
        check(r)
    delivered += r.flush()
    c = r.counters
    assert c.accepted == sum(f.received for f in delivered)
    assert c.frames_complete == sum(f.complete for f in delivered)
    assert c.frames_incomplete == len(delivered) - c.frames_complete
    assert all(f.received == f.count for f in delivered if f.complete)
    assert all(0 < f.received < f.count for f in delivered if not f.complete)
    check(r)


def test_bad_config_rejected() -> None:
    with pytest.raises(ConfigError, match="deadline"):
        Reassembler(deadline=0)
    with pytest.raises(ConfigError, match="max_frames"):
        Reassembler(max_frames=0)


# --- caps per stream, announced frames, sequence edge cases -----------------------------------


def test_flood_on_one_stream_evicts_its_own_frames() -> None:
    template = wire.parse(frame_bytes(0, 0)[0])
    r = Reassembler(max_frames=64, max_stream_frames=4)
    legit = frame_bytes(1, 5)
    out = run(r, legit[:2])
    for i in range(1000):
        out += r.ingest(bogus(7, 1000 + i, i, template), 0.0)
        assert r.pending_frames <= 5
    out += run(r, legit[2:])
    assert [(f.stream, f.frame) for f in out if f.complete] == [(1, 5)]
    assert r.counters.evicted_by_reason == {"max_stream_frames": 1000 - 4}
    check(r)


def test_announced_frames_are_evicted_last() -> None:
    """A flood over many streams fills the global cap; the frame a sender announced survives."""
    template = wire.parse(frame_bytes(0, 0)[0])
    r = Reassembler(max_frames=8, max_stream_frames=2)
    r.announce(1, 5, 0)
    legit = frame_bytes(1, 5)
    out = run(r, legit[:1])
    for i in range(500):
        out += r.ingest(bogus(100 + i % 50, i, i, template), 0.0)
    out += run(r, legit[1:])
    assert [(f.stream, f.frame) for f in out if f.complete] == [(1, 5)]
    assert r.counters.evicted_by_reason["max_frames"] > 0
    check(r)


def test_announce_of_a_restarted_sender_forgets_the_stream_state() -> None:
    """Seqs that go back (a restart) would be duplicates within the window; announced, they
    start a new epoch instead."""
    r = Reassembler()
    run(r, frame_bytes(0, 1, first_seq=100))
    assert run(r, frame_bytes(0, 2, first_seq=101)[:1]) == []
    assert r.counters.duplicates == 1
    r.announce(0, 3, 101)
    (f,) = run(r, frame_bytes(0, 3, first_seq=101))
    assert f.complete and r.tracker(0).received == 4
    r.announce(0, 4, 105)  # ahead: a live sender, nothing to forget
    assert r.tracker(0).received == 4


def test_huge_jump_resyncs_and_keeps_delivering() -> None:
    r = Reassembler()
    run(r, frame_bytes(0, 1, first_seq=10))
    jump = seq_add(10, 2**31 - 1)
    (f,) = run(r, frame_bytes(0, 2, first_seq=jump))
    assert f.complete
    tracker = r.tracker(0)
    assert (tracker.jumps, tracker.resyncs) == (1, 1)
    (g,) = run(r, frame_bytes(0, 3, first_seq=seq_add(jump, 4)))
    assert g.complete and tracker.in_order == 4 + 2 + 4  # the jump and its resync apart
    check(r)


def test_reordered_beyond_the_window_is_still_placed_or_late() -> None:
    r = Reassembler(deadline=10.0)
    first = frame_bytes(0, 1, first_seq=0)
    run(r, first[:3])
    for n in range(2, 700):  # 2796 datagrams later, far beyond the 1024-seq window
        run(r, frame_bytes(0, n, first_seq=4 * n))
    assert r.is_pending(0, 1)
    (f,) = r.ingest(first[3], 0.0)
    assert (f.frame, f.complete) == (1, True)
    assert r.ingest(first[3], 0.0) == [] and r.counters.late == 1
    check(r)
