"""Quantizers on numpy and MSB-first bit packing.

The three paper quantizers — rounding (001), R-bit uniform over a fixed estimated range
(002 eq. 2-3) and asymmetric q-bit with the frame's own min/max (004 eq. 8-11) — are one affine
map ``index = clip(floor((y - lo) / Δ + 0.5), 0, 2^bits - 1)``, ``Δ = (hi - lo) / (2^bits - 1)``;
they differ only in how ``lo`` and ``hi`` are chosen, so only :func:`fit` knows the kinds.
"""

from __future__ import annotations

import numpy as np

from semnet.core.wire import QuantKind, QuantSpec
from semnet.errors import ConfigError, WireError


def fit(
    kind: QuantKind,
    bits: int,
    y: np.ndarray | None = None,
    lo: float | None = None,
    hi: float | None = None,
) -> QuantSpec:
    """Choose the range for ``kind``: fixed for ROUND, given for UNIFORM, y's for ASYMMETRIC."""
    _check_bits(bits)
    try:
        kind = QuantKind(kind)
    except ValueError:
        raise ConfigError(f"unknown quantizer kind {kind!r}") from None
    if kind is QuantKind.ROUND:
        if lo is not None or hi is not None:
            raise ConfigError("round quantizer has a fixed range; do not give lo/hi")
        return QuantSpec(kind, bits, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if kind is QuantKind.UNIFORM:
        if lo is None or hi is None:
            raise ConfigError("uniform quantizer needs lo and hi")
        return QuantSpec(kind, bits, lo, hi)
    if y is None or y.size == 0:
        raise ConfigError("asymmetric quantizer needs a non-empty latent y")
    if lo is not None or hi is not None:
        raise ConfigError("asymmetric quantizer takes its range from y; do not give lo/hi")
    y_lo, y_hi = np.float32(y.min()), np.float32(y.max())
    if not y_hi > y_lo:  # constant latent: widen by one float32 step so Δ > 0
        y_hi = np.nextafter(y_lo, np.float32(np.inf))
    return QuantSpec(kind, bits, float(y_lo), float(y_hi))


def _check_bits(bits: int) -> None:
    if bits not in range(1, 17):
        raise ConfigError(f"bits={bits!r} outside 1..16")


def _step(spec: QuantSpec) -> float:
    return (spec.hi - spec.lo) / ((1 << spec.bits) - 1)


def quantize(spec: QuantSpec, y: np.ndarray) -> np.ndarray:
    """Map values to uint16 indices, clamping anything outside [lo, hi] to the end levels."""
    t = np.floor((np.asarray(y, dtype=np.float64) - spec.lo) / _step(spec) + 0.5)
    return np.clip(t, 0, (1 << spec.bits) - 1).astype(np.uint16)


def dequantize(spec: QuantSpec, q: np.ndarray) -> np.ndarray:
    """Map indices back to their reconstruction levels (float32, what the decoder eats).

    Exactly inverted by :func:`quantize` whenever Δ is well above the float32 spacing at
    max(|lo|, |hi|), which holds for any sensible latent range.
    """
    return (spec.lo + np.asarray(q, dtype=np.float64) * _step(spec)).astype(np.float32)


def packed_size(n: int, bits: int) -> int:
    """Bytes that ``n`` values of ``bits`` bits occupy once packed."""
    return (n * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack integers MSB-first with ``bits`` bits each, zero-padded to a whole byte."""
    _check_bits(bits)
    v = np.asarray(values).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= 1 << bits):
        raise ConfigError(f"values outside 0..{(1 << bits) - 1} cannot be packed in {bits} bits")
    # Each value as 16 big-endian bits; keep the low ``bits`` columns, then repack densely.
    matrix = np.unpackbits(v.astype(">u2").view(np.uint8).reshape(-1, 2), axis=1)
    return np.packbits(matrix[:, 16 - bits :]).tobytes()


def unpack_bits(data: bytes, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` for ``n`` values; WireError if ``data`` is too short."""
    _check_bits(bits)
    need = packed_size(n, bits)
    if len(data) < need:
        raise WireError("payload_length", f"{len(data)} bytes < {need} for {n}x{bits} bits")
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=need), count=n * bits)
    matrix = np.zeros((n, 16), dtype=np.uint8)
    matrix[:, 16 - bits :] = flat.reshape(n, bits)
    return np.packbits(matrix, axis=1).view(">u2").reshape(n).astype(np.uint16)
