#!/usr/bin/env python3
"""Paper 002 Fig. 9/10 through the whole chain: equal, water-filling and semantic-aware power
allocation against SNR over block Rayleigh fading, measured as PSNR, LPIPS and semantic accuracy.

Each evaluation photo is encoded by the default codec, cut into 4x4 patches (spatial-error
concentration, paper 002 §III-A) with a CAM importance byte per datagram, sent over the link
``link rayleigh snr S blocklength 1024 coderate 0.4375 subcarriers 16 power P`` (the paper's
D, R_c and B), filled (zero, or the diffusion imputer) and scored. For every SNR and image the
three schemes see the same channel draws (the same seed): only the powers differ.

    .venv/bin/python scripts/power_allocation.py [--snr=-6,-3,0,3,6] [--fill zero,diffusion]
        [--out results/imputing/power_allocation.json]

Needs the optional metrics (make metrics-extra) for the CAM and for LPIPS / semantic accuracy.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from semnet.core.impair import Impairment, parse_spec
from semnet.core.partition import parse_spec as parse_partition
from semnet.eval_images import eval_images
from semnet.experiments.sweep import derive_seed
from semnet.models import zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings, perceptual_available
from semnet.pipeline.offline import transmit

SCHEMES = ("equal", "waterfilling", "semantic")
LINK = "link rayleigh snr {snr:g}dB blocklength 1024 coderate 0.4375 subcarriers 16 power {power}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snr", default="-6,-3,0,3,6", help="average SNRs in dB")
    ap.add_argument("--fill", default="zero,diffusion")
    ap.add_argument("--partition", default="patch:4x4")
    ap.add_argument("--images", default=None, help="evaluation photo names (default: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/imputing/power_allocation.json")
    args = ap.parse_args()
    if not perceptual_available():
        print("needs the CAM classifier and LPIPS weights: make metrics-extra", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    snrs = [float(s) for s in args.snr.split(",")]
    fills = args.fill.split(",")
    codec, entry = zoo.load(zoo.DEFAULT_CODEC), zoo.entry(zoo.DEFAULT_CODEC)
    path = PathSettings(parse_partition(args.partition), importance=True)
    images = eval_images()
    if args.images:
        images = {n: images[n] for n in args.images.split(",")}
    rows = []
    for fill in fills:
        decoder = FrameDecoder(lambda _: codec, get_fill(fill))
        for snr in snrs:
            for power in SCHEMES:
                for name, image in images.items():
                    encoder = FrameEncoder(codec, entry.codec_id, path, seed=args.seed)
                    seed = derive_seed(args.seed, "link", name, f"{snr:g}")
                    link = Impairment(parse_spec(LINK.format(snr=snr, power=power)), seed)
                    r = transmit(image, encoder, decoder, link, perceptual=True)
                    rows.append(
                        {
                            "fill": fill,
                            "snr_db": snr,
                            "power": power,
                            "image": name,
                            "realised_loss": r.loss_ratio,
                            "psnr_db": r.psnr_db,
                            "ssim": r.ssim,
                            "lpips": r.lpips,
                            "semantic_agree": r.semantic_agree,
                            "bpp": r.bpp,
                        }
                    )
    summary = summarise(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python scripts/power_allocation.py " + " ".join(sys.argv[1:])
    result = {"command": command.strip(), "link": LINK, "partition": args.partition}
    out.write_text(json.dumps({**result, "summary": summary, "rows": rows}, indent=1) + "\n")
    head = ("fill", "SNR dB", "power", "loss", "PSNR", "LPIPS", "sem")
    print("{:<10} {:>6} {:<12} {:>6} {:>6} {:>6} {:>5}".format(*head))
    for s in summary:
        print(
            f"{s['fill']:<10} {s['snr_db']:>6g} {s['power']:<12} {s['realised_loss']:>6.1%} "
            f"{s['psnr_db']:>6.2f} {s['lpips']:>6.3f} {s['semantic_accuracy']:>5.2f}"
        )
    print(f"{len(rows)} rows written to {out}", file=sys.stderr)
    return 0


def summarise(rows: list[dict]) -> list[dict]:
    """Means over images per (fill, SNR, scheme)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["fill"], r["snr_db"], r["power"]), []).append(r)
    return [
        {
            "fill": fill,
            "snr_db": snr,
            "power": power,
            "images": len(g),
            "realised_loss": statistics.fmean(r["realised_loss"] for r in g),
            "psnr_db": statistics.fmean(r["psnr_db"] for r in g),
            "lpips": statistics.fmean(r["lpips"] for r in g),
            "semantic_accuracy": statistics.fmean(r["semantic_agree"] for r in g),
        }
        for (fill, snr, power), g in groups.items()
    ]


if __name__ == "__main__":
    sys.exit(main())
