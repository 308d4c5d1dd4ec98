"""The parsed impairment: one frozen dataclass tree, validated on construction.

Units are the ones users write in tc: probabilities in percent (0..100), times in integer
nanoseconds, rates in bytes per second. Defaults that tc fills in for omitted arguments are
resolved at parse time and stored, so two specs that behave the same compare equal and
:func:`~semnet.core.impair.netem.format_spec` can write every value back.
"""

from __future__ import annotations

from dataclasses import dataclass

from semnet.core.impair.units import MAX_TIME_NS, U32_MAX, U64_MAX
from semnet.errors import ConfigError

DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
DEFAULT_LIMIT = 1000
S32_MAX = 2**31 - 1


def _check_percent(where: str, **values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value <= 100.0:
            raise ConfigError(f"{where}: {name} {value!r} is not a percentage in 0..100%")


def _check_nonneg(where: str, **values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise ConfigError(f"{where}: {name} {value!r} is negative")


def _check_times(where: str, **values: int) -> None:
    """Times in ns: not negative, and at most MAX_TIME_NS (see units.MAX_TIME_NS for why)."""
    _check_nonneg(where, **values)
    for name, value in values.items():
        if value > MAX_TIME_NS:
            raise ConfigError(f"{where}: {name} {value!r}ns is above 3600s (MAX_TIME_NS)")


@dataclass(frozen=True, slots=True)
class Chance:
    """``PERCENT [CORRELATION]``: loss random, duplicate and corrupt share this shape."""

    percent: float
    corr: float = 0.0

    def __post_init__(self) -> None:
        _check_percent("chance", percent=self.percent, correlation=self.corr)


@dataclass(frozen=True, slots=True)
class LossState:
    """``loss state p13 [p31 [p32 [p23 [p14]]]]``: netem's 4-state Markov chain (GI model).

    States: 1 = good reception in a gap, 2 = good reception in a burst, 3 = loss in a burst,
    4 = isolated loss in a gap. tc's defaults: p31 = 100% - p13, p32 = 0, p23 = 100%, p14 = 0.
    """

    p13: float
    p31: float
    p32: float = 0.0
    p23: float = 100.0
    p14: float = 0.0

    def __post_init__(self) -> None:
        where = "loss state"
        _check_percent(where, p13=self.p13, p31=self.p31, p32=self.p32, p23=self.p23, p14=self.p14)
        # netem adds these as u32 and silently wraps past 100%; we refuse instead.
        if self.p13 + self.p14 > 100.0:
            raise ConfigError(f"{where}: p13 + p14 = {self.p13 + self.p14!r}% exceeds 100%")
        if self.p31 + self.p32 > 100.0:
            raise ConfigError(f"{where}: p31 + p32 = {self.p31 + self.p32!r}% exceeds 100%")


@dataclass(frozen=True, slots=True)
class LossGemodel:
    """``loss gemodel p [r [1-h [1-k]]]``: Gilbert-Elliott with tc's argument convention.

    ``p`` good->bad, ``r`` bad->good, ``one_minus_h`` loss probability in the bad state,
    ``one_minus_k`` loss probability in the good state. tc's defaults: r = 100% - p,
    1-h = 100%, 1-k = 0 (so ``gemodel p`` alone is Bernoulli with rate p).
    """

    p: float
    r: float
    one_minus_h: float = 100.0
    one_minus_k: float = 0.0

    def __post_init__(self) -> None:
        _check_percent(
            "loss gemodel",
            p=self.p,
            r=self.r,
            one_minus_h=self.one_minus_h,
            one_minus_k=self.one_minus_k,
        )


@dataclass(frozen=True, slots=True)
class LossBurst:
    """``loss burst RATE BURSTLEN [max MAXBURST]``: semnet's simple-Gilbert shorthand.

    ``rate`` is the long-run loss percentage, ``length`` the mean number of consecutive losses,
    ``max_burst`` an optional cap on a burst (0 = none). Compiled to a Gilbert-Elliott chain
    with 1-h = 100%, 1-k = 0 whose p and r give exactly these means (see docs/netem.md).
    """

    rate: float
    length: float
    max_burst: int = 0

    def __post_init__(self) -> None:
        where = "loss burst"
        if not 0.0 < self.rate < 100.0:
            raise ConfigError(f"{where}: rate {self.rate!r}% is not in 0..100% (exclusive)")
        if not 1.0 <= self.length < float("inf"):
            raise ConfigError(f"{where}: mean burst length {self.length!r} is below 1 packet")
        if self.max_burst < 0 or (self.max_burst and self.max_burst < self.length):
            raise ConfigError(
                f"{where}: max {self.max_burst!r} is below the mean burst length {self.length!r}"
            )
        frac = self.rate / 100.0
        if frac / (1.0 - frac) > self.length:
            top = 100.0 * self.length / (1.0 + self.length)
            raise ConfigError(
                f"{where}: rate {self.rate!r}% is unreachable with mean burst {self.length!r} "
                f"(gaps shorter than 1 packet); at most {top:.6g}%"
            )


Loss = Chance | LossState | LossGemodel | LossBurst


@dataclass(frozen=True, slots=True)
class Delay:
    """``delay TIME [JITTER [CORRELATION]] [distribution D]`` plus semnet's ``inorder``.

    ``inorder`` keeps release order equal to arrival order: a packet is never released before
    the one ahead of it (netem lets jitter reorder).
    """

    time_ns: int
    jitter_ns: int = 0
    corr: float = 0.0
    distribution: str = "uniform"
    inorder: bool = False

    def __post_init__(self) -> None:
        where = "delay"
        _check_times(where, time=self.time_ns, jitter=self.jitter_ns)
        _check_percent(where, correlation=self.corr)
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError(
                f"{where}: distribution {self.distribution!r} is not one of "
                f"{', '.join(DISTRIBUTIONS)}"
            )
        if self.distribution != "uniform" and not (self.time_ns and self.jitter_ns):
            raise ConfigError(
                f"{where}: distribution {self.distribution!r} needs a delay and a jitter"
            )


@dataclass(frozen=True, slots=True)
class Reorder:
    """``reorder PERCENT [CORRELATION] [gap DISTANCE]``; tc turns a missing gap into 1."""

    percent: float
    corr: float = 0.0
    gap: int = 1

    def __post_init__(self) -> None:
        _check_percent("reorder", percent=self.percent, correlation=self.corr)
        if not 1 <= self.gap <= 0xFFFFFFFF:
            raise ConfigError(f"reorder: gap {self.gap!r} is not in 1..4294967295")
        if self.gap > 1 and self.percent == 0:
            raise ConfigError("gap: specified without a reorder probability")


@dataclass(frozen=True, slots=True)
class Rate:
    """``rate RATE [PACKETOVERHEAD [CELLSIZE [CELLOVERHEAD]]]``; overheads may be negative."""

    bytes_per_s: int
    packet_overhead: int = 0
    cell_size: int = 0
    cell_overhead: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.bytes_per_s <= U64_MAX:
            raise ConfigError(f"rate: {self.bytes_per_s!r} bytes/s is not in 1..2**64-1 bytes/s")
        if self.cell_size < 0:
            raise ConfigError(f"rate: cell size {self.cell_size!r} is negative")


@dataclass(frozen=True, slots=True)
class Slot:
    """``slot MIN [MAX] | slot distribution D DELAY JITTER``, then ``[packets N] [bytes N]``.

    With ``distribution`` unset the wait for each slot is uniform in ``min_ns..max_ns``;
    with it set the wait is drawn from that table around ``delay_ns`` +- ``jitter_ns``.
    ``packets``/``bytes`` = 0 means no per-slot limit.
    """

    min_ns: int = 0
    max_ns: int = 0
    distribution: str | None = None
    delay_ns: int = 0
    jitter_ns: int = 0
    packets: int = 0
    bytes: int = 0

    def __post_init__(self) -> None:
        where = "slot"
        _check_times(
            where, min=self.min_ns, max=self.max_ns, delay=self.delay_ns, jitter=self.jitter_ns
        )
        _check_nonneg(where, packets=self.packets, bytes=self.bytes)
        if self.max_ns < self.min_ns:
            raise ConfigError(f"{where}: max {self.max_ns!r}ns is below min {self.min_ns!r}ns")
        if self.distribution is not None:
            if self.distribution not in DISTRIBUTIONS:
                raise ConfigError(
                    f"{where}: distribution {self.distribution!r} is not one of "
                    f"{', '.join(DISTRIBUTIONS)}"
                )
            if self.jitter_ns <= 0:
                raise ConfigError(f"{where}: distribution needs a positive jitter")
        if self.packets > S32_MAX or self.bytes > S32_MAX:
            raise ConfigError(f"{where}: packets/bytes above {S32_MAX}")


LINK_CHANNELS = ("awgn", "rayleigh")
LINK_POWER = ("equal", "waterfilling", "semantic")
LINK_ERRORS = ("packets", "bits")
# bit errors: how the access node splits its power over importance classes (core.interface)
LINK_ALLOCATION = ("match", "weighted", "equal")
LINK_MODULATION = ("qpsk", "bpsk")
PACKET_ONLY = ("blocklength", "coderate", "subcarriers", "power")
BITS_ONLY = ("allocation", "modulation")


@dataclass(frozen=True, slots=True)
class Link:
    """``link awgn|rayleigh snr X[dB] [blocklength D] [coderate R] [subcarriers B] [power P]``.

    semnet's wireless hop (docs/wireless.md, paper 002 eq. 4-8 and 28-33): each datagram is a
    (K, D) block-coded packet at ``coderate`` R_c = K/D bits per channel use, sent in slots of
    ``subcarriers`` datagrams with average SNR ``snr_db`` (P_ave / sigma^2) and lost with its
    finite-blocklength error probability. Defaults are the paper's: D = 1024, R_c = 0.4375,
    B = 16, equal power.

    ``errors bits [allocation A] [modulation M]`` makes it paper 003's access node instead
    (docs/interface.md): no datagram is lost, but each payload bit of a bit-plane datagram flips
    with its importance class's probability, from the source's interface (given to the model
    apart) and the power split ``allocation`` (match, weighted, equal) at ``modulation``.
    """

    channel: str
    snr_db: float
    blocklength: int = 1024
    coderate: float = 0.4375
    subcarriers: int = 16
    power: str = "equal"
    errors: str = "packets"
    allocation: str = "match"
    modulation: str = "qpsk"

    def __post_init__(self) -> None:
        where = "link"
        if self.channel not in LINK_CHANNELS:
            raise ConfigError(
                f"{where}: channel {self.channel!r} is not one of {', '.join(LINK_CHANNELS)}"
            )
        if not -50.0 <= self.snr_db <= 100.0:
            raise ConfigError(f"{where}: snr {self.snr_db!r}dB is not in -50..100dB")
        if not 1 <= self.blocklength <= S32_MAX:
            raise ConfigError(f"{where}: blocklength {self.blocklength!r} is not in 1..{S32_MAX}")
        if not 0.0 < self.coderate <= 64.0:
            raise ConfigError(f"{where}: coderate {self.coderate!r} is not in (0, 64] bits")
        if not 1 <= self.subcarriers <= 4096:
            raise ConfigError(f"{where}: subcarriers {self.subcarriers!r} is not in 1..4096")
        for name, allowed in (
            ("power", LINK_POWER),
            ("errors", LINK_ERRORS),
            ("allocation", LINK_ALLOCATION),
            ("modulation", LINK_MODULATION),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{where}: {name} {value!r} is not one of {', '.join(allowed)}")

    @property
    def bit_errors(self) -> bool:
        return self.errors == "bits"


@dataclass(frozen=True, slots=True)
class ImpairSpec:
    """One direction's impairment. Everything ``None`` passes datagrams untouched."""

    limit: int = DEFAULT_LIMIT
    delay: Delay | None = None
    loss: Loss | None = None
    duplicate: Chance | None = None
    corrupt: Chance | None = None
    reorder: Reorder | None = None
    rate: Rate | None = None
    slot: Slot | None = None
    seed: int | None = None
    link: Link | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= U32_MAX:  # netem's limit 0 drops everything: say so instead
            raise ConfigError(f"limit: {self.limit!r} is not in 1..{U32_MAX} (none: loss 100%)")
        if self.reorder is not None and self.reorder.percent > 0:
            if self.delay is None or self.delay.time_ns == 0:
                raise ConfigError(
                    "reorder: reordering needs a delay (netem sends reordered "
                    "packets at once and delays the others)"
                )
            if self.delay.inorder:
                raise ConfigError("inorder: contradicts reorder")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise ConfigError(f"seed: {self.seed!r} is not in 0..2**64-1")
