"""A wireless link for the impairment proxy: finite-blocklength packet errors and power allocation.

Pure core (numpy only). The model is paper 002 (generative feature imputing, section II-A2 and
section IV); docs/wireless.md has the equations and conventions. In short:

* each datagram is one packet, a (K, D) block code at rate ``R_c = K / D`` bits per channel use;
* ``B`` consecutive datagrams form a slot and go out on ``B`` orthogonal subcarriers; the slot's
  channel gains ``g_i = |h_i|^2`` are 1 (AWGN) or i.i.d. Exp(1) (block Rayleigh, h ~ CN(0, 1));
* powers ``P_i`` are in units of ``P_ave`` and satisfy ``mean(P) = 1`` exactly (eq. 31), so the
  received SNR is ``gamma_i = snr * g_i * P_i`` with ``snr = P_ave / sigma^2`` (eq. 5);
* the packet error is the normal approximation (eq. 6-8), :func:`per`.

All randomness comes from a ``numpy.random.Generator`` the caller seeds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

CHANNELS = ("awgn", "rayleigh")
POWER_SCHEMES = ("equal", "waterfilling", "semantic")
LN2 = math.log(2.0)
# received-SNR histogram edges (dB) for the proxy's semnet_proxy_link_snr_db
SNR_EDGES_DB = (-10.0, -5.0, 0.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)
SNR_FLOOR_DB = -50.0  # an unpowered subcarrier (gamma = 0) is tallied at this value

_erfc = np.frompyfunc(math.erfc, 1, 1)


def q_function(x: np.ndarray | float) -> np.ndarray:
    """Gaussian tail Q(x) = P(N(0,1) > x) = erfc(x / sqrt 2) / 2, to double precision."""
    x = np.asarray(x, dtype=float)
    return 0.5 * np.asarray(_erfc(x / math.sqrt(2.0)), dtype=float)


def capacity_bits(snr: np.ndarray | float) -> np.ndarray:
    """C(gamma) = log2(1 + gamma), bits per channel use (eq. 7)."""
    return np.log2(1.0 + np.asarray(snr, dtype=float))


def dispersion_nats(snr: np.ndarray | float) -> np.ndarray:
    """V(gamma) = gamma (2 + gamma) / (1 + gamma)^2 = 1 - 1/(1 + gamma)^2, in nats^2 (eq. 8).

    In bits^2 it is this times (log2 e)^2.
    """
    g = np.asarray(snr, dtype=float)
    return g * (2.0 + g) / (1.0 + g) ** 2


def per(snr: np.ndarray | float, blocklength: int, rate: float) -> np.ndarray:
    """Packet error probability, paper 002 eq. 6 (Polyanskiy-Poor-Verdu normal approximation).

    ``rho = Q(sqrt(D / V(gamma)) * (C(gamma) - R_c) * ln 2)`` with ``snr`` = gamma (linear),
    ``blocklength`` = D channel uses, ``rate`` = R_c bits per channel use. C is in bits and V in
    nats^2; the ``ln 2`` turns the bit gap into nats, so this equals the all-bits form
    ``Q((C - R_c) sqrt(D / V_bits))`` with ``V_bits = V (log2 e)^2``. gamma = 0 gives 1.
    """
    if blocklength < 1:
        raise ValueError(f"blocklength {blocklength!r} is below 1")
    if not 0.0 < rate < math.inf:
        raise ValueError(f"rate {rate!r} is not positive")
    g = np.asarray(snr, dtype=float)
    if np.any(g < 0) or np.any(np.isnan(g)):
        raise ValueError("snr must be >= 0")
    with np.errstate(divide="ignore", invalid="ignore"):
        arg = (capacity_bits(g) - rate) * LN2 * np.sqrt(blocklength / dispersion_nats(g))
    return q_function(np.where(g == 0, -np.inf, arg))


def draw_gains(rng: np.random.Generator, channel: str, size: int | tuple[int, ...]) -> np.ndarray:
    """Power gains |h|^2: ones for ``awgn``; Exp(1) (h ~ CN(0, 1), mean 1) for ``rayleigh``."""
    if channel == "awgn":
        return np.ones(size)
    if channel == "rayleigh":
        return rng.standard_exponential(size)
    raise ValueError(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")


def equal_power(gains: np.ndarray) -> np.ndarray:
    """P_i = P_ave on every subcarrier (units of P_ave: ones)."""
    return np.ones_like(np.asarray(gains, dtype=float))


def waterfilling(gains: np.ndarray) -> np.ndarray:
    """Classic water-filling on the last axis: P_i = max(0, mu - 1/g_i), mean(P) = 1.

    ``gains`` are the SNRs per unit power (``snr * |h|^2``). The water level mu is exact: with
    the inverse gains sorted, the k best subcarriers are active for the largest k whose level
    ``(B + sum of the k smallest 1/g) / k`` lies above the k-th smallest 1/g.
    """
    g = np.asarray(gains, dtype=float)
    b = g.shape[-1]
    with np.errstate(divide="ignore"):
        inv = np.where(g > 0, 1.0 / g, np.inf)
    srt = np.sort(inv, axis=-1)
    k = np.arange(1, b + 1)
    with np.errstate(invalid="ignore"):
        levels = (b + np.cumsum(srt, axis=-1)) / k
    active = levels > srt  # true for a prefix of k
    count = np.maximum(active.sum(axis=-1, keepdims=True), 1)
    mu = np.take_along_axis(levels, count - 1, axis=-1)
    return np.maximum(mu - inv, 0.0)


def weighted_error(
    powers: np.ndarray, gains: np.ndarray, weights: np.ndarray, blocklength: int, rate: float
) -> np.ndarray:
    """sum_i w_i rho_i(P_i) over the last axis (eq. 28's objective, exact eq. 6 PER)."""
    return np.sum(weights * per(gains * powers, blocklength, rate), axis=-1)


def _surrogate_powers(
    log_thr: np.ndarray, x: np.ndarray, gains: np.ndarray, blocklength: int, rate: float
) -> np.ndarray:
    """Each subcarrier's stationary power for the multiplier exp(x): 0 where it is off.

    On (P > P~) the KKT condition w_i * (-d rho^_i / dP) = lambda reads, with
    t = ln(1 + g P) - R ln 2: D t^2 / 2 + t = ln(lambda_i / lambda) =: L, lambda_i = w_i s_i,
    s_i = sqrt(D / 2 pi) g_i / 2^R. So t = (sqrt(1 + 2 D L) - 1) / D and
    P = (2^R e^t - 1) / g. For L <= 0 the subcarrier gets nothing.
    """
    lg = log_thr - x[..., None]
    on = lg > 0
    lpos = np.where(on, lg, 0.0)
    t = (np.sqrt(1.0 + 2.0 * blocklength * lpos) - 1.0) / blocklength
    with np.errstate(divide="ignore", invalid="ignore"):
        p = (2.0**rate * np.exp(t) - 1.0) / gains
    return np.where(on, p, 0.0)


def semantic_power(
    gains: np.ndarray,
    weights: np.ndarray,
    blocklength: int,
    rate: float,
    iterations: int = 64,
) -> np.ndarray:
    """Semantic-aware allocation: min sum w_i rho_i(P_i) s.t. mean(P) = 1 (paper 002 eq. 28-33).

    ``gains`` are SNRs per unit power (``snr * |h|^2``), ``weights`` the importances w_i >= 0,
    both (..., B). The paper's relaxation bounds V <= 1 (eq. 29: rho^_i = Q(sqrt(D)(C - R) ln 2))
    and replaces rho^ below the convexity point P~_i = (2^R - 1)/g_i by its tangent there
    (eq. 32, Prop. 4.1), which makes eq. 33 convex. Instead of ADMM we solve its KKT conditions
    exactly: each P_i(lambda) is closed-form (see _surrogate_powers), sum P_i(lambda) falls with
    lambda, and bisection on ln(lambda) finds the budget; a subcarrier whose threshold
    lambda_i = w_i s_i the budget lands on sits on its linear piece and takes the remainder.

    Three candidates are then scored with the exact eq. 6 PER and the best kept per slot: this
    solution; the same with any power stranded below P~ (where rho ~ 1) moved pro rata onto the
    subcarriers above it; and equal power. So the result is never worse than equal allocation.
    """
    g = np.asarray(gains, dtype=float)
    w = np.broadcast_to(np.asarray(weights, dtype=float), g.shape)
    if np.any(w < 0) or np.any(g < 0):
        raise ValueError("gains and weights must be >= 0")
    b = g.shape[-1]
    d, r = blocklength, rate
    usable = (w > 0) & (g > 0)
    with np.errstate(divide="ignore"):
        log_s = 0.5 * math.log(d / (2.0 * math.pi)) + np.log(g) - r * LN2
        log_thr = np.where(usable, np.log(np.where(usable, w, 1.0)) + log_s, -np.inf)
    top = log_thr.max(axis=-1)
    if not np.all(np.isfinite(top)):  # a slot with no usable subcarrier: equal power
        bad = ~np.isfinite(top)
        top = np.where(bad, 0.0, top)
    else:
        bad = None
    # lower bracket: multiplier at which the best subcarrier alone takes the whole budget
    g_top = np.take_along_axis(g, np.argmax(log_thr, axis=-1)[..., None], axis=-1)[..., 0]
    g_top = np.where(g_top > 0, g_top, 1.0)
    t_full = np.maximum(np.log1p(g_top * b) - r * LN2, 0.0)
    hi = top.copy()
    lo = top - (d * t_full**2 / 2.0 + t_full) - 1.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        over = _surrogate_powers(log_thr, mid, g, d, r).sum(axis=-1) >= b
        lo = np.where(over, mid, lo)
        hi = np.where(over, hi, mid)
    p_hi = _surrogate_powers(log_thr, hi, g, d, r)
    p_lo = _surrogate_powers(log_thr, lo, g, d, r)
    short = b - p_hi.sum(axis=-1, keepdims=True)
    jumper = (p_lo > 0) & (p_hi == 0)
    jump_mass = np.sum(np.where(jumper, p_lo, 0.0), axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        fill = np.where(jumper, p_lo * short / np.where(jump_mass > 0, jump_mass, 1.0), 0.0)
        rescaled = p_hi * (b / p_hi.sum(axis=-1, keepdims=True))
    relaxed = np.where(jump_mass > 0, p_hi + fill, rescaled)
    relaxed = _exact_budget(np.where(np.isfinite(relaxed), relaxed, 1.0), b)
    # candidate 2: power below the convexity point buys almost nothing: move it pro rata
    with np.errstate(divide="ignore"):
        p_tilde = np.where(g > 0, (2.0**r - 1.0) / g, np.inf)
    strong = relaxed >= p_tilde
    strong_sum = np.sum(np.where(strong, relaxed, 0.0), axis=-1, keepdims=True)
    pruned = np.where(
        strong_sum > 0,
        np.where(strong, relaxed, 0.0) * b / np.where(strong_sum > 0, strong_sum, 1),
        1,
    )
    candidates = np.stack([relaxed, pruned, np.ones_like(g)])
    scores = weighted_error(candidates, g, w, d, r)
    if bad is not None:
        scores[0:2][:, bad] = np.inf
    best = np.argmin(scores, axis=0)
    return np.take_along_axis(candidates, best[None, ..., None], axis=0)[0]


def _exact_budget(powers: np.ndarray, b: int) -> np.ndarray:
    total = powers.sum(axis=-1, keepdims=True)
    return np.where(total > 0, powers * (b / np.where(total > 0, total, 1.0)), 1.0)


def allocate(
    scheme: str, gains: np.ndarray, weights: np.ndarray | None, blocklength: int, rate: float
) -> np.ndarray:
    """Powers (units of P_ave, mean 1 over the last axis) for ``scheme`` in POWER_SCHEMES."""
    if scheme == "equal":
        return equal_power(gains)
    if scheme == "waterfilling":
        return waterfilling(gains)
    if scheme == "semantic":
        w = np.ones_like(gains) if weights is None else weights
        return semantic_power(gains, w, blocklength, rate)
    raise ValueError(f"power {scheme!r} is not one of {', '.join(POWER_SCHEMES)}")


@dataclass(frozen=True, slots=True)
class SlotDraw:
    """One slot: gains |h|^2, powers (units of P_ave), received SNRs, PERs, weights, fates."""

    gains: np.ndarray
    powers: np.ndarray
    snr: np.ndarray
    per: np.ndarray
    weights: np.ndarray
    lost: np.ndarray


class LinkSlots:
    """Per-datagram loss decisions over a slotted wireless link (sans-IO, seeded).

    Datagrams are taken B at a time: when the first datagram of a slot arrives, the slot's B
    gains are drawn, powers allocated with the importances queued by :meth:`feed` for the next B
    datagrams (1.0 = uniform for any not queued), PERs computed and B uniforms drawn; datagram j
    of the slot is lost when ``u_j < rho_j``. Decisions are final at arrival: a later importance
    value cannot change a slot already allocated.

    :meth:`feed_slot` queues one whole slot instead — what a transmitter that holds a frame's
    packets does: n <= B importances, and the slot carries exactly those n datagrams on n
    subcarriers (the same power per packet; a frame's last slot is often short). Queued slots
    are drawn before any loose values. Every slot consumes B gains and B uniforms from the
    generator, so a short slot does not shift the draws of the ones after it.
    """

    def __init__(
        self,
        channel: str,
        snr_db: float,
        blocklength: int,
        rate: float,
        subcarriers: int,
        power: str,
        seed: int,
    ) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
        if power not in POWER_SCHEMES:
            raise ValueError(f"power {power!r} is not one of {', '.join(POWER_SCHEMES)}")
        self.channel = channel
        self.snr = 10.0 ** (snr_db / 10.0)
        self.blocklength = blocklength
        self.rate = rate
        self.subcarriers = subcarriers
        self.power = power
        self._rng = np.random.default_rng(seed)
        self.pending: deque[float] = deque()
        self.slots_pending: deque[list[float]] = deque()
        self.slot: SlotDraw | None = None
        self._lost: list[bool] = []
        self._buckets: list[int] = []
        self._db: list[float] = []
        self._pos = 0
        self.slots = 0
        self.snr_counts = [0] * (len(SNR_EDGES_DB) + 1)  # datagrams by received SNR; +Inf last
        self.snr_sum_db = 0.0

    def feed(self, values: Iterable[float]) -> None:
        """Queue importances in [0, 1] for the next datagrams, one value per datagram."""
        vals = [float(v) for v in values]
        if any(not 0.0 <= v <= 1.0 for v in vals):
            raise ValueError("importance values must lie in [0, 1]")
        self.pending.extend(vals)

    def feed_slot(self, values: Iterable[float]) -> None:
        """Queue one slot of 1..B datagrams with these importances in [0, 1]."""
        vals = [float(v) for v in values]
        if not 1 <= len(vals) <= self.subcarriers:
            raise ValueError(f"a slot holds 1..{self.subcarriers} datagrams, not {len(vals)}")
        if any(not 0.0 <= v <= 1.0 for v in vals):
            raise ValueError("importance values must lie in [0, 1]")
        self.slots_pending.append(vals)

    def draw_slot(self) -> SlotDraw:
        """Draw and allocate the next slot (a queued slot, else up to B loose importances)."""
        b = self.subcarriers
        pending = self.pending
        if self.slots_pending:
            w = np.array(self.slots_pending.popleft())
        else:
            w = np.ones(b)
            for i in range(min(b, len(pending))):
                w[i] = pending.popleft()
        n = w.size
        gains = draw_gains(self._rng, self.channel, b)[:n]
        powers = allocate(self.power, self.snr * gains, w, self.blocklength, self.rate)
        snr = self.snr * gains * powers
        rho = per(snr, self.blocklength, self.rate)
        lost = self._rng.random(b)[:n] < rho
        with np.errstate(divide="ignore"):
            db = np.maximum(10.0 * np.log10(snr), SNR_FLOOR_DB)
        self._buckets = np.searchsorted(SNR_EDGES_DB, db, side="left").tolist()
        self._db = db.tolist()
        self.slots += 1
        return SlotDraw(gains, powers, snr, rho, w, lost)

    def lost(self) -> bool:
        """The next datagram's fate: True when the link loses it."""
        if self._pos >= len(self._lost):
            self.slot = self.draw_slot()
            self._lost = self.slot.lost.tolist()
            self._pos = 0
        pos = self._pos
        self._pos = pos + 1
        self.snr_counts[self._buckets[pos]] += 1
        self.snr_sum_db += self._db[pos]
        return self._lost[pos]
