"""Frames per second of the codec's two transforms at several batch sizes, side by side.

What the receiver's ``max_batch`` is worth: the same 512x768 frames encoded and decoded one
at a time and in batches of 2..N, after a warm-up, on one device (the CPU by default, ``--device
cuda`` on a GPU, ``--half`` for float16 there). For each batch size: encode, decode and
encode+decode frames/s, the ratio to batch 1, and the largest pixel difference a batch makes
against decoding each frame alone (float rounding; the tests allow one level).

    .venv/bin/python benchmarks/batching.py [--device cpu|cuda] [--half] [--batches 1,2,4,8]
        [--backend auto] [--threads 2] [--repeat 5] [--out FILE]

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

from semnet.images import image_files, load_image
from semnet.models import DEFAULT_CODEC, backends
from semnet.pipeline.tensors import pick_device, to_image, to_tensor

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "batching.json"


def frames(n: int) -> list[np.ndarray]:
    """n 512x768 photos (the demo images, cycled and shifted so no two are alike)."""
    lanczos = Image.Resampling.LANCZOS
    base = [
        np.asarray(Image.fromarray(load_image(p)).resize((768, 512), lanczos))
        for p in image_files(ROOT / "semnet" / "demo_images")
    ]
    return [np.roll(base[i % len(base)], 31 * i, axis=1) for i in range(n)]


def timed(fn, repeat: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(codec, images: list[np.ndarray], batch: int, repeat: int, device) -> dict:
    x = torch.cat([to_tensor(im, device) for im in images[:batch]])
    h, w = images[0].shape[:2]
    with torch.inference_mode():
        y = codec.encode(x)
        encode = timed(lambda: codec.encode(x), repeat, device)
        decode = timed(lambda: codec.decode(y, h, w), repeat, device)
        together = codec.decode(y, h, w)
        alone = torch.cat([codec.decode(y[i : i + 1], h, w) for i in range(batch)])
    gap = max(
        int(np.abs(to_image(a[None]).astype(int) - to_image(b[None]).astype(int)).max())
        for a, b in zip(together, alone, strict=True)
    )
    return {
        "batch": batch,
        "encode_fps": batch / encode,
        "decode_fps": batch / decode,
        "encode_decode_fps": batch / (encode + decode),
        "max_pixel_gap_vs_alone": gap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default=DEFAULT_CODEC)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--half", action="store_true")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    sizes = [int(b) for b in args.batches.split(",")]
    codec = backends.load(args.codec, args.backend, str(device), args.threads, args.half)
    images = frames(max(sizes))
    rows = [measure(codec, images, b, args.repeat, device) for b in sizes]
    for row in rows:
        row["ratio_to_batch_1"] = row["encode_decode_fps"] / rows[0]["encode_decode_fps"]
        print(
            f"batch {row['batch']:>3}: encode {row['encode_fps']:7.2f}/s  decode "
            f"{row['decode_fps']:7.2f}/s  both {row['encode_decode_fps']:7.2f}/s  "
            f"x{row['ratio_to_batch_1']:.2f}  gap {row['max_pixel_gap_vs_alone']}"
        )
    result = {
        "benchmark": "batching",
        "codec": args.codec,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "backend": getattr(codec, "backend", "eager"),
        "half": args.half and device.type == "cuda",
        "threads": args.threads,
        "image": "512x768",
        "machine": platform.platform(),
        "cpus": torch.get_num_threads(),
        "rows": rows,
    }
    print(f"wrote {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
