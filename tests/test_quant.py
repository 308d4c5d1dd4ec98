"""Quantizers and bit packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core.quant import dequantize, fit, pack_bits, packed_size, quantize, unpack_bits
from semnet.core.wire import QuantKind, QuantSpec
from semnet.errors import ConfigError, WireError

bits_st = st.integers(1, 16)
# Ranges wide enough that Δ stays well above float32 spacing at max(|lo|, |hi|).
range_st = st.tuples(st.floats(-1000, 1000), st.floats(0.05, 2000)).map(
    lambda t: (t[0], t[0] + max(t[1], 0.05 * abs(t[0])))
)


def spec_for(kind: QuantKind, bits: int, lo: float, hi: float, seed: int = 0) -> QuantSpec:
    if kind is QuantKind.ROUND:
        return fit(kind, bits)
    if kind is QuantKind.UNIFORM:
        return fit(kind, bits, lo=lo, hi=hi)
    y = np.random.default_rng(seed).uniform(lo, hi, 500).astype(np.float32)
    return fit(kind, bits, y=y)


def step(spec: QuantSpec) -> float:
    return (spec.hi - spec.lo) / (2**spec.bits - 1)


def test_round_is_nearest_integer() -> None:
    spec = fit(QuantKind.ROUND, 8)
    assert (spec.lo, spec.hi, step(spec)) == (-128.0, 127.0, 1.0)
    y = np.array([-200.0, -128.4, -0.6, -0.4, 0.4, 0.5, 1.49, 126.6, 300.0], dtype=np.float32)
    assert dequantize(spec, quantize(spec, y)).tolist() == [-128, -128, -1, 0, 0, 1, 1, 127, 127]
    assert fit(QuantKind.ROUND, 16).lo == -32768.0


def test_asymmetric_takes_the_frame_range() -> None:
    y = np.array([[-2.5, 0.0], [1.0, 3.5]], dtype=np.float32)
    spec = fit(QuantKind.ASYMMETRIC, 4, y=y)
    assert (spec.lo, spec.hi) == (-2.5, 3.5)
    assert quantize(spec, y).tolist() == [[0, 6], [9, 15]]


def test_asymmetric_constant_latent_widens_range() -> None:
    spec = fit(QuantKind.ASYMMETRIC, 8, y=np.full(10, 2.0, dtype=np.float32))
    assert spec.hi > spec.lo == 2.0
    assert np.all(dequantize(spec, quantize(spec, np.full(3, 2.0))) == 2.0)


@settings(max_examples=60)
@given(st.sampled_from(QuantKind), bits_st, range_st, st.integers(0, 1000))
def test_index_round_trip_is_exact(
    kind: QuantKind, bits: int, rng: tuple[float, float], seed: int
) -> None:
    spec = spec_for(kind, bits, *rng, seed)
    q = np.arange(2**bits, dtype=np.uint16)
    y = dequantize(spec, q)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(quantize(spec, y), q)


@settings(max_examples=60)
@given(st.sampled_from(QuantKind), bits_st, range_st, st.integers(0, 1000))
def test_error_bounded_inside_and_clamped_outside(
    kind: QuantKind, bits: int, rng: tuple[float, float], seed: int
) -> None:
    spec = spec_for(kind, bits, *rng, seed)
    gen = np.random.default_rng(seed)
    width = spec.hi - spec.lo
    y = gen.uniform(spec.lo, spec.hi, (4, 50))
    q = quantize(spec, y)
    assert q.shape == y.shape and q.dtype == np.uint16
    # Δ/2 plus float32 rounding of the reconstruction level.
    tol = step(spec) / 2 + 1e-7 * max(abs(spec.lo), abs(spec.hi))
    assert np.max(np.abs(y - dequantize(spec, q))) <= tol
    below = spec.lo - gen.uniform(0, 10 * width, 20)
    above = spec.hi + gen.uniform(0, 10 * width, 20)
    assert np.all(quantize(spec, below) == 0)
    assert np.all(quantize(spec, above) == 2**bits - 1)


@pytest.mark.parametrize(
    "call",
    [
        lambda: fit(QuantKind.ROUND, 0),
        lambda: fit(QuantKind.ROUND, 17),
        lambda: fit(QuantKind.ROUND, 8, lo=0.0, hi=1.0),
        lambda: fit(QuantKind.UNIFORM, 8, lo=0.0),
        lambda: fit(QuantKind.UNIFORM, 8, lo=1.0, hi=1.0),
        lambda: fit(QuantKind.UNIFORM, 8, lo=0.0, hi=float("inf")),
        lambda: fit(QuantKind.ASYMMETRIC, 8),
        lambda: fit(QuantKind.ASYMMETRIC, 8, y=np.zeros(0)),
        lambda: fit(QuantKind.ASYMMETRIC, 8, y=np.array([0.0, np.nan])),
        lambda: fit(QuantKind.ASYMMETRIC, 8, y=np.ones(3), lo=0.0, hi=2.0),
        lambda: fit(9, 8),
    ],
)
def test_fit_rejects_bad_arguments(call) -> None:
    with pytest.raises(ConfigError):
        call()


def test_pack_known_bits() -> None:
    assert pack_bits(np.array([1, 0, 1, 1, 0, 0, 0, 0, 1]), 1) == bytes([0b10110000, 0b10000000])
    assert pack_bits(np.array([5, 3]), 3) == bytes([0b10101100])
    assert pack_bits(np.array([0xABC, 0x123]), 12) == bytes([0xAB, 0xC1, 0x23])
    assert pack_bits(np.array([0xFFFF]), 16) == b"\xff\xff"
    assert pack_bits(np.array([], dtype=np.uint16), 7) == b""


@settings(max_examples=80, deadline=None)
@given(bits_st, st.integers(0, 5000), st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(bits: int, n: int, seed: int) -> None:
    values = np.random.default_rng(seed).integers(0, 2**bits, n, dtype=np.uint16)
    data = pack_bits(values, bits)
    assert len(data) == packed_size(n, bits) == -(-n * bits // 8)
    back = unpack_bits(data, bits, n)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, values)


@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_unpack_extremes(bits: int) -> None:
    values = np.array([0, 2**bits - 1] * 37, dtype=np.uint16)
    np.testing.assert_array_equal(unpack_bits(pack_bits(values, bits), bits, values.size), values)


def test_unpack_short_data_raises() -> None:
    data = pack_bits(np.arange(10), 5)
    with pytest.raises(WireError) as info:
        unpack_bits(data[:-1], 5, 10)
    assert info.value.reason == "payload_length"
    with pytest.raises(WireError):
        unpack_bits(b"", 1, 1)


def test_pack_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ConfigError):
        pack_bits(np.array([8]), 3)
    with pytest.raises(ConfigError):
        pack_bits(np.array([-1]), 3)
    with pytest.raises(ConfigError):
        pack_bits(np.array([1]), 0)
