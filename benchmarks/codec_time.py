"""Frame time of the entropy-coded codecs against the default codec, side by side.

Sender side = ``FrameEncoder.encode`` (encode, quantize, packetize: entropy coding per datagram
for the ``cnn-rd`` family, fixed-width packing for the default), receiver side =
``FrameDecoder.decode`` (depacketize: entropy decoding, fill, decode), lossless, on one
512x768 photo. Codecs take turns run by run so load changes hit all of them alike; the table
gives medians in ms and each codec's total as a ratio of the default codec's (issue 16 asks
for at most 1.5).

    .venv/bin/python benchmarks/codec_time.py [--repeat 5] [--threads 2] [--out FILE]

This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from frame_time import pick_image  # noqa: E402 (sibling module; benchmarks run as scripts)
from results_io import write_json  # noqa: E402

from semnet.core.reassembly import Reassembler
from semnet.models import DEFAULT_CODEC, zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "codec_time.json"


def one_frame(encoder: FrameEncoder, decoder: FrameDecoder, image) -> dict[str, float]:
    t0 = time.perf_counter()
    sent = encoder.encode(image)
    t1 = time.perf_counter()
    reassembler = Reassembler(deadline=float("inf"))
    frames = [f for data in sent.datagrams for f in reassembler.ingest(data, 0.0)]
    t2 = time.perf_counter()
    decoder.decode(frames[0])
    t3 = time.perf_counter()
    return {
        "sender": t1 - t0,
        "receiver": t3 - t1,
        "entropy_and_packets": sent.timings["packetize"] + (t2 - t1),
        "total": t3 - t0,
        "bytes": sent.bytes_sent,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="timed frames per codec (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--codecs", help="comma list (default: the default codec and every cnn-rd-qN)")
    p.add_argument("--image", help="photo to use (centre-cropped and resized to 512x768)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = (
        args.codecs.split(",")
        if args.codecs
        else [
            DEFAULT_CODEC,
            *(e.name for e in zoo.rate_points(zoo.RATE_FAMILY).values()),
        ]
    )
    image, source = pick_image(args.image, 512, 768)
    pairs = {}
    for name in names:
        codec, entry = zoo.load(name), zoo.entry(name)
        encoder = FrameEncoder(codec, entry.codec_id, PathSettings(), seed=1)
        pairs[name] = (encoder, FrameDecoder(lambda _, c=codec: c, get_fill("zero")))
    load_at_start = os.getloadavg()[0]
    print(
        f"image: {source}, 512x768, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {os.cpu_count()} CPUs, load average {load_at_start:.2f}"
    )
    samples: dict[str, list[dict]] = {n: [] for n in names}
    for enc, dec in pairs.values():  # warm-up
        one_frame(enc, dec, image)
    for _ in range(args.repeat):
        for name, (enc, dec) in pairs.items():
            samples[name].append(one_frame(enc, dec, image))
    keys = ("sender", "receiver", "entropy_and_packets", "total")
    medians = {
        n: {k: statistics.median(s[k] for s in runs) * 1e3 for k in keys}
        | {"bpp": 8 * runs[0]["bytes"] / (512 * 768)}
        for n, runs in samples.items()
    }
    base = medians[names[0]]["total"]
    print(f"{'codec':<18}{'bpp':>7}{'sender':>9}{'receiver':>10}{'packets':>9}{'total':>9}  ratio")
    for n, m in medians.items():
        m["ratio_to_first"] = m["total"] / base
        print(
            f"{n:<18}{m['bpp']:>7.3f}{m['sender']:>9.1f}{m['receiver']:>10.1f}"
            f"{m['entropy_and_packets']:>9.1f}{m['total']:>9.1f}  {m['ratio_to_first']:.2f}"
        )
    print("ms, medians; packets = quantize + packetize (entropy coding) + reassemble")
    out = write_json(
        args.out,
        {
            "benchmark": "codec_time",
            "image": source,
            "size": [512, 768],
            "repeat": args.repeat,
            "threads": torch.get_num_threads(),
            "baseline": names[0],
            "medians_ms": medians,
            "load_average_at_start": load_at_start,
            "machine": {
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "platform": platform.platform(),
            },
        },
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
