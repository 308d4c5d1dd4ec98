"""Sweeps: contenders x partitions x fills x loss models x loss rates x interleaving, over images.

Offline by default, through :func:`semnet.pipeline.offline.transmit` (classical codecs through
:func:`semnet.baselines.stream.transmit`, the same deliver/reassembly path); ``online`` runs the
semantic codecs through real daemons on loopback instead.

Same losses: the impairment of each (image, loss model, rate) is seeded from ``seed`` alone,
never from the codec, partition, fill or interleaving, and every contender gets a fresh model
with that seed. With loss only, a datagram's fate depends on its ordinal alone, so datagram i
of every contender meets the same fate; a contender that sends n datagrams sees the first n
fates of that one sequence.
"""

import hashlib
import itertools
import logging
import platform
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import features

from semnet import __version__
from semnet.baselines import stream
from semnet.core.impair import Impairment
from semnet.core.impair import parse_spec as parse_impairment
from semnet.core.partition import parse_spec as parse_partition
from semnet.core.partition import spec_name
from semnet.core.wire import MAX_DATAGRAM
from semnet.errors import ConfigError, SemnetError
from semnet.models import zoo
from semnet.models.codec import Codec
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import FrameResult, transmit
from semnet.pipeline.tensors import to_tensor

log = logging.getLogger(__name__)

LOSS_MODELS = ("bernoulli", "ge")
NOT_APPLICABLE = "-"  # partition and fill of classical rows
Loader = Callable[[str], tuple[Codec, int, dict]]  # name -> (codec, codec id, zoo entry)


def zoo_codec(name: str) -> tuple[Codec, int, dict]:
    """A shipped codec, its wire id and its manifest entry."""
    entry = zoo.entry(name)
    return zoo.load(name), entry.codec_id, asdict(entry)


def impairment_text(model: str, rate: float, burst_length: float | None) -> str:
    """The netem spec of one loss point: Bernoulli, or Gilbert with mean rate and burst."""
    if rate == 0:
        return ""
    if model == "bernoulli":
        return f"loss random {rate * 100:g}%"
    return f"loss burst {rate * 100:g}% {burst_length:g}"


def derive_seed(*parts: object) -> int:
    """A u32 from the parts' text: stable across runs, Python versions and machines."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "big")


def impairment_seed(seed: int, image: str, model: str, rate: float) -> int:
    """Seed of the losses at one (image, loss model, rate): no contender field goes in."""
    return derive_seed(seed, "impair", image, model, f"{rate:g}")


def interleave_seed(seed: int, image: str) -> int:
    """Seed of the interleaving permutation of one image, the same at every loss point."""
    return derive_seed(seed, "interleave", image)


@dataclass(frozen=True)
class SweepSpec:
    """The axes of a sweep; validated whole at construction, so a bad point fails before work."""

    codecs: tuple[str, ...] = (zoo.DEFAULT_CODEC,)
    partitions: tuple[str, ...] = ("channel",)
    fills: tuple[str, ...] = ("zero",)
    loss_models: tuple[str, ...] = ("bernoulli",)
    losses: tuple[float, ...] = (0.0, 0.1, 0.4)
    burst_length: float | None = None
    interleave: tuple[bool, ...] = (True,)
    seed: int = 1
    # Independent draws of losses and interleaving per point: repeat r is seeded by seed + r.
    # Eight photos of ~40 datagrams each leave a 40% point's realised loss a few points off.
    repeats: int = 1
    datagram_size: int = 1200
    perceptual: bool = False  # LPIPS and semantic agreement per row (optional weights)

    def __post_init__(self) -> None:
        for axis in ("codecs", "partitions", "fills", "loss_models", "losses", "interleave"):
            values = getattr(self, axis)
            if not values or len(set(values)) != len(values):
                raise ConfigError(f"{axis}: must be a non-empty list without repeats")
        for name in self.codecs:
            if stream.is_classical(name):
                stream.parse_contender(name)
            elif "+" in name:
                raise ConfigError(f"codec {name!r}: FEC (+rsN) is for classical codecs only")
        object.__setattr__(
            self, "partitions", tuple(spec_name(parse_partition(p)) for p in self.partitions)
        )
        for fill in self.fills:
            get_fill(fill)
        unknown = set(self.loss_models) - set(LOSS_MODELS)
        if unknown:
            raise ConfigError(f"loss model {unknown.pop()!r}: one of {', '.join(LOSS_MODELS)}")
        if ("ge" in self.loss_models) != (self.burst_length is not None):
            raise ConfigError("burst length: needed with loss model ge, and only with it")
        if self.burst_length is not None:
            object.__setattr__(self, "burst_length", float(self.burst_length))
            if not self.burst_length >= 1:
                raise ConfigError(f"burst length: {self.burst_length:g} must be >= 1 datagram")
        object.__setattr__(self, "losses", tuple(float(p) for p in self.losses))
        if any(not 0 <= p <= 1 for p in self.losses):
            raise ConfigError(f"losses: {list(self.losses)}: each rate must be in 0..1")
        for model, rate in self.loss_points():
            parse_impairment(impairment_text(model, rate, self.burst_length))
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed: {self.seed} is not a u32")
        if not 1 <= self.repeats <= 2**32 - self.seed:
            raise ConfigError(f"repeats: {self.repeats} must be >= 1 (seed + repeats - 1 a u32)")
        if not 100 <= self.datagram_size <= MAX_DATAGRAM:
            raise ConfigError(f"datagram size: {self.datagram_size} is not in 100..{MAX_DATAGRAM}")

    def loss_points(self) -> list[tuple[str, float]]:
        return list(itertools.product(self.loss_models, self.losses))

    def seeds(self) -> range:
        return range(self.seed, self.seed + self.repeats)

    @property
    def semantic(self) -> list[str]:
        return [c for c in self.codecs if not stream.is_classical(c)]

    @property
    def classical(self) -> list[str]:
        return [c for c in self.codecs if stream.is_classical(c)]


def _row(
    spec: SweepSpec,
    codec: str,
    partition: str,
    fill: str,
    interleave: bool | None,
    seed: int,
    point: tuple[str, float],
    image: str,
    measured: dict,
) -> dict:
    """One result row; every row has the same keys, classical-only ones None elsewhere."""
    model, rate = point
    return {
        "codec": codec,
        "partition": partition,
        "fill": fill,
        "interleave": interleave,
        "loss_model": model,
        "loss": rate,
        "image": image,
        "psnr_db": measured["psnr_db"],
        "ssim": measured["ssim"],
        "lpips": measured.get("lpips"),
        "semantic_agree": measured.get("semantic_agree"),
        "bpp": measured["bpp"],
        "realised_loss": measured["realised_loss"],
        "datagrams_sent": measured["datagrams_sent"],
        "datagrams_received": measured["datagrams_received"],
        "bytes_sent": measured["bytes_sent"],
        "decoded": measured.get("decoded", True),
        "quality": measured.get("quality"),
        "target_bytes": measured.get("target_bytes"),
        "seed": seed,
        "impairment_seed": impairment_seed(seed, image, model, rate),
    }


def _measured(r: FrameResult) -> dict:
    return {
        "psnr_db": r.psnr_db,
        "ssim": r.ssim,
        "lpips": r.lpips,
        "semantic_agree": r.semantic_agree,
        "bpp": r.bpp,
        "realised_loss": r.loss_ratio,
        "datagrams_sent": r.datagrams_sent,
        "datagrams_received": r.datagrams_received,
        "bytes_sent": r.bytes_sent,
    }


def _losses(spec: SweepSpec, seed: int, point: tuple[str, float], image: str) -> tuple[str, int]:
    """(netem spec, impairment seed) of one loss point on one image, in the draw ``seed``."""
    model, rate = point
    text = impairment_text(model, rate, spec.burst_length)
    return text, impairment_seed(seed, image, model, rate)


def _impairment(spec: SweepSpec, seed: int, point: tuple[str, float], image: str) -> Impairment:
    text, impairment = _losses(spec, seed, point, image)
    return Impairment(parse_impairment(text), impairment)


def _draws(spec: SweepSpec, images: dict) -> Iterator[tuple[int, tuple[str, float], str]]:
    """(seed, loss point, image) in row order: draws outermost, images innermost."""
    return itertools.product(spec.seeds(), spec.loss_points(), images)


def _configs(spec: SweepSpec) -> Iterator[tuple[str, str, bool]]:
    return itertools.product(spec.partitions, spec.fills, spec.interleave)


def _semantic_rows(
    spec: SweepSpec, name: str, codec: Codec, codec_id: int, images: dict[str, np.ndarray]
) -> Iterator[dict]:
    for partition, fill, interleave in _configs(spec):
        log.info("sweep: %s %s fill %s interleave %s", name, partition, fill, interleave)
        path = PathSettings(parse_partition(partition), interleave, spec.datagram_size)
        decoder = FrameDecoder(lambda _: codec, get_fill(fill))
        for seed, point, image_name in _draws(spec, images):
            encoder = FrameEncoder(codec, codec_id, path, seed=interleave_seed(seed, image_name))
            impairment = _impairment(spec, seed, point, image_name)
            r = transmit(
                images[image_name], encoder, decoder, impairment, perceptual=spec.perceptual
            )
            measured = _measured(r)
            yield _row(spec, name, partition, fill, interleave, seed, point, image_name, measured)


def _online_rows(
    spec: SweepSpec, name: str, images: dict[str, np.ndarray], workdir: Path
) -> Iterator[dict]:
    """The same points through sender -> proxy -> receiver processes; each image's losses are
    set on the proxy as a spec carrying the offline impairment seed."""
    from semnet.testbed import LocalTestbed

    for i, (partition, fill, interleave) in enumerate(_configs(spec)):
        log.info("sweep online: %s %s fill %s interleave %s", name, partition, fill, interleave)
        sender = {
            "codec": name,
            "partition": partition,
            "interleave": interleave,
            "datagram_size": spec.datagram_size,
            "first_frame": 0,  # interleaving from the seed alone, as offline: runs repeat
        }
        receiver = {"fill": fill, "save_images": False, "perceptual": spec.perceptual}
        with LocalTestbed(
            workdir / f"{name}-{i}", seed=spec.seed, sender=sender, receiver=receiver
        ) as bed:
            for seed, point, image_name in _draws(spec, images):
                text, impairment = _losses(spec, seed, point, image_name)
                bed.set_impairment(f"{text} seed {impairment}".strip())
                report = bed.send(images[image_name], image_name)
                if "error" in report:
                    raise SemnetError(f"{name} on {image_name}: {report['error']}")
                measured = {**report, "realised_loss": report["loss_ratio"]}
                yield _row(
                    spec, name, partition, fill, interleave, seed, point, image_name, measured
                )


def _classical_rows(
    spec: SweepSpec, name: str, images: dict[str, np.ndarray], targets: dict[str, int]
) -> Iterator[dict]:
    """One row per loss point and image, at the quality whose bytes match the target's."""
    log.info("sweep: %s at equal bytes", name)
    contender = stream.parse_contender(name)
    matched = {}
    for image_name, image in images.items():
        try:
            matched[image_name] = stream.match_bytes(
                contender, image, targets[image_name], spec.datagram_size
            )
        except SemnetError as exc:
            raise SemnetError(f"{image_name}: {exc}") from None
    for seed, point, image_name in _draws(spec, images):
        quality, data = matched[image_name]
        impairment = _impairment(spec, seed, point, image_name)
        r = stream.transmit(
            images[image_name],
            contender,
            data,
            impairment,
            spec.datagram_size,
            perceptual=spec.perceptual,
        )
        measured = {
            **_measured(r),
            "decoded": r.decoded,
            "quality": quality,
            "target_bytes": targets[image_name],
        }
        na = NOT_APPLICABLE
        yield _row(spec, name, na, na, None, seed, point, image_name, measured)


def channel_means(codec: Codec, image: np.ndarray) -> list[float]:
    """Mean of each latent channel over the image (paper 001 Fig. 12)."""
    with torch.inference_mode():
        y = codec.encode(to_tensor(image, torch.device("cpu")))
    return y[0].float().mean(dim=(1, 2)).tolist()


def _classical_entry(name: str) -> dict:
    contender = stream.parse_contender(name)
    codec = contender.codec
    return {
        "name": name,
        "codec_id": codec.codec_id,
        "fec_overhead_percent": contender.overhead,
        "library": f"Pillow {PIL.__version__}, {codec.feature} {features.version(codec.feature)}",
    }


def run_sweep(
    images: dict[str, np.ndarray],
    spec: SweepSpec,
    load: Loader = zoo_codec,
    online: Path | None = None,
    command: str = "",
) -> dict:
    """Every row of the sweep plus the metadata that reproduces it; ``online`` is a work folder
    for the daemons (semantic codecs only)."""
    if not images:
        raise ConfigError("sweep: no images")
    if online is not None and spec.classical:
        raise ConfigError(
            f"--online: the daemons carry zoo codecs only, not {spec.classical[0]!r}; "
            "run classical baselines offline"
        )
    reference = (spec.semantic or [zoo.DEFAULT_CODEC])[0]
    loaded = {name: load(name) for name in dict.fromkeys([*spec.semantic, reference])}
    targets: dict[str, int] = {}
    if spec.classical:
        codec, codec_id, _ = loaded[reference]
        path = PathSettings(datagram_size=spec.datagram_size)
        targets = {
            n: FrameEncoder(codec, codec_id, path).encode(image).bytes_sent
            for n, image in images.items()
        }
    rows: list[dict] = []
    for name in spec.codecs:
        if name in spec.classical:
            rows += _classical_rows(spec, name, images, targets)
        elif online is not None:
            rows += _online_rows(spec, name, images, online)
        else:
            codec, codec_id, _ = loaded[name]
            rows += _semantic_rows(spec, name, codec, codec_id, images)
    first = next(iter(images))
    return {
        "command": command,
        "semnet_version": __version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mode": "online" if online is not None else "offline",
        "seed": spec.seed,
        "axes": asdict(spec),
        "impairment": {
            m: impairment_text(m, 1, spec.burst_length).replace("100%", "<100*loss>%")
            for m in spec.loss_models
        },
        "images": {n: list(image.shape[:2]) for n, image in images.items()},
        "codecs": {
            **{n: loaded[n][2] for n in spec.semantic},
            **{n: _classical_entry(n) for n in spec.classical},
        },
        "equal_bytes_reference": reference if spec.classical else None,
        "target_bytes": targets or None,
        "channel_means": {
            n: {"image": first, "means": channel_means(loaded[n][0], images[first])}
            for n in spec.semantic
        },
        "rows": rows,
    }
