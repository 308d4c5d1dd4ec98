"""A receiver that scores a sample (``score_every``): PSNR on every frame, SSIM and the rest on
every Nth frame of each stream, and its histograms count exactly what was scored."""

import numpy as np
import pytest

from semnet.config import load
from semnet.daemons.config import ReceiverConfig
from semnet.errors import ConfigError
from semnet.testbed import LocalTestbed, metric, metric_totals


def test_every_frame_has_psnr_and_every_second_the_rest(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (128, 192, 3), dtype=np.uint8) for _ in range(5)]
    receiver = {"threads": 1, "score_every": 2, "perceptual": False}
    with LocalTestbed(tmp_path, sender={"threads": 1}, receiver=receiver) as bed:
        reports = [bed.send(image, f"{i}.png") for i, image in enumerate(images)]
        totals = metric_totals(bed.metrics("receiver"))
    assert all(r["psnr_db"] is not None for r in reports)
    assert [r["ssim"] is not None for r in reports] == [True, False, True, False, True]
    assert metric(totals, "semnet_frame_psnr_db_count") == 5
    assert metric(totals, "semnet_frame_ssim_count") == 3


def test_score_every_must_be_positive():
    with pytest.raises(ConfigError, match="score_every"):
        load(ReceiverConfig, {"score_every": 0})
