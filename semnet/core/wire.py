"""Datagram wire format: a 22-byte header, a 30-byte frame descriptor, then packed values.

Every datagram stands alone: the descriptor repeats in each one so that losing any datagram,
the first included, never loses more than its own payload. All fields are in network byte
order. The parser is strict and raises only :class:`WireError`; its ``reason`` slug is a
metric label, so it names the first thing that was wrong.

With flag bit 3 (importance) one byte follows the descriptor: the datagram's semantic
importance, 0..255 for [0, 1] (paper 002 eq. 27), which a wireless link stage reads to allocate
power without parsing the rest (:func:`peek_importance`).

With flag bit 4 (bit-planes) the payload is one bit-plane of a run of the send order, one bit
per element, and one class byte follows the descriptor (before any importance byte): the bit
position it carries, 0 = MSB, which is its importance class (paper 003: a wireless access node
protects each class as the source's interface asks, :func:`peek_plane`). A frame sends its
planes MSB first, each split into the same runs.

With flag bit 5 (payload unchecked) the crc covers the header, the descriptor and the class
and importance bytes but not the payload: UDP-Lite's partial coverage, so a payload whose bits
a wireless hop flipped still reaches the decoder, which was trained to live with it. The tag
covers the payload, so an authenticated datagram is always checked.

With flag bit 2 (entropy coded) the payload is not fixed-width values but one self-contained
entropy-coded run of the frame's send order (``semnet.core.coded``): datagrams then carry
different numbers of elements, and the descriptor's quantizer names the coder's alphabet.

With flag bit 1 (authenticated) a 16-byte truncated HMAC-SHA256 follows the payload. The tag
covers every byte before it with the crc field read as zero; the crc covers every byte, the tag
included, so a flipped bit anywhere is still ``checksum`` (corruption) and only a datagram
whose crc is right but whose tag is not is ``auth`` (forged or altered on purpose). The tag is
checked before any descriptor field is trusted.
"""

from __future__ import annotations

import functools
import math
import operator
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from semnet.core.auth import TAG_SIZE, tag, tag_ok
from semnet.errors import ConfigError, WireError

MAGIC = 0x53
VERSION = 1
FLAG_INTERLEAVED = 0x01
FLAG_AUTHENTICATED = 0x02
FLAG_ENTROPY = 0x04
FLAG_IMPORTANCE = 0x08
FLAG_PLANES = 0x10
FLAG_PAYLOAD_UNCHECKED = 0x20
KNOWN_FLAGS = (
    FLAG_INTERLEAVED
    | FLAG_AUTHENTICATED
    | FLAG_ENTROPY
    | FLAG_IMPORTANCE
    | FLAG_PLANES
    | FLAG_PAYLOAD_UNCHECKED
)
MAX_DATAGRAM = 65507  # largest UDP payload over IPv4
# Bounds memory a receiver spends on one (possibly forged) descriptor: 4 Mi latent elements.
MAX_LATENT_ELEMENTS = 1 << 22
MAX_COUNT = 0xFFFF

_HEADER = struct.Struct(">BBBBHHHIII")
_DESCRIPTOR = struct.Struct(">HHHHHHBBffBBIH")
_F32 = struct.Struct(">f")
_CRC_OFFSET = 18  # the crc field closes the fixed header
HEADER_SIZE = _HEADER.size + _DESCRIPTOR.size
assert _HEADER.size == 22 and _DESCRIPTOR.size == 30 and HEADER_SIZE == 52


class QuantKind(IntEnum):
    ROUND = 0
    UNIFORM = 1
    ASYMMETRIC = 2


class Scheme(IntEnum):
    CHANNEL = 0
    SPATIAL = 1
    TOKEN = 2
    INTRA_TOKEN = 3
    PATCH = 4


# Schemes whose units are described by one parameter ``a``; for them ``b`` must stay 1 so that
# a spec has exactly one spelling.
ONE_PARAMETER = frozenset({Scheme.CHANNEL, Scheme.TOKEN, Scheme.INTRA_TOKEN})


def _check_int(name: str, value: int, lo: int, hi: int) -> None:
    try:
        ok = lo <= operator.index(value) <= hi
    except TypeError:
        ok = False
    if not ok:
        raise ConfigError(f"{name}={value!r} is not an integer in {lo}..{hi}")


def _float32(name: str, value: float) -> float:
    """Round to the float32 the wire carries, so encode→parse returns equal objects."""
    try:
        rounded = _F32.unpack(_F32.pack(value))[0]
    except (OverflowError, struct.error, TypeError):
        raise ConfigError(f"{name}={value!r} is not a float32") from None
    if not math.isfinite(rounded):
        raise ConfigError(f"{name}={value!r} is not finite")
    return rounded


@dataclass(frozen=True, slots=True)
class QuantSpec:
    """Quantizer parameters; ``lo``/``hi`` are stored rounded to float32, as they travel."""

    kind: QuantKind
    bits: int
    lo: float
    hi: float

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", QuantKind(self.kind))
        except ValueError:
            raise ConfigError(f"unknown quantizer kind {self.kind!r}") from None
        _check_int("quant bits", self.bits, 1, 16)
        object.__setattr__(self, "lo", _float32("quant lo", self.lo))
        object.__setattr__(self, "hi", _float32("quant hi", self.hi))
        if not self.hi > self.lo:
            raise ConfigError(f"quant range [{self.lo}, {self.hi}] is empty")


@dataclass(frozen=True, slots=True)
class PartitionSpec:
    """Partition scheme and its block parameters (each travels as a u8)."""

    scheme: Scheme
    a: int = 1
    b: int = 1

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "scheme", Scheme(self.scheme))
        except ValueError:
            raise ConfigError(f"unknown partition scheme {self.scheme!r}") from None
        _check_int("partition a", self.a, 1, 255)
        _check_int("partition b", self.b, 1, 255)
        if self.scheme in ONE_PARAMETER and self.b != 1:
            raise ConfigError(f"partition {self.scheme.name.lower()} takes one parameter")


@dataclass(frozen=True, slots=True)
class FrameDescriptor:
    """Everything a receiver needs to place any one datagram's payload in the latent."""

    codec_id: int
    image_h: int
    image_w: int
    latent: tuple[int, int, int]  # (C, h, w)
    quant: QuantSpec
    partition: PartitionSpec
    interleave: bool
    seed: int
    datagram_size: int
    authenticated: bool = False  # a tag follows the payload: fewer elements per datagram
    importance: bool = False  # each datagram carries an importance byte before its payload
    entropy: bool = False  # payloads are entropy-coded runs, not fixed-width values
    planes: bool = False  # payloads are bit-planes, each datagram's class byte its bit position
    payload_checked: bool = True  # False: the crc leaves the payload out (bit errors pass)

    def __post_init__(self) -> None:
        _check_int("codec_id", self.codec_id, 0, 0xFFFF)
        _check_int("image_h", self.image_h, 0, 0xFFFF)
        _check_int("image_w", self.image_w, 0, 0xFFFF)
        if len(self.latent) != 3:
            raise ConfigError(f"latent shape {self.latent!r} is not (C, h, w)")
        for name, dim in zip("Chw", self.latent, strict=True):
            _check_int(f"latent {name}", dim, 1, 0xFFFF)
        object.__setattr__(self, "latent", tuple(int(d) for d in self.latent))
        elements = math.prod(self.latent)
        _check_int("latent elements", elements, 1, MAX_LATENT_ELEMENTS)
        _check_int("seed", self.seed, 0, 0xFFFFFFFF)
        object.__setattr__(self, "authenticated", bool(self.authenticated))
        object.__setattr__(self, "importance", bool(self.importance))
        object.__setattr__(self, "entropy", bool(self.entropy))
        object.__setattr__(self, "planes", bool(self.planes))
        object.__setattr__(self, "payload_checked", bool(self.payload_checked))
        if self.planes and self.entropy:
            raise ConfigError("planes: an entropy-coded payload has no bit-planes")
        if self.authenticated and not self.payload_checked:
            raise ConfigError("payload_check: the tag covers the payload; authenticated is checked")
        _check_int("datagram_size", self.datagram_size, self.overhead + 3, MAX_DATAGRAM)
        if not isinstance(self.quant, QuantSpec) or not isinstance(self.partition, PartitionSpec):
            raise ConfigError("descriptor needs a QuantSpec and a PartitionSpec")
        object.__setattr__(self, "interleave", bool(self.interleave))
        if not self.entropy:  # coded runs vary in length: the packetizer checks their count
            _check_int("datagram count", self.runs * self.plane_count, 1, MAX_COUNT)

    @property
    def overhead(self) -> int:
        """Bytes of a datagram that are not payload: header, descriptor, class and importance
        bytes, and tag."""
        return HEADER_SIZE + self.planes + self.importance + (TAG_SIZE if self.authenticated else 0)

    @property
    def per_datagram(self) -> int:
        """Latent elements one datagram carries: as many as fit its payload bytes (as many as
        its payload has bits, for bit-planes)."""
        bits_each = 1 if self.planes else self.quant.bits
        return (self.datagram_size - self.overhead) * 8 // bits_each

    @property
    def runs(self) -> int:
        """Runs of ``per_datagram`` elements the send order is cut into (per plane)."""
        return -(-math.prod(self.latent) // self.per_datagram)

    @property
    def plane_count(self) -> int:
        """Planes sent apart: the quantizer's bits for bit-planes, else 1 (values whole)."""
        return self.quant.bits if self.planes else 1


@dataclass(frozen=True, slots=True)
class Datagram:
    """One parsed datagram: addressing fields, the frame descriptor and the packed payload."""

    stream: int
    seq: int
    frame: int
    index: int
    count: int
    descriptor: FrameDescriptor
    payload: bytes
    importance: int | None = None  # 0..255, present exactly when the descriptor says so
    plane: int | None = None  # the bit position (class) of a bit-plane datagram, 0 = MSB

    def __post_init__(self) -> None:
        if (self.importance is not None) != self.descriptor.importance:
            raise ConfigError("importance: given exactly when the descriptor carries it")
        if (self.plane is not None) != self.descriptor.planes:
            raise ConfigError("plane: given exactly when the descriptor sends bit-planes")
        if self.plane is not None:
            _check_int("plane", self.plane, 0, self.descriptor.quant.bits - 1)
        if self.importance is not None:
            _check_int("importance", self.importance, 0, 255)
        _check_int("stream", self.stream, 0, 0xFFFF)
        _check_int("seq", self.seq, 0, 0xFFFFFFFF)
        _check_int("frame", self.frame, 0, 0xFFFFFFFF)
        _check_int("count", self.count, 1, MAX_COUNT)
        _check_int("index", self.index, 0, self.count - 1)


@functools.lru_cache(maxsize=256)
def _descriptor_bytes(desc: FrameDescriptor) -> bytes:
    q, p = desc.quant, desc.partition
    fields = (q.kind, q.bits, q.lo, q.hi, p.a, p.b, desc.seed, desc.datagram_size)
    return _DESCRIPTOR.pack(desc.codec_id, desc.image_h, desc.image_w, *desc.latent, *fields)


@functools.lru_cache(maxsize=256)
def _descriptor(raw: bytes, scheme: int, flags: int) -> FrameDescriptor:
    """Build (once per distinct descriptor) the object for 30 raw bytes; raises ConfigError."""
    codec, img_h, img_w, c, h, w, kind, bits, lo, hi, a, b, seed, size = _DESCRIPTOR.unpack(raw)
    quant, partition = QuantSpec(kind, bits, lo, hi), PartitionSpec(scheme, a, b)
    interleave, authenticated = bool(flags & FLAG_INTERLEAVED), bool(flags & FLAG_AUTHENTICATED)
    importance, entropy = bool(flags & FLAG_IMPORTANCE), bool(flags & FLAG_ENTROPY)
    planes, checked = bool(flags & FLAG_PLANES), not flags & FLAG_PAYLOAD_UNCHECKED
    return FrameDescriptor(
        codec,
        img_h,
        img_w,
        (c, h, w),
        quant,
        partition,
        interleave,
        seed,
        size,
        authenticated,
        importance,
        entropy,
        planes,
        checked,
    )


def _crc(data: bytes | bytearray, end: int | None = None) -> int:
    """CRC-32 of the datagram up to ``end`` (all of it by default) with its crc field read as
    zero (no copy of the payload)."""
    view = memoryview(data)
    crc = zlib.crc32(view[:_CRC_OFFSET])
    crc = zlib.crc32(b"\0\0\0\0", crc)
    return zlib.crc32(view[_HEADER.size : end], crc)


def _flags(desc: FrameDescriptor) -> int:
    return (
        (FLAG_INTERLEAVED if desc.interleave else 0)
        | (FLAG_AUTHENTICATED if desc.authenticated else 0)
        | (FLAG_IMPORTANCE if desc.importance else 0)
        | (FLAG_ENTROPY if desc.entropy else 0)
        | (FLAG_PLANES if desc.planes else 0)
        | (0 if desc.payload_checked else FLAG_PAYLOAD_UNCHECKED)
    )


def _covered(flags: int, payload_start: int) -> int | None:
    """Where the crc's coverage ends: the payload's start when it is unchecked, else the end
    (unknown flags too, so they are told apart from corruption as ``bad_flags``)."""
    partial = flags & FLAG_PAYLOAD_UNCHECKED and not flags & ~KNOWN_FLAGS
    return payload_start if partial else None


def encode(dg: Datagram, key: bytes | None = None) -> bytes:
    """Serialise a datagram, tagged with ``key`` when its descriptor is authenticated.

    WireError("oversized") if it exceeds its descriptor's size; ConfigError if the key is
    missing for an authenticated descriptor or given for one that is not.
    """
    desc = dg.descriptor
    if desc.authenticated != (key is not None):
        raise ConfigError("an authenticated descriptor needs a key, and only it takes one")
    size = desc.overhead + len(dg.payload)
    if size > desc.datagram_size:
        raise WireError("oversized", f"{size} bytes > datagram_size {desc.datagram_size}")
    flags = _flags(desc)
    buf = bytearray(size)
    addressing = (dg.stream, dg.index, dg.count, dg.seq, dg.frame, 0)
    _HEADER.pack_into(buf, 0, MAGIC, VERSION, flags, desc.partition.scheme, *addressing)
    buf[_HEADER.size : HEADER_SIZE] = _descriptor_bytes(desc)
    start = HEADER_SIZE
    if dg.plane is not None:
        buf[start] = dg.plane
        start += 1
    if dg.importance is not None:
        buf[start] = dg.importance
        start += 1
    end = start + len(dg.payload)
    buf[start:end] = dg.payload
    if key is not None:
        buf[end:] = tag(key, memoryview(buf)[:end])
    struct.pack_into(">I", buf, _CRC_OFFSET, _crc(buf, _covered(flags, start)))
    return bytes(buf)


def parse(data: bytes, key: bytes | None = None) -> Datagram:
    """Validate and decode one datagram; raises only WireError, whatever the bytes.

    With ``key`` only authenticated datagrams with a valid tag pass (else ``unauthenticated``
    or ``auth``); without one, authenticated datagrams are refused as ``auth_no_key``.
    """
    n = len(data)
    if n < HEADER_SIZE:
        raise WireError("truncated", f"{n} bytes < header {HEADER_SIZE}")
    if n > MAX_DATAGRAM:
        raise WireError("oversized", f"{n} bytes > {MAX_DATAGRAM}")
    magic, version, flags, scheme, stream, index, count, seq, frame, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireError("bad_magic", f"0x{magic:02x}")
    if version != VERSION:
        raise WireError("bad_version", str(version))
    start = HEADER_SIZE + bool(flags & FLAG_PLANES) + bool(flags & FLAG_IMPORTANCE)
    if crc != _crc(data, _covered(flags, min(start, n))):
        raise WireError("checksum")
    if flags & ~KNOWN_FLAGS:
        raise WireError("bad_flags", f"0x{flags:02x}")
    end = n
    if flags & FLAG_AUTHENTICATED:
        if key is None:
            raise WireError("auth_no_key", "authenticated datagram, no key configured")
        end = n - TAG_SIZE
        if end < HEADER_SIZE:
            raise WireError("truncated", f"{n} bytes < header and tag {HEADER_SIZE + TAG_SIZE}")
        signed = bytearray(data[:end])
        signed[_CRC_OFFSET : _HEADER.size] = b"\0\0\0\0"
        if not tag_ok(key, signed, memoryview(data)[end:]):
            raise WireError("auth", "tag does not match")
    elif key is not None:
        raise WireError("unauthenticated", "no tag, and a key is configured")
    if end < start:
        raise WireError("truncated", f"{n} bytes: no room for the class and importance bytes")
    plane = data[HEADER_SIZE] if flags & FLAG_PLANES else None
    importance = data[start - 1] if flags & FLAG_IMPORTANCE else None
    try:
        desc = _descriptor(bytes(data[_HEADER.size : HEADER_SIZE]), scheme, flags)
        if n > desc.datagram_size:
            raise WireError("oversized", f"{n} bytes > datagram_size {desc.datagram_size}")
        if plane is not None and plane >= desc.quant.bits:
            raise WireError("unknown_class", f"class {plane} of a {desc.quant.bits}-bit latent")
        payload = bytes(data[start:end])
        return Datagram(stream, seq, frame, index, count, desc, payload, importance, plane)
    except ConfigError as exc:
        raise WireError("bad_field", str(exc)) from None


_INDEX_COUNT = struct.Struct(">HH")
_INDEX_OFFSET = 6


def ends_frame(data: bytes) -> bool:
    """Whether a datagram looks like the last of its frame (index = count - 1), unvalidated:
    a link stage closes its slot there, so frames never share a slot."""
    if len(data) < HEADER_SIZE or data[0] != MAGIC or data[1] != VERSION:
        return False
    index, count = _INDEX_COUNT.unpack_from(data, _INDEX_OFFSET)
    return index + 1 == count


def peek_importance(data: bytes) -> float | None:
    """The importance in [0, 1] a datagram carries, without validating it (a link stage's
    fast path: the receiver still parses strictly); None for anything without one."""
    if len(data) <= HEADER_SIZE or data[0] != MAGIC or data[1] != VERSION:
        return None
    if not data[2] & FLAG_IMPORTANCE:
        return None
    at = HEADER_SIZE + bool(data[2] & FLAG_PLANES)
    return data[at] / 255.0 if at < len(data) else None


def peek_plane(data: bytes) -> tuple[int, int, int] | None:
    """(class, payload start, payload end) of a bit-plane datagram, unvalidated — a wireless
    hop flips bits in that span only (the header stands for a robustly coded PHY header); None
    for anything that is not one."""
    n = len(data)
    if n <= HEADER_SIZE or data[0] != MAGIC or data[1] != VERSION or not data[2] & FLAG_PLANES:
        return None
    start = HEADER_SIZE + 1 + bool(data[2] & FLAG_IMPORTANCE)
    end = n - TAG_SIZE if data[2] & FLAG_AUTHENTICATED else n
    return (data[HEADER_SIZE], start, end) if start <= end else None
