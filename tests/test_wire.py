"""Wire format: round trips, strict rejection of every malformed shape, binary fixtures."""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core.wire import (
    HEADER_SIZE,
    MAX_DATAGRAM,
    Datagram,
    FrameDescriptor,
    PartitionSpec,
    QuantKind,
    QuantSpec,
    Scheme,
    encode,
    ends_frame,
    parse,
    peek_importance,
)
from semnet.errors import ConfigError, WireError

FIXTURES = Path(__file__).parent / "fixtures" / "wire"

DESC = FrameDescriptor(
    codec_id=7,
    image_h=512,
    image_w=768,
    latent=(64, 32, 48),
    quant=QuantSpec(QuantKind.UNIFORM, 5, -3.25, 4.5),
    partition=PartitionSpec(Scheme.PATCH, 4, 4),
    interleave=True,
    seed=0xDEADBEEF,
    datagram_size=1200,
)
DG = Datagram(
    stream=3, seq=4_000_000_000, frame=77, index=2, count=9, descriptor=DESC, payload=b"\xa5" * 40
)


def reseal(data: bytes | bytearray) -> bytes:
    """Recompute the crc so a deliberately malformed field reaches the field checks."""
    buf = bytearray(data)
    buf[18:22] = b"\0\0\0\0"
    struct.pack_into(">I", buf, 18, zlib.crc32(buf))
    return bytes(buf)


def patched(offset: int, fmt: str, value: float) -> bytes:
    buf = bytearray(encode(DG))
    struct.pack_into(fmt, buf, offset, value)
    return reseal(buf)


def reason(data: bytes) -> str:
    with pytest.raises(WireError) as info:
        parse(data)
    return info.value.reason


@st.composite
def datagrams(draw: st.DrawFn) -> Datagram:
    u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
    bits = draw(st.integers(1, 16))
    lo = draw(st.floats(-(2.0**100), 2.0**100, width=32))
    hi = draw(st.floats(lo, 2.0**127, width=32, exclude_min=True))
    scheme = draw(st.sampled_from(Scheme))
    b = (
        1
        if scheme in (Scheme.CHANNEL, Scheme.TOKEN, Scheme.INTRA_TOKEN)
        else draw(st.integers(1, 255))
    )
    desc = FrameDescriptor(
        codec_id=draw(u16),
        image_h=draw(u16),
        image_w=draw(u16),
        latent=(draw(st.integers(1, 64)), draw(st.integers(1, 256)), draw(st.integers(1, 256))),
        quant=QuantSpec(draw(st.sampled_from(QuantKind)), bits, lo, hi),
        partition=PartitionSpec(scheme, draw(st.integers(1, 255)), b),
        interleave=draw(st.booleans()),
        seed=draw(u32),
        datagram_size=draw(st.integers(1200, MAX_DATAGRAM)),
    )
    count = draw(st.integers(1, 0xFFFF))
    return Datagram(
        stream=draw(u16),
        seq=draw(u32),
        frame=draw(u32),
        index=draw(st.integers(0, count - 1)),
        count=count,
        descriptor=desc,
        payload=draw(st.binary(max_size=1200 - HEADER_SIZE)),
    )


@given(datagrams())
def test_round_trip(dg: Datagram) -> None:
    data = encode(dg)
    assert len(data) == HEADER_SIZE + len(dg.payload)
    back = parse(data)
    assert back == dg
    assert encode(back) == data


def test_layout_is_the_documented_one() -> None:
    data = encode(DG)
    head = struct.unpack_from(">BBBBHHHIII", data)
    assert head[:9] == (0x53, 1, 1, Scheme.PATCH, 3, 2, 9, 4_000_000_000, 77)
    assert head[9] == zlib.crc32(data[:18] + b"\0" * 4 + data[22:])
    desc = struct.unpack_from(">HHHHHHBBffBBIH", data, 22)
    assert desc == (7, 512, 768, 64, 32, 48, 1, 5, -3.25, 4.5, 4, 4, 0xDEADBEEF, 1200)
    assert data[HEADER_SIZE:] == DG.payload


def test_header_is_small() -> None:
    assert HEADER_SIZE == 52
    assert HEADER_SIZE <= 0.05 * 1200


def test_lo_hi_are_float32_so_round_trip_is_exact() -> None:
    spec = QuantSpec(QuantKind.UNIFORM, 8, 0.1, 0.3)
    assert spec.lo == struct.unpack(">f", struct.pack(">f", 0.1))[0] != 0.1
    dg = replace(DG, descriptor=replace(DESC, quant=spec))
    assert parse(encode(dg)) == dg


def test_every_prefix_is_truncated_or_rejected() -> None:
    data = encode(DG)
    for n in range(HEADER_SIZE):
        assert reason(data[:n]) == "truncated"
    for n in range(HEADER_SIZE, len(data)):
        assert reason(data[:n]) == "checksum"


def test_oversized() -> None:
    assert reason(bytes([0x53, 1]) + bytes(MAX_DATAGRAM)) == "oversized"
    small = replace(DESC, datagram_size=100)
    data = reseal(encode(replace(DG, descriptor=small, payload=b"")) + bytes(49))
    assert reason(data) == "oversized"
    with pytest.raises(WireError, match="oversized"):
        encode(replace(DG, descriptor=small, payload=bytes(49)))


def test_magic_and_version_are_reported_before_checksum() -> None:
    data = bytearray(encode(DG))
    data[0] = 0x54
    assert reason(bytes(data)) == "bad_magic"
    data[0], data[1] = 0x53, 2
    assert reason(bytes(data)) == "bad_version"


@pytest.mark.parametrize("flags", [0x40, 0x80, 0xFF])
def test_unknown_flags(flags: int) -> None:
    assert reason(patched(2, ">B", flags)) == "bad_flags"


def test_interleave_flag() -> None:
    assert parse(patched(2, ">B", 0)).descriptor.interleave is False


BAD_FIELDS = [
    (3, ">B", 5),  # scheme
    (3, ">B", 255),
    (8, ">H", 0),  # count 0
    (6, ">H", 9),  # index == count
    (28, ">H", 0),  # latent C
    (30, ">H", 0),  # latent h
    (32, ">H", 0),  # latent w
    (28, ">H", 0xFFFF),  # latent too large for the element cap
    (34, ">B", 3),  # quant kind
    (35, ">B", 0),  # bits
    (35, ">B", 17),
    (36, ">f", float("nan")),  # lo
    (40, ">f", float("inf")),  # hi
    (40, ">f", -3.25),  # hi == lo
    (40, ">f", -4.0),  # hi < lo
    (44, ">B", 0),  # partition a
    (45, ">B", 0),  # partition b
    (50, ">H", HEADER_SIZE + 2),  # datagram_size too small
    (50, ">H", MAX_DATAGRAM + 1),
]


@pytest.mark.parametrize(("offset", "fmt", "value"), BAD_FIELDS)
def test_bad_fields(offset: int, fmt: str, value: float) -> None:
    assert reason(patched(offset, fmt, value)) == "bad_field"


def test_one_parameter_scheme_rejects_b() -> None:
    buf = bytearray(encode(DG))
    buf[3], buf[45] = Scheme.CHANNEL, 2
    assert reason(reseal(buf)) == "bad_field"


def test_too_many_datagrams_for_the_count_field() -> None:
    # 4 Mi elements at 16 bits in 55-byte datagrams would need > 65535 datagrams.
    buf = bytearray(patched(28, ">H", 256))
    struct.pack_into(">HH", buf, 30, 128, 128)
    struct.pack_into(">BB", buf, 34, 1, 16)
    struct.pack_into(">H", buf, 50, HEADER_SIZE + 3)
    buf = buf[:HEADER_SIZE]
    assert reason(reseal(buf)) == "bad_field"


def test_every_single_bit_flip_is_caught() -> None:
    data = encode(DG)
    for bit in range(len(data) * 8):
        buf = bytearray(data)
        buf[bit // 8] ^= 1 << (bit % 8)
        expected = {0: "bad_magic", 1: "bad_version"}.get(bit // 8, "checksum")
        assert reason(bytes(buf)) == expected, bit


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        parse(data)


@settings(max_examples=300)
@given(st.binary(min_size=HEADER_SIZE - 2, max_size=200))
def test_arbitrary_sealed_headers_raise_only_wire_error(tail: bytes) -> None:
    data = reseal(bytes([0x53, 1]) + tail)
    try:
        dg = parse(data)
    except WireError:
        return
    assert encode(dg) == data


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stream": 1 << 16},
        {"seq": -1},
        {"frame": 1 << 32},
        {"count": 0},
        {"index": 9},
        {"index": 1.5},
    ],
)
def test_datagram_fields_are_validated(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        replace(DG, **kwargs)


def test_specs_are_validated() -> None:
    with pytest.raises(ConfigError):
        QuantSpec(QuantKind.ROUND, 0, -1, 1)
    with pytest.raises(ConfigError):
        QuantSpec(7, 8, -1, 1)
    with pytest.raises(ConfigError):
        QuantSpec(QuantKind.UNIFORM, 8, 1e39, 2e39)
    with pytest.raises(ConfigError):
        PartitionSpec(Scheme.TOKEN, 4, 2)
    with pytest.raises(ConfigError):
        PartitionSpec(Scheme.PATCH, 256, 4)
    with pytest.raises(ConfigError):
        replace(DESC, latent=(4, 4))


# --- binary fixtures ---------------------------------------------------------------------------

VALID = FIXTURES / "valid.bin"
MALFORMED = {
    "truncated.bin": "truncated",
    "bad_magic.bin": "bad_magic",
    "bad_version.bin": "bad_version",
    "bad_flags.bin": "bad_flags",
    "bit_flip.bin": "checksum",
    "zero_count.bin": "bad_field",
}


def test_valid_fixture() -> None:
    dg = parse(VALID.read_bytes())
    assert dg == DG
    assert encode(dg) == VALID.read_bytes()


@pytest.mark.parametrize(("name", "expected"), sorted(MALFORMED.items()))
def test_malformed_fixtures(name: str, expected: str) -> None:
    assert reason((FIXTURES / name).read_bytes()) == expected


def test_authenticated_flag_needs_a_key() -> None:
    """Bit 1 is the tag's flag: a receiver without a key refuses such datagrams by name."""
    assert reason(patched(2, ">B", 0x03)) == "auth_no_key"
    assert reason(patched(2, ">B", 0x42)) == "bad_flags"


IMPORTANT = replace(DESC, importance=True)


@pytest.mark.parametrize("value", [0, 1, 128, 255])
def test_importance_byte_round_trips_and_is_peeked(value: int) -> None:
    dg = replace(DG, descriptor=IMPORTANT, importance=value)
    data = encode(dg)
    assert len(data) == len(encode(DG)) + 1  # one byte, before the payload
    assert parse(data) == dg
    assert peek_importance(data) == value / 255
    assert peek_importance(encode(DG)) is None  # no flag, no importance
    assert IMPORTANT.per_datagram < DESC.per_datagram  # the byte comes out of the payload


def test_importance_with_authentication_round_trips() -> None:
    key = b"k" * 32
    desc = replace(IMPORTANT, authenticated=True)
    dg = replace(DG, descriptor=desc, importance=7)
    assert parse(encode(dg, key), key) == dg


def test_importance_must_match_the_descriptor() -> None:
    with pytest.raises(ConfigError, match="importance"):
        replace(DG, importance=3)  # descriptor without importance
    with pytest.raises(ConfigError, match="importance"):
        replace(DG, descriptor=IMPORTANT)  # importance missing
    with pytest.raises(ConfigError, match="importance"):
        replace(DG, descriptor=IMPORTANT, importance=256)


def test_importance_flag_without_room_for_the_byte_is_truncated() -> None:
    data = bytearray(encode(replace(DG, descriptor=IMPORTANT, importance=9, payload=b"")))
    assert reason(reseal(data[:HEADER_SIZE])) == "truncated"


@pytest.mark.parametrize("data", [b"", b"\x53\x01\x08", bytes(HEADER_SIZE), b"x" * 200])
def test_peek_importance_of_anything_else_is_none(data: bytes) -> None:
    assert peek_importance(data) is None


def test_ends_frame_marks_the_last_datagram_only() -> None:
    assert not ends_frame(encode(DG))  # index 2 of 9
    assert ends_frame(encode(replace(DG, index=8)))
    assert not ends_frame(b"x" * 100) and not ends_frame(b"")
