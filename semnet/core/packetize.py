"""Seeded interleaving and the datagram layout of one frame (paper 001 §II-C).

The send order is the partition's units, permuted by π = default_rng(seed).permutation when
interleaving is on, then concatenated. Datagram i carries the i-th run of ``per_datagram``
elements of that order, so no byte is wasted, a unit may straddle two datagrams, and losing a
datagram loses exactly its own elements. The receiver rebuilds the same layout from the
descriptor alone; the payload is nothing but packed values.

A bit-plane frame (``descriptor.planes``, paper 003) sends each bit position apart, MSB first:
datagram i carries plane ``i // runs`` of run ``i % runs`` of the same send order, one bit per
element, so each datagram holds bits of one importance class. An element counts as received
when all its planes arrived; the bits that did arrive still reach its value.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from semnet.core.partition import canonical
from semnet.core.quant import pack_bits, packed_size, unpack_bits
from semnet.core.wire import Datagram, FrameDescriptor, PartitionSpec, encode
from semnet.errors import ConfigError, WireError


def permutation(n_units: int, seed: int) -> np.ndarray:
    """π: position k of the send order holds unit π[k]."""
    return np.random.default_rng(seed).permutation(n_units)


def interleave(unit_list: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    """Units in send order, so a burst of losses hits units scattered across the latent."""
    return [unit_list[p] for p in permutation(len(unit_list), seed)]


def deinterleave(sent: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    """Inverse of :func:`interleave` with the same seed."""
    return [sent[k] for k in np.argsort(permutation(len(sent), seed))]


def _gather_runs(order: np.ndarray, sizes: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """``np.concatenate(interleave(units))`` without one array per unit."""
    starts = np.cumsum(sizes) - sizes
    lengths = sizes[perm]
    shift = np.repeat(starts[perm] - (np.cumsum(lengths) - lengths), lengths)
    return order[shift + np.arange(order.size)]


@dataclass(frozen=True, eq=False)
class Layout:
    """Where each datagram's elements live in the flattened latent."""

    order: np.ndarray  # flat latent indices in send order (read-only)
    per_datagram: int
    runs: int  # runs of per_datagram elements in the send order
    bits: int
    planes: int  # planes sent apart: ``bits`` for bit-planes, else 1

    @property
    def count(self) -> int:
        return self.runs * self.planes

    def elements(self, index: int) -> np.ndarray:
        """Flat latent indices carried by datagram ``index``."""
        run = index % self.runs
        return self.order[run * self.per_datagram : (run + 1) * self.per_datagram]

    def plane(self, index: int) -> int:
        """The bit position datagram ``index`` carries (0 = MSB; 0 for whole values)."""
        return index // self.runs


# Frames differ by interleaving seed, so entries serve one frame in flight each; 16 bounds the
# memory a hostile stream of large descriptors can pin (about 8 MB per entry at max_pixels).
@functools.lru_cache(maxsize=16)
def _layout(
    shape: tuple[int, int, int],
    partition: PartitionSpec,
    seed: int | None,
    per_datagram: int,
    bits: int,
    planes: int,
) -> Layout:
    order, sizes = canonical(shape, partition)
    if seed is not None:
        order = _gather_runs(order, sizes, permutation(sizes.size, seed))
        order.flags.writeable = False
    return Layout(order, per_datagram, -(-order.size // per_datagram), bits, planes)


def layout(desc: FrameDescriptor) -> Layout:
    """The frame's layout, cached on the fields that shape it (not lo/hi, which vary per frame)."""
    seed = desc.seed if desc.interleave else None
    return _layout(
        desc.latent, desc.partition, seed, desc.per_datagram, desc.quant.bits, desc.plane_count
    )


def packetize(
    q: np.ndarray,
    desc: FrameDescriptor,
    stream: int,
    frame: int,
    first_seq: int,
    key: bytes | None = None,
    importance: Sequence[int] | None = None,
) -> list[bytes]:
    """Encode a quantized latent into the frame's datagrams, numbered from ``first_seq``.

    An authenticated descriptor needs ``key``; its per-datagram capacity already leaves room for
    the tag, so every datagram stays within ``datagram_size``. A descriptor with importance
    needs one byte per datagram (:func:`datagram_importance`).
    """
    if q.shape != desc.latent:
        raise ConfigError(f"latent shape {q.shape} does not match descriptor {desc.latent}")
    lay = layout(desc)
    if desc.importance != (importance is not None) or (
        importance is not None and len(importance) != lay.count
    ):
        raise ConfigError(
            f"importance: one value per datagram ({lay.count}) exactly when the "
            "descriptor carries importance"
        )
    send = q.reshape(-1)[lay.order]
    step = lay.per_datagram
    runs = [send[r * step : (r + 1) * step] for r in range(lay.runs)]
    if desc.planes:  # plane j of every run, MSB first
        shifts = range(lay.bits - 1, -1, -1)
        payloads = [np.packbits((run >> s) & 1).tobytes() for s in shifts for run in runs]
    else:
        payloads = [pack_bits(run, lay.bits) for run in runs]
    return frame_datagrams(desc, payloads, stream, frame, first_seq, key, importance)


def frame_datagrams(
    desc: FrameDescriptor,
    payloads: Sequence[bytes],
    stream: int,
    frame: int,
    first_seq: int,
    key: bytes | None,
    importance: Sequence[int] | None,
) -> list[bytes]:
    """A frame's payloads as encoded datagrams, numbered from ``first_seq``."""
    return [
        encode(
            Datagram(
                stream=stream,
                seq=(first_seq + i) % 2**32,
                frame=frame,
                index=i,
                count=len(payloads),
                descriptor=desc,
                payload=payload,
                importance=None if importance is None else int(importance[i]),
                plane=i // desc.runs if desc.planes else None,
            ),
            key,
        )
        for i, payload in enumerate(payloads)
    ]


def datagram_importance(desc: FrameDescriptor, spatial: np.ndarray) -> list[int]:
    """Each datagram's importance byte: the mean of an (h, w) map in [0, 1] over the spatial
    positions of the elements it carries (paper 002 eq. 27, for any partition), times 255.

    Datagrams that carry whole channels (channel-wise partition) all cover the full map: their
    importances come out equal, as they should — CAM importance is spatial.
    """
    lay = layout(desc)
    starts = np.arange(0, lay.order.size, lay.per_datagram)
    return run_importance(desc, lay.order, starts, spatial) * lay.planes


def run_importance(
    desc: FrameDescriptor, order: np.ndarray, starts: np.ndarray, spatial: np.ndarray
) -> list[int]:
    """Importance bytes of consecutive runs of the send ``order`` beginning at ``starts`` (the
    last run ends with the order): each the mean of ``spatial`` over its elements, times 255."""
    c, h, w = desc.latent
    if spatial.shape != (h, w):
        raise ConfigError(f"importance map {spatial.shape} is not the latent's ({h}, {w})")
    values = np.clip(spatial, 0.0, 1.0).reshape(-1)[order % (h * w)]
    sizes = np.diff(np.append(starts, values.size))
    means = np.add.reduceat(values, starts) / sizes
    return [int(v) for v in np.rint(means * 255)]


def check_payload(dg: Datagram) -> None:
    """Reject a datagram whose count or payload length disagrees with its descriptor's layout.

    Arithmetic only, no layout built: a forged descriptor (up to MAX_LATENT_ELEMENTS) must not
    cost the receiver an index array per datagram.
    """
    desc = dg.descriptor
    total, step, runs = math.prod(desc.latent), desc.per_datagram, desc.runs
    count = runs * desc.plane_count
    if dg.count != count:
        raise WireError("bad_field", f"count {dg.count} != layout count {count}")
    if dg.plane is not None and dg.plane != dg.index // runs:
        raise WireError("unknown_class", f"class {dg.plane} in datagram {dg.index} of a plane")
    run = dg.index % runs
    bits = 1 if desc.planes else desc.quant.bits
    expected = packed_size(min(step, total - run * step), bits)
    if len(dg.payload) != expected:
        raise WireError("payload_length", f"{len(dg.payload)} bytes != {expected}")


def depacketize(
    datagrams: Iterable[Datagram], desc: FrameDescriptor
) -> tuple[np.ndarray, np.ndarray]:
    """Place received payloads; returns (q uint16, zero where missing; received mask).

    Assumes every datagram belongs to ``desc``'s frame and passed :func:`check_payload`.
    """
    lay = layout(desc)
    q = np.zeros(lay.order.size, dtype=np.uint16)
    if desc.planes:
        return _place_planes(datagrams, lay, q, desc.latent)
    mask = np.zeros(lay.order.size, dtype=bool)
    for dg in datagrams:
        elements = lay.elements(dg.index)
        q[elements] = unpack_bits(dg.payload, lay.bits, elements.size)
        mask[elements] = True
    return q.reshape(desc.latent), mask.reshape(desc.latent)


def _place_planes(
    datagrams: Iterable[Datagram], lay: Layout, q: np.ndarray, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Bit-plane payloads OR-ed into ``q``; an element is received when all its planes were."""
    planes = np.zeros(q.size, dtype=np.uint8)
    for dg in datagrams:
        elements = lay.elements(dg.index)
        bits = np.unpackbits(np.frombuffer(dg.payload, np.uint8), count=elements.size)
        q[elements] |= bits.astype(np.uint16) << (lay.bits - 1 - lay.plane(dg.index))
        planes[elements] += 1
    return q.reshape(shape), (planes == lay.bits).reshape(shape)
