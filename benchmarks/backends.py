"""The codec's two transforms in each inference engine, side by side on the same frames.

Eager PyTorch (the reference), ``torch.compile``, OpenVINO, OpenVINO int8 and ONNX Runtime
(those installed; `pip install -e '.[fast]'` brings OpenVINO, int8 also needs ``nncf`` and the
training photos it calibrates on, `make train-data`), alternated run by run on one 512x768
frame, after a warm-up: median encode and decode ms, the ratio to eager, and what each engine
changes: the largest latent and image difference to eager and the mean PSNR of the evaluation
photos (semnet.eval_images, fitted to 512x768; the demo photos without scikit-image) sent
lossless through FrameEncoder/FrameDecoder with that engine, and its difference to eager's (a
variant that loses more than 0.1 dB against eager is not a default).

    .venv/bin/python benchmarks/backends.py [--codec NAME] [--engines eager,openvino,...]
        [--repeat 7] [--threads 2] [--out FILE]

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from results_io import write_json  # noqa: E402 (sibling module; benchmarks run as scripts)

from semnet.core.partition import parse_spec
from semnet.errors import ConfigError
from semnet.eval_images import eval_images
from semnet.images import image_files, load_image
from semnet.models import DEFAULT_CODEC, zoo
from semnet.models.backends import accelerate
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


def photos() -> dict[str, np.ndarray]:
    """The photos PSNR is measured on, by name: never the training photos int8 calibrates on."""
    found = eval_images() or {
        p.stem: load_image(p) for p in image_files(ROOT / "semnet" / "demo_images")
    }
    lanczos = Image.Resampling.LANCZOS
    return {
        name: np.asarray(ImageOps.fit(Image.fromarray(im), (768, 512), lanczos))
        for name, im in found.items()
    }


def lossless_psnr(codec, entry, images) -> list[float]:
    from semnet.core.impair import Impairment
    from semnet.core.impair import parse_spec as impairment

    encoder = FrameEncoder(codec, entry.codec_id, PathSettings(parse_spec("channel")))
    decoder = FrameDecoder(lambda _: codec, get_fill("zero"))
    results = [transmit(im, encoder, decoder, Impairment(impairment(""), 1)) for im in images]
    return [r.psnr_db for r in results]


def engines(eager, names: list[str], threads: int) -> tuple[dict, dict]:
    """The engines of ``names`` that run here, and the seconds each took to load."""
    found, load_s = {}, {}
    for name in names:
        t0 = time.perf_counter()
        try:
            found[name] = ENGINES[name](eager, threads)
        except ConfigError as exc:  # not installed, or no training photos to calibrate on
            print(f"{name}: skipped ({exc})")
            continue
        load_s[name] = time.perf_counter() - t0
    return found, load_s


def _accelerated(name: str):
    return lambda eager, threads: accelerate(eager, name, torch.device("cpu"), threads)


ENGINES = {
    "eager": lambda eager, threads: eager,
    "torch.compile": lambda eager, threads: Compiled(eager),
    **{name: _accelerated(name) for name in ("openvino", "openvino-int8", "onnxruntime")},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default=DEFAULT_CODEC)
    parser.add_argument("--engines", default=",".join(ENGINES), help="eager always runs")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    load_before = os.getloadavg()
    eager, entry = zoo.load(args.codec), zoo.entry(args.codec)
    names = ["eager", *(n for n in args.engines.split(",") if n != "eager")]
    if unknown := set(names) - set(ENGINES):
        known = ", ".join(ENGINES)
        parser.error(f"--engines: unknown {', '.join(sorted(unknown))} (known: {known})")
    codecs, load_s = engines(eager, names, args.threads)
    named = photos()
    images = list(named.values())
    x = torch.from_numpy(images[0].copy()).permute(2, 0, 1)[None].float() / 255
    y = eager.encode(x)
    ref_image = eager.decode(y, 512, 768)
    times = {name: ([], []) for name in codecs}
    for codec in codecs.values():  # warm-up (compiles)
        codec.decode(codec.encode(x), 512, 768)
    for _ in range(args.repeat):
        for name, codec in codecs.items():
            t0 = time.perf_counter()
            codec.encode(x)
            t1 = time.perf_counter()
            codec.decode(y, 512, 768)
            times[name][0].append(t1 - t0)
            times[name][1].append(time.perf_counter() - t1)
    rows = {}
    for name, codec in codecs.items():
        enc, dec = (statistics.median(t) * 1000 for t in times[name])
        psnr = lossless_psnr(codec, entry, images)
        rows[name] = {
            "encode_ms": enc,
            "decode_ms": dec,
            "load_s": load_s[name],
            "latent_max_diff": float((codec.encode(x) - y).abs().max()),
            "image_max_diff": float((codec.decode(y, 512, 768) - ref_image).abs().max()),
            "lossless_psnr_db": statistics.mean(psnr),
            "lossless_psnr_db_per_photo": dict(zip(named, psnr, strict=True)),
        }
    base = rows["eager"]
    for r in rows.values():
        r["encode_speedup"] = base["encode_ms"] / r["encode_ms"]
        r["decode_speedup"] = base["decode_ms"] / r["decode_ms"]
        r["delta_psnr_db"] = r["lossless_psnr_db"] - base["lossless_psnr_db"]
    load_after = os.getloadavg()
    print(
        f"{args.codec}, 512x768, {args.threads} threads, {args.repeat} runs alternated; "
        f"PSNR over {len(images)} photos; load average {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print(
        f"{'engine':<15}{'enc ms':>8}{'x':>6}{'dec ms':>8}{'x':>6}{'latent d':>10}"
        f"{'PSNR dB':>9}{'dPSNR':>8}{'load s':>8}"
    )
    for name, r in rows.items():
        print(
            f"{name:<15}{r['encode_ms']:>8.1f}{r['encode_speedup']:>6.2f}"
            f"{r['decode_ms']:>8.1f}{r['decode_speedup']:>6.2f}"
            f"{r['latent_max_diff']:>10.1e}{r['lossless_psnr_db']:>9.3f}"
            f"{r['delta_psnr_db']:>+8.3f}{r['load_s']:>8.1f}"
        )
    path = write_json(
        args.out,
        {
            "machine": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "torch": torch.__version__,
            "codec": args.codec,
            "threads": args.threads,
            "repeat": args.repeat,
            "photos": list(named),
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
