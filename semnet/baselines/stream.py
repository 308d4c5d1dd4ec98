"""Classical codecs through the semnet packet path: same wire format, impairment, reassembler.

The codec's byte stream plays the latent: ``(1, n, W)`` 8-bit values, one row per datagram,
partition ``channel`` (a single unit), no interleaving, codec id 0xFF01.. (see ``codecs``), so
wire.py and packetize.py carry it unchanged and every datagram has the usual 52-byte header.
Each row starts with a 5-byte stream header (stream length u32, FEC overhead % u8), then one
FEC share of ``W - 5`` bytes. From any one datagram the receiver knows the stream length, the
share size and the FEC block plan; the share count and size are chosen so that the padding of
the last share is under one byte per datagram.
"""

import re
import struct
import time
from dataclasses import dataclass

import numpy as np

from semnet.baselines import fec
from semnet.baselines.codecs import BY_ID, CLASSICAL, Classical, fallback
from semnet.core import packetize
from semnet.core.impair import Impairment
from semnet.core.reassembly import AssembledFrame, Reassembler
from semnet.core.wire import (
    HEADER_SIZE,
    FrameDescriptor,
    PartitionSpec,
    QuantKind,
    QuantSpec,
    Scheme,
)
from semnet.errors import ConfigError, SemnetError
from semnet.pipeline.frames import SentFrame, score
from semnet.pipeline.offline import deliver
from semnet.pipeline.report import FrameReport

STREAM_HEADER = struct.Struct(">IB")  # stream length, FEC overhead in percent
BYTES = QuantSpec(QuantKind.UNIFORM, 8, 0.0, 255.0)  # a byte is an 8-bit value
_FEC_SUFFIX = re.compile(r"rs([1-9][0-9]*)")


@dataclass(frozen=True)
class Contender:
    """A classical codec, optionally protected by ``overhead`` percent of FEC parity."""

    codec: Classical
    overhead: int = 0

    @property
    def name(self) -> str:
        return self.codec.name + (f"+rs{self.overhead}" if self.overhead else "")


def is_classical(name: str) -> bool:
    return name.partition("+")[0] in CLASSICAL


def parse_contender(text: str) -> Contender:
    """Read "jpeg", "webp+rs20", ...; ConfigError names what is wrong."""
    name, plus, suffix = text.partition("+")
    codec = CLASSICAL.get(name)
    if codec is None:
        raise ConfigError(f"codec {text!r}: not a classical codec ({', '.join(CLASSICAL)})")
    codec.check()
    if not plus:
        return Contender(codec)
    match = _FEC_SUFFIX.fullmatch(suffix)
    if match is None or int(match[1]) > fec.MAX_OVERHEAD:
        raise ConfigError(f"codec {text!r}: FEC suffix must be +rsN, N in 1..{fec.MAX_OVERHEAD}")
    return Contender(codec, int(match[1]))


def share_size(length: int, datagram_size: int) -> int:
    """Bytes of stream per datagram: as few datagrams as fit, shares balanced among them."""
    room = datagram_size - HEADER_SIZE - STREAM_HEADER.size
    if room < 1:
        raise ConfigError(f"datagram_size {datagram_size} leaves no room for a stream share")
    return -(-length // -(-length // room))


def wire_bytes(length: int, overhead: int, datagram_size: int) -> int:
    """Bytes on the wire for a ``length``-byte stream: headers, padding and parity included."""
    size = share_size(length, datagram_size)
    count = sum(k + m for k, m in fec.plan(-(-length // size), overhead))
    return count * (HEADER_SIZE + STREAM_HEADER.size + size)


def packetize_stream(
    data: bytes, contender: Contender, shape: tuple[int, ...], datagram_size: int = 1200
) -> SentFrame:
    """The stream's datagrams (stream 1, frame 0, seq from 0), as the semantic encoder numbers
    a first frame."""
    size = share_size(len(data), datagram_size)
    source = -(-len(data) // size)
    padded = data.ljust(source * size, b"\0")
    shares = fec.encode(
        [padded[i * size : (i + 1) * size] for i in range(source)], contender.overhead
    )
    head = STREAM_HEADER.pack(len(data), contender.overhead)
    rows = np.frombuffer(b"".join(head + s for s in shares), dtype=np.uint8)
    rows = rows.reshape(1, len(shares), -1)
    desc = FrameDescriptor(
        codec_id=contender.codec.codec_id,
        image_h=shape[0],
        image_w=shape[1],
        latent=rows.shape,
        quant=BYTES,
        partition=PartitionSpec(Scheme.CHANNEL),
        interleave=False,
        seed=0,
        datagram_size=HEADER_SIZE + rows.shape[2],
    )
    return SentFrame(0, desc, packetize.packetize(rows, desc, 1, 0, 0), 0, {})


def unpacketize(frame: AssembledFrame) -> tuple[bytes, np.ndarray] | None:
    """The stream (zeros where lost) and which bytes arrived, after FEC; None if the stream
    header disagrees with the frame's layout."""
    payloads = {i: dg.payload for i, dg in frame.datagrams.items()}
    length, overhead = STREAM_HEADER.unpack_from(next(iter(payloads.values())))
    size = frame.descriptor.latent[2] - STREAM_HEADER.size
    source = -(-length // size)
    if length < 1 or sum(k + m for k, m in fec.plan(source, overhead)) != frame.count:
        return None
    shares = fec.decode({i: p[STREAM_HEADER.size :] for i, p in payloads.items()}, source, overhead)
    data = bytearray(source * size)
    got = np.zeros(source * size, dtype=bool)
    for j, share in shares.items():
        data[j * size : (j + 1) * size] = share
        got[j * size : (j + 1) * size] = True
    return bytes(data[:length]), got[:length]


def receive(frame: AssembledFrame | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """What the classical receiver shows for a frame, None where it has no picture."""
    codec = BY_ID.get(frame.descriptor.codec_id) if frame is not None else None
    stream = unpacketize(frame) if codec is not None else None
    return codec.receive(*stream, shape) if stream is not None else None


@dataclass
class ClassicalResult(FrameReport):
    decoded: bool = True  # False: the frame was lost and scored as the fallback picture


def transmit(
    image: np.ndarray,
    contender: Contender,
    data: bytes,
    impairment: Impairment,
    datagram_size: int = 1200,
    start: float = 0.0,
    interval: float = 1e-4,
    perceptual: bool = False,
) -> ClassicalResult:
    """Send an encoded image through impairment -> reassembler -> classical receiver, scored
    (``perceptual``: LPIPS and semantic agreement too)."""
    sent = packetize_stream(data, contender, image.shape, datagram_size)
    reassembler = Reassembler(deadline=float("inf"))
    frames = []
    for t, datagram in deliver(sent, impairment, start, interval):
        frames += reassembler.ingest(datagram, t)
    frames += reassembler.flush()
    frame = next((f for f in frames if f.frame == sent.frame), None)
    t0 = time.perf_counter()
    decoded = receive(frame, image.shape)
    shown = fallback(image.shape) if decoded is None else decoded
    received = frame.received if frame is not None else 0
    h, w = image.shape[:2]
    return ClassicalResult(
        frame=sent.frame,
        datagrams_sent=len(sent.datagrams),
        datagrams_received=received,
        bytes_sent=sent.bytes_sent,
        bpp=8 * sent.bytes_sent / (h * w),
        loss_ratio=1.0 - received / len(sent.datagrams),
        image=shown,
        timings={"decode": time.perf_counter() - t0},
        decoded=decoded is not None,
        **score(shown, image, perceptual),
    )


def match_bytes(
    contender: Contender, image: np.ndarray, target: int, datagram_size: int = 1200
) -> tuple[int, bytes]:
    """(quality, stream) of the highest quality step whose datagrams fit in ``target`` bytes.

    Bisection: assumes bytes grow with quality, and guarantees wire(q) <= target < wire(next q).
    """
    steps = contender.codec.qualities
    tried: dict[int, tuple[int, bytes]] = {}

    def cost(i: int) -> int:
        if i not in tried:
            data = contender.codec.encode(image, steps[i])
            tried[i] = (wire_bytes(len(data), contender.overhead, datagram_size), data)
        return tried[i][0]

    if cost(0) > target:
        raise SemnetError(
            f"{contender.name}: even quality {steps[0]} needs {cost(0)} bytes on the wire, "
            f"more than the {target} to match"
        )
    lo, hi = 0, len(steps) - 1
    if cost(hi) <= target:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(mid) <= target:
            lo = mid
        else:
            hi = mid
    return steps[lo], tried[lo][1]
