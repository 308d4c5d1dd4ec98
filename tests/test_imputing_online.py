"""Paper 002's chain on real daemons: CAM importance bytes from the sender, a block-fading link
with semantic-aware power in the proxy, the diffusion imputer and perceptual scores in the
receiver — and the offline chain gives the very same picture."""

from __future__ import annotations

import numpy as np
import pytest

from semnet.core.impair import Impairment, parse_spec
from semnet.core.partition import parse_spec as parse_partition
from semnet.core.reassembly import Reassembler
from semnet.images import load_image
from semnet.models import backends, zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings, perceptual_available
from semnet.pipeline.offline import deliver
from semnet.testbed import LocalTestbed

pytestmark = pytest.mark.skipif(
    not perceptual_available(), reason="needs the optional metrics (make metrics-extra)"
)

LINK = "link rayleigh snr 0dB subcarriers 16 power semantic seed 11"
FILL = "diffusion:2"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[60:252, 100:356])  # 192 x 256


def offline(photo: np.ndarray, frame: int) -> np.ndarray:
    codec = backends.load(zoo.DEFAULT_CODEC, threads=1)  # as the daemons below run it
    entry = zoo.entry(zoo.DEFAULT_CODEC)
    path = PathSettings(parse_partition("patch:4x4"), importance=True)
    encoder = FrameEncoder(codec, entry.codec_id, path, seed=5)
    encoder.next_frame = frame
    sent = encoder.encode(photo)
    reassembler = Reassembler(deadline=float("inf"))
    frames = []
    spec = parse_spec(LINK)
    for t, data in deliver(sent, Impairment(spec, spec.seed), 0.0, 1e-4):
        frames += reassembler.ingest(data, t)
    frames += reassembler.flush()
    return FrameDecoder(lambda _: codec, get_fill(FILL)).decode(frames[0]).image


def test_semantic_link_and_diffusion_fill_online_equal_offline(tmp_path, photo):
    sender = {"threads": 1, "partition": "patch:4x4", "importance": True, "first_frame": 40}
    receiver = {"threads": 1, "fill": FILL}
    with LocalTestbed(tmp_path, impair=LINK, seed=5, sender=sender, receiver=receiver) as bed:
        report = bed.send(photo, "chelsea.png")
        text = bed.metrics("receiver")
        proxy = bed.metrics("proxy")
    assert 0 < report["datagrams_received"] < report["datagrams_sent"]  # the fading lost some
    assert report["fill"] == FILL
    assert 0 < report["lpips"] < 1 and isinstance(report["semantic_agree"], bool)
    assert "semnet_frame_lpips_bucket" in text and "semnet_frame_semantic_total" in text
    assert 'semnet_proxy_link_snr_db_bucket{direction="forward",le="+Inf"}' in proxy
    assert np.array_equal(load_image(report["saved"]), offline(photo, report["frame"]))
