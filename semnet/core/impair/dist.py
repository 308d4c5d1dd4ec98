"""Delay distributions: netem's tabledist() and the tables iproute2 ships as ``*.dist`` files.

The tables are regenerated here with the algorithms of iproute2's netem/{normal,pareto,
paretonormal}.c (NIST Net, public domain): 4096 signed 16-bit samples of a scaled inverse CDF
(unit = 1/8192 of a standard deviation). They are built on first use and cached.
"""

from __future__ import annotations

import math
from functools import cache

DIST_SCALE = 8192  # NETEM_DIST_SCALE
_TABLE_SIZE = 16384
_S16_MIN, _S16_MAX = -32768, 32767
_PARETO_ALPHA = 3.0


def _clamp16(value: int) -> int:
    return max(_S16_MIN, min(_S16_MAX, value))


def _trunc_div(a: int, b: int) -> int:
    """C's integer division (rounds toward zero), which the kernel's arithmetic relies on."""
    q = abs(a) // b
    return q if a >= 0 else -q


@cache
def _normal_quantiles() -> tuple[float, ...]:
    """x at each of 16385 CDF steps, by the same scan (step 5e-5 over -10..10) as normal.c."""
    table = [0.0] * (_TABLE_SIZE + 1)
    root2 = math.sqrt(2.0)
    x = -10.0
    while x < 10.05:
        table[round(_TABLE_SIZE * (0.5 + 0.5 * math.erf(x / root2)))] = x
        x += 0.00005
    return tuple(table)


def _pareto_value(i: int) -> int:
    value = 1.0 / math.pow(i / 65536, 1.0 / _PARETO_ALPHA) - 1.5
    return round(min(value * (4.0 / 3.0) * DIST_SCALE, 32767.0))


@cache
def table(name: str) -> tuple[int, ...] | None:
    """The named table, or None for ``uniform`` (netem's built-in default, no table)."""
    if name == "uniform":
        return None
    steps = range(0, _TABLE_SIZE, 4)
    if name == "pareto":
        return tuple(_pareto_value(65536 - 4 * i) for i in steps)
    quantiles = _normal_quantiles()
    normal = [round(quantiles[i] * DIST_SCALE) for i in steps]
    if name == "normal":
        return tuple(_clamp16(v) for v in normal)
    if name == "paretonormal":
        return tuple(
            _clamp16(_trunc_div(n + 3 * _pareto_value(65536 - 4 * i), 4))
            for n, i in zip(normal, steps, strict=True)
        )
    raise ValueError(f"unknown distribution {name!r}")


def tabledist(mu: int, sigma: int, rnd: int, dist: tuple[int, ...] | None) -> int:
    """netem's tabledist(): ``mu`` +- ``sigma`` shaped by ``dist``, from one u32 draw ``rnd``.

    Uniform (no table) is ``mu - sigma + rnd % (2 sigma)``; with a table the sample
    ``t`` (in 1/8192 sigma) is scaled in two parts to avoid overflow, rounding as the kernel does.
    The caller skips the draw when ``sigma`` is 0, as netem does.
    """
    if dist is None:
        return rnd % (2 * sigma) + mu - sigma
    t = dist[rnd % len(dist)]
    x = (sigma % DIST_SCALE) * t
    x += DIST_SCALE // 2 if x >= 0 else -(DIST_SCALE // 2)
    return _trunc_div(x, DIST_SCALE) + (sigma // DIST_SCALE) * t + mu
