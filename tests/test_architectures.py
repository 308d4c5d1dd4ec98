"""Every registered architecture behind the one codec interface, on tiny random models.

Shapes, ranges and gradients for sizes that are not multiples of the stride, a few training
steps through the unchanged training loop, the paper-001 SEM modules' structure (Dynamic Scale's
Γ sizes and unit-norm rows, the NSB matrix), and one frame through the offline pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from semnet.core.impair import Impairment, parse_spec
from semnet.models.cnn import CNNCodec
from semnet.models.config import TrainSettings, load_any_config, load_model_config
from semnet.models.fill import get_fill
from semnet.models.layers import ResidualBlock
from semnet.models.registry import ARCHITECTURES, build
from semnet.models.sem import GAMMA_DIMS, DynamicScaleConv, NeighbourBroadcast, broadcast_matrix
from semnet.models.train import train_step
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "models"
SHIPPED = {
    "cnn": "cnn-c64",
    "cnn-scale": "cnn-scale",
    "cnn-nsb": "cnn-nsb",
    "cnn-sem": "cnn-sem",
    "swin": "swin",
    "cnn-rd": "cnn-rd-q1",
    "mijscc": "mijscc-fmnist",
    "bsc": "bsc-learned",
}
PAPER_001 = ("cnn", "cnn-scale", "cnn-nsb", "cnn-sem", "swin")
# Small hidden widths keep every test fast; everything else comes from the shipped config.
TINY = {
    "cnn": {"hidden": 8},
    "cnn-scale": {"hidden": 8},
    "cnn-nsb": {"hidden": 8},
    "cnn-sem": {"hidden": 8},
    "swin": {"dims": [8, 8, 16, 16], "depths": [1, 2, 1, 2], "heads": [1, 1, 2, 2], "window": 4},
    "cnn-rd": {"hidden": 8, "blocks": 0},
    "mijscc": {"hidden": 8, "head_hidden": 16},
    "bsc": {"hidden": 8},
}
SIZES = [(40, 56), (37, 50), (64, 45)]  # none all multiples of 16


def test_every_architecture_has_a_shipped_config():
    assert set(SHIPPED) == set(ARCHITECTURES)
    ids = set()
    for arch in PAPER_001:
        name = SHIPPED[arch]
        cfg = load_model_config(CONFIGS / f"{name}.yaml")
        assert cfg.architecture == arch
        ids.add(cfg.codec_id)
        model = build(cfg.architecture, {**cfg.params, **TINY[arch]})
        # Same channel-bandwidth ratio (1/12) and quantizer as the default codec: fair comparisons.
        assert (model.latent_channels, model.stride) == (64, 16)
        assert (model.quant.kind, model.quant.bits, model.quant.lo, model.quant.hi) == (
            "uniform", 5, -1.0, 1.0)  # fmt: skip
    assert ids == {1, 2, 3, 4, 5}


def shipped_config(arch: str):
    """The shipped config of ``arch``, read as the command that trains it reads it."""
    return load_any_config(CONFIGS / f"{SHIPPED[arch]}.yaml")


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def tiny(request):
    arch = request.param
    cfg = shipped_config(arch)
    torch.manual_seed(0)
    return build(cfg.architecture, {**cfg.params, **TINY[arch]})


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_round_trip_shapes_and_ranges(tiny, size):
    h, w = size
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    with torch.no_grad():
        y = tiny.encode(x)
        assert tuple(y.shape) == (1, *tiny.latent_shape(h, w))
        assert tiny.quant.lo <= y.min() and y.max() <= tiny.quant.hi
        x_hat = tiny.decode(y, h, w)
    assert x_hat.shape == x.shape
    assert x_hat.min() >= 0.0 and x_hat.max() <= 1.0
    assert torch.isfinite(x_hat).all()


def test_gradients_reach_every_parameter(tiny):
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    scales = [m for m in tiny.modules() if isinstance(m, DynamicScaleConv)]
    for m in scales:  # at condition 0 (the training default) Γ's first weight has no gradient
        m.condition.fill_(0.25)
    for m in tiny.modules():  # residual blocks start as the identity (zero second convolution)
        if isinstance(m, ResidualBlock) and not m.conv2.weight.any():
            with torch.no_grad():
                m.conv2.weight.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(0))
    tiny.zero_grad(set_to_none=True)
    y = tiny.encode(x)
    loss = (tiny.synthesize(y) - x).square().mean()
    rate = tiny.rate_bits(y)
    (loss if rate is None else loss + 1e-3 * rate).backward()
    for m in scales:
        m.condition.zero_()
    side = getattr(tiny, "SIDE_MODULES", ())  # off the encode -> decode path (mijscc's head)
    for name, p in tiny.named_parameters():
        if name.split(".")[0] in side:
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_three_training_steps_through_the_unchanged_loop(tiny):
    model = tiny.to(memory_format=torch.channels_last)  # as semnet.models.train does
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    s, gen = TrainSettings(batch=2, crop=32), torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=gen).contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        loss, y, _ = train_step(model, x, s, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        assert torch.isfinite(loss) and y.shape == (2, *model.latent_shape(32, 32))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.to(memory_format=torch.contiguous_format)


def test_offline_pipeline_with_random_loss(tiny):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    model = tiny.eval()
    encoder = FrameEncoder(
        model, codec_id=1, path=PathSettings(datagram_size=120), stream=1, seed=3
    )
    decoder = FrameDecoder(lambda codec_id: model, get_fill("mean"))
    impairment = Impairment(parse_spec("loss random 30%"), 7)
    results = [transmit(image, encoder, decoder, impairment) for _ in range(3)]
    for r in results:
        assert r.image.shape == image.shape and r.image.dtype == np.uint8
        assert r.datagrams_sent > 0 and np.isfinite(r.psnr_db)
    assert any(r.datagrams_received < r.datagrams_sent for r in results)  # losses did happen


# --- Dynamic Scale (001 §IV-B) -----------------------------------------------------------------


def dynamic_scale(model: CNNCodec) -> DynamicScaleConv:
    (layer,) = [m for m in model.encoder if isinstance(m, DynamicScaleConv)]
    return layer


@pytest.mark.parametrize("arch", ["cnn-scale", "cnn-sem"])
def test_dynamic_scale_matches_the_paper(arch):
    torch.manual_seed(0)
    model = build(arch, {"hidden": 8})
    ds = dynamic_scale(model)
    c = model.latent_channels
    linears = [m for m in ds.gamma if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (1, 16), (16, 16), (16, 16), (16, c)]  # fmt: skip
    assert GAMMA_DIMS == (1, 16, 16, 16)
    assert sum(p.numel() for p in ds.gamma.parameters()) == 576 + 17 * c  # §IV-B3's count
    with torch.no_grad():
        ds.weight.mul_(torch.linspace(0.1, 10.0, c)[:, None, None, None])  # uneven row norms
        rows = ds.projection()
        assert rows.shape == (c, ds.weight[0].numel() + 1)
        assert torch.allclose(rows.norm(dim=1), torch.ones(c), atol=1e-5)
        gamma = ds.scales()
        assert gamma.shape == (c,) and (gamma > 0).all()
        assert gamma.mean().item() == pytest.approx(1.0, abs=1e-5)
        # The layer is z_i = tanh(γ_i W̃_i/||W̃_i|| f̃): rescaling W̃ changes nothing.
        f = torch.randn(1, 8, 6, 6)
        out = ds(f)
        ds.weight.mul_(3.0)
        ds.bias.mul_(3.0)
        assert torch.allclose(ds(f), out, atol=1e-5)
    assert isinstance(model.encoder[list(model.encoder).index(ds) + 1], torch.nn.Tanh)


def test_dynamic_scale_input_is_the_channel_condition_not_the_image():
    torch.manual_seed(0)
    ds = build("cnn-scale", {"hidden": 8}).encoder[-2]
    assert isinstance(ds, DynamicScaleConv) and "condition" not in ds.state_dict()
    g0 = ds.scales().detach()
    ds.condition.fill_(0.3)
    assert not torch.allclose(ds.scales(), g0)


# --- Neighbouring Semantic Broadcast (001 §IV-C) -----------------------------------------------


@pytest.mark.parametrize("c,k", [(64, 1), (64, 3), (64, 4), (8, 8), (5, 2)])
def test_broadcast_matrix_is_row_stochastic_with_exactly_k_neighbours(c, k):
    b = broadcast_matrix(c, k)
    assert torch.allclose(b.sum(dim=1), torch.ones(c))
    assert ((b > 0).sum(dim=1) == k).all()
    assert torch.allclose(b[b > 0], torch.full((c * k,), 1.0 / k))
    assert torch.allclose(b.sum(dim=0), torch.ones(c))  # a ring: each channel reaches K others
    assert (torch.diagonal(b) > 0).all()  # N_K(i) includes i itself
    nearest = sorted(min(d, c - d) for d in range(c))[:k]  # ring distances 0, 1, 1, 2, 2, ...
    for i in range(c):
        ring = [min((j - i) % c, (i - j) % c) for j in torch.nonzero(b[i]).flatten().tolist()]
        assert sorted(ring) == nearest


def test_broadcast_rejects_bad_k():
    with pytest.raises(ValueError):
        broadcast_matrix(8, 0)
    with pytest.raises(ValueError):
        broadcast_matrix(8, 9)


@pytest.mark.parametrize("arch", ["cnn-nsb", "cnn-sem"])
def test_broadcast_is_fixed_and_last_before_quantization(arch):
    torch.manual_seed(0)
    model = build(arch, {"hidden": 8, "k": 5})
    nsb = model.encoder[-1]
    assert isinstance(nsb, NeighbourBroadcast) and nsb.k == 5
    assert not nsb.matrix.requires_grad
    assert not list(nsb.parameters())
    assert not any(k.endswith("matrix") for k in model.state_dict())  # rebuilt, never loaded
    assert torch.equal(nsb.matrix, broadcast_matrix(64, 5))
    x = torch.rand(1, 3, 32, 32)
    y = model.encode(x)
    y.sum().backward()
    assert nsb.matrix.grad is None
    with torch.no_grad():
        z = model.encoder[:-1](model.pad(x))
        assert torch.allclose(y, torch.einsum("ij,njhw->nihw", nsb.matrix, z), atol=1e-6)


def test_default_codec_state_dict_is_unchanged():
    """The flags off build exactly the baseline's modules (checkpoints keep loading)."""
    model = CNNCodec(cbr=1 / 12, hidden=8, bits=5)
    keys = list(model.state_dict())
    assert keys[0] == "channel_mean" and keys[-2:] == ["decoder.6.weight", "decoder.6.bias"]
    assert [k for k in keys if k.startswith("encoder.")][-2:] == [
        "encoder.6.weight",
        "encoder.6.bias",
    ]
    assert type(model.encoder[-1]) is torch.nn.Tanh and len(model.encoder) == 8


def test_training_can_start_from_a_zoo_checkpoint(tmp_path):
    from semnet.models import zoo
    from semnet.models.config import ModelConfig, TrainSettings
    from semnet.models.train import train

    shipped = zoo.entry(zoo.DEFAULT_CODEC)
    cfg = ModelConfig(
        name="resumed",
        codec_id=99,
        architecture=shipped.architecture,
        params=shipped.params,
        train=TrainSettings(init_from=zoo.DEFAULT_CODEC),
    )
    model = train(cfg, tmp_path, steps=0, progress=False, files=[])
    want = zoo.load(zoo.DEFAULT_CODEC).state_dict()
    got = model.state_dict()
    # an entropy coder's table is derived: recomputed from the prior, it differs from the
    # shipped (fp16) copy by rounding only
    derived = {"pmf"}
    assert all(torch.equal(got[k], want[k]) for k in want if k not in derived)
    for k in derived & set(want):
        torch.testing.assert_close(got[k], want[k], atol=1e-3, rtol=1e-2)


@pytest.mark.parametrize("arch", ["cnn-scale", "cnn-sem"])
def test_a_sem_variant_starts_from_the_baseline_backbone(arch):
    from semnet.models import zoo
    from semnet.models.train import init_from

    base = zoo.load("cnn-c64")  # the shipped SEM variants' parent
    params = {k: v for k, v in zoo.entry("cnn-c64").params.items()}
    model = build(arch, {**params, **({"k": 3} if arch == "cnn-sem" else {})}).eval()
    fresh = init_from(model, base)
    assert fresh and all(".gamma." in k for k in fresh)
    shared = base.state_dict()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in shared.items())
    # the Dynamic Scale layer computes the copied convolution up to one gain, c / sum ||W~||
    f = torch.randn(1, params["hidden"], 8, 8)
    ds, conv = model.encoder[6], base.encoder[6]
    with torch.no_grad():
        gain = ds.row_norms().numel() / ds.row_norms().sum()
        torch.testing.assert_close(ds(f), conv(f) * gain, rtol=1e-4, atol=1e-5)


def test_a_wider_latent_starts_as_its_parent():
    from semnet.models.train import init_from

    torch.manual_seed(0)
    parent = CNNCodec(cbr=64 / 768, hidden=8, bits=5).eval()
    wide = CNNCodec(cbr=112 / 768, hidden=8, bits=3).eval()
    assert init_from(wide, parent) == []
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        y, y_parent = wide.encode(x), parent.encode(x)
        torch.testing.assert_close(y[:, :64], y_parent)
        assert y[:, 64:].abs().sum() > 0  # the new channels carry fresh features...
        y[:, 64:] = torch.rand_like(y[:, 64:])  # ...that the decoder ignores until trained
        torch.testing.assert_close(wide.decode(y, 40, 56), parent.decode(y_parent, 40, 56))


def test_init_from_rejects_a_narrower_latent():
    from semnet.models.train import init_from

    with pytest.raises(ValueError, match="shapes differ"):
        init_from(CNNCodec(cbr=32 / 768, hidden=8), CNNCodec(cbr=64 / 768, hidden=8))


def test_init_from_rejects_a_parent_of_another_shape():
    from semnet.models.train import init_from

    small = CNNCodec(cbr=1 / 12, hidden=8, bits=5)
    with pytest.raises(ValueError, match="shapes differ"):
        init_from(CNNCodec(cbr=1 / 12, hidden=16, bits=5), small)


def test_residual_blocks_grow_a_trained_codec_without_changing_it():
    """``blocks`` adds named, zero-initialised blocks: a parent without them seeds the model
    exactly (same tensors, same reconstruction), and training then changes the blocks."""
    from semnet.models.train import init_from

    torch.manual_seed(0)
    parent = CNNCodec(cbr=1 / 12, hidden=8, bits=5).eval()
    model = CNNCodec(cbr=1 / 12, hidden=8, bits=5, blocks=2).eval()
    fresh = init_from(model, parent)
    assert sorted({k.split(".")[1] for k in fresh}) == ["r0", "r1"]
    assert {k.split(".")[0] for k in fresh} == {"encoder", "decoder"}
    x = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        y = model.encode(x)
        torch.testing.assert_close(y, parent.encode(x))
        torch.testing.assert_close(model.decode(y, 37, 50), parent.decode(y, 37, 50))
    before = model.encoder.r1.conv1.weight.detach().clone()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        loss, _, _ = train_step(model, torch.rand(2, 3, 32, 32), TrainSettings(), torch.Generator())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.decoder.r0.conv2.weight.abs().sum() > 0
    assert not torch.equal(model.encoder.r1.conv1.weight, before)  # gradient reaches past zeros


@pytest.mark.parametrize("arch", ["cnn-scale", "cnn-nsb", "cnn-sem"])
def test_sem_variants_take_residual_blocks_from_a_grown_parent(arch):
    """A SEM variant with ``blocks`` starts from a residual CNN: blocks copied, Γ fresh."""
    from semnet.models.train import init_from

    torch.manual_seed(0)
    parent = CNNCodec(cbr=1 / 12, hidden=8, bits=5, blocks=2)
    model = build(arch, {"cbr": 1 / 12, "hidden": 8, "bits": 5, "blocks": 2})
    fresh = init_from(model, parent)
    assert all(".gamma." in k for k in fresh)
    mine = model.state_dict()
    blocks = [k for k in parent.state_dict() if ".r0." in k or ".r1." in k]
    assert len(blocks) == 16
    assert all(torch.equal(mine[k], parent.state_dict()[k]) for k in blocks)
