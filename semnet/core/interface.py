"""The bit-importance interface (paper 003) and the wireless access node's allocation.

Pure core (numpy only). A codec whose latent is bits (``semnet.models.bsc``) is trained through
an array of binary symmetric channels with flip probabilities ``eps`` (one per latent channel x
bit position, MSB first); the learned ``eps`` is the *interface*: a bit trained to tolerate a
low flip rate is important, ``importance = 1 - 2 eps`` (eq. 8-9; 0.5 = the bit carries nothing).

The access node reads only this vector. It groups the bits into importance classes
(:func:`group`) and splits its power budget over them (:func:`allocate`); the result is the
flip probability each class actually sees on the channel, which :func:`flip_bits` applies.
docs/interface.md has the equations.

Channel model (docs/wireless.md conventions): Gray-mapped QPSK (2 bits per complex channel
use, default) or BPSK (1), symbol SNR ``snr = P_ave / sigma^2``; a class sent at power ``P``
(units of ``P_ave``) and channel gain ``g`` flips each bit with probability
``Q(sqrt(k snr g P))``, ``k = 1`` for QPSK, ``2`` for BPSK. AWGN: ``g = 1``. Block Rayleigh:
``g ~ Exp(1)`` per coherence block; the access node has no channel state, so it allocates
against the fading average ``(1 - sqrt(a / (2 + a))) / 2`` with ``a = k snr P``, and the flips a
block sees come from its own gain (:func:`flip_probability` with ``gain``).

Allocation schemes (the mean power over the channel uses is exactly the budget's):

* ``match`` (default) -- realise the interface: every class sees ``t * eps_c`` (capped at 0.5),
  the smallest common scale ``t`` the power budget affords. The source was trained for these
  relative reliabilities; more SNR lowers ``t`` for every class.
* ``weighted`` -- minimise ``sum_c n_c w_c p_c(P_c)`` with ``w_c = 1 - 2 eps_c`` (importance
  weighted bit errors, convex: solved exactly by its KKT conditions with bisection).
* ``equal`` -- the same power for every bit (no interface).

All randomness comes from a ``numpy.random.Generator`` the caller seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semnet.core.wireless import CHANNELS, q_function
from semnet.errors import ConfigError

FORMAT = "semnet-interface/1"
SCHEMES = ("match", "weighted", "equal")
MODULATIONS = {"qpsk": 1.0, "bpsk": 2.0}  # k in Q(sqrt(k snr P)); bits per use below
BITS_PER_USE = {"qpsk": 2, "bpsk": 1}
EPS_FLOOR = 1e-9  # a class promised eps = 0 is matched at this flip rate (finite power)
# keys an interface file or manifest may carry for people; derived from eps, never read back
INFORMATIONAL = ("importance", "kind", "eps_by_bit", "class_eps")


@dataclass(frozen=True)
class Interface:
    """Flip probabilities ``eps`` (channels, bits), MSB first, each in [0, 0.5]."""

    eps: np.ndarray

    def __post_init__(self) -> None:
        e = np.asarray(self.eps, dtype=float)
        if e.ndim != 2:
            raise ConfigError(f"interface: eps must be channels x bits, got shape {e.shape}")
        object.__setattr__(self, "eps", _checked(e.reshape(-1), e.shape[0], e.shape[1]))

    @property
    def channels(self) -> int:
        return int(self.eps.shape[0])

    @property
    def bits(self) -> int:
        return int(self.eps.shape[1])

    @property
    def importance(self) -> np.ndarray:
        """1 - 2 eps: 1 for a bit that must arrive intact, 0 for one that may be a coin."""
        return 1.0 - 2.0 * self.eps

    def by_bit(self) -> np.ndarray:
        """Mean eps per bit position (MSB first)."""
        return self.eps.mean(axis=0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "channels": self.channels,
            "bits": self.bits,
            "eps": [[round(float(v), 6) for v in row] for row in self.eps],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())


def _checked(flat: np.ndarray, channels: int, bits: int) -> np.ndarray:
    if channels < 1 or bits < 1 or bits > 16:
        raise ConfigError(f"interface: {channels} channels x {bits} bits is not a valid layout")
    if flat.size != channels * bits:
        raise ConfigError(
            f"interface: eps has {flat.size} values, expected {channels * bits} "
            f"({channels} channels x {bits} bits)"
        )
    bad = np.flatnonzero(~np.isfinite(flat))
    if bad.size:
        c, b = divmod(int(bad[0]), bits)
        raise ConfigError(f"interface: eps[{c}][{b}] is not finite ({flat[bad[0]]})")
    out = np.flatnonzero((flat < 0.0) | (flat > 0.5))
    if out.size:
        c, b = divmod(int(out[0]), bits)
        raise ConfigError(f"interface: eps[{c}][{b}] = {flat[out[0]]:g} is outside [0, 0.5]")
    return flat.reshape(channels, bits).copy()


def from_dict(data: Any, channels: int | None = None, bits: int | None = None) -> Interface:
    """An interface from its JSON form: ``{"channels", "bits", "eps"}`` with eps nested
    (channels x bits) or flat; ``channels``/``bits`` given here must match (the codec's)."""
    if not isinstance(data, dict):
        raise ConfigError("interface: not a JSON object")
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise ConfigError(f"interface: format {fmt!r} is not {FORMAT!r}")
    unknown = sorted(set(data) - {"format", "channels", "bits", "eps", *INFORMATIONAL})
    if unknown:
        raise ConfigError(f"interface: unknown key {unknown[0]!r}")
    c, b = data.get("channels"), data.get("bits")
    for key, v in (("channels", c), ("bits", b)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ConfigError(f"interface: {key} must be an integer, got {v!r}")
    if "eps" not in data:
        raise ConfigError("interface: eps missing")
    try:
        flat = np.asarray(_flatten(data["eps"]), dtype=float)
    except (TypeError, ValueError):
        raise ConfigError("interface: eps must be numbers (a list, or a list of lists)") from None
    eps = _checked(flat, c, b)
    for key, want, got in (("channels", channels, c), ("bits", bits, b)):
        if want is not None and want != got:
            raise ConfigError(f"interface: {key} is {got}, the codec has {want}")
    return Interface(eps)


def _flatten(v: Any) -> list:
    if isinstance(v, (list, tuple)):
        return [x for item in v for x in (_flatten(item) if isinstance(item, list) else [item])]
    raise TypeError


def load(path: str | Path, channels: int | None = None, bits: int | None = None) -> Interface:
    """Read an interface file; ConfigError naming the reason for a bad one."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"interface {path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"interface {path}: invalid JSON ({exc})") from None
    try:
        return from_dict(data, channels, bits)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def from_manifest(manifest: dict[str, Any]) -> Interface:
    """The interface a zoo manifest (its JSON dict) ships, under ``metrics.interface``."""
    found = (manifest.get("metrics") or {}).get("interface")
    if found is None:
        raise ConfigError(f"zoo entry {manifest.get('name')!r} ships no interface")
    return from_dict(found)


# --- importance classes -------------------------------------------------------------------


@dataclass(frozen=True)
class Classes:
    """``labels`` (channels, bits): class of each (channel, bit); class 0 the most important.
    ``eps`` and ``sizes``: each class's mean eps and number of (channel, bit) entries."""

    labels: np.ndarray
    eps: np.ndarray
    sizes: np.ndarray

    @property
    def count(self) -> int:
        return int(self.sizes.size)

    @property
    def importance(self) -> np.ndarray:
        return 1.0 - 2.0 * self.eps


def group(interface: Interface, n_classes: int = 4) -> Classes:
    """Cut the (channel, bit) entries, most important first (ties: MSB first, then channel),
    into ``n_classes`` groups of sizes within one of each other."""
    total = interface.eps.size
    if not 1 <= n_classes <= total:
        raise ConfigError(f"interface: {n_classes} classes for {total} entries")
    flat = interface.eps.reshape(-1)
    c_idx, b_idx = np.divmod(np.arange(total), interface.bits)
    order = np.lexsort((c_idx, b_idx, flat))  # eps ascending, then bit, then channel
    labels = np.empty(total, dtype=np.int64)
    for k, part in enumerate(np.array_split(order, n_classes)):
        labels[part] = k
    sizes = np.bincount(labels, minlength=n_classes)
    eps = np.bincount(labels, weights=flat, minlength=n_classes) / sizes
    return Classes(labels.reshape(interface.eps.shape), eps, sizes)


def by_position(interface: Interface) -> Classes:
    """One class per bit position, MSB first: the classes bit-plane datagrams carry (each holds
    one plane, wire.FLAG_PLANES), so a hop reads a datagram's class from its header alone."""
    labels = np.broadcast_to(np.arange(interface.bits), interface.eps.shape).copy()
    sizes = np.full(interface.bits, interface.channels)
    return Classes(labels, interface.by_bit(), sizes)


# --- the channel --------------------------------------------------------------------------


def _k(modulation: str) -> float:
    if modulation not in MODULATIONS:
        raise ConfigError(f"modulation {modulation!r} is not one of {', '.join(MODULATIONS)}")
    return MODULATIONS[modulation]


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ConfigError(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")


def flip_probability(
    snr_db: float,
    power: np.ndarray | float,
    channel: str = "awgn",
    modulation: str = "qpsk",
    gain: np.ndarray | float | None = None,
) -> np.ndarray:
    """A bit's flip probability at ``power`` (units of P_ave): ``Q(sqrt(k snr g P))`` for a
    given gain ``g`` (AWGN: 1); for ``rayleigh`` without a gain, the average over g ~ Exp(1)."""
    _check_channel(channel)
    a = _k(modulation) * 10.0 ** (snr_db / 10.0) * np.asarray(power, dtype=float)
    if channel == "rayleigh" and gain is None:
        return 0.5 * (1.0 - np.sqrt(a / (2.0 + a)))
    g = 1.0 if gain is None else np.asarray(gain, dtype=float)
    return q_function(np.sqrt(np.maximum(a * g, 0.0)))


def _power_for(p: np.ndarray, a: float, channel: str) -> np.ndarray:
    """The power giving flip probability ``p`` (<= 0.5) at ``a = k snr``: the inverse of the
    average formula for Rayleigh, of Q(sqrt(a P)) (by bisection on q_function) for AWGN."""
    p = np.clip(np.asarray(p, dtype=float), 1e-300, 0.5)
    if channel == "rayleigh":
        s2 = (1.0 - 2.0 * p) ** 2
        return 2.0 * s2 / np.maximum(1.0 - s2, 1e-300) / a
    lo, hi = np.zeros_like(p), np.full_like(p, 40.0)  # Q(40) ~ 0: x = sqrt(a P) in [0, 40]
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        above = q_function(mid) > p
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return hi**2 / a


@dataclass(frozen=True)
class Budget:
    """The access node's resources for one frame: mean power per channel use (units of
    P_ave) and the modulation; ``channel_uses`` (optional) must hold the frame's bits."""

    power: float = 1.0
    modulation: str = "qpsk"
    channel_uses: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.power) and self.power > 0):
            raise ConfigError(f"budget: power {self.power!r} must be > 0")
        _k(self.modulation)
        if self.channel_uses is not None and self.channel_uses < 1:
            raise ConfigError(f"budget: channel_uses {self.channel_uses!r} must be >= 1")


@dataclass(frozen=True)
class Allocation:
    """Per class: ``powers`` (units of P_ave; their size-weighted mean is the budget's power),
    ``probs`` the flip probability realised on the channel (the fading average for Rayleigh),
    ``uses`` the channel uses (for ``bits`` bits per entry), and the classes themselves."""

    classes: Classes
    powers: np.ndarray
    probs: np.ndarray
    uses: np.ndarray
    snr_db: float
    channel: str
    modulation: str
    scheme: str

    def realised(self, gain: np.ndarray | float) -> np.ndarray:
        """Flip probabilities of a coherence block with power gain ``gain`` (per class)."""
        g = np.asarray(gain, dtype=float)
        return flip_probability(self.snr_db, self.powers, "awgn", self.modulation, g)


def allocate(
    interface: Interface,
    snr_db: float,
    channel: str = "awgn",
    budget: Budget | None = None,
    *,
    classes: int | Classes = 4,
    scheme: str = "match",
    bits_per_entry: int = 1,
) -> Allocation:
    """Split ``budget`` over the interface's importance classes at ``snr_db``; see the module
    docstring for the schemes. ``bits_per_entry`` (the frame's bits per (channel, bit) entry,
    h*w of the latent) only sizes ``uses`` and the ``channel_uses`` check."""
    budget = budget or Budget()
    _check_channel(channel)
    if scheme not in SCHEMES:
        raise ConfigError(f"allocation scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    if not math.isfinite(snr_db):
        raise ConfigError(f"snr_db {snr_db!r} is not finite")
    cls = classes if isinstance(classes, Classes) else group(interface, classes)
    f = cls.sizes / cls.sizes.sum()
    a = _k(budget.modulation) * 10.0 ** (snr_db / 10.0)
    if scheme == "equal" or np.allclose(cls.eps, cls.eps[0]):
        powers = np.full(cls.count, budget.power)
    elif scheme == "match":
        powers = _match(np.maximum(cls.eps, EPS_FLOOR), f, a, channel, budget.power)
    else:
        powers = _weighted(cls.importance, f, a, channel, budget.power)
    powers = powers * (budget.power / float(np.sum(f * powers)))  # exact budget
    probs = flip_probability(snr_db, powers, channel, budget.modulation)
    uses = cls.sizes * bits_per_entry / BITS_PER_USE[budget.modulation]
    if budget.channel_uses is not None and uses.sum() > budget.channel_uses:
        raise ConfigError(
            f"budget: {int(cls.sizes.sum() * bits_per_entry)} bits need {uses.sum():g} channel "
            f"uses, the budget has {budget.channel_uses}"
        )
    return Allocation(cls, powers, probs, uses, float(snr_db), channel, budget.modulation, scheme)


def _match(eps: np.ndarray, f: np.ndarray, a: float, channel: str, power: float) -> np.ndarray:
    """Powers giving flips t * eps_c, the smallest t whose total power is the budget."""

    def used(log_t: float) -> float:
        return float(np.sum(f * _power_for(np.exp(log_t) * eps, a, channel)))

    lo, hi = math.log(1e-12 / eps.max()), math.log(0.5 / eps.min())  # hi: every class at 0.5
    if used(hi) >= power:  # even flips of 0.5 everywhere cost more: impossible, all get 0.5
        return np.full(eps.size, power)
    if used(lo) <= power:  # the budget buys near-zero flips everywhere: spend it pro rata
        return _power_for(np.exp(lo) * eps, a, channel)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if used(mid) > power else (lo, mid)
    return _power_for(np.exp(hi) * eps, a, channel)


def _slope(p_power: np.ndarray, a: float, channel: str) -> np.ndarray:
    """-d p / d P: decreasing in P from +inf at 0, so the weighted problem is convex."""
    x = a * np.maximum(p_power, 1e-300)
    if channel == "rayleigh":
        return a / (2.0 * np.sqrt(x / (2.0 + x)) * (2.0 + x) ** 2)
    return a * np.exp(-x / 2.0) / (2.0 * np.sqrt(2.0 * math.pi * x))


def _weighted(w: np.ndarray, f: np.ndarray, a: float, channel: str, power: float) -> np.ndarray:
    """KKT of min sum f_c w_c p(P_c) s.t. sum f_c P_c = power: w_c * slope(P_c) = lambda."""
    on = w > 0

    def powers(log_lam: float) -> np.ndarray:
        lo = np.full(w.shape, -60.0)
        hi = np.full(w.shape, math.log(power / f.min()) + 5.0)
        target = np.exp(log_lam) / np.where(on, w, 1.0)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            steep = _slope(np.exp(mid), a, channel) > target
            lo, hi = np.where(steep, mid, lo), np.where(steep, hi, mid)
        return np.where(on, np.exp(0.5 * (lo + hi)), 0.0)

    lo, hi = -200.0, 200.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.sum(f * powers(mid)) > power else (lo, mid)
    return powers(0.5 * (lo + hi))


# --- applying it --------------------------------------------------------------------------


def flip_bits(
    payload_bits_by_class: Sequence[np.ndarray],
    probs: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Each class's bits (0/1 arrays) with each bit flipped independently with its class's
    probability (a scalar, or an array broadcasting to the class's bits: e.g. per coherence
    block). Returns new arrays of the inputs' dtypes; the inputs are not modified."""
    if len(payload_bits_by_class) != len(probs):
        raise ConfigError(f"{len(payload_bits_by_class)} classes of bits but {len(probs)} probs")
    out = []
    for bits, p in zip(payload_bits_by_class, probs, strict=True):
        b = np.asarray(bits)
        p = np.asarray(p, dtype=float)
        if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
            raise ConfigError("flip probabilities must be in [0, 1]")
        flips = rng.random(b.shape) < p
        out.append((b ^ flips.astype(b.dtype)) if b.dtype != bool else (b ^ flips))
    return out


def flips(n_bits: int, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Which of ``n_bits`` bits flip (bool), each with probability ``prob``."""
    if not 0.0 <= prob <= 1.0:
        raise ConfigError(f"flip probability {prob!r} is not in [0, 1]")
    return rng.random(n_bits) < prob


def flip_packed(payload: bytes, prob: float, rng: np.random.Generator) -> bytes:
    """``payload`` with each of its bits flipped with probability ``prob`` (a datagram's
    payload in one class)."""
    mask = np.packbits(flips(len(payload) * 8, prob, rng))
    return (np.frombuffer(payload, dtype=np.uint8) ^ mask).tobytes()


# --- packet-level unequal protection ------------------------------------------------------


def expected_lost(k: int, m: int, loss: float) -> float:
    """Expected source shares not recovered from a (k + m, k) erasure code when each share is
    lost independently with probability ``loss`` (a block with >= k shares arriving is whole;
    otherwise only its arrived source shares are)."""
    i = np.arange(k + 1)
    j = np.arange(m + 1)
    pi = _binom(k, i, loss)
    pj = _binom(m, j, loss)
    fail = (i[:, None] + j[None, :]) > m
    return float(np.sum(pi[:, None] * pj[None, :] * fail * i[:, None]))


def _binom(n: int, x: np.ndarray, p: float) -> np.ndarray:
    logc = np.array([math.lgamma(n + 1) - math.lgamma(v + 1) - math.lgamma(n - v + 1) for v in x])
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.log(p) if p > 0 else -np.inf
        lq = np.log1p(-p) if p < 1 else -np.inf
        terms = logc + np.where(x > 0, x * lp, 0.0) + np.where(n - x > 0, (n - x) * lq, 0.0)
    return np.exp(terms)


def uep_parity(
    weights: Sequence[float], k: Sequence[int], total_parity: int, loss: float, max_share: int = 256
) -> list[int]:
    """Parity shares per class under one budget of ``total_parity`` shares: greedily, each
    next share goes to the class where it removes the most ``weight x expected lost source
    fraction`` at the design ``loss`` rate (weights: e.g. importance x bits of the class)."""
    w = np.asarray(weights, dtype=float)
    ks = [int(v) for v in k]
    if len(ks) != w.size or total_parity < 0:
        raise ConfigError("uep: one weight and one k per class, parity >= 0")
    m = [0] * len(ks)
    cost = [w[c] * expected_lost(ks[c], 0, loss) / ks[c] for c in range(len(ks))]
    for _ in range(total_parity):
        best, gain_best, new_best = None, -1.0, 0.0
        for c in range(len(ks)):
            if ks[c] + m[c] + 1 > max_share:
                continue
            new = w[c] * expected_lost(ks[c], m[c] + 1, loss) / ks[c]
            if cost[c] - new > gain_best:
                best, gain_best, new_best = c, cost[c] - new, new
        if best is None:
            break
        m[best] += 1
        cost[best] = new_best
    return m


def overhead_percent(k: int, m: int) -> int:
    """An overhead (percent, semnet.baselines.fec's unit) giving exactly ``m`` parity shares
    for ``k`` source shares: ceil(k * o / 100) = m; ConfigError if none exists (k > 100)."""
    if m == 0:
        return 0
    o = (m * 100) // k
    for cand in (o, o + 1, o - 1):
        if cand >= 0 and -(-k * cand // 100) == m:
            return cand
    raise ConfigError(f"no whole-percent overhead gives {m} parity shares for {k} sources")
