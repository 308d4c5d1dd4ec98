"""One frame end to end in one process: FrameEncoder -> impairment -> reassembler -> decoder.

Mechanics only, on a tiny randomly initialised codec: bit-exact round trips, reproducibility
from seeds, loss accounting, byte accounting and frame/sequence numbering.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from semnet.core import quant
from semnet.core.impair import Impairment, ImpairSpec, parse_spec
from semnet.core.packetize import layout
from semnet.core.partition import parse_spec as parse_partition
from semnet.core.wire import HEADER_SIZE, QuantKind, parse
from semnet.images import load_image
from semnet.models.cnn import CNNCodec
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings, frame_seed, score
from semnet.pipeline.offline import deliver, transmit
from semnet.pipeline.tensors import to_image, to_tensor

CPU = torch.device("cpu")
U32 = 2**32
DEMO = Path(__file__).resolve().parent.parent / "semnet" / "demo_images" / "coffee.png"
H, W = 72, 100  # not multiples of the stride: exercises padding and cropping
# 120-byte datagrams carry 108 five-bit values: the (64, 5, 7) latent needs 21 of them.
SMALL = PathSettings(datagram_size=120)
PARTITIONS = ["channel", "channel:3", "spatial", "spatial:2x3", "token", "token:4",
              "intra-token:8", "intra-token:5", "patch:2x2", "patch:4x4"]  # fmt: skip


@pytest.fixture(scope="module")
def codec() -> CNNCodec:
    torch.manual_seed(0)
    model = CNNCodec(cbr=1 / 12, hidden=8, bits=5).eval()
    model.channel_mean = torch.linspace(-0.5, 0.5, model.latent_channels)
    return model


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    if DEMO.exists():
        return np.ascontiguousarray(load_image(DEMO)[60 : 60 + H, 150 : 150 + W])
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def encoder(codec, path: PathSettings = SMALL, seed: int = 3) -> FrameEncoder:
    return FrameEncoder(codec, codec_id=1, path=path, stream=5, seed=seed)


def decoder(codec, fill: str = "zero") -> FrameDecoder:
    return FrameDecoder(lambda codec_id: codec, get_fill(fill))


def impairment(spec: str | None, seed: int = 11) -> Impairment:
    return Impairment(ImpairSpec() if spec is None else parse_spec(spec), seed)


def direct_decode(codec, image: np.ndarray) -> np.ndarray:
    """Encode, quantize with the codec's defaults, dequantize and decode: no packets at all."""
    d = codec.quant
    spec = quant.fit(QuantKind[d.kind.upper()], d.bits, lo=d.lo, hi=d.hi)
    with torch.inference_mode():
        y = codec.encode(to_tensor(image, CPU))[0].float().numpy()
        y_hat = torch.from_numpy(quant.dequantize(spec, quant.quantize(spec, y)))[None]
        return to_image(codec.decode(y_hat, *image.shape[:2]))


def decode_latent(codec, latent: torch.Tensor, image: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return to_image(codec.decode(latent, *image.shape[:2]))


@pytest.fixture(scope="module")
def expected(codec, image) -> np.ndarray:
    return direct_decode(codec, image)


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [None, "loss random 0%"])
def test_zero_loss_is_bit_exact_with_direct_decoding(codec, image, expected, spec):
    enc = encoder(codec)
    result = transmit(image, enc, decoder(codec), impairment(spec))
    assert result.datagrams_sent == 21
    assert result.datagrams_received == result.datagrams_sent
    assert result.loss_ratio == 0.0
    assert result.image.dtype == np.uint8 and result.image.shape == image.shape
    assert np.array_equal(result.image, expected)
    quality = score(expected, image)
    assert (result.psnr_db, result.ssim) == (quality["psnr_db"], quality["ssim"])
    assert result.psnr_db < 100.0  # a random codec does not reproduce the photo: a real score


@pytest.mark.parametrize("interleave", [True, False], ids=["interleaved", "in-order"])
@pytest.mark.parametrize("partition", PARTITIONS)
def test_every_partition_round_trips_at_zero_loss(codec, image, expected, partition, interleave):
    path = PathSettings(
        partition=parse_partition(partition), interleave=interleave, datagram_size=120
    )
    enc = encoder(codec, path)
    result = transmit(image, enc, decoder(codec), impairment(None))
    assert result.datagrams_received == result.datagrams_sent == 21
    assert np.array_equal(result.image, expected)


def test_interleaving_changes_which_elements_a_datagram_carries(codec, image):
    on = encoder(codec, PathSettings(datagram_size=120, interleave=True)).encode(image)
    off = encoder(codec, PathSettings(datagram_size=120, interleave=False)).encode(image)
    assert len(on.datagrams) == len(off.datagrams)
    assert [parse(d).payload for d in on.datagrams] != [parse(d).payload for d in off.datagrams]
    assert parse(on.datagrams[0]).descriptor.interleave
    assert not parse(off.datagrams[0]).descriptor.interleave


# --- losses ----------------------------------------------------------------------------------


def run_frames(codec, image, seed: int, spec: str = "loss random 30%", frames: int = 3):
    enc, dec, imp = encoder(codec), decoder(codec), impairment(spec, seed)
    return [transmit(image, enc, dec, imp) for _ in range(frames)], imp


def test_same_seed_gives_identical_results_bit_for_bit(codec, image):
    first, _ = run_frames(codec, image, seed=21)
    second, _ = run_frames(codec, image, seed=21)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.image, b.image)
        assert (a.frame, a.datagrams_sent, a.datagrams_received, a.bytes_sent) == (
            b.frame, b.datagrams_sent, b.datagrams_received, b.bytes_sent)  # fmt: skip
        assert (a.loss_ratio, a.psnr_db, a.ssim, a.bpp) == (b.loss_ratio, b.psnr_db, b.ssim, b.bpp)
    assert any(r.datagrams_received < r.datagrams_sent for r in first)  # losses did happen


def arrived_indices(codec, image, imp_seed: int, encoder_seed: int = 3) -> list[int]:
    sent = encoder(codec, seed=encoder_seed).encode(image)
    arrivals = deliver(sent, impairment("loss random 30%", imp_seed), 0.0, 1e-4)
    return [parse(data).index for _, data in arrivals]


def test_different_impairment_seeds_lose_different_datagrams(codec, image):
    patterns = {tuple(arrived_indices(codec, image, seed)) for seed in range(1, 6)}
    assert len(patterns) == 5
    assert all(0 < len(p) < 21 for p in patterns)
    # ... and the reconstructions differ too.
    a, _ = run_frames(codec, image, seed=1, frames=1)
    b, _ = run_frames(codec, image, seed=2, frames=1)
    assert not np.array_equal(a[0].image, b[0].image)


def test_datagrams_received_matches_what_the_impairment_let_through(codec, image):
    results, imp = run_frames(codec, image, seed=4, frames=6)
    counters = imp.counters
    assert counters.received == sum(r.datagrams_sent for r in results)
    assert counters.emitted == sum(r.datagrams_received for r in results)
    assert counters.dropped == counters.received - counters.emitted > 0
    # Per frame: a twin impairment on a twin encoder sees the same datagrams, same fates.
    twin_enc, twin_imp = encoder(codec), impairment("loss random 30%", 4)
    for r in results:
        arrivals = deliver(twin_enc.encode(image), twin_imp, 0.0, 1e-4)
        assert r.datagrams_received == len({parse(d).index for _, d in arrivals})


def test_loss_ratio(codec, image):
    results, _ = run_frames(codec, image, seed=8, frames=12)
    for r in results:
        assert r.loss_ratio == pytest.approx(1 - r.datagrams_received / r.datagrams_sent)
    sent = sum(r.datagrams_sent for r in results)
    lost = sum(r.datagrams_sent - r.datagrams_received for r in results)
    assert sent == 12 * 21
    assert 0.2 < lost / sent < 0.4  # 252 datagrams at 30%: sd ~ 0.03
    assert len({r.datagrams_received for r in results}) > 1


def test_losses_change_the_reconstruction(codec, image, expected):
    results, _ = run_frames(codec, image, seed=9, spec="loss random 60%", frames=2)
    for r in results:
        assert r.datagrams_received < r.datagrams_sent
        assert not np.array_equal(r.image, expected)


def test_lost_entries_are_zero_filled_exactly(codec, image):
    """Decode with zero fill == decoding the direct latent with the lost datagrams' values at 0."""
    enc, dec, imp = encoder(codec), decoder(codec), impairment("loss random 30%", 12)
    twin_enc, twin_imp = encoder(codec), impairment("loss random 30%", 12)
    result = transmit(image, enc, dec, imp)
    sent = twin_enc.encode(image)
    arrived = {parse(d).index for _, d in deliver(sent, twin_imp, 0.0, 1e-4)}
    assert 0 < len(arrived) < len(sent.datagrams)
    desc = sent.descriptor
    lay = layout(desc)
    d = codec.quant
    spec = quant.fit(QuantKind[d.kind.upper()], d.bits, lo=d.lo, hi=d.hi)
    with torch.inference_mode():
        y = codec.encode(to_tensor(image, CPU))[0].float().numpy()
    y_hat = quant.dequantize(spec, quant.quantize(spec, y)).reshape(-1)
    lost = np.concatenate([lay.elements(i) for i in range(lay.count) if i not in arrived])
    y_hat[lost] = 0.0
    latent = torch.from_numpy(y_hat.reshape(desc.latent))[None]
    assert np.array_equal(result.image, decode_latent(codec, latent, image))


@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_frame_with_every_datagram_lost_decodes_from_fill_alone(codec, image, fill):
    result = transmit(image, encoder(codec), decoder(codec, fill), impairment("loss random 100%"))
    assert result.datagrams_received == 0
    assert result.datagrams_sent == 21
    assert result.loss_ratio == 1.0
    c, h, w = codec.latent_shape(H, W)
    if fill == "zero":
        latent = torch.zeros(1, c, h, w)
    else:
        latent = codec.channel_mean.view(1, -1, 1, 1).expand(1, c, h, w).contiguous()
    assert np.array_equal(result.image, decode_latent(codec, latent, image))
    assert np.isfinite(result.psnr_db) and 0.0 < result.psnr_db < 100.0


# --- accounting and numbering -------------------------------------------------------------------


@pytest.mark.parametrize("size", [120, 333, 1200])
def test_bpp_counts_every_byte_headers_included(codec, image, size):
    path = PathSettings(datagram_size=size)
    twin = encoder(codec, path).encode(image)
    result = transmit(image, encoder(codec, path), decoder(codec), impairment("loss random 30%"))
    total = sum(len(d) for d in twin.datagrams)
    assert result.bytes_sent == total
    assert result.bpp == 8 * total / (H * W)
    payload = sum(len(parse(d).payload) for d in twin.datagrams)
    assert total == payload + HEADER_SIZE * len(twin.datagrams)
    assert all(len(d) <= size for d in twin.datagrams)
    # The payload alone is the latent's bits, rounded up to whole bytes per datagram.
    c, h, w = codec.latent_shape(H, W)
    assert 8 * payload >= c * h * w * codec.quant.bits > 8 * (payload - len(twin.datagrams))


def test_frame_and_seq_numbering_advance_across_frames(codec, image):
    enc = encoder(codec)
    seqs, frames = [], []
    for expected_frame in range(3):
        sent = enc.encode(image)
        parsed = [parse(d) for d in sent.datagrams]
        assert sent.frame == expected_frame
        assert {p.frame for p in parsed} == {expected_frame}
        assert {p.stream for p in parsed} == {5}
        assert [p.index for p in parsed] == list(range(len(parsed)))
        assert {p.count for p in parsed} == {len(parsed)}
        assert parsed[0].descriptor.seed == frame_seed(3, expected_frame)
        assert sent.first_seq == parsed[0].seq
        seqs += [p.seq for p in parsed]
        frames.append(sent.frame)
    assert seqs == list(range(len(seqs)))
    assert enc.next_seq == len(seqs) and enc.next_frame == 3
    # transmit numbers frames the same way
    results = [transmit(image, enc, decoder(codec), impairment(None)) for _ in range(2)]
    assert [r.frame for r in results] == [3, 4]
    assert enc.next_seq == len(seqs) + 2 * 21


def test_seq_wraps_modulo_2_32(codec, image, expected):
    enc = encoder(codec)
    enc.next_seq = U32 - 5
    sent = enc.encode(image)
    seqs = [parse(d).seq for d in sent.datagrams]
    assert seqs == [(U32 - 5 + i) % U32 for i in range(21)]
    assert seqs[4] == U32 - 1 and seqs[5] == 0 and seqs[-1] == 15
    assert enc.next_seq == 16
    # A frame straddling the wrap still reassembles and decodes bit exact.
    enc.next_seq = U32 - 10
    result = transmit(image, enc, decoder(codec), impairment(None))
    assert result.datagrams_received == 21
    assert np.array_equal(result.image, expected)
    assert enc.next_seq == 11


def test_frame_number_wraps_modulo_2_32(codec, image):
    enc = encoder(codec)
    enc.next_frame = U32 - 1
    last = enc.encode(image)
    first = enc.encode(image)
    assert last.frame == U32 - 1 and {parse(d).frame for d in last.datagrams} == {U32 - 1}
    assert first.frame == 0 and {parse(d).frame for d in first.datagrams} == {0}
