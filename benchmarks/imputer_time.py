"""What diffusion imputing costs against decoding, on CPU (issue target: T = 10 within 3x decode).

A 512x768 photo is encoded by the shipped codec, 30% of its datagrams are dropped (seeded,
channel-wise, interleaved), and the received latent is decoded; then the same frame is filled
with ``diffusion:T`` for each ``--steps`` value. Decode and each fill are timed alternately in
the same run, ``--repeat`` times after one warm-up, and reported as medians and as the ratio
fill / decode.

    .venv/bin/python benchmarks/imputer_time.py [--repeat 5] [--threads 2] [--out FILE]

This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from frame_time import pick_image
from results_io import write_json  # noqa: E402 (sibling module; benchmarks run as scripts)

from semnet.core import packetize, quant
from semnet.core.impair import Impairment, parse_spec
from semnet.core.wire import parse
from semnet.models import zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameEncoder, PathSettings

DEFAULT_OUT = "benchmarks/results/imputer_time.json"


def once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", default="4,10,16")
    ap.add_argument("--loss", type=float, default=0.3)
    ap.add_argument("--codec", default=zoo.DEFAULT_CODEC)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    image, source = pick_image(None, 512, 768)
    codec, entry = zoo.load(args.codec), zoo.entry(args.codec)
    sent = FrameEncoder(codec, entry.codec_id, PathSettings(), seed=1).encode(image)
    impairment = Impairment(parse_spec(f"loss random {args.loss * 100:g}%"), 1)
    kept = [e.data for i, d in enumerate(sent.datagrams) for e in impairment.process(d, i * 1e-4)]
    q, mask = packetize.depacketize([parse(d) for d in kept], sent.descriptor)
    y = torch.from_numpy(quant.dequantize(sent.descriptor.quant, q))[None]
    received = torch.from_numpy(mask)[None]
    h, w = image.shape[:2]
    steps = [int(s) for s in args.steps.split(",")]
    fills = {f"diffusion:{t}": get_fill(f"diffusion:{t}") for t in steps}
    zero = get_fill("zero")

    def decode() -> None:
        with torch.inference_mode():
            codec.decode(zero(y, received, codec), h, w)

    runs = {"decode": decode} | {
        name: (lambda f=f: f(y, received, codec)) for name, f in fills.items()
    }
    for fn in runs.values():  # warm-up (and F(0), cached per size)
        fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):  # alternate, so a busy neighbour slows every variant alike
        for name, fn in runs.items():
            samples[name].append(once(fn))
    medians = {name: statistics.median(v) * 1e3 for name, v in samples.items()}
    print(f"{len(kept)}/{len(sent.datagrams)} datagrams kept, {(~mask).mean():.1%} entries lost")
    print(f"{'':<14} {'median ms':>10} {'x decode':>9}")
    for name, ms in medians.items():
        print(f"{name:<14} {ms:>10.1f} {ms / medians['decode']:>9.2f}")
    write_json(
        args.out,
        {
            "machine": {
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "torch_version": torch.__version__,
                "python": platform.python_version(),
                "loadavg": os.getloadavg(),
            },
            "image": source,
            "codec": args.codec,
            "loss": args.loss,
            "lost_fraction": float((~mask).mean()),
            "repeat": args.repeat,
            "median_ms": medians,
            "ratio_over_decode": {n: medians[n] / medians["decode"] for n in fills},
        },
    )


if __name__ == "__main__":
    main()
