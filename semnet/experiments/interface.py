"""Offline evaluation of the bit interface (paper 003 Fig. 5/6, issue 18).

Two experiments on the public evaluation photos (never trained on), both seeded:

* :func:`wireless_curve` -- PSNR vs SNR over AWGN and block Rayleigh at equal channel uses: a
  bit-interface codec's bit-planes are grouped into importance classes by the interface the
  access node is given, the node splits its power over them (``semnet.core.interface
  .allocate``), and each bit is flipped with its class's realised probability (Rayleigh: per
  coherence block of ``coherence`` channel uses, from the block's own gain).
* :func:`packet_curve` -- the same question through the daemons' own chain (the offline
  ``transmit``): bit-plane datagrams (one class per bit position), the proxy's ``link ...
  errors bits`` access node given the interface, the receiver's depacketizer and decoder.
* :func:`uep_curve` -- packet-level unequal protection (no wireless hop): each importance class's
  bytes are cut into ``k`` shares and protected with zfec (``semnet.baselines.fec``); unequal
  protection moves the parity shares between classes (``uep_parity``) under the byte budget of
  equal protection at ``overhead`` percent. Datagrams (shares) are lost i.i.d.; a source share
  that is neither received nor rebuilt has its bits replaced by coin flips (an erased bit is a
  BSC at 0.5, which the codecs were trained around).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from semnet.baselines import fec
from semnet.core import interface as itf
from semnet.models.bsc import BSCCodec

SNRS_DB = (0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0)
LOSSES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


@dataclass(frozen=True)
class Scheme:
    """One curve: a codec, the interface the access node is given, the allocation scheme."""

    label: str
    codec: BSCCodec
    interface: itf.Interface
    allocation: str = "match"


@dataclass
class Encoded:
    planes: np.ndarray  # (C, bits, h, w) uint8
    height: int
    width: int
    clean_psnr: float


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


def psnr_db(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    mse = float(torch.mean((x_hat - x) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def encode(codec: BSCCodec, image: np.ndarray) -> Encoded:
    x = _tensor(image)
    h, w = x.shape[-2:]
    planes = codec.bitplanes(codec.to_index(codec.encode(x)))[0]
    enc = Encoded(planes.to(torch.uint8).numpy(), h, w, 0.0)
    enc.clean_psnr = psnr_db(decode(codec, enc.planes, h, w), x)
    return enc


@torch.no_grad()
def decode(codec: BSCCodec, planes: np.ndarray, height: int, width: int) -> torch.Tensor:
    p = torch.from_numpy(planes.astype(np.float32))[None]
    return codec.demap(p)[..., :height, :width].clamp(0, 1)


def _class_bits(planes: np.ndarray, labels: np.ndarray, n: int) -> list[np.ndarray]:
    """Each class's bits, (entries, h, w) in (channel, bit) order."""
    return [planes[labels == c] for c in range(n)]


def _put_back(planes: np.ndarray, labels: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
    out = planes.copy()
    for c, part in enumerate(parts):
        out[labels == c] = part
    return out


def flip_frame(
    enc: Encoded,
    alloc: itf.Allocation,
    rng: np.random.Generator,
    coherence: int,
) -> tuple[np.ndarray, int]:
    """The frame's bit-planes after the link, and how many bits flipped."""
    labels, n = alloc.classes.labels, alloc.classes.count
    parts = _class_bits(enc.planes, labels, n)
    if alloc.channel == "awgn":
        probs: list[Any] = list(alloc.probs)
    else:  # block Rayleigh: each class's symbols in blocks of `coherence` channel uses
        per_block = coherence * itf.BITS_PER_USE[alloc.modulation]
        probs = []
        for c, part in enumerate(parts):
            blocks = -(-part.size // per_block)
            gains = rng.standard_exponential(blocks)
            p = alloc.realised(gains[:, None])[:, c]
            probs.append(np.repeat(p, per_block)[: part.size].reshape(part.shape))
    flipped = itf.flip_bits(parts, probs, rng)
    count = int(sum(int(np.sum(a != b)) for a, b in zip(parts, flipped, strict=True)))
    return _put_back(enc.planes, labels, flipped), count


@torch.no_grad()
def wireless_curve(
    schemes: list[Scheme],
    images: dict[str, np.ndarray],
    snrs: tuple[float, ...] = SNRS_DB,
    channels: tuple[str, ...] = ("awgn", "rayleigh"),
    n_classes: int = 4,
    coherence: int = 256,
    seed: int = 1,
) -> dict[str, Any]:
    """Mean PSNR over the images per scheme, channel and SNR (and the realised flip rates)."""
    out: dict[str, Any] = {}
    for scheme in schemes:
        refs = {name: _tensor(img) for name, img in images.items()}
        encoded = {name: encode(scheme.codec, img) for name, img in images.items()}
        res: dict[str, Any] = {"clean_psnr_db": _mean(e.clean_psnr for e in encoded.values())}
        for ch in channels:
            rows = {}
            for si, snr in enumerate(snrs):
                alloc = itf.allocate(
                    scheme.interface,
                    snr,
                    ch,
                    classes=n_classes,
                    scheme=scheme.allocation,
                )
                psnrs, flips, total = [], 0, 0
                for ii, (name, enc) in enumerate(sorted(encoded.items())):
                    rng = np.random.default_rng([seed, si, ii, channels.index(ch)])
                    planes, count = flip_frame(enc, alloc, rng, coherence)
                    flips, total = flips + count, total + enc.planes.size
                    if count == 0:
                        psnrs.append(enc.clean_psnr)
                    else:
                        x_hat = decode(scheme.codec, planes, enc.height, enc.width)
                        psnrs.append(psnr_db(x_hat, refs[name]))
                rows[f"{snr:g}"] = {
                    "psnr_db": round(float(np.mean(psnrs)), 3),
                    "class_flip_prob": [float(f"{p:.4g}") for p in alloc.probs],
                    "class_power": [round(float(p), 4) for p in alloc.powers],
                    "bit_error_rate": float(f"{flips / total:.4g}"),
                }
            res[ch] = rows
        out[scheme.label] = res
    return out


def packet_curve(
    schemes: list[Scheme],
    images: dict[str, np.ndarray],
    snrs: tuple[float, ...] = SNRS_DB,
    channels: tuple[str, ...] = ("awgn", "rayleigh"),
    seed: int = 1,
) -> dict[str, Any]:
    """Mean PSNR per scheme, channel and SNR through the packet chain the daemons run, and
    the flip rate the access node realised per class."""
    from semnet.core.impair import Impairment, parse_spec
    from semnet.models.fill import get_fill
    from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
    from semnet.pipeline.offline import transmit

    path = PathSettings(planes=True, payload_check=False)
    out: dict[str, Any] = {}
    for scheme in schemes:
        codec = scheme.codec
        decoder = FrameDecoder(lambda _, c=codec: c, get_fill("zero"))
        res: dict[str, Any] = {}
        for ci, ch in enumerate(channels):
            rows = {}
            for si, snr in enumerate(snrs):
                link = f"link {ch} snr {snr:g}dB errors bits allocation {scheme.allocation}"
                model = Impairment(parse_spec(link), seed * 1000 + si * 10 + ci, scheme.interface)
                encoder = FrameEncoder(codec, 0, path, seed=seed)
                psnrs = [transmit(img, encoder, decoder, model).psnr_db for img in images.values()]
                c = model.counters
                rates = [c.class_flips[k] / c.class_bits[k] for k in sorted(c.class_bits)]
                rows[f"{snr:g}"] = {
                    "psnr_db": round(float(np.mean(psnrs)), 3),
                    "class_flip_rate": [float(f"{r:.4g}") for r in rates],
                }
            res[ch] = rows
        out[scheme.label] = res
    return out


def _mean(values) -> float:
    return round(float(np.mean(list(values))), 3)


# --- packet-level unequal protection ------------------------------------------------------


@dataclass(frozen=True)
class Protection:
    """Per class the parity shares ``m`` for ``k`` source shares (fec's overhead percents)."""

    k: int
    m: tuple[int, ...]

    @property
    def overheads(self) -> tuple[int, ...]:
        return tuple(itf.overhead_percent(self.k, m) for m in self.m)

    @property
    def shares(self) -> int:
        return sum(self.k + m for m in self.m)


def equal_protection(n_classes: int, k: int, overhead: int) -> Protection:
    return Protection(k, tuple([fec.parity(k, overhead)] * n_classes))


def unequal_protection(
    classes: itf.Classes, k: int, overhead: int, loss: float, weight: str = "tolerance"
) -> Protection:
    """The parity of :func:`equal_protection` moved between classes for design ``loss``.
    ``weight``: ``tolerance`` = 1 / eps_c (a residual erasure rate costs in proportion to how
    little flipping the class was trained to tolerate; eps floored at 1e-3) or ``importance``
    = 1 - 2 eps_c."""
    total = fec.parity(k, overhead) * classes.count
    if weight == "tolerance":
        w = 1.0 / np.maximum(classes.eps, 1e-3)
    elif weight == "importance":
        w = classes.importance
    else:
        raise ValueError(f"weight {weight!r}")
    m = itf.uep_parity(w * classes.sizes, [k] * classes.count, total, loss, max_share=k + 80)
    return Protection(k, tuple(m))


def send_protected(
    enc: Encoded,
    classes: itf.Classes,
    protection: Protection,
    loss: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, float]:
    """(planes after loss and repair, bytes sent, fraction of bits erased)."""
    parts = _class_bits(enc.planes, classes.labels, classes.count)
    out, sent, erased, total = [], 0, 0, 0
    for part, m, overhead in zip(parts, protection.m, protection.overheads, strict=True):
        data = np.packbits(part.reshape(-1)).tobytes()
        size = -(-len(data) // protection.k)
        padded = data.ljust(size * protection.k, b"\0")
        shares = [padded[i * size : (i + 1) * size] for i in range(protection.k)]
        coded = fec.encode(shares, overhead)
        assert len(coded) == protection.k + m
        sent += sum(len(s) for s in coded)
        kept = {i: s for i, s in enumerate(coded) if rng.random() >= loss}
        got = fec.decode(kept, protection.k, overhead)
        bits = np.unpackbits(np.frombuffer(padded, np.uint8))
        coin = rng.integers(0, 2, bits.size, dtype=np.uint8)
        mask = np.zeros(bits.size, bool)
        for i in range(protection.k):
            if i not in got:
                mask[i * size * 8 : (i + 1) * size * 8] = True
        bits = np.where(mask, coin, bits)[: part.size]
        erased += int(mask[: part.size].sum())
        total += part.size
        out.append(bits.reshape(part.shape).astype(np.uint8))
    return _put_back(enc.planes, classes.labels, out), sent, erased / total


@torch.no_grad()
def uep_curve(
    codec: BSCCodec,
    interface: itf.Interface,
    images: dict[str, np.ndarray],
    losses: tuple[float, ...] = LOSSES,
    overhead: int = 25,
    k: int = 32,
    n_classes: int = 4,
    seed: int = 1,
    repeats: int = 2,
) -> dict[str, Any]:
    """Mean PSNR vs i.i.d. datagram loss: equal protection at ``overhead`` percent, unequal
    protection (two weightings) with the same parity shares, and no protection (fewer bytes)."""
    classes = itf.group(interface, n_classes)
    refs = {name: _tensor(img) for name, img in images.items()}
    encoded = {name: encode(codec, img) for name, img in images.items()}
    out: dict[str, Any] = {
        "overhead_percent": overhead,
        "k": k,
        "class_eps": [float(f"{v:.4g}") for v in classes.eps],
        "clean_psnr_db": _mean(e.clean_psnr for e in encoded.values()),
        "curves": {},
    }
    plans = {
        "equal": lambda p: equal_protection(classes.count, k, overhead),
        "uep": lambda p: unequal_protection(classes, k, overhead, p, "tolerance"),
        "uep-importance": lambda p: unequal_protection(classes, k, overhead, p, "importance"),
        "none": lambda p: equal_protection(classes.count, k, 0),
    }
    for label, plan in plans.items():
        rows = {}
        for li, p in enumerate(losses):
            prot = plan(p)
            psnrs, sent, erased = [], 0, []
            for r in range(repeats):
                for ii, (name, enc) in enumerate(sorted(encoded.items())):
                    rng = np.random.default_rng([seed, li, ii, r])
                    planes, nbytes, frac = send_protected(enc, classes, prot, p, rng)
                    sent += nbytes
                    erased.append(frac)
                    if frac == 0:
                        psnrs.append(enc.clean_psnr)
                    else:
                        x_hat = decode(codec, planes, enc.height, enc.width)
                        psnrs.append(psnr_db(x_hat, refs[name]))
            rows[f"{p:g}"] = {
                "psnr_db": round(float(np.mean(psnrs)), 3),
                "parity_per_class": list(prot.m),
                "overhead_percent_per_class": list(prot.overheads),
                "bytes_sent": sent,
                "bits_erased": round(float(np.mean(erased)), 5),
            }
        out["curves"][label] = rows
    return out
