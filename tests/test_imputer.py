"""Diffusion imputer (paper 002): mask dilation, DDIM sampling that keeps what was received,
masks drawn unit by unit, training that resumes, and the zoo's tie between imputer and codec."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from semnet.core import partition
from semnet.errors import ModelError
from semnet.models import zoo
from semnet.models.cnn import CNNCodec
from semnet.models.config import ImputerConfig, ImputerTrainSettings
from semnet.models.imputer import TRAIN_STEPS, DiffusionImputer, alpha_bar, dilate
from semnet.models.imputer_train import MaskSampler, train_imputer

DEMO = sorted(str(p) for p in (Path(zoo.ZOO_DIR).parent / "demo_images").glob("*.png"))


def test_dilation_is_eq16_per_channel():
    lost = torch.zeros(1, 2, 5, 5, dtype=torch.bool)
    lost[0, 0, 2, 2] = True
    assert torch.equal(dilate(lost, 1), lost)
    grown = dilate(lost, 3)
    assert grown[0, 0].sum() == 9 and grown[0, 0, 1:4, 1:4].all()
    assert not grown[0, 1].any()  # another channel's loss does not spread across channels
    two = dilate(lost, 2)  # even kernel: the element and its upper-left neighbours
    assert two[0, 0].sum() == 4 and two[0, 0, 1:3, 1:3].all()
    whole = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    assert torch.equal(dilate(whole, 2), whole)


def test_schedule_runs_from_clean_to_noise():
    a = alpha_bar(torch.arange(TRAIN_STEPS + 1))
    assert a[0] == pytest.approx(1.0) and a[-1] < 1e-3
    assert torch.all(a[1:] <= a[:-1])


@pytest.fixture(scope="module")
def imputer() -> DiffusionImputer:
    torch.manual_seed(0)
    model = DiffusionImputer(channels=8, width=16, kappa=2).eval()
    torch.nn.init.normal_(model.unet.out.weight, std=0.1)  # untrained but not the zero map
    model.std.fill_(0.2)  # the scale of real latents, so few samples reach the clamp
    return model


def _case(seed: int, shape=(1, 8, 5, 7)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(shape, generator=g) * 1.6 - 0.8
    received = torch.rand(shape, generator=g) > 0.4
    received[:, 2] = False  # a whole channel lost, as channel-wise packets lose them
    f0 = torch.full(shape, 0.3)
    return y, received, f0


def test_impute_returns_received_entries_exactly_and_fills_the_rest(imputer):
    y, received, f0 = _case(1)  # odd height and width: the UNet pads and crops
    out = imputer.impute(y, received, f0, (-1.0, 1.0), steps=4)
    assert out.shape == y.shape
    assert torch.equal(out[received], y[received])
    assert not torch.equal(out[~received], y[~received])
    assert out.abs().max() <= 1.0


def test_impute_is_seeded_and_steps_change_the_result(imputer):
    y, received, f0 = _case(2)

    def run(steps: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return imputer.impute(y, received, f0, (-1.0, 1.0), steps, gen)

    assert torch.equal(run(4, 0), run(4, 0))
    assert not torch.equal(run(4, 0), run(4, 1))
    assert not torch.equal(run(4, 0), run(2, 0))


def test_impute_with_nothing_lost_is_the_identity(imputer):
    y, _, f0 = _case(3)
    everything = torch.ones_like(y, dtype=torch.bool)
    assert imputer.impute(y, everything, f0, (-1.0, 1.0)) is y


def test_loss_counts_only_the_dilated_loss_region(imputer):
    y, received, f0 = _case(4, shape=(2, 8, 6, 6))
    gen = torch.Generator().manual_seed(0)
    loss = imputer.loss(y, ~received, f0, gen)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    nothing = torch.zeros_like(received)
    assert imputer.loss(y, nothing, f0, torch.Generator().manual_seed(0)) == 0


@pytest.mark.parametrize("scheme", ["channel", "patch:2x2", "spatial", "token"])
def test_masks_are_unions_of_whole_units(scheme):
    shape = (8, 6, 6)
    s = ImputerTrainSettings(partitions=(scheme,), max_loss=0.6, burst_fraction=0.5)
    masks = MaskSampler(shape, s, seed=3).draw(40)
    units = partition.units(shape, partition.parse_spec(scheme))
    flat = masks.reshape(40, -1)
    for row in flat.numpy():
        for u in units:  # a unit is lost whole or not at all
            assert row[u].all() or not row[u].any()
    rate = flat.float().mean()
    assert 0.1 < rate < 0.5  # uniform in [0, 0.6]: about 0.3 on average
    assert flat.any(dim=1).sum() > 20  # most masks lose something


def test_masks_are_seeded():
    s = ImputerTrainSettings(partitions=("channel", "patch:2x2"))
    a = MaskSampler((8, 6, 6), s, seed=5).draw(10)
    b = MaskSampler((8, 6, 6), s, seed=5).draw(10)
    c = MaskSampler((8, 6, 6), s, seed=6).draw(10)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_training_runs_resumes_and_sets_latent_statistics(tmp_path):
    torch.manual_seed(0)
    codec = CNNCodec(cbr=1 / 48, hidden=8, bits=5, stride=8).eval()  # 4 latent channels
    train = ImputerTrainSettings(steps=3, batch=2, bank=4, crop=64, scales=(128,))
    cfg = ImputerConfig(name="tiny", codec="none", width=8, kappa=2, train=train)
    model = train_imputer(cfg, codec, tmp_path / "run", progress=False, files=DEMO)
    assert (tmp_path / "run" / "state.pt").exists()
    assert not torch.equal(model.std, torch.ones(4))  # normalisation set from the latents
    assert model.unet.out.weight.abs().sum() > 0  # the zero-initialised head was trained
    longer = replace(cfg, train=replace(train, steps=4))
    resumed = train_imputer(longer, codec, tmp_path / "run", progress=False, files=DEMO)
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=False)["step"] == 4
    assert not torch.equal(resumed.unet.out.weight, model.unet.out.weight)


def test_an_imputer_for_other_codec_weights_is_refused(monkeypatch):
    entry = zoo.imputer_entry(zoo.DEFAULT_CODEC)
    stale = replace(entry, codec_sha256="0" * 64)
    monkeypatch.setattr(zoo, "imputer_entries", lambda: [stale])
    with pytest.raises(ModelError, match="retrain"):
        zoo.imputer_entry(zoo.DEFAULT_CODEC)
    monkeypatch.setattr(zoo, "imputer_entries", lambda: [])
    with pytest.raises(ModelError, match="no diffusion imputer"):
        zoo.imputer_entry(zoo.DEFAULT_CODEC)


def test_zero_temperature_does_not_depend_on_the_noise(imputer):
    y, received, f0 = _case(5)

    def run(seed: int, temperature: float) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return imputer.impute(y, received, f0, (-1.0, 1.0), 3, gen, temperature)

    assert torch.equal(run(0, 0.0), run(1, 0.0))
    assert not torch.equal(run(0, 0.5), run(1, 0.5))
    assert not torch.equal(run(0, 0.0), run(0, 0.5))
