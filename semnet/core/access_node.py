"""Paper 003's wireless access node as a link stage: bit errors by importance class.

Pure core (numpy only). A bit-plane datagram (``wire.FLAG_PLANES``) names its class, the bit
position it carries. The node knows the source's interface, never its code: it splits its power
over the classes (``interface.allocate``, one class per bit position) and flips each payload bit
of a class-c datagram with that class's probability, so no datagram is lost to the hop. Each
datagram is one coherence block: on block Rayleigh its gain is drawn per datagram and its flips
follow that gain, the node having allocated for the average (it has no channel state). Headers
are never flipped: they stand for a robustly coded PHY header, as the receiver's crc needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semnet.core.impair.spec import Link
from semnet.core.interface import Allocation, Budget, Interface, allocate, by_position, flips
from semnet.core.wire import peek_plane


@dataclass(frozen=True, slots=True)
class Flipped:
    """One datagram after the hop: its bytes, class, payload bits and how many flipped."""

    data: bytes
    cls: int
    bits: int
    flips: int


class AccessNode:
    """Per-datagram bit flips for a ``link ... errors bits`` spec and an interface; seeded."""

    def __init__(self, link: Link, interface: Interface, seed: int) -> None:
        self.link = link
        self.rng = np.random.default_rng(seed)
        self.reallocate(interface)

    def reallocate(self, interface: Interface) -> None:
        """Allocate for a (new) interface; the generator goes on."""
        link = self.link
        self.interface = interface
        self.allocation: Allocation = allocate(
            interface,
            link.snr_db,
            link.channel,
            Budget(modulation=link.modulation),
            classes=by_position(interface),
            scheme=link.allocation,
        )

    def pass_through(self, data: bytes) -> Flipped | None:
        """The datagram as the receiver gets it; None when it names no class of the
        interface (not a bit-plane datagram, or a class past its bits): the caller drops it."""
        span = peek_plane(data)
        if span is None or span[0] >= self.interface.bits:
            return None
        cls, start, end = span
        gain = self.rng.standard_exponential() if self.link.channel == "rayleigh" else 1.0
        prob = float(self.allocation.realised(gain)[cls])
        hit = flips((end - start) * 8, prob, self.rng)
        count = int(hit.sum())
        if count:
            buf = bytearray(data)
            payload = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)
            buf[start:end] = (payload ^ np.packbits(hit)).tobytes()
            data = bytes(buf)
        return Flipped(data, cls, hit.size, count)
