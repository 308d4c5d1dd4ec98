"""Loss models re-expressed from sch_netem.c, plus semnet's ``loss burst`` mapping.

Each model is a callable returning True when the next datagram is lost. They draw u32 values
from the shared seeded generator in exactly netem's order (random: one draw, or none at 0%;
4-state: one draw per packet; Gilbert-Elliott: two draws per packet, transition then loss),
so a test can replay the stream through an independent implementation.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from semnet.core.impair.crandom import u32_source
from semnet.core.impair.spec import Chance, Loss, LossBurst, LossGemodel, LossState
from semnet.core.impair.units import U32_MAX, percent_to_u32


class RandomLoss:
    """``loss random P [CORR]``: lost when ``P_u32 >= draw`` (so 100% loses every packet)."""

    __slots__ = ("_threshold", "_draw")

    def __init__(self, threshold: int, draw: Callable[[], int]) -> None:
        self._threshold = threshold
        self._draw = draw

    def __call__(self) -> bool:
        return self._threshold >= self._draw()


class FourStateLoss:
    """netem's 4-state chain; the packet is lost when the state it moves to is a loss state.

    State numbers follow the man page: 1 gap/received, 2 burst/received, 3 burst/lost,
    4 gap/isolated loss. The chain starts in state 1, as netem's does.
    """

    __slots__ = ("_bits", "_p13", "_p31", "_p32", "_p23", "_p14", "state")

    def __init__(self, spec: LossState, rng: random.Random) -> None:
        self._bits = rng.getrandbits
        self._p13 = percent_to_u32(spec.p13)
        self._p31 = percent_to_u32(spec.p31)
        self._p32 = percent_to_u32(spec.p32)
        self._p23 = percent_to_u32(spec.p23)
        self._p14 = percent_to_u32(spec.p14)
        self.state = 1

    def __call__(self) -> bool:
        rnd = self._bits(32)
        state = self.state
        if state == 1:
            if rnd < self._p14:
                self.state = 4
                return True
            if rnd < self._p13 + self._p14:
                self.state = 3
                return True
            return False
        if state == 2:
            if rnd < self._p23:
                self.state = 3
                return True
            return False
        if state == 3:
            if rnd < self._p32:
                self.state = 2
                return False
            if rnd < self._p31 + self._p32:
                self.state = 1
                return False
            return True
        self.state = 1
        return False


class GilbertElliottLoss:
    """netem's Gilbert-Elliott: draw a transition, then a loss with the *starting* state's odds.

    ``max_burst`` (semnet, 0 = off) forces the bad state to end after that many packets; the
    transition draw is still taken so the stream stays aligned with netem's.
    """

    __slots__ = ("_bits", "_p", "_r", "_h", "_k1", "_max", "_run", "bad")

    def __init__(self, p: int, r: int, h: int, k1: int, rng: random.Random, max_burst: int) -> None:
        self._bits = rng.getrandbits
        self._p, self._r, self._h, self._k1 = p, r, h, k1
        self._max = max_burst
        self._run = 0
        self.bad = False

    def __call__(self) -> bool:
        bits = self._bits
        if self.bad:
            self._run += 1
            if bits(32) < self._r or self._run == self._max:
                self.bad = False
                self._run = 0
            return bits(32) > self._h
        if bits(32) < self._p:
            self.bad = True
        return bits(32) < self._k1


def burst_parameters(spec: LossBurst) -> tuple[float, float]:
    """Simple-Gilbert (p, r) as fractions giving mean loss ``rate`` and mean burst ``length``.

    Bad runs are geometric with mean 1/r (truncated at ``max_burst`` when set), good runs
    geometric with mean 1/p; the loss fraction is L / (L + 1/p), hence p = f / (L (1 - f)).
    With a cap M the mean burst is (1 - (1 - r)**M) / r, solved for r by bisection (it falls
    from M at r -> 0 to 1 at r = 1).
    """
    frac = spec.rate / 100.0
    length = spec.length
    p = frac / (length * (1.0 - frac))
    cap = spec.max_burst
    if not cap:
        return p, 1.0 / length
    if length >= cap:
        return p, 0.0
    lo, hi = 1e-12, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if (1.0 - (1.0 - mid) ** cap) / mid > length:
            lo = mid
        else:
            hi = mid
    return p, (lo + hi) / 2


def make_loss(spec: Loss | None, rng: random.Random) -> Callable[[], bool] | None:
    """The loss callable for ``spec``, or None when it can never lose (netem then draws nothing)."""
    if spec is None:
        return None
    if isinstance(spec, Chance):
        threshold = percent_to_u32(spec.percent)
        return RandomLoss(threshold, u32_source(rng, spec.corr)) if threshold else None
    if isinstance(spec, LossState):
        return FourStateLoss(spec, rng)
    if isinstance(spec, LossGemodel):
        p, r = percent_to_u32(spec.p), percent_to_u32(spec.r)
        h = U32_MAX - percent_to_u32(spec.one_minus_h)  # tc passes h = 1 - (1-h) to the kernel
        return GilbertElliottLoss(p, r, h, percent_to_u32(spec.one_minus_k), rng, 0)
    p, r = burst_parameters(spec)
    return GilbertElliottLoss(
        percent_to_u32(100.0 * p), percent_to_u32(100.0 * r), 0, 0, rng, spec.max_burst
    )
