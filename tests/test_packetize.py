"""Interleaving and datagram layout: lossless round trip, exact loss footprint, sizes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core.packetize import (
    check_payload,
    datagram_importance,
    deinterleave,
    depacketize,
    interleave,
    layout,
    packetize,
)
from semnet.core.partition import parse_spec, units
from semnet.core.quant import fit
from semnet.core.wire import HEADER_SIZE, Datagram, FrameDescriptor, QuantKind, parse
from semnet.errors import ConfigError, WireError

SPECS = ["channel:3", "spatial:2x3", "token:5", "intra-token:4", "patch:4x4", "spatial", "token"]


def descriptor(
    shape: tuple[int, int, int] = (16, 8, 12),
    partition: str = "patch:4x4",
    bits: int = 5,
    interleave: bool = True,
    seed: int = 1234,
    size: int = 200,
) -> FrameDescriptor:
    return FrameDescriptor(
        codec_id=1,
        image_h=shape[1] * 16,
        image_w=shape[2] * 16,
        latent=shape,
        quant=fit(QuantKind.ROUND, bits),
        partition=parse_spec(partition),
        interleave=interleave,
        seed=seed,
        datagram_size=size,
    )


def random_q(desc: FrameDescriptor, seed: int = 0) -> np.ndarray:
    high = 2**desc.quant.bits
    return np.random.default_rng(seed).integers(0, high, desc.latent, dtype=np.uint16)


def receive(packets: list[bytes]) -> list[Datagram]:
    datagrams = [parse(p) for p in packets]
    for dg in datagrams:
        check_payload(dg)
    return datagrams


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(st.integers(1, 16), st.integers(1, 10), st.integers(1, 10)),
    st.sampled_from(SPECS),
    st.integers(1, 16),
    st.booleans(),
    st.integers(0, 2**32 - 1),
    st.integers(HEADER_SIZE + 3, 400),
)
def test_lossless_round_trip(shape, partition, bits, interleave, seed, size) -> None:
    desc = descriptor(shape, partition, bits, interleave, seed, size)
    q = random_q(desc, seed)
    packets = packetize(q, desc, stream=2, frame=9, first_seq=2**32 - 3)
    assert len(packets) == layout(desc).count
    assert all(len(p) <= size for p in packets)
    datagrams = receive(packets)
    assert [dg.seq for dg in datagrams][:4] == [2**32 - 3, 2**32 - 2, 2**32 - 1, 0][: len(packets)]
    assert [dg.index for dg in datagrams] == list(range(len(packets)))
    got, mask = depacketize(datagrams, desc)
    assert got.dtype == np.uint16 and mask.all()
    np.testing.assert_array_equal(got, q)


@pytest.mark.parametrize("bits", range(1, 17))
@pytest.mark.parametrize("interleave", [False, True])
def test_every_bit_width(bits: int, interleave: bool) -> None:
    desc = descriptor(bits=bits, interleave=interleave)
    q = random_q(desc, bits)
    got, mask = depacketize(receive(packetize(q, desc, 0, 0, 0)), desc)
    assert mask.all()
    np.testing.assert_array_equal(got, q)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SPECS), st.booleans(), st.integers(0, 2**32 - 1))
def test_loss_footprint_is_exactly_the_dropped_datagrams(partition, interleave, seed) -> None:
    desc = descriptor(partition=partition, interleave=interleave, seed=seed, bits=7)
    q = random_q(desc, seed)
    datagrams = receive(packetize(q, desc, 0, 0, 0))
    gen = np.random.default_rng(seed)
    kept = [dg for dg in datagrams if gen.random() < 0.6]
    got, mask = depacketize(kept, desc)
    lay = layout(desc)
    expected = np.zeros(q.size, dtype=bool)
    for dg in kept:
        expected[lay.elements(dg.index)] = True
    np.testing.assert_array_equal(mask.reshape(-1), expected)
    np.testing.assert_array_equal(got[mask], q[mask])
    assert not got[~mask].any()
    lost = [dg for dg in datagrams if dg not in kept]
    assert (~mask).sum() == sum(lay.elements(dg.index).size for dg in lost)


def test_datagrams_carry_disjoint_runs_of_the_order() -> None:
    desc = descriptor()
    lay = layout(desc)
    parts = [lay.elements(i) for i in range(lay.count)]
    assert all(p.size == lay.per_datagram for p in parts[:-1])
    assert 1 <= parts[-1].size <= lay.per_datagram
    np.testing.assert_array_equal(np.concatenate(parts), lay.order)
    np.testing.assert_array_equal(np.sort(lay.order), np.arange(math.prod(desc.latent)))


@pytest.mark.parametrize("partition", SPECS)
def test_layout_order_is_the_interleaved_units(partition: str) -> None:
    desc = descriptor(partition=partition, seed=99)
    parts = units(desc.latent, desc.partition)
    np.testing.assert_array_equal(layout(desc).order, np.concatenate(interleave(parts, 99)))
    plain = replace(desc, interleave=False)
    np.testing.assert_array_equal(layout(plain).order, np.concatenate(parts))


@settings(max_examples=50)
@given(st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_interleave_inverse(n: int, seed: int) -> None:
    unit_list = [np.array([i, i + 1000]) for i in range(n)]
    sent = interleave(unit_list, seed)
    assert sorted(int(u[0]) for u in sent) == list(range(n))
    back = deinterleave(sent, seed)
    assert [int(u[0]) for u in back] == list(range(n))


def test_seed_determines_bytes() -> None:
    desc = descriptor(partition="token")
    q = random_q(desc)
    assert packetize(q, desc, 1, 2, 3) == packetize(q, desc, 1, 2, 3)
    other = replace(desc, seed=desc.seed + 1)
    assert not np.array_equal(layout(desc).order, layout(other).order)
    assert packetize(q, desc, 1, 2, 3) != packetize(q, other, 1, 2, 3)


def test_paper_sized_latent_fits_the_budget() -> None:
    desc = descriptor((64, 32, 48), "patch:4x4", bits=5, size=1200)
    packets = packetize(random_q(desc), desc, 0, 0, 0)
    assert len(packets) == math.ceil(64 * 32 * 48 * 5 / ((1200 - 52) * 8))
    assert all(len(p) <= 1200 for p in packets)
    assert all(len(p) == 1200 for p in packets[:-1])  # no wasted bytes but the last padding


def test_check_payload_rejects_wrong_length_and_count() -> None:
    desc = descriptor()
    dg = parse(packetize(random_q(desc), desc, 0, 0, 0)[0])
    with pytest.raises(WireError) as info:
        check_payload(replace(dg, payload=dg.payload[:-1]))
    assert info.value.reason == "payload_length"
    with pytest.raises(WireError) as info:
        check_payload(replace(dg, payload=dg.payload + b"\0"))
    assert info.value.reason == "payload_length"
    with pytest.raises(WireError) as info:
        check_payload(replace(dg, count=dg.count + 1))
    assert info.value.reason == "bad_field"


def test_shape_mismatch() -> None:
    desc = descriptor()
    with pytest.raises(ConfigError):
        packetize(np.zeros((2, 2, 2), dtype=np.uint16), desc, 0, 0, 0)


def test_datagram_importance_is_the_map_mean_over_each_datagrams_elements() -> None:
    desc = replace(descriptor(partition="patch:4x4", size=120), importance=True)
    c, h, w = desc.latent
    spatial = np.random.default_rng(3).random((h, w))
    values = datagram_importance(desc, spatial)
    lay = layout(desc)
    assert len(values) == lay.count
    for i, v in enumerate(values):
        expected = spatial.reshape(-1)[lay.elements(i) % (h * w)].mean()
        assert v == round(expected * 255)
    assert len(set(values)) > 1  # patches differ in importance
    q = random_q(desc)
    datagrams = receive(packetize(q, desc, 1, 0, 0, importance=values))
    assert [dg.importance for dg in datagrams] == values
    assert np.array_equal(depacketize(datagrams, desc)[0], q)  # payload unaffected


def test_channel_datagrams_cover_the_whole_map_so_importance_is_uniform() -> None:
    # 173 bytes: 120 of payload after header, descriptor and importance = 192 5-bit values,
    # exactly two of the 16 channels of 8 x 12 per datagram
    desc = replace(descriptor(partition="channel", size=HEADER_SIZE + 1 + 120), importance=True)
    assert desc.per_datagram == 2 * 8 * 12
    spatial = np.random.default_rng(4).random(desc.latent[1:])
    values = datagram_importance(desc, spatial)
    assert values == [round(spatial.mean() * 255)] * 8


def test_importance_must_be_given_per_datagram_exactly_when_described() -> None:
    plain = descriptor()
    desc = replace(plain, importance=True)
    q = random_q(desc)
    with pytest.raises(ConfigError, match="importance"):
        packetize(q, desc, 1, 0, 0)
    with pytest.raises(ConfigError, match="importance"):
        packetize(q, desc, 1, 0, 0, importance=[1])
    with pytest.raises(ConfigError, match="importance"):
        packetize(q, plain, 1, 0, 0, importance=[1] * layout(plain).count)
    with pytest.raises(ConfigError, match="importance map"):
        datagram_importance(desc, np.zeros((2, 2)))
