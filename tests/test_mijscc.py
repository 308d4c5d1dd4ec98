"""The MIJSCC multi-task codec (paper 004, issue 19): mechanics on tiny random models, the
trainer for two steps, and the shipped mijscc-fmnist's accuracy from the latent."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from semnet.core.impair import Impairment, parse_spec
from semnet.errors import ConfigError, SemnetError
from semnet.models import fashion_mnist
from semnet.models.fill import get_fill, mean_fill, zero_fill
from semnet.models.mijscc import (
    ChannelAttention,
    GlobalDiscriminator,
    LocalDiscriminator,
    MIJSCCCodec,
    condition_features,
    js_mi,
    prefix_mask,
    suffix_sum,
)
from semnet.models.mijscc_train import (
    erasure_mask,
    fit_condition_encoder,
    fit_grid,
    load_multitask_config,
    targets,
)
from semnet.models.registry import build
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "models"
TINY = {"channels": 8, "stride": 8, "hidden": 8, "head_hidden": 16, "min_channels": 2}
needs_fmnist = pytest.mark.skipif(
    not fashion_mnist.available(),
    reason="Fashion-MNIST not installed (make fashion-mnist: Debian dataset-fashion-mnist)",
)


@pytest.fixture
def tiny() -> MIJSCCCodec:
    torch.manual_seed(0)
    return build("mijscc", TINY, {"kind": "asymmetric", "bits": 5}).eval()


def test_shipped_config_builds_the_paper_sizes():
    cfg = load_multitask_config(CONFIGS / "mijscc-fmnist.yaml")
    model = build(cfg.architecture, cfg.params, cfg.quant.as_dict())
    assert model.latent_shape(28, 28) == (32, 4, 4)  # 512 values, Table I's representation
    assert (model.quant.kind, model.quant.bits) == ("asymmetric", 5)
    assert len(model.class_names) == 10 and model.class_names[0] == "T-shirt/top"
    assert (cfg.train.lam, cfg.train.mu1, cfg.train.mu2) == (0.05, 0.01, 1.0)  # §V's values


@pytest.mark.parametrize("size", [(28, 28), (37, 50)])
def test_shapes_ranges_and_classify_on_a_filled_latent(tiny, size):
    h, w = size
    x = torch.rand(3, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = tiny.encode(x)
        assert tuple(y.shape) == (3, *tiny.latent_shape(h, w))
        assert y.abs().max() <= 1.0
        received = torch.ones_like(y, dtype=torch.bool)
        received[:, 3:] = False  # channels 3.. lost
        filled = zero_fill(y, received, tiny)
        logits = tiny.classify(filled, received)
        assert logits.shape == (3, 10) and torch.isfinite(logits).all()
        # zero fill: the received mask inferred from the latent is the real one
        assert torch.equal(tiny.classify(filled), logits)
        x_hat = tiny.decode(filled, h, w)
    assert x_hat.shape == x.shape and x_hat.min() >= 0 and x_hat.max() <= 1


def test_the_end_index_is_a_prefix_and_monotone(tiny):
    """Direction: non-decreasing in loss rate and burst, non-increasing in SNR."""
    # the paper's eq. 20 as the text means it: g̃ non-increasing, so the mask is a prefix
    g = torch.rand(5, 8)
    gt = suffix_sum(g)
    assert torch.allclose(gt[:, 0], g.sum(1)) and (gt[:, :-1] >= gt[:, 1:]).all()
    assert prefix_mask(3, 8).tolist() == [True] * 3 + [False] * 5
    # fit N_enc to monotone targets so the index moves, then check it everywhere
    k_star = torch.tensor([[2, 3], [3, 4], [4, 5], [5, 6], [6, 7], [7, 8], [8, 8]])
    feats, ks = fit_grid(k_star)
    fit = fit_condition_encoder(tiny, feats, ks, steps=4, seed=0)
    assert fit["fit_max_error_channels"] <= 3
    losses = np.linspace(0, 1, 21)
    for burst in (1.0, 3.0, 16.0):
        for snr in (None, 20.0, 5.0):
            ks_loss = [tiny.end_index((p, burst, snr)) for p in losses]
            assert ks_loss == sorted(ks_loss)
            assert all(2 <= k <= 8 for k in ks_loss)
    for p in (0.0, 0.2):
        assert [tiny.end_index((p, b)) for b in (1, 2, 4, 8)] == sorted(
            tiny.end_index((p, b)) for b in (1, 2, 4, 8)
        )
        by_snr = [tiny.end_index({"loss": p, "snr_db": s}) for s in (0.0, 5.0, 10.0, 20.0, 30.0)]
        assert by_snr == sorted(by_snr, reverse=True)
        assert tiny.end_index({"loss": p, "snr_db": 40.0}) == tiny.end_index((p, 1.0))
    assert tiny.end_index((0.0, 1.0)) < tiny.end_index((0.6, 8.0, 0.0))  # it does move
    u = condition_features(torch.tensor([0.0, 0.3]), torch.tensor([1.0, 4.0]), None)
    assert u.shape == (2, 3) and (u >= 0).all() and (u <= 1).all()


def test_targets_are_the_smallest_prefix_within_tolerance_made_monotone():
    table = torch.tensor(
        [
            [[10.0, 19.0, 19.8, 20.0]],  # clean: 3 channels are within 0.5 dB
            [[9.0, 14.0, 17.0, 17.2]],  # lossy: 3 as well
            [[8.0, 16.0, 16.1, 16.2]],  # 2 would do, but never fewer than a better channel
        ]
    )
    assert targets(table, 0.5, 1).flatten().tolist() == [3, 3, 3]
    assert targets(table, 5.0, 1).flatten().tolist() == [2, 2, 2]


def test_attention_touches_only_received_channels(tiny):
    torch.manual_seed(3)
    att = ChannelAttention(8, 16)
    torch.nn.init.normal_(att.fc2.weight)  # away from the identity it starts as
    y = torch.randn(2, 8, 3, 3)
    received = torch.zeros(2, 8, 3, 3, dtype=torch.bool)
    received[0, :5] = True
    received[1, ::2] = True
    received[1, 1, 0, 0] = True  # part of a channel (a patch partition's unit)
    out = att(mean_fill(y, received, tiny), received)
    filled = mean_fill(y, received, tiny)
    assert torch.equal(out[~received], filled[~received])
    w = att.weights(filled, received)
    assert ((w > 0) & (w < 2)).all()
    assert torch.allclose(out[received], (filled * w[:, :, None, None])[received])
    assert not torch.allclose(out[received], filled[received])
    # untrained, the module is the identity: a fresh codec's decode is its decoder's
    fresh = ChannelAttention(8)
    assert torch.equal(fresh(y, received), y)
    # the codec's enhance with an end index k: channels k.. are never re-weighted
    tiny.attention = att
    enhanced = tiny.enhance(y, torch.ones(2, 8, dtype=torch.bool), k=3)
    assert torch.equal(enhanced[:, 3:], y[:, 3:])
    assert not torch.equal(enhanced[:, :3], y[:, :3])


def test_js_mi_estimators_are_finite_differentiable_and_learn_matched_pairs():
    torch.manual_seed(0)
    level = torch.rand(16, 3, 1, 1)  # what each image is about: z and f carry it
    x = level + 0.1 * torch.rand(16, 3, 32, 32)
    f = (2 * level - 1).repeat(1, 2, 8, 8)  # (16, 6, 8, 8) features
    z = (2 * level - 1).repeat(1, 2, 4, 4)  # (16, 6, 4, 4) latent
    glob, local = GlobalDiscriminator(6, width=32), LocalDiscriminator(6, 6, width=16)
    start = (glob.mi(x, z).item(), local.mi(f, z).item())
    for value in start:
        assert math.isfinite(value) and value <= 0
    # bounded by -2 log 2 (a discriminator that knows nothing) from below, 0 from above
    assert js_mi(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(-2 * math.log(2))
    opt = torch.optim.Adam([*glob.parameters(), *local.parameters()], lr=3e-3)
    zz = z.clone().requires_grad_(True)
    for _ in range(40):
        loss = -(glob.mi(x, zz) + local.mi(f, zz))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert zz.grad is not None and torch.isfinite(zz.grad).all() and zz.grad.abs().sum() > 0
    with torch.no_grad():
        assert glob.mi(x, z).item() > start[0] + 0.1
        assert local.mi(f, z).item() > start[1] + 0.1
        # matched pairs score higher than shuffled ones
        assert glob(x, z).mean() > glob(x.roll(1, 0), z).mean()


def test_erasure_masks_lose_what_they_are_asked_to():
    gen = torch.Generator().manual_seed(0)
    n, c = 500, 256  # long rows: runs cut at the ends barely bias the mean burst
    for loss, burst in ((0.0, 1.0), (0.3, 1.0), (0.3, 4.0), (0.1, 8.0)):
        kept = erasure_mask(n, c, torch.full((n,), loss), torch.full((n,), burst), gen)
        assert abs((1 - kept.float().mean().item()) - loss) < 0.02
        lost = ~kept
        runs = (lost[:, 1:] & ~lost[:, :-1]).sum().item() + lost[:, 0].sum().item()
        if loss and burst > 1 / (1 - loss):
            assert lost.sum().item() / runs == pytest.approx(burst, rel=0.2)


def test_config_errors_name_the_key(tmp_path):
    text = (CONFIGS / "mijscc-fmnist.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  mu2: 1.0", "  mu2: 1.0\n  mu3: 2.0"))
    with pytest.raises(ConfigError, match="mu3"):
        load_multitask_config(bad)
    bad.write_text(text.replace("kind: asymmetric", "kind: uniform"))
    with pytest.raises(ConfigError, match="asymmetric"):
        load_multitask_config(bad)
    with pytest.raises(ConfigError, match="labels"):
        build("mijscc", {**TINY, "labels": "cifar"})


def test_fashion_mnist_reader_rejects_a_bad_file(tmp_path):
    for pair in fashion_mnist.FILES.values():
        for name in pair:
            (tmp_path / name).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 12))
    with pytest.raises(SemnetError, match="magic"):
        fashion_mnist.load("test", tmp_path)
    assert fashion_mnist.available(tmp_path)
    assert not fashion_mnist.available(tmp_path / "missing")


def test_a_frame_through_the_packet_path(tiny):
    image = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    encoder = FrameEncoder(tiny, codec_id=190, path=PathSettings(datagram_size=120), seed=3)
    decoder = FrameDecoder(lambda _: tiny, get_fill("zero"))
    r = transmit(image, encoder, decoder, Impairment(parse_spec("loss random 30%"), 7))
    assert r.image.shape == image.shape and np.isfinite(r.psnr_db)
    assert encoder.quant_spec(np.zeros(2, np.float32)).kind.name == "ASYMMETRIC"


@needs_fmnist
def test_the_trainer_runs_two_steps_and_writes_no_entry(tmp_path):
    from semnet.cli.train_multitask import train_multitask

    text = (CONFIGS / "mijscc-fmnist.yaml").read_text()
    text = text.replace("  hidden: 32", "  hidden: 8").replace("  batch: 64", "  batch: 4")
    text = text.replace("  labelled_fraction: 1.0", "  labelled_fraction: 0.5")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(text)
    run = tmp_path / "run"
    args = ["--config", str(cfg), "--steps", "2", "--run-dir", str(run), "--no-export"]
    result = CliRunner().invoke(train_multitask, args)
    assert result.exit_code == 0, result.output
    state = torch.load(run / "state.pt", weights_only=False)
    assert state["step"] == 2
    assert any(k.startswith("critics.glob.") for k in state["model"])  # trained, not shipped
    model = build("mijscc", load_multitask_config(cfg).params)
    shipped = {k.removeprefix("model."): v for k, v in state["model"].items() if "critics" not in k}
    model.load_state_dict(shipped)  # the codec's own state has no critic in it


@pytest.mark.slow
@needs_fmnist
def test_shipped_mijscc_fmnist_classifies_from_the_latent():
    from semnet.experiments.multitask import evaluate_fashion
    from semnet.models import zoo

    entry = zoo.entry("mijscc-fmnist")
    model = zoo.load("mijscc-fmnist")
    assert isinstance(model, MIJSCCCodec) and entry.command.startswith("semnet train-multitask")
    assert zoo.where("mijscc-fmnist").weights.stat().st_size < 2_000_000
    assert not any("critic" in k or "disc" in k for k in model.state_dict())
    m = evaluate_fashion(model, limit=2000)  # the first 2000 test images, fixed
    assert m["by_loss"]["0"]["accuracy"] >= 0.85
    assert m["by_loss"]["0.3"]["accuracy"] >= 0.5
    clean = m["adaptive_vs_fixed"]["0"]
    assert clean["bytes_adaptive"] <= clean["bytes_fixed"]
