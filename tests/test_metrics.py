"""PSNR and SSIM agree with scikit-image's reference implementations on real, noisy photos."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from semnet.models.metrics import psnr, ssim
from semnet.pipeline.tensors import to_tensor

pytest.importorskip("skimage", reason="scikit-image (extra 'eval') provides the reference")
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from semnet.eval_images import eval_image  # noqa: E402

CPU = torch.device("cpu")
# Crops of real photos (kept small so the test stays fast), not multiples of anything.
CROPS = {
    "astronaut": (slice(40, 157), slice(150, 323)),
    "chelsea": (slice(40, 161), slice(100, 261)),
    "coffee": (slice(100, 229), slice(200, 371)),
}


def noisy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0.0, sigma, image.shape), 0, 255).round().astype(np.uint8)


def reference_psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return peak_signal_noise_ratio(ref / 255.0, x / 255.0, data_range=1.0)


def reference_ssim(x: np.ndarray, ref: np.ndarray) -> float:
    return structural_similarity(
        ref / 255.0,
        x / 255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )


def ours(metric, x: np.ndarray, ref: np.ndarray) -> float:
    return metric(to_tensor(x, CPU), to_tensor(ref, CPU))


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: eval_image(name)[rows, cols] for name, (rows, cols) in CROPS.items()}


@pytest.mark.parametrize("name", list(CROPS))
@pytest.mark.parametrize("sigma", [4.0, 30.0])
def test_psnr_and_ssim_match_scikit_image(photos, name, sigma):
    ref = photos[name]
    x = noisy(ref, sigma, seed=int(sigma) * 7 + len(name))
    want_psnr, want_ssim = reference_psnr(x, ref), reference_ssim(x, ref)
    assert ours(psnr, x, ref) == pytest.approx(want_psnr, abs=1e-4)
    assert ours(ssim, x, ref) == pytest.approx(want_ssim, abs=1e-4)
    # The cases are not degenerate: noise really lowers both.
    assert 10.0 < want_psnr < 45.0 and 0.0 < want_ssim < 0.99


def test_ssim_matches_on_structurally_different_images(photos):
    """Two different photos (not noise on one): SSIM is low and still agrees."""
    a = photos["astronaut"][:96, :160]
    b = photos["chelsea"][:96, :160]
    want = reference_ssim(a, b)
    assert want < 0.5
    assert ours(ssim, a, b) == pytest.approx(want, abs=1e-4)
    assert ours(psnr, a, b) == pytest.approx(reference_psnr(a, b), abs=1e-4)


def test_more_noise_scores_worse(photos):
    ref = photos["coffee"]
    xs = [noisy(ref, s, 1) for s in (2.0, 8.0, 32.0)]
    scores = [(ours(psnr, x, ref), ours(ssim, x, ref)) for x in xs]
    assert scores[0][0] > scores[1][0] > scores[2][0]
    assert scores[0][1] > scores[1][1] > scores[2][1]


def test_psnr_of_a_known_error():
    """Every pixel off by one level: MSE = (1/255)^2, PSNR = 20 log10(255) = 48.13 dB."""
    ref = np.full((32, 48, 3), 100, dtype=np.uint8)
    x = ref + 1
    assert ours(psnr, x, ref) == pytest.approx(20 * math.log10(255), abs=1e-4)


def test_identical_images_hit_the_caps(photos):
    ref = photos["astronaut"]
    assert ours(psnr, ref, ref) == 100.0
    assert ours(ssim, ref, ref) == pytest.approx(1.0, abs=1e-6)
    assert reference_ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)


def test_metrics_are_order_insensitive_where_they_should_be(photos):
    ref = photos["chelsea"]
    x = noisy(ref, 10.0, 3)
    assert ours(psnr, x, ref) == pytest.approx(ours(psnr, ref, x), abs=1e-9)
    assert ours(ssim, x, ref) == pytest.approx(ours(ssim, ref, x), abs=1e-6)


def test_ssim_of_an_image_smaller_than_its_window():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.random((1, 3, 7, 10), dtype=np.float32))
    assert ssim(a, a) == pytest.approx(1.0)
    assert 0 < ssim(a, (a + 0.1).clamp(0, 1)) < 1
