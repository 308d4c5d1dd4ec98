"""Inference engines for the codec's transforms: chosen, checked at load, close to eager, and
bit-exact between the sender's encoder and an offline one that use the same engine."""

import numpy as np
import pytest
import torch

from semnet.core.impair import Impairment, parse_spec
from semnet.core.partition import parse_spec as partition
from semnet.errors import ConfigError
from semnet.models import DEFAULT_CODEC, backends, zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit

CPU = torch.device("cpu")
needs_openvino = pytest.mark.skipif(
    not backends.installed("openvino"), reason="openvino is not installed (the fast extra)"
)


def test_resolve_names_the_key_and_the_fix(monkeypatch):
    with pytest.raises(ConfigError, match="backend: 'tensorrt' is not one of auto, eager"):
        backends.resolve("tensorrt", CPU)
    with pytest.raises(ConfigError, match="backend: openvino runs on the CPU, but device is cuda"):
        backends.resolve("openvino", torch.device("cuda"))
    assert backends.resolve("auto", torch.device("cuda")) == "eager"
    monkeypatch.setattr(backends, "installed", lambda name: name == "eager")
    with pytest.raises(ConfigError, match=r"onnxruntime is not installed \(pip install onnxrun"):
        backends.resolve("onnxruntime", CPU)
    assert backends.resolve("auto", CPU) == "eager"  # nothing better installed


def test_eager_is_the_codec_itself():
    codec = zoo.load(DEFAULT_CODEC)
    assert backends.accelerate(codec, "eager", CPU) is codec


@needs_openvino
def test_openvino_matches_eager_and_keeps_the_codec_around_it():
    codec = zoo.load(DEFAULT_CODEC)
    fast = backends.accelerate(codec, "openvino", CPU, threads=1)
    assert fast.backend == "openvino" and fast.zoo_name == DEFAULT_CODEC
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = codec.encode(x)
        assert fast.encode(x).shape == y.shape
        assert (fast.encode(x) - y).abs().max() < 1e-4
        assert (fast.decode(y, 70, 90) - codec.decode(y, 70, 90)).abs().max() < 1e-4
    assert fast.entropy_table() is not None and fast.quant == codec.quant


@needs_openvino
def test_one_engine_gives_the_same_frame_twice():
    """Online equals offline for a given backend: two encoders on one engine, same bytes."""
    codec = backends.accelerate(zoo.load(DEFAULT_CODEC), "openvino", CPU, threads=1)
    entry = zoo.entry(DEFAULT_CODEC)
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    path = PathSettings(partition("channel"))
    first = FrameEncoder(codec, entry.codec_id, path).encode(image).datagrams
    again = FrameEncoder(codec, entry.codec_id, path).encode(image).datagrams
    assert first == again
    result = transmit(
        image,
        FrameEncoder(codec, entry.codec_id, path),
        FrameDecoder(lambda _: codec, get_fill("zero")),
        Impairment(parse_spec(""), 1),
    )
    assert result.psnr_db > 10


@needs_openvino
def test_a_graph_that_bakes_its_shape_is_caught_at_load():
    """swin's window partition reshapes to the traced size: named, it is refused at load;
    under auto it runs eager."""
    swin = zoo.load("swin")
    with pytest.raises(ConfigError, match="backend: openvino cannot run swin"):
        backends.accelerate(swin, "openvino", CPU, threads=1)
    assert backends.accelerate(swin, "auto", CPU, threads=1) is swin
