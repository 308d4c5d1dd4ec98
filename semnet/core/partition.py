"""Partitioners: cut a (C, h, w) latent into units, the grain at which loss is reasoned about.

A unit is a read-only int64 array of flat (C-order) indices into the latent; a partition's
units are disjoint and cover every element once. "Tokens" are the h·w spatial positions in
row-major order, each a C-vector (paper 001 §II-B); patches are 002's H_z×W_z windows over
all channels, ordered channel by channel (§III-2, eq. 15).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from semnet.core.wire import ONE_PARAMETER, PartitionSpec, Scheme
from semnet.errors import ConfigError

_NAMES = {
    Scheme.CHANNEL: "channel",
    Scheme.SPATIAL: "spatial",
    Scheme.TOKEN: "token",
    Scheme.INTRA_TOKEN: "intra-token",
    Scheme.PATCH: "patch",
}
_SCHEMES = {name: scheme for scheme, name in _NAMES.items()}
_DEFAULTS = {
    Scheme.CHANNEL: (1, 1),
    Scheme.SPATIAL: (1, 1),
    Scheme.TOKEN: (1, 1),
    Scheme.INTRA_TOKEN: (8, 1),
    Scheme.PATCH: (4, 4),
}


def _unit_ids(shape: tuple[int, int, int], spec: PartitionSpec) -> tuple[np.ndarray, np.ndarray]:
    """(base, uid): flat indices in a base order and the unit of each, numbered canonically.

    Token schemes walk the latent token-major (each token's C-vector contiguous); the others
    walk it in C order, so inside a unit elements go channel by channel (002 eq. 15).
    """
    c, h, w = shape
    k = np.arange(c * h * w, dtype=np.int64)
    a, b = spec.a, spec.b
    if spec.scheme in (Scheme.TOKEN, Scheme.INTRA_TOKEN):
        base = k.reshape(c, h * w).T.ravel()
        token, channel = k // c, k % c
        if spec.scheme is Scheme.TOKEN:
            return base, token // a
        return base, token * -(-c // a) + channel // a
    if spec.scheme is Scheme.CHANNEL:
        return k, k // (h * w) // a
    row, col = k // w % h, k % w  # SPATIAL and PATCH: a×b windows, row-major over windows
    return k, row // a * -(-w // b) + col // b


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=64)
def _canonical(shape: tuple[int, int, int], spec: PartitionSpec) -> tuple[np.ndarray, np.ndarray]:
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"latent shape {shape!r} is not a positive (C, h, w)")
    base, uid = _unit_ids(shape, spec)
    return _frozen(base[np.argsort(uid, kind="stable")]), _frozen(np.bincount(uid))


def canonical(shape: tuple[int, int, int], spec: PartitionSpec) -> tuple[np.ndarray, np.ndarray]:
    """All units concatenated in canonical order, and each unit's size (cached, read-only).

    The vectorised form of :func:`units`: it costs a few arrays whatever the unit count, which
    is what a receiver wants when a descriptor (perhaps a forged one) names a new layout.
    """
    return _canonical(tuple(int(d) for d in shape), spec)


@functools.lru_cache(maxsize=64)
def _units(shape: tuple[int, int, int], spec: PartitionSpec) -> tuple[np.ndarray, ...]:
    order, sizes = _canonical(shape, spec)
    return tuple(np.split(order, np.cumsum(sizes)[:-1]))


def units(shape: tuple[int, int, int], spec: PartitionSpec) -> tuple[np.ndarray, ...]:
    """The partition's units in canonical order (cached; arrays are read-only)."""
    return _units(tuple(int(d) for d in shape), spec)


def split(y: np.ndarray, unit_list: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Cut a latent into its units' values: z_i = y.flat[unit_i]."""
    flat = np.asarray(y).reshape(-1)
    return [flat[u] for u in unit_list]


def merge(
    parts: Mapping[int, np.ndarray],
    unit_list: Sequence[np.ndarray],
    shape: tuple[int, int, int],
    fill: float = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`split` for the units received; returns (y, received mask).

    Missing elements hold ``fill``; the dtype is that of the parts (and ``fill``).
    """
    size = math.prod(shape)
    y = np.full(size, fill, dtype=np.result_type(*parts.values(), fill))
    mask = np.zeros(size, dtype=bool)
    for i, values in parts.items():
        y[unit_list[i]] = values
        mask[unit_list[i]] = True
    return y.reshape(shape), mask.reshape(shape)


def parse_spec(text: str) -> PartitionSpec:
    """Read "name", "name:a" or "name:axb" (e.g. "patch:4x4"); ConfigError names bad text."""
    name, colon, params = text.strip().lower().partition(":")
    scheme = _SCHEMES.get(name)
    if scheme is None:
        raise ConfigError(f"partition {text!r}: unknown scheme (one of {', '.join(_SCHEMES)})")
    if not colon:
        return PartitionSpec(scheme, *_DEFAULTS[scheme])
    fields = params.split("x")
    digits = all(f.isascii() and f.isdigit() for f in fields)
    if not digits or len(fields) != (1 if scheme in ONE_PARAMETER else 2):
        form = f"{name}:N" if scheme in ONE_PARAMETER else f"{name}:AxB"
        raise ConfigError(f"partition {text!r}: expected {form!r}")
    try:
        return PartitionSpec(scheme, *(int(f) for f in fields))
    except ConfigError as exc:
        raise ConfigError(f"partition {text!r}: {exc}") from None


def spec_name(spec: PartitionSpec) -> str:
    """Canonical text of a spec, the inverse of :func:`parse_spec` (e.g. "patch:4x4")."""
    name = _NAMES[spec.scheme]
    if spec.scheme in ONE_PARAMETER:
        return f"{name}:{spec.a}"
    return f"{name}:{spec.a}x{spec.b}"
