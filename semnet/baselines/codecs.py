"""Classical codecs (Pillow) and what a real receiver does with a byte stream that has holes.

Each codec encodes at an integer quality step (ascending: more steps, more bytes) and has a
``repair`` rule that turns the received bytes (``got`` marks which arrived) into what its
decoder is given, or None when no real decoder would produce a picture:

- JPEG (baseline, optimized Huffman tables, a restart marker after every MCU row): the bytes
  that arrived, in order, with lost datagrams cut out and EOI appended if the end was lost.
  libjpeg resynchronises at the next restart marker, so a hole costs the rows around it; a hole
  in the headers makes the stream undecodable.
- JPEG 2000 (raw codestream, LRCP with six quality layers, PLT packet lengths): the prefix up
  to the first hole, cut back to the last whole packet, the rest zeroed (a zero byte is an
  empty packet) and EOC at the end: the picture loses its finest layers, not its rows.
- WebP (lossy VP8): the boolean coder cannot resynchronise and libwebp through Pillow refuses an
  incomplete stream, so any unrecovered hole loses the frame.

A frame that cannot be decoded is scored as :data:`FALLBACK_GREY` (the cliff effect).
"""

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

from semnet.errors import ConfigError

FALLBACK_GREY = 128  # what a failed decode shows: every pixel mid-grey

_EOI = b"\xff\xd9"  # JPEG end of image; JPEG 2000's EOC has the same two bytes
_J2K_LAYERS = (32, 16, 8, 4, 2, 1)  # compression ratio of each layer, times the final ratio


def _save(image: np.ndarray, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **options)
    return buf.getvalue()


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    return _save(image, "JPEG", quality=quality, optimize=True, restart_marker_rows=1)


def _webp(image: np.ndarray, quality: int) -> bytes:
    return _save(image, "WEBP", quality=quality)


def j2k_ratio(quality: int) -> float:
    """Final compression ratio of JPEG 2000 step ``quality``: 4 at 100, x2 every 10 steps down."""
    return 4.0 * 2.0 ** ((100 - quality) / 10)


def _jpeg2000(image: np.ndarray, quality: int) -> bytes:
    ratio = j2k_ratio(quality)
    return _save(
        image,
        "JPEG2000",
        no_jp2=True,
        irreversible=True,
        progression="LRCP",
        quality_mode="rates",
        quality_layers=[ratio * f for f in _J2K_LAYERS],
        plt=True,
    )


def _splice(data: bytes, got: np.ndarray) -> bytes | None:
    """JPEG: what arrived, in order; a stream whose end was lost is closed with EOI."""
    kept = np.frombuffer(data, dtype=np.uint8)[got].tobytes()
    return kept if kept.endswith(_EOI) else kept + _EOI


def packet_bounds(data: bytes) -> list[int] | None:
    """Byte offsets where the packets of a one-tile J2K codestream start (and the last ends),
    read from its PLT markers; None if the headers are not all there."""
    try:
        pos, lengths = 2, []
        while True:
            marker, size = struct.unpack_from(">HH", data, pos)
            if marker == 0xFF93:  # SOD: packet data follows
                break
            if marker == 0xFF58:  # PLT: Zplt, then lengths in 7-bit groups, high bit = more
                value = 0
                for byte in data[pos + 5 : pos + 2 + size]:
                    value = value << 7 | byte & 0x7F
                    if not byte & 0x80:
                        lengths.append(value)
                        value = 0
            pos += 2 + size
    except struct.error:
        return None
    if not lengths or pos + 2 > len(data):
        return None
    return list(np.cumsum([pos + 2, *lengths]))


def _truncate(data: bytes, got: np.ndarray) -> bytes | None:
    """JPEG 2000: keep the whole packets before the first hole, zero the rest, close with EOC."""
    if got.all():
        return data
    hole = int(np.argmin(got))
    bounds = packet_bounds(data[:hole])
    if bounds is None:
        return None
    cut = max(b for b in bounds if b <= hole)
    return data[:cut] + bytes(len(data) - cut - len(_EOI)) + _EOI


def _whole(data: bytes, got: np.ndarray) -> bytes | None:
    """WebP: the stream only if every byte arrived."""
    return data if got.all() else None


@dataclass(frozen=True)
class Classical:
    """One classical codec: its wire id, quality steps, encoder and receiver rule."""

    name: str
    codec_id: int
    qualities: range
    feature: str  # PIL.features name that must be present
    encode: Callable[[np.ndarray, int], bytes]
    repair: Callable[[bytes, np.ndarray], bytes | None]

    def check(self) -> None:
        """ConfigError if this Pillow was built without the codec."""
        if not features.check(self.feature):
            raise ConfigError(f"{self.name}: this Pillow has no {self.feature} support")

    def receive(self, data: bytes, got: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
        """The decoded picture, or None where a real receiver would have lost the frame."""
        repaired = self.repair(data, got)
        if repaired is None:
            return None
        try:
            with Image.open(io.BytesIO(repaired)) as im:
                image = np.asarray(im.convert("RGB"))
        except Exception:  # a corrupt stream may raise anything: OSError, SyntaxError, ...
            return None
        return image if image.shape == tuple(shape) else None


# Codec ids 0xFF01.. are classical; zoo codecs count up from 1.
CLASSICAL: dict[str, Classical] = {
    c.name: c
    for c in (
        Classical("jpeg", 0xFF01, range(1, 101), "jpg", _jpeg, _splice),
        Classical("webp", 0xFF02, range(0, 101), "webp", _webp, _whole),
        Classical("jpeg2000", 0xFF03, range(1, 101), "jpg_2000", _jpeg2000, _truncate),
    )
}
BY_ID = {c.codec_id: c for c in CLASSICAL.values()}


def fallback(shape: tuple[int, ...]) -> np.ndarray:
    """The picture scored for a frame that could not be decoded."""
    return np.full(shape, FALLBACK_GREY, dtype=np.uint8)
