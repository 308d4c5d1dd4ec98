"""Rate-distortion curves: every codec sent losslessly through the real chain, quality vs bpp.

The rate is what the network carries: bpp = 8 x every byte of every datagram (52-byte headers,
stream headers, padding included) / pixels. Classical codecs are sent at matching rates: for
each semnet rate point and image, the highest quality whose datagrams fit in the same bytes.
See docs/rd.md.
"""

import logging
import platform
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import PIL
import torch
from PIL import features

from semnet import __version__
from semnet.baselines import stream
from semnet.core.impair import Impairment, ImpairSpec
from semnet.core.wire import MAX_DATAGRAM
from semnet.errors import ConfigError, SemnetError
from semnet.experiments.published import published
from semnet.experiments.sweep import zoo_codec as sweep_codec
from semnet.models import DEFAULT_CODEC, zoo
from semnet.models.codec import Codec
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit
from semnet.pipeline.report import FrameReport

log = logging.getLogger(__name__)

Loader = Callable[[str], tuple[Codec, int, dict]]  # name -> (codec, codec id, manifest entry)


def default_codecs() -> list[str]:
    """Every rate point of the entropy-coded family and the default codec."""
    rd = [e.name for e in zoo.rate_points(zoo.RATE_FAMILY).values()]
    return [*rd, DEFAULT_CODEC] if DEFAULT_CODEC not in rd else rd


def zoo_codec(name: str) -> tuple[Codec, int, dict]:
    """The sweep's loader, with an unknown name a ConfigError naming what the zoo has."""
    known = [e.name for e in zoo.entries()]
    if name not in known:
        raise ConfigError(f"codec {name!r}: not in the zoo (known: {', '.join(known) or 'none'})")
    return sweep_codec(name)


def check(images: dict, codecs: list[str], classical: list[str], datagram_size: int) -> None:
    """Every input checked before any work: ConfigError names the bad value."""
    if not images:
        raise ConfigError("rd: no images")
    if not codecs:
        raise ConfigError("rd: no semnet codec (the classical codecs are matched to its rates)")
    for axis, names in (("codec", codecs), ("classical", classical)):
        if len(set(names)) != len(names):
            raise ConfigError(f"{axis}: {', '.join(names)} repeats a name")
    for name in codecs:
        if stream.is_classical(name):
            raise ConfigError(f"codec {name!r} is classical: list it under classical")
        if "+" in name:
            raise ConfigError(f"codec {name!r}: FEC (+rsN) makes no sense on a lossless curve")
    for name in classical:
        if "+" in name:
            raise ConfigError(f"classical {name!r}: FEC (+rsN) makes no sense on a lossless curve")
        stream.parse_contender(name)
    if not 100 <= datagram_size <= MAX_DATAGRAM:
        raise ConfigError(f"datagram size: {datagram_size} is not in 100..{MAX_DATAGRAM}")


def lossless() -> Impairment:
    """The channel of an RD curve: every datagram arrives (seed irrelevant, none is drawn)."""
    return Impairment(ImpairSpec(), 0)


def _scored(r: FrameReport, what: str) -> dict:
    """The row fields every codec shares; SemnetError if the lossless chain lost anything."""
    if r.datagrams_received != r.datagrams_sent or getattr(r, "decoded", True) is False:
        raise SemnetError(
            f"{what}: {r.datagrams_received} of {r.datagrams_sent} datagrams decoded on a "
            "lossless channel"
        )
    return {
        "bpp": r.bpp,
        "bytes_sent": r.bytes_sent,
        "datagrams": r.datagrams_sent,
        "psnr_db": r.psnr_db,
        "ssim": r.ssim,
        "ms_ssim": r.ms_ssim,
    }


def _row(kind: str, codec: str, image: str, scored: dict, **classical) -> dict:
    """One row; every row has the same keys, the classical-only ones None on semnet rows."""
    return {
        "kind": kind,
        "codec": codec,
        "family": zoo.family(codec) if kind == "semnet" else codec,
        "image": image,
        **scored,
        "quality": classical.get("quality"),
        "target_bytes": classical.get("target_bytes"),
        "matched_to": classical.get("matched_to"),
    }


def semnet_rows(
    name: str, codec: Codec, codec_id: int, images: dict[str, np.ndarray], datagram_size: int
) -> list[dict]:
    """One codec on every image through encoder -> lossless channel -> reassembler -> decoder."""
    log.info("rd: %s", name)
    encoder = FrameEncoder(codec, codec_id, PathSettings(datagram_size=datagram_size))
    decoder = FrameDecoder(lambda _: codec, get_fill("zero"))
    rows = []
    for image_name, image in images.items():
        r = transmit(image, encoder, decoder, lossless())
        rows.append(_row("semnet", name, image_name, _scored(r, f"{name} on {image_name}")))
    return rows


def classical_rows(
    name: str, targets: list[dict], images: dict[str, np.ndarray], datagram_size: int
) -> tuple[list[dict], list[dict]]:
    """(rows, unmatched): the classical codec at each target row's bytes on its image; a target
    below the codec's lowest quality is listed in unmatched, not sent."""
    contender = stream.parse_contender(name)
    rows, unmatched = [], []
    for target in targets:
        image_name, budget = target["image"], target["bytes_sent"]
        image = images[image_name]
        try:
            quality, data = stream.match_bytes(contender, image, budget, datagram_size)
        except SemnetError as exc:
            log.warning("rd: %s on %s: %s", name, image_name, exc)
            unmatched.append(
                {
                    "classical": name,
                    "matched_to": target["codec"],
                    "image": image_name,
                    "target_bytes": budget,
                    "reason": str(exc),
                }
            )
            continue
        r = stream.transmit(image, contender, data, lossless(), datagram_size)
        scored = _scored(r, f"{name} q{quality} on {image_name}")
        rows.append(
            _row(
                "classical",
                name,
                image_name,
                scored,
                quality=quality,
                target_bytes=budget,
                matched_to=target["codec"],
            )
        )
    return rows, unmatched


def _classical_entry(name: str) -> dict:
    codec = stream.parse_contender(name).codec
    return {
        "name": name,
        "codec_id": codec.codec_id,
        "qualities": [codec.qualities.start, codec.qualities.stop - 1],
        "library": f"Pillow {PIL.__version__}, {codec.feature} {features.version(codec.feature)}",
    }


def run_rd(
    images: dict[str, np.ndarray],
    codecs: list[str],
    classical: list[str],
    datagram_size: int = 1200,
    command: str = "",
    load: Loader = zoo_codec,
) -> dict:
    """Every codec's rate points on every image, classical codecs at matching bytes, and the
    metadata that reproduces them, as a JSON-able dict with ``kind: "rd"``."""
    check(images, codecs, classical, datagram_size)
    loaded = {name: load(name) for name in codecs}
    rows: list[dict] = []
    for name, (codec, codec_id, _) in loaded.items():
        rows += semnet_rows(name, codec, codec_id, images, datagram_size)
    targets = list(rows)
    unmatched: list[dict] = []
    for name in classical:
        log.info("rd: %s at matching bytes", name)
        matched, missed = classical_rows(name, targets, images, datagram_size)
        rows += matched
        unmatched += missed
    return {
        "kind": "rd",
        "command": command,
        "semnet_version": __version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "datagram_size": datagram_size,
        "channel": "lossless (no impairment)",
        "bpp": "8 * bytes of every datagram, headers included / (height * width)",
        "images": {n: list(image.shape[:2]) for n, image in images.items()},
        "codecs": {n: entry for n, (_, _, entry) in loaded.items()},
        "classical": {n: _classical_entry(n) for n in classical},
        "rows": rows,
        "unmatched": unmatched,
        "published": published(),
    }


def _mean(rows: list[dict], metric: str) -> float | None:
    values = [r[metric] for r in rows]
    return None if any(v is None for v in values) else sum(values) / len(values)


def rate_points(rows: list[dict]) -> list[dict]:
    """Means over images per rate point (a semnet codec, or a classical codec matched to one),
    in row order; ``image_count`` counts the images averaged (fewer where a match failed)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["kind"], r["codec"], r["matched_to"])].append(r)
    return [
        {
            "kind": kind,
            "codec": codec,
            "family": group[0]["family"],
            "matched_to": matched_to,
            "image_count": len(group),
            **{m: _mean(group, m) for m in ("bpp", "bytes_sent", "psnr_db", "ssim", "ms_ssim")},
        }
        for (kind, codec, matched_to), group in groups.items()
    ]
