"""openvino-int8: loads, runs close to eager, calibrates the same way twice, and says in one
line why it cannot run (unknown name, nncf missing, no training photos to calibrate on)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import semnet
from semnet.errors import ConfigError, SemnetError
from semnet.images import load_image
from semnet.models import DEFAULT_CODEC, backends, train, zoo

CPU = torch.device("cpu")
PSNR_TOLERANCE_DB = 0.2  # measured: 0.02 dB here, 0.085 on average at 512x768


def _training_photos() -> bool:
    try:
        return bool(train.training_files())
    except SemnetError:
        return False


needs_int8 = pytest.mark.skipif(
    not backends.installed("openvino-int8") or not _training_photos(),
    reason="openvino-int8 needs openvino, nncf and the training photos (make train-data)",
)


@pytest.fixture(scope="module")
def int8():
    return backends.accelerate(zoo.load(DEFAULT_CODEC), "openvino-int8", CPU, threads=2)


def _photo() -> torch.Tensor:
    """A 192x288 crop of an evaluation photo (measuring on it is fine, calibrating is not)."""
    path = Path(semnet.__file__).parent / "demo_images" / "coffee.png"
    image = Image.fromarray(load_image(path)).resize((288, 192), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255


def _psnr(codec, x: torch.Tensor) -> float:
    y = codec.encode(x).round().clamp(codec.quant.lo, codec.quant.hi)
    mse = (codec.decode(y, *x.shape[-2:]) - x).pow(2).mean()
    return float(10 * torch.log10(1 / mse))


@needs_int8
def test_int8_runs_close_to_eager(int8):
    eager = zoo.load(DEFAULT_CODEC)
    assert int8.backend == "openvino-int8" and int8.zoo_name == DEFAULT_CODEC
    x = _photo()
    with torch.no_grad():
        assert int8.encode(x).shape == eager.encode(x).shape
        assert abs(_psnr(int8, x) - _psnr(eager, x)) < PSNR_TOLERANCE_DB


@needs_int8
def test_int8_calibrates_the_same_way_each_load(int8):
    """Sender and receiver calibrate in their own processes: they must agree bit for bit."""
    again = backends.accelerate(zoo.load(DEFAULT_CODEC), "openvino-int8", CPU, threads=2)
    x = _photo()
    with torch.no_grad():
        y = int8.encode(x)
        assert torch.equal(again.encode(x), y)
        assert torch.equal(again.decode(y, 192, 288), int8.decode(y, 192, 288))


def test_unknown_backend_is_one_line_and_auto_never_picks_int8(monkeypatch):
    with pytest.raises(ConfigError, match="openvino, openvino-int8, onnxruntime") as err:
        backends.resolve("openvino-int4", CPU)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(backends, "installed", lambda name: name in ("eager", "openvino-int8"))
    assert backends.resolve("auto", CPU) == "eager"


def test_int8_without_nncf_says_what_to_install(monkeypatch):
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: name != "nncf")
    with pytest.raises(ConfigError, match=r"^backend: openvino-int8 is not installed \(pip inst"):
        backends.resolve("openvino-int8", CPU)


def test_int8_without_training_photos_is_one_line(monkeypatch):
    def missing():
        raise SemnetError("the training photos are not installed")

    monkeypatch.setattr(backends, "installed", lambda name: True)
    monkeypatch.setattr(train, "training_files", missing)
    with pytest.raises(ConfigError, match="cannot run .*: int8 calibrates on the training photos"):
        backends.accelerate(zoo.load(DEFAULT_CODEC), "openvino-int8", CPU)
