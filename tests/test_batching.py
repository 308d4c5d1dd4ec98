"""Frames decoded together: a batch gives each frame what decoding it alone gives, frames of
different sizes or codecs are batched apart, and one bad frame in a batch fails only itself."""

import asyncio
import dataclasses

import numpy as np
import pytest

from semnet.config import load
from semnet.core.partition import parse_spec
from semnet.core.reassembly import Reassembler
from semnet.daemons.config import ReceiverConfig
from semnet.daemons.receiver import Receiver
from semnet.errors import ConfigError, SemnetError
from semnet.models import backends, zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings, batches
from semnet.pipeline.report import FrameReport


@pytest.fixture(scope="module")
def codec():
    return backends.load(zoo.DEFAULT_CODEC, "eager", threads=1)


def assembled(codec, shapes, seed=0, drop_every=3):
    """One assembled frame per image shape, every drop_every-th datagram lost."""
    rng = np.random.default_rng(seed)
    entry = zoo.entry(zoo.DEFAULT_CODEC)
    encoder = FrameEncoder(codec, entry.codec_id, PathSettings(parse_spec("channel")), seed=seed)
    reassembler, frames = Reassembler(), []
    for h, w in shapes:
        sent = encoder.encode(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for i, data in enumerate(sent.datagrams):
            if i % drop_every:
                frames += reassembler.ingest(data, 0.0)
        frames += reassembler.flush()
    return frames


def test_a_batch_decodes_each_frame_as_it_decodes_alone(codec):
    frames = assembled(codec, [(128, 192), (128, 192), (192, 128), (128, 192)])
    assert batches(frames) == [[0, 1, 3], [2]]  # one synthesis call per size
    decoder = FrameDecoder(lambda _: codec, get_fill("zero"))
    together = decoder.decode_batch(frames)
    for frame, batched in zip(frames, together, strict=True):
        alone = decoder.decode(frame)
        assert (batched.frame, batched.received, batched.count) == (
            alone.frame,
            alone.received,
            alone.count,
        )
        gap = np.abs(batched.image.astype(int) - alone.image.astype(int)).max()
        assert gap <= 1, gap  # float sums may round one level apart in a batch, no more


def receiver(tmp_path, **keys) -> Receiver:
    cfg = load(ReceiverConfig, {"output": str(tmp_path), "backend": "eager", "threads": 1, **keys})
    return Receiver(cfg)


def test_one_forged_frame_in_a_batch_fails_only_itself(codec, tmp_path):
    frames = assembled(codec, [(128, 192)] * 3)
    desc = frames[1].descriptor
    forged = dataclasses.replace(desc, latent=(desc.latent[0], 1, 1))  # not the codec's shape
    frames[1] = dataclasses.replace(frames[1], descriptor=forged)
    rx = receiver(tmp_path, perceptual=False, save_images=False)
    results = rx.finish_batch(frames)
    assert isinstance(results[1], SemnetError) and "latent" in str(results[1])
    alone = [rx.finish_batch([f])[0] for f in (frames[0], frames[2])]
    for batched, single in zip((results[0], results[2]), alone, strict=True):
        assert isinstance(batched, FrameReport) and batched.frame == single.frame
        assert batched.datagrams_received == single.datagrams_received
    assert rx.batches == 3  # the batch of two good frames, then each alone


def test_a_batch_takes_what_arrives_before_it_closes(codec, tmp_path):
    frames = assembled(codec, [(128, 192)] * 5)

    async def run() -> list[int]:
        rx = receiver(tmp_path, max_batch=3, max_wait_ms=1000)
        rx.urgent.append(frames[0])
        later = asyncio.get_running_loop().call_later(
            0.05, lambda: (rx.urgent.extend(frames[1:]), rx.wake.set())
        )
        first = await rx.next_batch()  # closes at max_batch, long before max_wait_ms
        second = await rx.next_batch()  # the two left, then max_wait_ms for a third
        later.cancel()
        return [len(first), len(second)]

    assert asyncio.run(run()) == [3, 2]


@pytest.mark.parametrize(
    "keys, field",
    [
        ({"max_batch": 0}, "max_batch"),
        ({"max_batch": 65}, "max_batch"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
        ({"half": True, "device": "cpu"}, "half: float16 runs on CUDA only"),
    ],
)
def test_bad_batching_keys_are_refused_by_name(keys, field):
    with pytest.raises(ConfigError, match=field):
        load(ReceiverConfig, keys)
