"""Partitioners: coverage, inverses, masks, spec texts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core.partition import canonical, merge, parse_spec, spec_name, split, units
from semnet.core.wire import ONE_PARAMETER, PartitionSpec, Scheme
from semnet.errors import ConfigError

shapes = st.tuples(st.integers(1, 12), st.integers(1, 9), st.integers(1, 9))


@st.composite
def specs(draw: st.DrawFn) -> PartitionSpec:
    scheme = draw(st.sampled_from(Scheme))
    a = draw(st.integers(1, 12))
    b = 1 if scheme in ONE_PARAMETER else draw(st.integers(1, 12))
    return PartitionSpec(scheme, a, b)


def flat_units(shape: tuple[int, int, int], spec: PartitionSpec) -> list[list[int]]:
    return [u.tolist() for u in units(shape, spec)]


def test_channel() -> None:
    assert flat_units((3, 1, 2), PartitionSpec(Scheme.CHANNEL, 2)) == [[0, 1, 2, 3], [4, 5]]


def test_spatial_and_patch_are_windows_channel_by_channel() -> None:
    # (C=2, h=2, w=3); element (c, i, j) is c*6 + i*3 + j.
    expected = [[0, 1, 3, 4, 6, 7, 9, 10], [2, 5, 8, 11]]
    assert flat_units((2, 2, 3), PartitionSpec(Scheme.SPATIAL, 2, 2)) == expected
    assert flat_units((2, 2, 3), PartitionSpec(Scheme.PATCH, 2, 2)) == expected
    assert flat_units((1, 2, 3), parse_spec("spatial")) == [[0], [1], [2], [3], [4], [5]]


def test_token_keeps_each_c_vector_together() -> None:
    # (C=2, h=1, w=3): token t is [t, 3 + t].
    assert flat_units((2, 1, 3), PartitionSpec(Scheme.TOKEN, 2)) == [[0, 3, 1, 4], [2, 5]]


def test_intra_token_sub_vectors() -> None:
    assert flat_units((3, 1, 2), PartitionSpec(Scheme.INTRA_TOKEN, 2)) == [[0, 2], [4], [1, 3], [5]]


def test_paper_unit_counts() -> None:
    shape = (64, 32, 48)
    assert len(units(shape, parse_spec("channel"))) == 64
    assert len(units(shape, parse_spec("token"))) == 32 * 48
    assert len(units(shape, parse_spec("intra-token"))) == 32 * 48 * 8
    assert len(units(shape, parse_spec("patch"))) == 8 * 12
    assert all(u.size == 64 * 16 for u in units(shape, parse_spec("patch")))


@settings(max_examples=150)
@given(shapes, specs())
def test_units_are_disjoint_and_cover(shape: tuple[int, int, int], spec: PartitionSpec) -> None:
    parts = units(shape, spec)
    joined = np.concatenate(parts)
    assert joined.dtype == np.int64
    np.testing.assert_array_equal(np.sort(joined), np.arange(np.prod(shape)))
    order, sizes = canonical(shape, spec)
    np.testing.assert_array_equal(order, joined)
    assert sizes.tolist() == [u.size for u in parts]
    assert min(sizes) >= 1


@settings(max_examples=150)
@given(shapes, specs(), st.integers(0, 2**32 - 1))
def test_split_merge_and_masks(shape: tuple[int, int, int], spec: PartitionSpec, seed: int) -> None:
    gen = np.random.default_rng(seed)
    y = gen.normal(size=shape).astype(np.float32)
    parts = units(shape, spec)
    z = split(y, parts)
    full, mask = merge(dict(enumerate(z)), parts, shape)
    assert full.dtype == np.float32
    np.testing.assert_array_equal(full, y)
    assert mask.all()

    kept = [i for i in range(len(parts)) if gen.random() < 0.5]
    got, mask = merge({i: z[i] for i in kept}, parts, shape, fill=np.nan)
    expected = np.zeros(y.size, dtype=bool)
    for i in kept:
        expected[parts[i]] = True
    expected = expected.reshape(shape)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(got[mask], y[mask])
    assert np.isnan(got[~mask]).all()


def test_units_are_cached_and_read_only() -> None:
    spec = parse_spec("patch:2x2")
    first = units((4, 6, 6), spec)
    assert units((4, 6, 6), spec) is first
    with pytest.raises(ValueError):
        first[0][0] = 5


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("channel", PartitionSpec(Scheme.CHANNEL, 1)),
        ("channel:2", PartitionSpec(Scheme.CHANNEL, 2)),
        ("spatial", PartitionSpec(Scheme.SPATIAL, 1, 1)),
        ("spatial:2x3", PartitionSpec(Scheme.SPATIAL, 2, 3)),
        ("token", PartitionSpec(Scheme.TOKEN, 1)),
        ("token:4", PartitionSpec(Scheme.TOKEN, 4)),
        ("intra-token", PartitionSpec(Scheme.INTRA_TOKEN, 8)),
        ("intra-token:16", PartitionSpec(Scheme.INTRA_TOKEN, 16)),
        ("patch", PartitionSpec(Scheme.PATCH, 4, 4)),
        ("patch:4x8", PartitionSpec(Scheme.PATCH, 4, 8)),
    ],
)
def test_parse_spec(text: str, spec: PartitionSpec) -> None:
    assert parse_spec(text) == spec


@given(specs())
def test_spec_name_round_trip(spec: PartitionSpec) -> None:
    assert parse_spec(spec_name(spec)) == spec


@pytest.mark.parametrize(
    "text",
    [
        "",
        "chanel",
        "channel:",
        "channel:0",
        "channel:256",
        "channel:2x2",
        "token:-1",
        "token:1.5",
        "intra-token:²",
        "patch:4",
        "patch:4x",
        "patch:4x4x4",
        "spatial:0x2",
    ],
)
def test_bad_spec_text(text: str) -> None:
    with pytest.raises(ConfigError, match="partition"):
        parse_spec(text)


def test_bad_shape() -> None:
    with pytest.raises(ConfigError):
        units((4, 0, 4), parse_spec("patch"))
    with pytest.raises(ConfigError):
        units((4, 4), parse_spec("patch"))
