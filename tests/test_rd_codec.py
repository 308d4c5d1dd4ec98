"""The entropy-coded codec family (``cnn-rd``): its prior, its training step, and one frame
through the real sender and receiver code, on tiny randomly initialised models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from semnet.core.impair import Impairment, ImpairSpec, parse_spec
from semnet.core.reassembly import Reassembler
from semnet.core.wire import encode, parse
from semnet.errors import ConfigError
from semnet.images import load_image
from semnet.models.config import TrainSettings
from semnet.models.entropy import FactorizedPrior
from semnet.models.fill import get_fill
from semnet.models.rd import RDCodec
from semnet.models.train import train_step
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit
from semnet.pipeline.tensors import to_image, to_tensor

DEMO = Path(__file__).resolve().parent.parent / "semnet" / "demo_images" / "chelsea.png"
PATH = PathSettings(datagram_size=300)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.ascontiguousarray(load_image(DEMO)[40:136, 100:244])


@pytest.fixture(scope="module")
def codec(image) -> RDCodec:
    """A random transform whose prior has been fitted to its latent (the rate term alone)."""
    torch.manual_seed(0)
    model = RDCodec(hidden=8, bits=6, gain=30.0)
    with torch.no_grad():
        y = model.encode(to_tensor(image, torch.device("cpu")))
    opt = torch.optim.Adam(model.entropy_model.parameters(), lr=0.05)
    for _ in range(60):
        loss = model.rate_bits(y + torch.rand(y.shape) - 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.update_table()
    return model.eval()


def test_prior_is_a_distribution_over_the_integers() -> None:
    prior = FactorizedPrior(3)
    table = prior.table(-8, 16)
    assert table.shape == (3, 16)
    torch.testing.assert_close(table.sum(dim=1), torch.ones(3))
    inner = prior.likelihood(torch.arange(-7.0, 7.0).expand(1, 3, 1, -1))[0, :, 0]
    torch.testing.assert_close(inner, table[:, 1:-1], atol=1e-6, rtol=1e-4)  # the ends: + tails


def test_latent_sits_on_the_round_quantizer_grid(codec: RDCodec, image) -> None:
    assert codec.quant.kind == "round" and codec.quant.lo == -32 and codec.quant.hi == 31
    with torch.no_grad():
        y = codec.encode(to_tensor(image, torch.device("cpu")))
    assert y.abs().max() <= 30.0 + 1e-4
    with pytest.raises(ValueError):
        RDCodec(hidden=8, bits=4, gain=8.0)  # 4-bit symbols reach 7 at most


def test_training_step_trades_rate_for_distortion(codec: RDCodec) -> None:
    model = RDCodec(hidden=8, bits=6, gain=6.0)
    x = torch.rand(2, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    loss, _, bpp = train_step(model, x, TrainSettings(rate_lambda=0.01), gen)
    assert bpp is not None and bpp > 0
    loss.backward()
    assert model.log_gain.grad is not None and model.log_gain.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.entropy_model.parameters())


def test_lossless_frame_decodes_the_rounded_latent(codec: RDCodec, image) -> None:
    enc = FrameEncoder(codec, 1, PATH, seed=3)
    dec = FrameDecoder(lambda _: codec, get_fill("zero"))
    r = transmit(image, enc, dec, Impairment(ImpairSpec(), 1))
    with torch.inference_mode():
        y = codec.encode(to_tensor(image, torch.device("cpu")))
        expected = to_image(codec.decode(torch.floor(y + 0.5), *image.shape[:2]))
    np.testing.assert_array_equal(r.image, expected)
    assert r.datagrams_received == r.datagrams_sent
    # six-bit symbols sent as they are would need this many bytes of payload alone
    assert r.bytes_sent < y.numel() * 6 / 8


def test_entropy_coded_frames_degrade_under_loss(codec: RDCodec, image) -> None:
    enc = FrameEncoder(codec, 1, PATH, seed=3)
    dec = FrameDecoder(lambda _: codec, get_fill("zero"))
    r = transmit(image, enc, dec, Impairment(parse_spec("loss random 30%"), 5))
    assert 0 < r.datagrams_received < r.datagrams_sent
    assert r.loss_ratio == 1 - r.datagrams_received / r.datagrams_sent


def test_quantizer_overrides_are_refused(codec: RDCodec) -> None:
    with pytest.raises(ConfigError, match="entropy-coded"):
        FrameEncoder(codec, 1, PathSettings(bits=5))
    with pytest.raises(ConfigError, match="entropy-coded"):
        FrameEncoder(codec, 1, PathSettings(quant_kind="uniform"))
    FrameEncoder(codec, 1, PathSettings(quant_kind="round", bits=6))  # its own: fine


def test_decoder_drops_and_counts_a_stream_that_does_not_decode(codec: RDCodec, image) -> None:
    sent = FrameEncoder(codec, 1, PATH, seed=3).encode(image)
    forged = parse(sent.datagrams[0])
    forged = replace(forged, payload=forged.payload[:8] + bytes(len(forged.payload) - 8))
    r = Reassembler(deadline=float("inf"))
    frames = r.ingest(encode(forged), 0.0)
    for data in sent.datagrams[1:]:
        frames += r.ingest(data, 0.0)
    (frame,) = frames + r.flush()
    decoded = FrameDecoder(lambda _: codec, get_fill("zero")).decode(frame)
    assert sum(decoded.dropped.values()) == 1
    assert decoded.received == len(sent.datagrams) - 1


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"),
            ],
        ),
    ],
)
def test_training_runs_resumes_and_refreshes_the_coders_table(tmp_path, device) -> None:
    from semnet.models.config import ModelConfig
    from semnet.models.train import train

    cfg = ModelConfig(
        name="tiny-rd",
        codec_id=99,
        architecture="cnn-rd",
        params={"hidden": 8, "gain": 8.0},
        train=TrainSettings(batch=2, crop=32, scales=(64,), rate_lambda=0.01, checkpoint_every=2),
    )
    files = [str(DEMO)]
    model = train(cfg, tmp_path, steps=2, progress=False, files=files, device=torch.device(device))
    assert next(model.parameters()).device.type == "cpu"
    torch.testing.assert_close(model.pmf, model.entropy_model.table(-32, 64))
    again = train(cfg, tmp_path, steps=4, progress=False, files=files, device=torch.device(device))
    assert torch.load(tmp_path / "state.pt", weights_only=False)["step"] == 4
    assert not torch.equal(again.log_gain, model.log_gain)
