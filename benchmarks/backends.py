"""The codec's two transforms in each inference engine, side by side on the same frames.

Eager PyTorch (the reference), ``torch.compile``, OpenVINO and ONNX Runtime (those installed;
`pip install -e '.[fast]'` brings OpenVINO), alternated run by run on one 512x768 frame, after a
warm-up: median encode and decode ms, the ratio to eager, and what each engine changes: the
largest latent and image difference to eager and the PSNR of the demo photos sent lossless
through FrameEncoder/FrameDecoder with that engine (a variant that loses more than 0.1 dB
against eager is not a default).

    .venv/bin/python benchmarks/backends.py [--codec NAME] [--repeat 7] [--threads 2] [--out FILE]

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from results_io import write_json  # noqa: E402 (sibling module; benchmarks run as scripts)

from semnet.core.partition import parse_spec
from semnet.images import image_files, load_image
from semnet.models import DEFAULT_CODEC, zoo
from semnet.models.backends import accelerate, installed
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "backends.json"


class Compiled:
    """torch.compile of the eager codec's two transforms, the rest the codec's."""

    def __init__(self, codec) -> None:
        self.codec = codec
        self.encode = torch.compile(codec.encode)
        synthesize = torch.compile(codec.synthesize)
        self.decode = lambda y, h, w: synthesize(y)[..., :h, :w].clamp(0.0, 1.0)

    def __getattr__(self, name):
        return getattr(self.codec, name)


def photos() -> list[np.ndarray]:
    lanczos = Image.Resampling.LANCZOS
    return [
        np.asarray(Image.fromarray(load_image(p)).resize((768, 512), lanczos))
        for p in image_files(ROOT / "semnet" / "demo_images")
    ]


def lossless_psnr(codec, entry, images) -> float:
    from semnet.core.impair import Impairment
    from semnet.core.impair import parse_spec as impairment

    encoder = FrameEncoder(codec, entry.codec_id, PathSettings(parse_spec("channel")))
    decoder = FrameDecoder(lambda _: codec, get_fill("zero"))
    results = [transmit(im, encoder, decoder, Impairment(impairment(""), 1)) for im in images]
    return statistics.mean(r.psnr_db for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default=DEFAULT_CODEC)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    cpu = torch.device("cpu")
    eager, entry = zoo.load(args.codec), zoo.entry(args.codec)
    engines = {"eager": eager, "torch.compile": Compiled(eager)}
    for name in ("openvino", "onnxruntime"):
        if installed(name):
            engines[name] = accelerate(eager, name, cpu, args.threads)
    images = photos()
    x = torch.from_numpy(images[0].copy()).permute(2, 0, 1)[None].float() / 255
    y = eager.encode(x)
    ref_image = eager.decode(y, 512, 768)
    times = {name: ([], []) for name in engines}
    for codec in engines.values():  # warm-up (compiles)
        codec.decode(codec.encode(x), 512, 768)
    for _ in range(args.repeat):
        for name, codec in engines.items():
            t0 = time.perf_counter()
            codec.encode(x)
            t1 = time.perf_counter()
            codec.decode(y, 512, 768)
            times[name][0].append(t1 - t0)
            times[name][1].append(time.perf_counter() - t1)
    rows = {}
    for name, codec in engines.items():
        enc, dec = (statistics.median(t) * 1000 for t in times[name])
        rows[name] = {
            "encode_ms": enc,
            "decode_ms": dec,
            "latent_max_diff": float((codec.encode(x) - y).abs().max()),
            "image_max_diff": float((codec.decode(y, 512, 768) - ref_image).abs().max()),
            "lossless_psnr_db": lossless_psnr(codec, entry, images),
        }
    base = rows["eager"]
    print(f"{args.codec}, 512x768, {args.threads} threads, {args.repeat} runs alternated")
    print(f"{'engine':<15}{'enc ms':>8}{'x':>6}{'dec ms':>8}{'x':>6}{'latent d':>10}{'PSNR dB':>9}")
    for name, r in rows.items():
        print(
            f"{name:<15}{r['encode_ms']:>8.1f}{base['encode_ms'] / r['encode_ms']:>6.2f}"
            f"{r['decode_ms']:>8.1f}{base['decode_ms'] / r['decode_ms']:>6.2f}"
            f"{r['latent_max_diff']:>10.1e}{r['lossless_psnr_db']:>9.3f}"
        )
    path = write_json(
        args.out,
        {
            "machine": platform.platform(),
            "codec": args.codec,
            "threads": args.threads,
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
