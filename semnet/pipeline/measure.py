"""Measure a codec through the offline chain: quality against random loss, bits per pixel.

This is what zoo manifests record. It reads only evaluation images and never trains.
"""

import math
import statistics

import numpy as np

from semnet.core.impair import Impairment, parse_spec
from semnet.models.codec import Codec
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit


def measure(
    codec: Codec,
    codec_id: int,
    images: dict[str, np.ndarray],
    losses: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4),
    fill: str = "zero",
    path: PathSettings | None = None,
    seed: int = 1,
    perceptual: bool = False,
) -> dict:
    """Mean and worst-image PSNR / SSIM per loss rate, mean MS-SSIM where every image is large
    enough for it, and the mean bpp on the wire; with ``perceptual`` mean LPIPS and semantic
    accuracy too (where their weights are installed)."""
    path = path or PathSettings()
    decoder = FrameDecoder(lambda _: codec, get_fill(fill))
    per_loss, bpps = {}, []
    for p in losses:
        psnrs, ssims, ms_ssims, lpips, agree = {}, [], [], [], []
        for i, (name, image) in enumerate(sorted(images.items())):
            encoder = FrameEncoder(codec, codec_id, path, seed=seed + i)
            impairment = Impairment(parse_spec(f"loss random {p * 100:g}%"), seed + i)
            r = transmit(image, encoder, decoder, impairment, perceptual=perceptual)
            psnrs[name] = r.psnr_db
            ssims.append(r.ssim)
            ms_ssims.append(r.ms_ssim)
            bpps.append(r.bpp)
            if r.lpips is not None:
                lpips.append(r.lpips)
            if r.semantic_agree is not None:
                agree.append(r.semantic_agree)
        worst = min(psnrs, key=psnrs.get)
        per_loss[f"{p:g}"] = {
            "psnr_db": round(statistics.fmean(psnrs.values()), 3),
            "ssim": round(statistics.fmean(ssims), 4),
            **({"ms_ssim": round(statistics.fmean(ms_ssims), 4)} if None not in ms_ssims else {}),
            **({"lpips": round(statistics.fmean(lpips), 4)} if lpips else {}),
            **({"semantic_accuracy": round(statistics.fmean(agree), 4)} if agree else {}),
            "worst_image": worst,
            "worst_psnr_db": round(psnrs[worst], 3),
            "per_image_psnr_db": {k: round(v, 3) for k, v in psnrs.items()},
        }
    return {
        "fill": fill,
        "partition": path.partition_name,
        "interleave": path.interleave,
        "datagram_size": path.datagram_size,
        "images": sorted(images),
        "bpp_on_wire": round(statistics.fmean(bpps), 4),
        "by_loss": per_loss,
        "psnr_kept_at_max_loss": round(
            per_loss[f"{losses[-1]:g}"]["psnr_db"] / per_loss[f"{losses[0]:g}"]["psnr_db"], 4
        )
        if math.isfinite(per_loss[f"{losses[0]:g}"]["psnr_db"])
        else None,
    }
