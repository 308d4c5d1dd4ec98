"""Classical baselines: wire format, FEC, equal-bytes matching and each receiver's loss rule."""

import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semnet.baselines import fec
from semnet.baselines.codecs import CLASSICAL, FALLBACK_GREY
from semnet.baselines.stream import (
    STREAM_HEADER,
    Contender,
    match_bytes,
    packetize_stream,
    parse_contender,
    receive,
    transmit,
    wire_bytes,
)
from semnet.core.impair import Impairment, parse_spec
from semnet.core.reassembly import Reassembler
from semnet.core.wire import parse
from semnet.errors import ConfigError, SemnetError
from semnet.images import load_image
from semnet.pipeline.frames import score

DEMO = Path(__file__).resolve().parent.parent / "semnet" / "demo_images"
SIZE = 300  # small datagrams, so a 96 x 128 picture spans a dozen of them


def picture(name: str = "astronaut") -> np.ndarray:
    """A 96 x 128 crop of a bundled photo: small enough to be fast, real enough to compress."""
    return np.ascontiguousarray(load_image(DEMO / f"{name}.png")[:96, :128])


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def arrive(sent, dropped: set[int]):
    """The assembled frame when the datagrams at ``dropped`` are lost, None if all are."""
    reassembler = Reassembler(deadline=float("inf"))
    frames = []
    for i, datagram in enumerate(sent.datagrams):
        if i not in dropped:
            frames += reassembler.ingest(datagram, 0.0)
    frames += reassembler.flush()
    return frames[0] if frames else None


def no_loss() -> Impairment:
    return Impairment(parse_spec(""), 1)


@pytest.mark.parametrize("name", ["jpeg", "webp", "jpeg2000", "jpeg+rs20", "jpeg2000+rs50"])
def test_zero_loss_decodes_exactly_what_pillow_decodes(name):
    image = picture()
    contender = parse_contender(name)
    data = contender.codec.encode(image, 60)
    result = transmit(image, contender, data, no_loss(), SIZE)
    assert result.decoded and result.datagrams_received == result.datagrams_sent
    np.testing.assert_array_equal(result.image, pillow(data))
    assert result.bytes_sent == wire_bytes(len(data), contender.overhead, SIZE)


def test_datagrams_are_wire_format_frames():
    image = picture()
    contender = parse_contender("webp+rs20")
    data = contender.codec.encode(image, 50)
    sent = packetize_stream(data, contender, image.shape, SIZE)
    parsed = [parse(d) for d in sent.datagrams]
    assert all(len(d) <= SIZE for d in sent.datagrams)
    assert {
        (p.descriptor.codec_id, p.descriptor.image_h, p.descriptor.image_w) for p in parsed
    } == {(contender.codec.codec_id, 96, 128)}
    assert [p.index for p in parsed] == list(range(len(parsed)))
    share = parsed[0].descriptor.latent[2] - STREAM_HEADER.size
    source = -(-len(data) // share)
    assert len(parsed) == sum(k + m for k, m in fec.plan(source, 20))


@pytest.mark.parametrize(("source", "overhead"), [(1, 20), (10, 20), (53, 20), (300, 30), (7, 255)])
def test_fec_plan(source, overhead):
    blocks = fec.plan(source, overhead)
    assert sum(k for k, _ in blocks) == source
    assert all(k + m <= fec.MAX_SHARES and m == -(-k * overhead // 100) for k, m in blocks)
    assert max(k for k, _ in blocks) - min(k for k, _ in blocks) <= 1


@pytest.mark.parametrize(("source", "overhead"), [(10, 20), (53, 20), (300, 30)])
def test_fec_recovers_up_to_its_budget_per_block_and_not_beyond(source, overhead):
    rng = random.Random(source)
    shares = [rng.randbytes(40) for _ in range(source)]
    coded = fec.encode(shares, overhead)
    blocks = fec.plan(source, overhead)
    for trial in range(6):
        lost, start = set(), 0
        beyond = trial % 2 == 1  # every other trial loses one share too many in the first block
        for b, (k, m) in enumerate(blocks):
            extra = 1 if beyond and b == 0 else 0
            lost |= {start + j for j in rng.sample(range(k + m), m + extra)}
            start += k + m
        received = {i: s for i, s in enumerate(coded) if i not in lost}
        out = fec.decode(received, source, overhead)
        first_k = blocks[0][0]
        rest = range(first_k if beyond else 0, source)
        assert all(out[i] == shares[i] for i in rest)
        if beyond:
            assert len([i for i in range(first_k) if i in out]) < first_k
            assert all(out[i] == shares[i] for i in range(first_k) if i in out)


@pytest.mark.parametrize("name", ["jpeg", "webp", "jpeg2000", "jpeg+rs20"])
def test_equal_bytes_never_exceeds_and_is_within_one_quality_step(name):
    image = picture("chelsea")
    contender = parse_contender(name)
    target = 3000
    quality, data = match_bytes(contender, image, target, SIZE)
    assert wire_bytes(len(data), contender.overhead, SIZE) <= target
    steps = contender.codec.qualities
    assert quality in steps
    if quality != steps[-1]:
        above = contender.codec.encode(image, quality + 1)
        assert wire_bytes(len(above), contender.overhead, SIZE) > target


def test_equal_bytes_refuses_an_unreachable_target():
    with pytest.raises(SemnetError, match="even quality 1"):
        match_bytes(parse_contender("jpeg"), picture(), 200, SIZE)


@pytest.mark.parametrize("text", ["gif", "jpeg+rs0", "jpeg+fec20", "webp+rs256", "jpeg+"])
def test_bad_contender_names(text):
    with pytest.raises(ConfigError):
        parse_contender(text)


def lossy(name: str, dropped) -> tuple[np.ndarray | None, float, float]:
    """(picture after losing ``dropped``, its PSNR, the lossless PSNR) for one codec."""
    image = picture()
    contender = Contender(CLASSICAL[name])
    data = contender.codec.encode(image, 75)
    sent = packetize_stream(data, contender, image.shape, SIZE)
    shown = receive(arrive(sent, set(dropped(len(sent.datagrams)))), image.shape)
    full = score(pillow(data), image)["psnr_db"]
    return shown, score(shown, image)["psnr_db"] if shown is not None else 0.0, full


def test_jpeg_resynchronises_after_a_lost_middle_datagram():
    shown, psnr, full = lossy("jpeg", lambda n: {n // 2})
    grey = score(np.full_like(picture(), FALLBACK_GREY), picture())["psnr_db"]
    assert shown is not None and grey < psnr < full


def test_jpeg2000_degrades_by_truncation():
    tail = [lossy("jpeg2000", lambda n, k=k: set(range(n - k, n))) for k in (1, 4)]
    assert all(shown is not None for shown, _, _ in tail)
    (_, short, full), (_, long, _) = tail
    assert long < short < full


@pytest.mark.parametrize("name", list(CLASSICAL))
def test_losing_the_first_datagram_loses_the_frame(name):
    shown, _, _ = lossy(name, lambda n: {0})
    assert shown is None


def test_webp_needs_every_byte():
    shown, _, _ = lossy("webp", lambda n: {n - 1})
    assert shown is None


def test_a_failed_decode_scores_the_grey_fallback():
    image = picture()
    contender = parse_contender("webp")
    data = contender.codec.encode(image, 50)
    result = transmit(image, contender, data, Impairment(parse_spec("loss random 100%"), 3), SIZE)
    assert not result.decoded and result.datagrams_received == 0
    assert (result.image == FALLBACK_GREY).all()
