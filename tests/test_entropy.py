"""Entropy coding per datagram: the coder (core.entropy) and coded frames (core.coded).

Round trips on random latents and tables, every datagram within its size, a lost datagram
losing exactly its run, and every malformed payload rejected by name while the rest decodes.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core import coded, entropy
from semnet.core.entropy import EntropyTables
from semnet.core.packetize import layout
from semnet.core.partition import parse_spec
from semnet.core.quant import fit
from semnet.core.reassembly import Reassembler
from semnet.core.wire import Datagram, FrameDescriptor, QuantKind, encode, parse
from semnet.errors import ConfigError, WireError

BITS = 4


def tables(channels: int = 6, seed: int = 0) -> EntropyTables:
    """Peaked, different per channel: like a trained prior, some channels nearly certain."""
    rng = np.random.default_rng(seed)
    k = np.arange(1 << BITS) - (1 << BITS) // 2
    widths = rng.uniform(0.2, 3.0, channels)
    return EntropyTables(np.exp(-np.abs(k)[None, :] / widths[:, None]))


def latent(desc: FrameDescriptor, t: EntropyTables, seed: int = 1) -> np.ndarray:
    """Symbols drawn from the tables themselves, so the coder meets its own statistics."""
    rng = np.random.default_rng(seed)
    c, h, w = desc.latent
    p = np.exp(-t.cost * np.log(2))
    p /= p.sum(axis=1, keepdims=True)
    return np.stack([rng.choice(1 << BITS, (h, w), p=p[i]) for i in range(c)]).astype(np.uint16)


def descriptor(
    shape=(6, 9, 11), partition="channel", interleave=True, size=120, importance=False
) -> FrameDescriptor:
    return FrameDescriptor(
        codec_id=7,
        image_h=shape[1] * 16,
        image_w=shape[2] * 16,
        latent=shape,
        quant=fit(QuantKind.ROUND, BITS),
        partition=parse_spec(partition),
        interleave=interleave,
        seed=99,
        datagram_size=size,
        importance=importance,
        entropy=True,
    )


def send(desc, q, t, **kw) -> list[bytes]:
    return coded.packetize(q, desc, t, stream=1, frame=4, first_seq=10, **kw)


def received(packets: list[bytes]) -> list[Datagram]:
    out = []
    for data in packets:
        dg = parse(data)
        coded.check_payload(dg)
        out.append(dg)
    return out


# --- the coder ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.integers(0, 2**32 - 1))
def test_coder_round_trips_any_run(n: int, seed: int) -> None:
    t = tables()
    rng = np.random.default_rng(seed)
    symbols = rng.integers(0, t.levels, n).astype(np.uint16)
    channels = rng.integers(0, t.channels, n)
    data = entropy.encode(symbols, channels, t)
    assert len(data) % 4 == 0
    np.testing.assert_array_equal(entropy.decode(data, channels, t), symbols)


def test_likely_symbols_cost_fewer_bytes_than_fixed_width() -> None:
    t = tables()
    desc = descriptor()
    q = latent(desc, t)
    channels = np.repeat(np.arange(6), 99)
    data = entropy.encode(q.reshape(-1), channels, t)
    assert len(data) < q.size * BITS / 8
    assert abs(len(data) * 8 - t.bits(q.reshape(-1), channels).sum()) < 96


BAD_TABLES = [
    np.ones(4),
    np.ones((2, 0)),
    -np.ones((2, 4)),
    np.zeros((2, 4)),
    np.full((1, 2), np.nan),
]


@pytest.mark.parametrize("pmf", BAD_TABLES)
def test_bad_tables_are_refused(pmf) -> None:
    with pytest.raises(ConfigError):
        EntropyTables(pmf)


def test_decode_refuses_streams_that_are_not_exactly_the_run() -> None:
    t = tables()
    rng = np.random.default_rng(3)
    symbols = rng.integers(0, t.levels, 200).astype(np.uint16)
    channels = rng.integers(0, t.channels, 200)
    data = entropy.encode(symbols, channels, t)
    bad = {
        "not words": data[:-1],
        "truncated": data[:-4],
        "extra word": data + b"\x01\x00\x00\x00",
        "zero word at the end": data[:-4] + b"\0\0\0\0",
    }
    for why, stream in bad.items():
        with pytest.raises(WireError) as info:
            entropy.decode(stream, channels, t)
        assert info.value.reason == "entropy", why
    with pytest.raises(WireError):  # fewer symbols than were coded
        entropy.decode(data, channels[:150], t)
    with pytest.raises(WireError):  # a channel the tables lack
        entropy.decode(data, channels + t.channels, t)


# --- coded frames ------------------------------------------------------------------------------


@pytest.mark.parametrize("partition", ["channel", "spatial:2x3", "token", "patch:3x3"])
@pytest.mark.parametrize("interleave", [True, False])
def test_coded_frame_round_trips_and_fills_its_datagrams(partition: str, interleave: bool) -> None:
    t = tables()
    desc = descriptor(partition=partition, interleave=interleave)
    q = latent(desc, t)
    packets = send(desc, q, t)
    assert all(len(p) <= desc.datagram_size for p in packets)
    assert len(packets) > 2
    # greedy cutting: every datagram but the last is nearly full
    assert min(len(p) for p in packets[:-1]) >= desc.datagram_size - 24
    got, mask, dropped = coded.depacketize(received(packets), desc, t)
    np.testing.assert_array_equal(got, q)
    assert mask.all() and not dropped


def test_runs_tile_the_send_order() -> None:
    t = tables()
    desc = descriptor()
    dgs = received(send(desc, latent(desc, t), t))
    runs = [struct.unpack_from(">II", dg.payload) for dg in dgs]
    starts = [s for s, _ in runs]
    assert starts[0] == 0
    assert all(s + n == nxt for (s, n), nxt in zip(runs, starts[1:], strict=False))
    assert runs[-1][0] + runs[-1][1] == 6 * 9 * 11


@pytest.mark.parametrize("lost", [[0], [1, 3], [-1]])
def test_a_lost_datagram_loses_exactly_its_run(lost: list[int]) -> None:
    t = tables()
    desc = descriptor(partition="spatial:2x2")
    q = latent(desc, t)
    dgs = received(send(desc, q, t))
    gone = {dgs[i].index for i in lost}
    got, mask, _ = coded.depacketize([d for d in dgs if d.index not in gone], desc, t)
    order = layout(desc).order
    missing = np.zeros(q.size, bool)
    for d in dgs:
        if d.index in gone:
            start, n = struct.unpack_from(">II", d.payload)
            missing[order[start : start + n]] = True
    np.testing.assert_array_equal(mask.reshape(-1), ~missing)
    np.testing.assert_array_equal(got.reshape(-1)[~missing], q.reshape(-1)[~missing])


def test_importance_is_one_byte_per_run() -> None:
    t = tables()
    desc = descriptor(importance=True, partition="spatial")
    spatial = np.linspace(0, 1, 99).reshape(9, 11)
    dgs = received(send(desc, latent(desc, t), t, spatial=spatial))
    order = layout(desc).order
    for d in dgs:
        start, n = struct.unpack_from(">II", d.payload)
        mean = spatial.reshape(-1)[order[start : start + n] % 99].mean()
        assert d.importance == round(mean * 255)
    with pytest.raises(ConfigError):
        send(desc, latent(desc, t), t)


def test_sender_refuses_what_the_tables_cannot_code() -> None:
    t = tables()
    desc = descriptor()
    with pytest.raises(ConfigError):
        send(desc, latent(desc, t), tables(channels=5))
    with pytest.raises(ConfigError):
        send(replace(desc, entropy=False), latent(desc, t), t)
    with pytest.raises(ConfigError):
        send(desc, latent(desc, t)[:, :4], t)


def _with_payload(dg: Datagram, payload: bytes) -> Datagram:
    return parse(encode(replace(dg, payload=payload)))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "payload_length"),
        (struct.pack(">II", 0, 5)[:6], "payload_length"),  # no whole run header
        (struct.pack(">II", 0, 5) + b"\1\0\0", "payload_length"),  # not whole words
        (struct.pack(">II", 0, 0) + b"\1\0\0\0", "bad_field"),  # empty run
        (struct.pack(">II", 594, 1) + b"\1\0\0\0", "bad_field"),  # starts past the latent
        (struct.pack(">II", 590, 5) + b"\1\0\0\0", "bad_field"),  # runs past the latent
    ],
)
def test_check_payload_names_what_is_wrong(payload: bytes, reason: str) -> None:
    t = tables()
    desc = descriptor()
    dg = _with_payload(received(send(desc, latent(desc, t), t))[0], payload)
    with pytest.raises(WireError) as info:
        coded.check_payload(dg)
    assert info.value.reason == reason


def test_a_run_may_not_claim_more_symbols_than_its_size_allows() -> None:
    big = descriptor(shape=(64, 64, 64), size=100)
    dg = Datagram(1, 0, 0, 0, 1, big, struct.pack(">II", 0, 64 * 100 + 1) + b"\1\0\0\0")
    with pytest.raises(WireError) as info:
        coded.check_payload(parse(encode(dg)))
    assert info.value.reason == "payload_length"


def test_a_corrupt_stream_is_dropped_and_counted_while_the_rest_decodes() -> None:
    t = tables()
    desc = descriptor()
    q = latent(desc, t)
    dgs = received(send(desc, q, t))
    header, stream = dgs[1].payload[:8], dgs[1].payload[8:]
    dgs[1] = _with_payload(dgs[1], header + stream[:-4])  # a forged, shorter stream
    got, mask, dropped = coded.depacketize(dgs, desc, t)
    assert dropped == Counter(entropy=1)
    full, _, _ = coded.depacketize([d for i, d in enumerate(dgs) if i != 1], desc, t)
    np.testing.assert_array_equal(got, full)
    assert mask.sum() == q.size - struct.unpack_from(">II", header)[1]


def test_overlapping_runs_are_dropped_before_decoding() -> None:
    """A forged datagram re-claiming decoded elements (e.g. the whole latent, many times over)
    must not buy decoding work: runs that overlap an earlier one are dropped unread."""
    t = tables()
    desc = descriptor()
    q = latent(desc, t)
    dgs = received(send(desc, q, t))
    greedy = replace(dgs[-1], payload=struct.pack(">II", 0, q.size) + b"\1\0\0\0")
    got, mask, dropped = coded.depacketize([*dgs, greedy, greedy], desc, t)
    np.testing.assert_array_equal(got, q)
    assert mask.all() and dropped == Counter(overlap=2)


def test_tables_that_do_not_fit_drop_every_datagram_by_name() -> None:
    t = tables()
    desc = descriptor()
    dgs = received(send(desc, latent(desc, t), t))
    _, mask, dropped = coded.depacketize(dgs, desc, tables(channels=4))
    assert not mask.any() and dropped == Counter(entropy_table=len(dgs))


def test_reassembler_counts_malformed_coded_payloads() -> None:
    t = tables()
    desc = descriptor()
    dgs = received(send(desc, latent(desc, t), t))
    r = Reassembler(deadline=1.0)
    bad = replace(dgs[0], payload=struct.pack(">II", 0, 0) + b"\1\0\0\0")
    r.ingest(encode(bad), 0.0)
    for d in dgs[1:]:
        r.ingest(encode(d), 0.0)
    assert r.counters.malformed_by_reason == {"bad_field": 1}
    assert r.counters.accepted == len(dgs) - 1
    r.counters.reclassify_malformed("entropy", 2)
    assert r.counters.accepted == len(dgs) - 3
    assert r.counters.malformed == 3


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_fuzzed_payloads_raise_only_wire_errors(junk: bytes) -> None:
    t = tables()
    desc = descriptor()
    dg = Datagram(1, 0, 0, 0, 1, desc, junk)
    try:
        coded.check_payload(dg)
    except WireError:
        return
    _, _, dropped = coded.depacketize([dg], desc, t)
    assert set(dropped) <= {"entropy"}
