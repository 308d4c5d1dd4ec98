"""Bits on the wire by importance (paper 003, issue 18): bit-plane datagrams with a class byte,
a payload the crc may leave out, and the access node that flips bits by class."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from semnet.core import interface as itf
from semnet.core import packetize
from semnet.core.impair import Impairment, format_spec, parse_spec, spec_from_mapping
from semnet.core.wire import (
    HEADER_SIZE,
    Datagram,
    FrameDescriptor,
    PartitionSpec,
    QuantKind,
    QuantSpec,
    Scheme,
    _crc,
    encode,
    parse,
    peek_importance,
    peek_plane,
)
from semnet.errors import ConfigError, WireError

LATENT = (8, 12, 16)
PRESCRIBED = itf.Interface(np.tile([0.001, 0.01, 0.03, 0.1], (8, 1)))


def descriptor(**kw) -> FrameDescriptor:
    fields = dict(
        codec_id=3,
        image_h=192,
        image_w=256,
        latent=LATENT,
        quant=QuantSpec(QuantKind.UNIFORM, 4, -1.0, 1.0),
        partition=PartitionSpec(Scheme.CHANNEL, 1),
        interleave=True,
        seed=5,
        datagram_size=200,
        planes=True,
        payload_checked=False,
    )
    return FrameDescriptor(**{**fields, **kw})


def latent(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 16, LATENT).astype(np.uint16)


def frame(desc: FrameDescriptor, q: np.ndarray | None = None) -> list[bytes]:
    return packetize.packetize(latent() if q is None else q, desc, 1, 7, 100)


# --- wire --------------------------------------------------------------------------------------


def test_planes_go_msb_first_each_datagram_one_class() -> None:
    desc = descriptor()
    datagrams = [parse(d) for d in frame(desc)]
    runs = desc.runs
    assert len(datagrams) == 4 * runs and runs > 1
    assert [d.plane for d in datagrams] == [j for j in range(4) for _ in range(runs)]
    assert all(peek_plane(encode(d))[0] == d.plane for d in datagrams)


@pytest.mark.parametrize("importance", [False, True])
def test_bit_planes_round_trip(importance: bool) -> None:
    desc = descriptor(importance=importance, payload_checked=True)
    q = latent()
    values = None
    if importance:
        values = packetize.datagram_importance(desc, np.full(LATENT[1:], 0.5))
    parsed = [parse(d) for d in packetize.packetize(q, desc, 1, 7, 100, importance=values)]
    for dg in parsed:
        packetize.check_payload(dg)
    got, mask = packetize.depacketize(parsed, desc)
    assert np.array_equal(got, q) and mask.all()
    if importance:
        assert all(dg.importance == 128 for dg in parsed)
        assert peek_importance(encode(parsed[0])) == pytest.approx(128 / 255)


def test_a_lost_plane_leaves_the_other_planes_bits() -> None:
    desc = descriptor()
    q = latent()
    parsed = [parse(d) for d in frame(desc, q)]
    msb_only = [dg for dg in parsed if dg.plane == 0]
    got, mask = packetize.depacketize(msb_only, desc)
    assert not mask.any()  # no element has all its planes
    assert np.array_equal(got, q & 0b1000)  # but the MSBs are in place


def test_unchecked_payload_lets_flipped_bits_through_and_the_header_is_still_checked() -> None:
    data = bytearray(frame(descriptor())[0])
    data[-1] ^= 0x01
    assert parse(bytes(data)).payload[-1] != parse(frame(descriptor())[0]).payload[-1]
    data[HEADER_SIZE] ^= 0x01  # the class byte is covered
    with pytest.raises(WireError) as err:
        parse(bytes(data))
    assert err.value.reason == "checksum"


def test_checked_payload_refuses_a_flipped_bit() -> None:
    data = bytearray(frame(descriptor(payload_checked=True))[0])
    data[-1] ^= 0x01
    with pytest.raises(WireError) as err:
        parse(bytes(data))
    assert err.value.reason == "checksum"


def with_class(data: bytes, cls: int) -> bytes:
    buf = bytearray(data)
    buf[HEADER_SIZE] = cls
    struct.pack_into(">I", buf, 18, 0)
    struct.pack_into(">I", buf, 18, _crc(buf, HEADER_SIZE + 1))
    return bytes(buf)


def test_a_class_past_the_bits_is_unknown() -> None:
    with pytest.raises(WireError) as err:
        parse(with_class(frame(descriptor())[0], 4))
    assert err.value.reason == "unknown_class"


def test_a_class_that_is_not_the_datagrams_plane_is_unknown() -> None:
    dg = parse(with_class(frame(descriptor())[0], 2))  # datagram 0 carries plane 0
    with pytest.raises(WireError) as err:
        packetize.check_payload(dg)
    assert err.value.reason == "unknown_class"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"entropy": True}, "planes"),
        ({"authenticated": True}, "payload_check"),
    ],
)
def test_descriptor_refuses_what_cannot_be(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        descriptor(**kw)


def test_datagram_needs_its_class_exactly_when_planes() -> None:
    desc = descriptor()
    with pytest.raises(ConfigError, match="plane"):
        Datagram(1, 0, 0, 0, desc.runs * 4, desc, b"\0")
    with pytest.raises(ConfigError, match="plane"):
        Datagram(1, 0, 0, 0, desc.runs * 4, desc, b"\0", plane=4)


# --- the link spec -----------------------------------------------------------------------------


def test_link_spec_in_bit_error_mode_round_trips() -> None:
    spec = parse_spec("link rayleigh snr 10dB errors bits allocation weighted modulation bpsk")
    assert spec.link.bit_errors and spec.link.allocation == "weighted"
    assert parse_spec(format_spec(spec)) == spec
    mapped = spec_from_mapping({"link": {"channel": "awgn", "snr": "5dB", "errors": "bits"}})
    assert mapped.link.bit_errors and mapped.link.allocation == "match"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("link awgn snr 10dB errors bits power semantic", "power does not apply to errors bits"),
        ("link awgn snr 10dB allocation match", "allocation does not apply to packet errors"),
        ("link awgn snr 10dB errors bytes", "errors 'bytes' is not one of packets, bits"),
        ("link awgn snr 10dB errors bits modulation qam", "modulation 'qam'"),
    ],
)
def test_link_spec_refuses_mixed_modes(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_spec(text)


# --- the access node ---------------------------------------------------------------------------


def bits_model(snr_db: float = 5.0, extra: str = "", seed: int = 3) -> Impairment:
    return Impairment(parse_spec(f"link awgn snr {snr_db}dB errors bits {extra}"), seed, PRESCRIBED)


def test_bit_error_link_without_an_interface_is_refused() -> None:
    with pytest.raises(ConfigError, match="no interface"):
        Impairment(parse_spec("link awgn snr 5dB errors bits"), 1)
    model = Impairment(parse_spec("loss 1%"), 1)
    with pytest.raises(ConfigError, match="no interface"):
        model.set_spec(parse_spec("link awgn snr 5dB errors bits"))
    assert model.spec == parse_spec("loss 1%")  # nothing changed


def run(model: Impairment, datagrams: list[bytes]) -> list[bytes]:
    return [e.data for i, d in enumerate(datagrams) for e in model.process(d, i * 1e-3)]


def test_the_node_flips_important_classes_least_and_never_the_header() -> None:
    datagrams = frame(descriptor()) * 20
    model = bits_model(snr_db=3.0)
    out = run(model, datagrams)
    assert len(out) == len(datagrams)  # bits flip, nothing is lost
    c = model.counters
    rates = [c.class_flips[k] / c.class_bits[k] for k in range(4)]
    assert 0 < rates[0] < rates[1] < rates[2] < rates[3]  # the interface's order
    assert rates == pytest.approx(list(model.node.allocation.probs), rel=0.25, abs=2e-3)
    assert all(
        a[: HEADER_SIZE + 1] == b[: HEADER_SIZE + 1] for a, b in zip(datagrams, out, strict=True)
    )
    assert all(parse(d).plane == parse(o).plane for d, o in zip(datagrams, out, strict=True))


def test_the_flips_follow_the_seed() -> None:
    datagrams = frame(descriptor()) * 3
    assert run(bits_model(seed=9), datagrams) == run(bits_model(seed=9), datagrams)
    assert run(bits_model(seed=9), datagrams) != run(bits_model(seed=10), datagrams)


def test_datagrams_without_a_known_class_are_dropped_by_the_node() -> None:
    model = bits_model()
    whole = frame(descriptor(planes=False, payload_checked=True))
    wide = itf.Interface(np.full((8, 2), 0.05))  # two classes: planes 2 and 3 are unknown
    assert run(model, whole) == []
    model.set_interface(wide)
    assert len(run(model, frame(descriptor()))) == 2 * descriptor().runs
    assert model.counters.dropped_by_reason["class"] == len(whole) + 2 * descriptor().runs


def test_packet_loss_and_bit_errors_compose() -> None:
    datagrams = frame(descriptor()) * 50
    model = Impairment(parse_spec("loss 50% link awgn snr 5dB errors bits"), 4, PRESCRIBED)
    out = run(model, datagrams)
    assert 0.35 < len(out) / len(datagrams) < 0.65
    assert sum(model.counters.class_flips.values()) > 0


def test_rayleigh_blocks_vary_per_datagram() -> None:
    datagrams = frame(descriptor()) * 40
    model = Impairment(parse_spec("link rayleigh snr 10dB errors bits"), 2, PRESCRIBED)
    flips = []
    for d in datagrams:
        before = sum(model.counters.class_flips.values())
        model.process(d, 0.0)
        flips.append(sum(model.counters.class_flips.values()) - before)
    assert max(flips) > 0 and min(flips) == 0  # deep fades and good blocks


def test_by_position_classes_are_the_bit_positions() -> None:
    classes = itf.by_position(PRESCRIBED)
    assert classes.count == 4 and list(classes.sizes) == [8] * 4
    assert np.allclose(classes.eps, [0.001, 0.01, 0.03, 0.1])
    assert (classes.labels == np.arange(4)).all()
