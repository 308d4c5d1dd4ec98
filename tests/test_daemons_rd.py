"""Integration: an entropy-coded rate point through real sender, proxy and receiver processes."""

import time
from dataclasses import replace

import numpy as np
import pytest

from semnet.core.partition import parse_spec
from semnet.core.reassembly import Reassembler
from semnet.core.wire import encode, parse
from semnet.images import load_image
from semnet.models import backends, zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.testbed import LocalTestbed, by_label, metric_totals

pytestmark = pytest.mark.slow
CODEC = "cnn-rd-q2"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[96:288, 128:384])  # 192 x 256


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    sender = {"threads": 1, "codec": "cnn-rd", "quality": 2}
    receiver = {"threads": 1, "decode_unannounced": True}  # the forged frame below is decoded
    with LocalTestbed(
        tmp_path_factory.mktemp("bed"), seed=3, sender=sender, receiver=receiver
    ) as testbed:
        yield testbed


def test_coded_frame_matches_offline_bit_for_bit(bed, photo):
    report = bed.send(photo, "astronaut.png")
    assert report["codec"] == CODEC
    assert report["datagrams_received"] == report["datagrams_sent"] > 1
    codec, entry = backends.load(CODEC, threads=1), zoo.entry(CODEC)
    encoder = FrameEncoder(codec, entry.codec_id, PathSettings(parse_spec("channel")), seed=3)
    encoder.next_frame = report["frame"]
    sent = encoder.encode(photo)
    assert sent.bytes_sent == report["bytes_sent"]
    reassembler = Reassembler()
    frames = [f for d in sent.datagrams for f in reassembler.ingest(d, 0.0)]
    decoded = FrameDecoder(lambda _: codec, get_fill("zero")).decode(frames[0])
    assert np.array_equal(decoded.image, load_image(report["saved"]))


def test_a_send_picks_another_rate_point(bed, photo):
    low = bed.send(photo, "low.png", quality=1)
    high = bed.send(photo, "high.png", quality=4)
    assert (low["codec"], high["codec"]) == ("cnn-rd-q1", "cnn-rd-q4")
    assert low["bytes_sent"] < high["bytes_sent"]
    assert low["psnr_db"] < high["psnr_db"]
    with pytest.raises(Exception, match="quality 9"):
        bed.send(photo, "none.png", quality=9)


def test_corrupt_streams_are_counted_malformed_and_accounting_closes(bed, photo):
    before = bed.accounting()
    bed.set_impairment("loss random 30%")
    try:
        reports = [bed.send(photo, f"p{i}.png") for i in range(3)]
    finally:
        bed.set_impairment("")
    assert sum(r["datagrams_received"] for r in reports) < sum(r["datagrams_sent"] for r in reports)
    # a one-datagram frame of our own whose stream is garbage: accepted, then not decodable
    codec, entry = backends.load(CODEC, threads=1), zoo.entry(CODEC)
    sent = FrameEncoder(codec, entry.codec_id, PathSettings(), stream=9, seed=1).encode(photo)
    dg = parse(sent.datagrams[0])
    forged = replace(dg, count=1, index=0, payload=dg.payload[:8] + bytes(len(dg.payload) - 8))
    bed.inject("receiver", [encode(forged)])
    for _ in range(100):
        totals = metric_totals(bed.metrics("receiver"))
        malformed = by_label(totals, "semnet_receiver_datagrams_malformed_total", "reason")
        if malformed.get("entropy"):
            break
        time.sleep(0.1)
    assert malformed.get("entropy") == 1
    assert bed.accounting(since=before).closes


def test_what_a_new_user_sends_gets_an_honest_answer(bed):
    from semnet.client import send_image
    from semnet.errors import SemnetError

    with pytest.raises(SemnetError, match="not an image file Pillow can read"):
        send_image(bed.http["sender"], "README.md", b"# not an image\n")
    tiny = bed.send(np.full((7, 10, 3), 120, np.uint8), "tiny.png")  # smaller than SSIM's window
    assert "error" not in tiny and 0 < tiny["ssim"] <= 1
