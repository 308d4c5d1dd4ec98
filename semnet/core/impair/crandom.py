"""netem's "correlated" random source (get_crandom in sch_netem.c), kept bit-exact for parity.

Each draw is a weighted mean of a fresh uniform u32 and the previous output:
``next = (fresh * (2**32 - rho) + last * rho) >> 32`` with ``rho = CORR * (2**32-1) + 1``.
A mean of uniforms is not uniform: it piles up around 2**31, so "P with correlation C" does not
fire with probability P (fewer events than asked when P < 50%), and the lag-1 correlation of the
resulting events is not C. The tc-netem man page calls the correlated loss option deprecated for
this reason. semnet keeps the formula so a netem profile behaves as it does under netem;
``loss gemodel`` / ``loss state`` / ``loss burst`` are the models that give real bursts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial

from semnet.core.impair.units import percent_to_u32

_TWO32 = 1 << 32


class Correlated:
    """One correlated stream; its memory starts from a draw of the shared seeded generator."""

    __slots__ = ("_bits", "_rho", "_last")

    def __init__(self, rng: random.Random, corr_u32: int) -> None:
        self._bits = rng.getrandbits
        self._rho = corr_u32 + 1
        # netem seeds the memory from the kernel's entropy pool; we take it from the seeded
        # stream so that runs repeat.
        self._last = rng.getrandbits(32)

    def __call__(self) -> int:
        rho = self._rho
        answer = (self._bits(32) * (_TWO32 - rho) + self._last * rho) >> 32
        self._last = answer
        return answer


def u32_source(rng: random.Random, corr_percent: float) -> Callable[[], int]:
    """A draw-a-u32 callable: plain when the correlation is 0 (as netem), correlated otherwise."""
    corr = percent_to_u32(corr_percent)
    if corr == 0:
        return partial(rng.getrandbits, 32)
    return Correlated(rng, corr)
