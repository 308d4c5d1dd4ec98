"""The GPU path, end to end, against the CPU's output (skipped, saying so, without CUDA).

Tolerances: the same transforms on another device differ in float rounding only, so a decoded
image is within 0.1 dB PSNR of the CPU's and its latent within 1e-3; float16 transforms lose at
most 0.1 dB against float32 on the same GPU, the bar issue 23 sets for a default.
"""

import numpy as np
import pytest

from semnet.core.impair import Impairment
from semnet.core.impair import parse_spec as parse_impairment
from semnet.core.partition import parse_spec
from semnet.core.reassembly import Reassembler
from semnet.eval_images import eval_image
from semnet.models import backends, zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit
from semnet.testbed import LocalTestbed

pytestmark = pytest.mark.gpu
CUDA = "cuda"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(eval_image("astronaut")[:256, :384])


def chain(device: str, half: bool = False, loss: str = "loss random 20%"):
    """The offline chain of the default codec on ``device``; same seed, same losses."""
    import torch

    codec = backends.load(zoo.DEFAULT_CODEC, "auto", device, threads=1, half=half)
    entry = zoo.entry(zoo.DEFAULT_CODEC)
    path = PathSettings(parse_spec("channel"))
    encoder = FrameEncoder(codec, entry.codec_id, path, seed=5, device=torch.device(device))
    decoder = FrameDecoder(lambda _: codec, get_fill("zero"), torch.device(device))
    return encoder, decoder, Impairment(parse_impairment(loss), 5)


def test_the_gpu_chain_matches_the_cpu_chain(photo):
    on_cpu = transmit(photo, *chain("cpu"))
    on_gpu = transmit(photo, *chain(CUDA))
    assert on_gpu.datagrams_received == on_cpu.datagrams_received  # same losses
    assert abs(on_gpu.psnr_db - on_cpu.psnr_db) <= 0.1, (on_gpu.psnr_db, on_cpu.psnr_db)


def test_half_precision_keeps_quality(photo):
    full = transmit(photo, *chain(CUDA, loss=""))
    half = transmit(photo, *chain(CUDA, half=True, loss=""))
    assert full.psnr_db - half.psnr_db <= 0.1, (full.psnr_db, half.psnr_db)


def test_a_gpu_batch_decodes_as_each_frame_alone(photo):
    encoder, decoder, _ = chain(CUDA)
    reassembler, frames = Reassembler(), []
    for k in range(4):
        for data in encoder.encode(np.roll(photo, 17 * k, axis=1)).datagrams:
            frames += reassembler.ingest(data, 0.0)
    together = decoder.decode_batch(frames)
    for frame, batched in zip(frames, together, strict=True):
        alone = decoder.decode(frame).image.astype(int)
        assert np.abs(batched.image.astype(int) - alone).max() <= 1


def test_daemons_on_the_gpu_decode_what_the_cpu_decodes(photo, tmp_path):
    gpu = {"device": CUDA, "threads": 1}
    receiver = {**gpu, "max_batch": 8, "max_wait_ms": 20}
    with LocalTestbed(tmp_path, seed=5, sender=gpu, receiver=receiver) as bed:
        reports = [bed.send(photo, f"p{i}.png") for i in range(3)]
    offline = transmit(photo, *chain("cpu", loss=""))
    for report in reports:
        assert "error" not in report, report
        assert abs(report["psnr_db"] - offline.psnr_db) <= 0.1, (report, offline.psnr_db)
