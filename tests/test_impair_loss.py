"""Loss models: long-run statistics against the analytic chains, and bit-exact netem parity.

Statistical checks use a fixed seed and a tolerance of 5 standard errors of the estimate. Loss
indicators of a Markov model are correlated, so the standard error of a loss rate comes from
batch means (50 batches, each far longer than the chain's memory), not from the binomial
formula; burst lengths are close to independent, so their SE is the sample std / sqrt(count).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from semnet.core.impair import Impairment, ImpairSpec, LossBurst, parse_spec
from semnet.core.impair.loss import burst_parameters

N = 400_000
U32 = 0xFFFFFFFF


def u32(percent: float) -> int:
    return round(percent / 100 * U32)


def drops(spec: ImpairSpec, n: int, seed: int = 1) -> np.ndarray:
    imp = Impairment(spec, seed)
    process = imp.process
    return np.fromiter((not process(b"x", i * 1e-3) for i in range(n)), dtype=bool, count=n)


def batch_se(x: np.ndarray, batches: int = 50) -> float:
    means = x[: len(x) // batches * batches].reshape(batches, -1).mean(axis=1)
    return float(means.std(ddof=1) / math.sqrt(batches))


def bursts(lost: np.ndarray) -> np.ndarray:
    """Lengths of the runs of consecutive losses."""
    edges = np.diff(np.concatenate(([0], lost.astype(np.int8), [0])))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def assert_close(value: float, expected: float, se: float, what: str) -> None:
    assert abs(value - expected) <= 5 * se, (
        f"{what}: {value:.5f} vs {expected:.5f} (5 SE={5 * se:.5f})"
    )


def run_stats(transition: np.ndarray, loss_in: np.ndarray) -> tuple[float, float]:
    """Stationary loss rate and mean loss-run length of a chain whose packet in state s is
    lost with probability loss_in[s], states moving by ``transition`` between packets."""
    evals, evecs = np.linalg.eig(transition.T)
    pi = np.real(evecs[:, np.argmin(abs(evals - 1))])
    pi /= pi.sum()
    p_loss = float(pi @ loss_in)
    p_two = float((pi * loss_in) @ transition @ loss_in)  # lost now and next
    return p_loss, p_loss / (p_loss - p_two)


def check_chain(lost: np.ndarray, rate: float, mean_burst: float) -> None:
    assert_close(lost.mean(), rate, batch_se(lost), "loss rate")
    runs = bursts(lost)
    assert_close(runs.mean(), mean_burst, runs.std(ddof=1) / math.sqrt(len(runs)), "mean burst")


def test_random_loss_is_bernoulli() -> None:
    lost = drops(parse_spec("loss random 3%"), N)
    q = 0.03
    # independent draws: loss runs are geometric with mean 1 / (1 - q)
    check_chain(lost, q, 1 / (1 - q))


@pytest.mark.parametrize(
    "p, r, one_minus_h, one_minus_k",
    [(1.0, 30.0, 100.0, 0.0), (2.0, 20.0, 70.0, 0.5), (5.0, 95.0, 100.0, 0.0)],
)
def test_gemodel_matches_stationary_chain(
    p: float, r: float, one_minus_h: float, one_minus_k: float
) -> None:
    spec = parse_spec(f"loss gemodel {p}% {r}% {one_minus_h}% {one_minus_k}%")
    # netem draws the loss with the odds of the state the packet arrives in (h, k convention:
    # 1-h = loss in bad, 1-k = loss in good), then the chain moves.
    transition = np.array([[1 - p / 100, p / 100], [r / 100, 1 - r / 100]])
    rate, mean_burst = run_stats(transition, np.array([one_minus_k, one_minus_h]) / 100)
    if one_minus_h == 100 and one_minus_k == 0:
        assert math.isclose(rate, p / (p + r)) and math.isclose(mean_burst, 100 / r)
    check_chain(drops(spec, N), rate, mean_burst)


def test_four_state_matches_stationary_chain() -> None:
    p13, p31, p32, p23, p14 = 4.0, 40.0, 20.0, 30.0, 1.0
    spec = parse_spec(f"loss state {p13}% {p31}% {p32}% {p23}% {p14}%")
    f = np.array([p13, p31, p32, p23, p14]) / 100
    # states 1..4 (index 0..3); the packet is lost when the state it enters is 3 or 4
    transition = np.array(
        [
            [1 - f[0] - f[4], 0, f[0], f[4]],
            [0, 1 - f[3], f[3], 0],
            [f[1], f[2], 1 - f[1] - f[2], 0],
            [1, 0, 0, 0],
        ]
    )
    rate, mean_burst = run_stats(transition, np.array([0.0, 0.0, 1.0, 1.0]))
    check_chain(drops(spec, N), rate, mean_burst)


def test_four_state_defaults_are_bernoulli() -> None:
    # tc: "p13 alone corresponds to the Bernoulli model" (p31 = 1 - p13, p14 = 0)
    check_chain(drops(parse_spec("loss state 3%"), N), 0.03, 1 / 0.97)


@pytest.mark.parametrize("rate, length, cap", [(5.0, 3.0, 0), (10.0, 4.0, 6), (2.0, 1.0, 0)])
def test_burst_gives_its_rate_and_mean_length(rate: float, length: float, cap: int) -> None:
    lost = drops(ImpairSpec(loss=LossBurst(rate, length, cap)), N)
    check_chain(lost, rate / 100, length)
    if cap:
        assert bursts(lost).max() <= cap


def test_burst_mapping_without_cap_is_simple_gilbert() -> None:
    p, r = burst_parameters(LossBurst(5.0, 4.0))
    assert math.isclose(r, 1 / 4) and math.isclose(p / (p + r), 0.05)


def reference_gilbert_elliott(seed: int, n: int, p: float, r: float, h1: float, k1: float) -> list:
    """sch_netem.c's loss_gilb_ell, written out plainly."""
    rng = random.Random(seed)
    a1, a2, a3, a4 = u32(p), u32(r), U32 - u32(h1), u32(k1)
    good, out = True, []
    for _ in range(n):
        if good:
            if rng.getrandbits(32) < a1:
                good = False
            out.append(rng.getrandbits(32) < a4)
        else:
            if rng.getrandbits(32) < a2:
                good = True
            out.append(rng.getrandbits(32) > a3)
    return out


def reference_four_state(
    seed: int, n: int, p13: float, p31: float, p32: float, p23: float, p14: float
) -> list:
    """sch_netem.c's loss_4state, written out plainly (state names from the kernel)."""
    rng = random.Random(seed)
    a1, a2, a3, a4, a5 = u32(p13), u32(p31), u32(p32), u32(p14), u32(p23)
    state, out = "tx_gap", []
    for _ in range(n):
        rnd = rng.getrandbits(32)
        lost = False
        if state == "tx_gap":
            if rnd < a4:
                state, lost = "lost_gap", True
            elif rnd < a1 + a4:
                state, lost = "lost_burst", True
        elif state == "tx_burst":
            if rnd < a5:
                state, lost = "lost_burst", True
        elif state == "lost_burst":
            if rnd < a3:
                state = "tx_burst"
            elif rnd < a2 + a3:
                state = "tx_gap"
            else:
                lost = True
        else:
            state = "tx_gap"
        out.append(lost)
    return out


def reference_correlated(seed: int, n: int, percent: float, corr: float) -> list:
    """get_crandom + loss_event(CLG_RANDOM); the memory starts from the stream's first draw."""
    rng = random.Random(seed)
    rho, last, out = u32(corr) + 1, rng.getrandbits(32), []
    for _ in range(n):
        last = (rng.getrandbits(32) * (2**32 - rho) + last * rho) >> 32
        out.append(u32(percent) >= last)
    return out


@pytest.mark.parametrize("seed", [3, 99])
def test_models_make_netems_decisions_from_the_same_stream(seed: int) -> None:
    n = 50_000
    ge = drops(parse_spec("loss gemodel 3% 25% 80% 1%"), n, seed)
    assert ge.tolist() == reference_gilbert_elliott(seed, n, 3, 25, 80, 1)
    four = drops(parse_spec("loss state 4% 40% 20% 30% 1%"), n, seed)
    assert four.tolist() == reference_four_state(seed, n, 4, 40, 20, 30, 1)
    corr = drops(parse_spec("loss 10% 50%"), n, seed)
    assert corr.tolist() == reference_correlated(seed, n, 10, 50)


def test_netem_correlation_does_not_keep_the_asked_rate() -> None:
    # The documented netem flaw: averaging uniforms concentrates them near 2**31, so a 10%
    # loss "with 50% correlation" loses far fewer than 10% of packets.
    lost = drops(parse_spec("loss 10% 50%"), N)
    assert lost.mean() < 0.07


def test_zero_and_full_loss() -> None:
    assert not drops(parse_spec("loss 0%"), 1000).any()
    assert drops(parse_spec("loss 100%"), 1000).all()
