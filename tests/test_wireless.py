"""The wireless link: finite-blocklength PER, channel draws, power allocation, the link stage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from semnet.core import wireless as W
from semnet.core.impair import Impairment, format_spec, parse_spec, spec_from_mapping
from semnet.core.impair.spec import Link
from semnet.errors import ConfigError

D, R, B = 1024, 0.4375, 16


def per_bits_form(snr: float, d: int, rate: float) -> float:
    """Independent evaluation: all in bits, Q via math.erfc."""
    if snr == 0:
        return 1.0
    c = math.log2(1 + snr)
    v_bits = (1 - 1 / (1 + snr) ** 2) * math.log2(math.e) ** 2
    x = (c - rate) * math.sqrt(d / v_bits)
    return 0.5 * math.erfc(x / math.sqrt(2))


# -- PER -----------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [64, 256, 1024])
@pytest.mark.parametrize("rate", [0.1, 0.4375, 1.0, 2.5])
def test_per_matches_direct_evaluation(d: int, rate: float) -> None:
    snrs = np.concatenate([[0.0], np.logspace(-3, 3, 121)])
    got = W.per(snrs, d, rate)
    want = np.array([per_bits_form(s, d, rate) for s in snrs])
    tiny = want < 1e-300  # below the double range both are 0
    np.testing.assert_allclose(got[~tiny], want[~tiny], rtol=1e-9, atol=0)
    assert np.all(got[tiny] < 1e-290)


def test_q_function_matches_numeric_integral() -> None:
    integrate = pytest.importorskip("scipy.integrate")
    for x in (-3.0, -0.5, 0.0, 0.7, 2.0, 5.0):
        area, _ = integrate.quad(lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi), x, 40)
        assert W.q_function(x) == pytest.approx(area, rel=1e-8, abs=1e-14)
    # and a PER point through the integral: gamma = 10^-0.2 at D = 1024, R = 0.4375
    snr = 10**-0.2
    x = (math.log(1 + snr) - R * math.log(2)) * math.sqrt(D / (snr * (2 + snr) / (1 + snr) ** 2))
    area, _ = integrate.quad(lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi), x, 40)
    assert W.per(snr, D, R) == pytest.approx(area, rel=1e-8)


def test_per_monotone_and_limits() -> None:
    snrs = np.logspace(-2, 2, 400)
    p = W.per(snrs, D, R)
    assert np.all(np.diff(p) <= 0)
    rates = np.linspace(0.05, 3.0, 200)
    pr = np.array([W.per(1.0, D, r) for r in rates])
    assert np.all(np.diff(pr) >= 0)
    assert W.per(0.0, D, R) == 1.0
    assert W.per(1e-6, D, R) == pytest.approx(1.0)
    assert W.per(1e4, D, R) == pytest.approx(0.0, abs=1e-300)
    # at capacity = rate the error is exactly 1/2
    assert W.per(2**R - 1, D, R) == pytest.approx(0.5)


def test_per_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        W.per(-1.0, D, R)
    with pytest.raises(ValueError):
        W.per(1.0, 0, R)
    with pytest.raises(ValueError):
        W.per(1.0, D, 0.0)


# -- channels ------------------------------------------------------------------------------


def test_rayleigh_gains_are_exp1() -> None:
    n = 20_000
    g = np.sort(W.draw_gains(np.random.default_rng(3), "rayleigh", n))
    assert abs(g.mean() - 1.0) < 4.0 / math.sqrt(n)  # sd of Exp(1) is 1
    cdf = 1.0 - np.exp(-g)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.63 / math.sqrt(n)  # KS critical value at alpha = 1%
    assert np.all(W.draw_gains(np.random.default_rng(3), "awgn", 5) == 1.0)
    with pytest.raises(ValueError):
        W.draw_gains(np.random.default_rng(3), "rician", 5)


# -- power allocation ----------------------------------------------------------------------


def slots(snr_db: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gains = 10 ** (snr_db / 10) * W.draw_gains(rng, "rayleigh", (n, B))
    return gains, rng.random((n, B))


@pytest.mark.parametrize("snr_db", [-5, 0, 10, 25])
def test_allocations_meet_the_budget(snr_db: float) -> None:
    gains, w = slots(snr_db, 200, 1)
    for scheme in W.POWER_SCHEMES:
        p = W.allocate(scheme, gains, w, D, R)
        assert p.shape == gains.shape
        assert np.all(p >= 0)
        np.testing.assert_allclose(p.mean(axis=-1), 1.0, rtol=0, atol=1e-12)


def test_waterfilling_levels() -> None:
    gains, _ = slots(0, 200, 2)
    p = W.waterfilling(gains)
    level = p + 1 / gains
    for row_p, row_level, row_g in zip(p, level, gains, strict=True):
        on = row_p > 0
        assert on.any()
        np.testing.assert_allclose(row_level[on], row_level[on][0], rtol=1e-12)
        assert np.all(1 / row_g[~on] >= row_level[on][0] - 1e-12)  # off: floor above the water
    # equal gains: water-filling is equal power
    np.testing.assert_allclose(W.waterfilling(np.full((1, B), 3.0)), 1.0)


@pytest.mark.parametrize("snr_db", [0, 5, 10, 20])
def test_semantic_lowers_weighted_error(snr_db: float) -> None:
    gains, w = slots(snr_db, 300, 10 + snr_db)
    eq = W.weighted_error(W.equal_power(gains), gains, w, D, R)
    sem = W.weighted_error(W.semantic_power(gains, w, D, R), gains, w, D, R)
    assert np.all(sem <= eq + 1e-12)  # per slot, by construction (equal is a candidate)
    assert sem.mean() < 0.8 * eq.mean()


def test_semantic_follows_importance() -> None:
    # same channel on every subcarrier: the more important packet must get at least the power
    gains = np.full((1, 4), 10 ** (0 / 10) * 0.5)
    w = np.array([[1.0, 0.2, 0.9, 0.0]])
    p = W.semantic_power(gains, w, D, R)[0]
    assert p[3] == 0.0
    assert p[0] >= p[2] >= p[1]
    # all importances zero: nothing to optimise, equal power
    np.testing.assert_allclose(W.semantic_power(gains, np.zeros((1, 4)), D, R), 1.0)


# -- the link stage ------------------------------------------------------------------------


def mean_per_rayleigh(snr_db: float) -> float:
    """E over g ~ Exp(1) of rho(snr g), equal power: the long-run loss rate."""
    g = np.linspace(0, 30, 300_001)
    f = W.per(10 ** (snr_db / 10) * g, D, R) * np.exp(-g)
    return float(np.sum((f[1:] + f[:-1]) / 2) * (g[1] - g[0]))


@pytest.mark.parametrize("text, expect", [("rayleigh snr 5dB", None), ("awgn snr -4.3dB", None)])
def test_link_loss_rate_matches_mean_per(text: str, expect: None) -> None:
    spec = parse_spec(f"link {text}")
    imp = Impairment(spec, 11)
    n = 16_000
    lost = sum(not imp.process(b"d", i * 1e-4) for i in range(n))
    if spec.link.channel == "awgn":
        p = float(W.per(10 ** (spec.link.snr_db / 10), D, R))
    else:
        p = mean_per_rayleigh(spec.link.snr_db)
    assert 0.01 < p < 0.5
    assert abs(lost - n * p) < 4 * math.sqrt(n * p * (1 - p))
    assert imp.counters.dropped_by_reason["link"] == lost
    assert imp.counters.emitted == n - lost


def test_link_losses_follow_the_slot_pers() -> None:
    imp = Impairment(parse_spec("link rayleigh snr 10dB power semantic"), 5)
    n, expected, var, lost = 8_000, 0.0, 0.0, 0
    for i in range(n):
        lost += not imp.process(b"d", 0.0)
        if i % B == 0:
            rho = imp.link.slot.per
            expected += rho.sum()
            var += (rho * (1 - rho)).sum()
    assert imp.link.slots == n // B
    assert abs(lost - expected) < 4 * math.sqrt(var) + 1
    assert imp.last_fate is not None and imp.last_fate.action in ("pass", "drop:link")


def fates(spec: str, seed: int, n: int = 400) -> list[str]:
    imp = Impairment(parse_spec(spec), seed)
    out = []
    for i in range(n):
        imp.process(b"x" * 100, i * 1e-3)
        out.append(imp.last_fate.action)
    return out


def test_seed_reproducibility() -> None:
    spec = "link rayleigh snr 3dB power semantic loss gemodel 1% 30%"
    a, b = fates(spec, 1), fates(spec, 1)
    assert a == b
    assert a != fates(spec, 2)
    assert {"drop:link", "pass"} <= set(a)
    # a spec without a link draws exactly what it drew before links existed
    assert "link" not in Impairment(parse_spec("loss 1%"), 0).counters.dropped_by_reason


def test_set_spec_switches_link_on_and_off() -> None:
    imp = Impairment(parse_spec("loss gemodel 1% 30%"), 3)
    assert imp._loss_only and imp.link is None
    for i in range(100):
        imp.process(b"x", i)
    imp.set_spec(parse_spec("link rayleigh snr 0dB subcarriers 4 power waterfilling"))
    assert not imp._loss_only and imp.link.subcarriers == 4
    for i in range(400):
        imp.process(b"x", 100 + i)
    c = imp.counters
    assert c.received == 500 and c.dropped_by_reason["link"] > 0
    assert c.emitted == c.received - c.dropped
    imp.set_spec(parse_spec("loss gemodel 1% 30%"))
    assert imp._loss_only and imp.link is None
    imp.process(b"x", 600)
    assert imp.last_fate.action in ("pass", "drop:loss")


def test_importance_feed() -> None:
    imp = Impairment(parse_spec("link rayleigh snr 0dB subcarriers 4 power semantic"), 9)
    imp.feed_importance([0.9, 0.1, 0.5])
    imp.process(b"x", 0.0)
    np.testing.assert_allclose(imp.link.slot.weights, [0.9, 0.1, 0.5, 1.0])
    with pytest.raises(ValueError):
        imp.feed_importance([1.5])
    plain = Impairment(parse_spec("loss 1%"), 9)
    plain.feed_importance([0.3])  # no link: ignored
    assert plain.link is None


def test_snr_tallies() -> None:
    imp = Impairment(parse_spec("link rayleigh snr 10dB subcarriers 8 power waterfilling"), 4)
    for i in range(100):
        imp.process(b"x", i)
    assert sum(imp.link.snr_counts) == 100
    assert math.isfinite(imp.link.snr_sum_db)


# -- spec ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "link awgn snr 10dB",
        "link rayleigh snr -3.5dB blocklength 256 coderate 0.25 subcarriers 8 power semantic",
        "delay 10ms link rayleigh snr 0 power waterfilling loss gemodel 1% 30%",
        "link rayleigh power equal subcarriers 1 snr 20db rate 10mbit",
    ],
)
def test_spec_round_trip(text: str) -> None:
    spec = parse_spec(text)
    assert spec.link is not None
    assert parse_spec(format_spec(spec)) == spec
    assert format_spec(parse_spec(format_spec(spec))) == format_spec(spec)


def test_spec_defaults_and_mapping() -> None:
    link = parse_spec("link rayleigh snr 10dB").link
    assert link == Link("rayleigh", 10.0, 1024, 0.4375, 16, "equal")
    text = "link rayleigh snr 10dB blocklength 512 coderate 0.5 subcarriers 8 power semantic"
    mapping = {
        "link": {
            "channel": "rayleigh",
            "snr": 10,
            "blocklength": 512,
            "coderate": 0.5,
            "subcarriers": 8,
            "power": "semantic",
        }
    }
    assert spec_from_mapping(mapping) == parse_spec(text)
    assert spec_from_mapping({"link": text.removeprefix("link ")}) == parse_spec(text)


@pytest.mark.parametrize(
    "text, token",
    [
        ("link", "missing value"),
        ("link wifi snr 3dB", "'wifi'"),
        ("link awgn", "missing snr"),
        ("link awgn snr", "missing value"),
        ("link awgn snr ten", "'ten'"),
        ("link awgn snr 10mW", "'10mW'"),
        ("link awgn snr 200dB", "snr 200.0dB"),
        ("link awgn snr 1 snr 2", "snr: given twice"),
        ("link awgn snr 1 blocklength 0", "'0'"),
        ("link awgn snr 1 blocklength 1.5", "'1.5'"),
        ("link awgn snr 1 coderate 0", "coderate 0.0"),
        ("link awgn snr 1 coderate -1", "'-1'"),
        ("link awgn snr 1 subcarriers 0", "'0'"),
        ("link awgn snr 1 power max", "'max'"),
        ("link awgn snr 1 link awgn snr 2", "link: given twice"),
        ("lin awgn snr 1", "'lin'"),
    ],
)
def test_spec_errors_name_the_token(text: str, token: str) -> None:
    with pytest.raises(ConfigError, match="link|netem") as info:
        parse_spec(text)
    assert token in str(info.value)


@pytest.mark.parametrize(
    "mapping, token",
    [
        ({"link": {"channel": "rayleigh"}}, "'snr'"),
        ({"link": {"channel": "rayleigh", "snr": 1, "gain": 2}}, "'gain'"),
        ({"link": {"channel": "rayleigh", "snr": True}}, "True"),
        ({"link": "awgn snr 1 delay 1ms"}, "delay"),
        ({"link": 3}, "3"),
    ],
)
def test_mapping_errors_name_the_key(mapping: dict, token: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec_from_mapping(mapping)
    assert token in str(info.value)


def test_link_drops_record_and_replay():
    """A recorded trace with link drops replays to the same fates and counters."""
    import io

    from semnet.core.impair import FateRecorder, Impairment, ReplayImpairment, parse_spec
    from semnet.core.impair.trace import parse_trace

    live = Impairment(parse_spec("link rayleigh snr 3dB subcarriers 4"), 5)
    out = io.StringIO()
    recorder = FateRecorder(out)
    fates = []
    for i in range(400):
        live.process(b"d" * 100, i * 1e-3)
        recorder.record(live.last_fate)
        fates.append(live.last_fate.action)
    assert live.counters.dropped_by_reason["link"] > 0
    replay = ReplayImpairment(parse_trace(out.getvalue().splitlines()))
    replayed = []
    for i in range(400):
        replay.process(b"d" * 100, i * 1e-3)
        replayed.append(replay.last_fate.action)
    assert replayed == fates
    assert replay.counters.dropped_by_reason["link"] == live.counters.dropped_by_reason["link"]


def test_a_queued_slot_carries_exactly_its_datagrams() -> None:
    imp = Impairment(parse_spec("link rayleigh snr 5dB subcarriers 4 power semantic"), 9)
    imp.link.feed_slot([0.9, 0.2, 0.4])
    for i in range(3):
        imp.process(b"x", i)
    assert imp.link.slot.weights.tolist() == [0.9, 0.2, 0.4]  # three subcarriers, no padding
    assert imp.link.slot.powers.mean() == pytest.approx(1.0)  # the per-packet budget
    imp.process(b"x", 3)  # the next datagram opens a new slot
    assert imp.link.slots == 2
    with pytest.raises(ValueError):
        imp.link.feed_slot([0.5] * 5)
    with pytest.raises(ValueError):
        imp.link.feed_slot([])


def test_a_short_slot_leaves_later_draws_where_they_were() -> None:
    def second_slot_gains(first: list[float] | None) -> np.ndarray:
        imp = Impairment(parse_spec("link rayleigh snr 5dB subcarriers 4 power equal"), 3)
        if first is not None:
            imp.link.feed_slot(first)
        for i in range(len(first) if first else 4):
            imp.process(b"x", i)
        imp.process(b"x", 9)
        return imp.link.slot.gains

    np.testing.assert_array_equal(second_slot_gains([1.0]), second_slot_gains(None))


def test_feed_frame_slots_a_frames_importance_bytes() -> None:
    from semnet.core.wire import (
        Datagram,
        FrameDescriptor,
        PartitionSpec,
        QuantKind,
        QuantSpec,
        Scheme,
        encode,
    )

    desc = FrameDescriptor(
        1,
        64,
        64,
        (4, 4, 4),
        QuantSpec(QuantKind.UNIFORM, 8, -1, 1),
        PartitionSpec(Scheme.PATCH, 2, 2),
        True,
        1,
        100,
        importance=True,
    )
    values = [255, 0, 51, 102, 204, 153]
    data = [encode(Datagram(1, i, 0, i, 6, desc, b"\0", v)) for i, v in enumerate(values)]
    imp = Impairment(parse_spec("link awgn snr 20dB subcarriers 4 power semantic"), 1)
    imp.feed_frame([*data, b"not semnet"])
    assert [list(s) for s in imp.link.slots_pending] == [
        [v / 255 for v in values[:4]],
        [v / 255 for v in values[4:]] + [1.0],  # no importance byte: uniform
    ]
    Impairment(parse_spec("loss 1%"), 1).feed_frame(data)  # no link: nothing to do
