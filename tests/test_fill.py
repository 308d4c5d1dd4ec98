"""Fills: what replaces lost latent entries — exact values where lost, untouched where received."""

from __future__ import annotations

import pytest
import torch

from semnet.errors import ConfigError, ModelError
from semnet.models.cnn import CNNCodec
from semnet.models.fill import FILLS, diffusion_fill, f0_fill, get_fill, mean_fill, zero_fill

SHAPE = (1, 64, 4, 6)  # the latent of a 64x96 image under CNNCodec(cbr=1/12): C = 64


@pytest.fixture(scope="module")
def codec() -> CNNCodec:
    torch.manual_seed(0)
    return CNNCodec(cbr=1 / 12, hidden=8, bits=5).eval()


def latent_and_mask(seed: int, p_lost: float = 0.4) -> tuple[torch.Tensor, torch.Tensor]:
    """A latent in (-1, 1), never 0, with a random mask and channels 3 and 17 wholly lost."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(SHAPE, generator=g) * 0.9 + 0.05
    y = torch.where(torch.rand(SHAPE, generator=g) < 0.5, y, -y)  # |y| >= 0.05
    received = torch.rand(SHAPE, generator=g) >= p_lost
    received[:, [3, 17]] = False
    return y, received


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_zero_fill_puts_exact_zero_where_lost_and_keeps_the_rest(codec, seed):
    y, received = latent_and_mask(seed)
    before = y.clone()
    out = zero_fill(y, received, codec)
    assert out.shape == y.shape and out.dtype == y.dtype
    assert torch.equal(out[received], y[received])  # bit exact
    assert torch.count_nonzero(out[~received]) == 0
    assert (~received).sum() > 0 and received.sum() > 0  # both sides actually exercised
    assert torch.count_nonzero(out[received]) == received.sum()  # no received entry zeroed
    assert torch.equal(y, before)  # the input is not modified


def test_zero_fill_keeps_dtype_of_half_latents(codec):
    y, received = latent_and_mask(4)
    out = zero_fill(y.half(), received, codec)
    assert out.dtype == torch.float16
    assert torch.equal(out[received], y.half()[received])
    assert torch.count_nonzero(out[~received]) == 0


def test_mean_fill_uses_channel_mean_per_channel():
    torch.manual_seed(5)
    trained = CNNCodec(cbr=1 / 12, hidden=8, bits=5).eval()
    mean = torch.linspace(-0.8, 0.8, trained.latent_channels)
    trained.channel_mean = mean.clone()
    y, received = latent_and_mask(6)
    out = mean_fill(y, received, trained)
    assert torch.equal(out[received], y[received])
    expected = mean.view(1, -1, 1, 1).expand_as(y)
    assert torch.equal(out[~received], expected[~received])
    # Wholly lost channels become their own constant mean, different per channel.
    assert torch.all(out[0, 3] == mean[3]) and torch.all(out[0, 17] == mean[17])
    assert mean[3] != mean[17]
    # Spot-check one lost entry outside the wholly lost channels.
    c, i, j = (~received[0]).nonzero()[-1].tolist()
    assert c not in (3, 17) and out[0, c, i, j] == mean[c]


def test_mean_fill_with_zero_means_equals_zero_fill():
    zeros = CNNCodec(cbr=1 / 12, hidden=8, bits=5)
    zeros.channel_mean = torch.zeros(zeros.latent_channels)
    y, received = latent_and_mask(7)
    assert torch.equal(mean_fill(y, received, zeros), zero_fill(y, received, zeros))


def test_fills_with_nothing_lost_return_the_latent():
    codec = CNNCodec(cbr=1 / 12, hidden=8, bits=5)
    codec.channel_mean = torch.full((codec.latent_channels,), 0.25)
    y, _ = latent_and_mask(8)
    everything = torch.ones(SHAPE, dtype=torch.bool)
    for name in FILLS:
        assert torch.equal(get_fill(name)(y, everything, codec), y), name


def test_get_fill_by_name():
    assert get_fill("zero") is zero_fill
    assert get_fill("mean") is mean_fill
    assert get_fill("f0") is f0_fill
    assert get_fill("diffusion") is diffusion_fill
    assert get_fill("diffusion:16").keywords == {"steps": 16}
    assert get_fill("diffusion:4:0.5").keywords == {"steps": 4, "temperature": 0.5}


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("diffusion:0", "1..1000"),
        ("diffusion:x", "integer"),
        ("diffusion:", "integer"),
        ("diffusion:1001", "1..1000"),
        ("zero:3", "takes no parameter"),
        ("diffusion:4:1.5", "0..1"),
        ("diffusion:4:hot", "temperature"),
        ("diffusion:4:0.5:1", "at most 2"),
    ],
)
def test_get_fill_rejects_bad_parameters(spec, why):
    with pytest.raises(ConfigError, match=why) as info:
        get_fill(spec)
    assert repr(spec) in str(info.value)


def test_f0_fill_puts_the_latent_of_a_black_image_where_lost(codec):
    y, received = latent_and_mask(9)
    out = f0_fill(y, received, codec)
    with torch.inference_mode():
        f0 = codec.encode(torch.zeros(1, 3, SHAPE[2] * 16, SHAPE[3] * 16))
    assert torch.equal(out[received], y[received])
    assert torch.allclose(out[~received], f0.expand_as(y)[~received])
    assert not torch.allclose(out[~received], torch.zeros(()))  # F(0) is not the zero fill


def test_diffusion_fill_needs_a_zoo_codec(codec):
    y, received = latent_and_mask(10)
    with pytest.raises(ModelError, match="zoo codec"):
        diffusion_fill(y, received, codec)


@pytest.mark.parametrize("name", ["median", "Zero", "", "zero "])
def test_get_fill_unknown_name_names_the_known_fills(name):
    with pytest.raises(ConfigError) as info:
        get_fill(name)
    message = str(info.value)
    assert repr(name) in message
    for known in FILLS:
        assert known in message
