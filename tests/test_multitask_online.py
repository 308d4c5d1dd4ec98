"""The multi-task codec through the pipeline and the real daemons (issue 19): the receiver reads
the class from the latent, and the sender picks its active prefix (A-MIJSCC end index) from the
receiver reports that come back over the proxy's reverse path."""

import time

import numpy as np
import pytest

from semnet.core.impair import Impairment, parse_spec
from semnet.core.partition import parse_spec as parse_partition
from semnet.models import backends, fashion_mnist, zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit
from semnet.testbed import LocalTestbed, metric, metric_totals

CODEC = "mijscc-fmnist"
pytestmark = pytest.mark.skipif(
    not fashion_mnist.available(), reason="needs Fashion-MNIST (make fashion-mnist)"
)


@pytest.fixture(scope="module")
def garments() -> tuple[np.ndarray, np.ndarray]:
    images, labels = fashion_mnist.load("test")  # test images: measured, never trained on
    return np.repeat(images[:8, :, :, None], 3, axis=3), labels[:8]  # grey as RGB, uint8


def test_a_prefix_frame_says_its_end_index_and_costs_fewer_bytes(garments):
    images, labels = garments
    codec = backends.load(CODEC, "eager", threads=1)
    k = codec.end_index((0.0, 1.0))
    assert 0 < k < codec.latent_channels
    entry = zoo.entry(CODEC)
    path = PathSettings(parse_partition("channel"), datagram_size=100)
    decoder = FrameDecoder(lambda _: codec, get_fill("zero"))
    right = 0
    for image, label in zip(images, labels, strict=True):
        full = FrameEncoder(codec, entry.codec_id, path).encode(image)
        prefix = FrameEncoder(codec, entry.codec_id, path).encode(image, k)
        assert prefix.descriptor.latent == (k, *full.descriptor.latent[1:])
        assert prefix.bytes_sent < full.bytes_sent
        result = transmit(
            image, FrameEncoder(codec, entry.codec_id, path), decoder, Impairment(parse_spec(""), 1)
        )
        top = result.classes[0]["label"]
        right += top == codec.class_names[int(label)]
        assert len(result.classes) == 5 and sum(c["p"] for c in result.classes) <= 1.0001
    assert right >= 5  # 87.6% on the test set; 8 garments, at least 5 right


@pytest.mark.slow
def test_the_sender_adapts_its_prefix_to_the_loss_the_receiver_reports(garments, tmp_path):
    images, labels = garments
    sender = {"codec": CODEC, "threads": 1, "backend": "eager", "datagram_size": 100}
    receiver = {"threads": 1, "backend": "eager", "report_interval": 0.2}

    def paced(bed, name: str, n: int) -> list[dict]:
        """n frames, each after the receiver's report of the one before has had time to come
        back (a report goes out for a stream heard since the last one)."""
        reports = []
        for i in range(n):
            reports.append(bed.send(images[i % 8], f"{name}{i}.png"))
            time.sleep(3 * receiver["report_interval"])
        return reports

    with LocalTestbed(tmp_path, seed=3, sender=sender, receiver=receiver) as bed:
        clean = paced(bed, "clean", 4)
        bed.set_impairment("loss random 40%")
        lossy = paced(bed, "lossy", 8)
        metrics = bed.metrics("sender")
        received = bed.metrics("receiver")
    assert all("error" not in r for r in clean + lossy), clean + lossy
    first = clean[0]
    assert first["end_index"] is None  # no report yet: every channel, the fixed-length default
    assert len(first["classes"]) == 5
    codec = backends.load(CODEC, "eager", threads=1)
    adapted = [r["end_index"] for r in clean[1:] if r["end_index"] is not None]
    assert adapted and max(adapted) < codec.latent_channels  # a clean channel: a short prefix
    under_loss = [r["end_index"] for r in lossy[2:] if r["end_index"] is not None]
    assert under_loss and max(under_loss) > min(adapted)  # reports of loss: a longer prefix
    assert "semnet_sender_active_channels" in metrics
    ks = [r["end_index"] for r in clean + lossy if r["end_index"] is not None]
    saved = sum(codec.latent_channels - k for k in ks) * 4 * 4 * 5 // 8  # 4x4 at 5 bits
    assert metric(metric_totals(metrics), "semnet_sender_latent_bytes_saved_total") == saved > 0
    # the class read from the latent agrees with the one from the whole clean latent, mostly
    assert first["task_agree"] is True and all(isinstance(r["task_agree"], bool) for r in lossy)
    agreed = metric(metric_totals(received), "semnet_frame_task_total", agree="true")
    assert agreed == sum(r["task_agree"] for r in clean + lossy) > 0
