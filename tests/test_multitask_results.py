"""The pieces behind results/multitask/ (issue 19): time-shared fixed-length scores, the
settling time of a stepped end index, the temporary threshold, and the η sweep's bookkeeping on
a tiny random model (mechanics only; the shipped numbers come from the scripts)."""

import pytest
import torch

from semnet.experiments.multitask import (
    loss_sweep,
    settling_time,
    steady_value,
    threshold,
    time_share,
)
from semnet.models.mijscc import MIJSCCCodec
from semnet.models.registry import build

TINY = {"channels": 8, "stride": 8, "hidden": 8, "head_hidden": 16, "min_channels": 2}


@pytest.fixture
def tiny() -> MIJSCCCodec:
    torch.manual_seed(0)
    return build("mijscc", TINY, {"kind": "asymmetric", "bits": 5}).eval()


def test_time_share_is_linear_in_bytes_between_two_prefixes():
    lo = {"bytes": 100, "psnr_db": 18.0, "accuracy": 0.8}
    hi = {"bytes": 120, "psnr_db": 20.0, "accuracy": 0.9}
    assert time_share(lo, hi, 100) == pytest.approx(lo)
    assert time_share(lo, hi, 120) == pytest.approx(hi)
    assert time_share(lo, hi, 115) == pytest.approx(
        {"bytes": 115, "psnr_db": 19.5, "accuracy": 0.875}
    )
    assert time_share(lo, lo, 100) == pytest.approx(lo)
    with pytest.raises(ValueError, match="not between"):
        time_share(lo, hi, 130)


def test_settling_time_finds_the_new_level_through_flicker():
    times = [0.1 * i for i in range(40)]
    values = [15] * 10 + [15, 15, 21, 17, 23] + [17, 20, 17, 17, 23] * 5
    out = settling_time(times, values, 1.0)
    assert out["before"] == 15 and out["steady"] == 17
    assert out["settling_s"] == pytest.approx(0.2)  # 21 is beyond 17: reached
    down = settling_time(times, [-v for v in values], 1.0)
    assert down["steady"] == -17 and down["settling_s"] == pytest.approx(0.2)
    assert settling_time(times, values, 1.0, steady=23)["settling_s"] == pytest.approx(0.4)
    assert settling_time(times, values, 9.0) == {"before": 17, "steady": None, "settling_s": None}
    assert steady_value([3, 9, 4, 4, 3]) == 4
    assert steady_value([]) is None


def test_threshold_is_restored_even_when_the_block_fails(tiny):
    shipped = tiny.eta
    with pytest.raises(RuntimeError), threshold(tiny, 5.0):
        assert tiny.eta == 5.0
        raise RuntimeError
    assert tiny.eta == shipped


def test_sweep_rows_are_paired_and_leave_the_model_as_it_was(tiny):
    x = torch.rand(6, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    t = torch.arange(6) % 10
    shipped = tiny.eta
    sweep = loss_sweep(tiny, x, t, (0.0, 0.3), (0.5, 4.0), seed=2)
    assert tiny.eta == shipped
    assert len(sweep["rows"]) == 2 * 3
    fixed = [r for r in sweep["rows"] if r["eta"] is None]
    assert {r["end_index"] for r in fixed} == {8}
    curve = {p["end_index"]: p for p in sweep["prefix_curve"]["points"]}
    assert sorted(curve) == list(range(1, 9))
    for r in sweep["rows"]:
        if r["loss"] == 0.3:  # the same erasure draw: a row is its prefix's point on the curve
            assert {k: r[k] for k in curve[r["end_index"]]} == curve[r["end_index"]]
    for by_loss in sweep["equal_mean_bytes"].values():
        adaptive = [d["adaptive"]["bytes"] for d in by_loss.values()]
        for d in by_loss.values():
            assert d["fixed"]["bytes"] == pytest.approx(sum(adaptive) / len(adaptive))
