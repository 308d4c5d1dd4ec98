"""The same offline sweep serial and on a local Ray with 2 workers, side by side in one run.

    .venv/bin/python benchmarks/sweep_ray.py [--cells 1000] [--codec cnn-c64] [--workers 2]
                        [--threads 1] [--serial-threads 1,2] [--rounds 1] [--out FILE]

Cells: ``--codec`` x 20 loss rates (0 to 47.5% Bernoulli) x 5 images (the three bundled demo
photos, 256x384 and 256x256, and two of them mirrored) x repeats, repeats = cells / 100.
Variants, one after the other in this process: the serial sweep at each ``--serial-threads``
(torch and codec engine threads; 1 is what each Ray worker uses, so its rows must equal Ray's
bit for bit; 2 is the serial default) and the Ray sweep (``--workers`` CPUs, one task per cell,
``--threads`` per worker), alternated ``--rounds`` times (medians reported). Each time is the
whole ``run_sweep`` call (codec loading on the driver included); the Ray time also includes
starting and stopping the local Ray (and each worker loading the codec), the start and stop
given apart as well. Prints each variant's seconds, ms per cell, the ratio Ray / serial and
whether Ray's rows equal the serial rows. Target (issue 20): ratio <= 0.6 against the serial
sweep on 2 cores, rows equal.

A benchmark, not a test: it asserts nothing. Load average at start and end go in the JSON: on
a shared 2-core machine a busy neighbour changes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from results_io import write_json  # noqa: E402 (sibling module; benchmarks run as scripts)

from semnet.experiments.sweep import SweepSpec, run_sweep
from semnet.images import image_files, load_image

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "sweep_ray.json"
LOSSES = tuple(round(0.025 * i, 3) for i in range(20))


def images() -> dict[str, np.ndarray]:
    photos = {p.stem: load_image(p) for p in image_files(ROOT / "semnet" / "demo_images")}
    mirrored = {f"{n}-mirrored": np.ascontiguousarray(im[:, ::-1]) for n, im in photos.items()}
    return {**photos, **dict(list(mirrored.items())[:2])}


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def report(r: int, name: str, seconds: float, cells: int) -> None:
    print(f"round {r + 1}: {name:<30} {seconds:7.1f} s {1000 * seconds / cells:7.1f} ms/cell")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--codec", default="cnn-c64")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="per Ray worker")
    parser.add_argument("--serial-threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the variants N times")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    from semnet.experiments import ray_runner

    pictures = images()
    repeats = max(1, round(args.cells / (len(LOSSES) * len(pictures))))
    spec = SweepSpec(codecs=(args.codec,), losses=LOSSES, repeats=repeats)
    cells = len(LOSSES) * len(pictures) * repeats
    shapes = sorted({tuple(im.shape[:2]) for im in pictures.values()})
    print(f"{cells} cells: {args.codec}, {len(LOSSES)} losses x {len(pictures)} images {shapes}")
    print(f"x {repeats} repeats; load average at start {os.getloadavg()}")
    result = {"machine": machine(), "codec": args.codec, "cells": cells, "images": len(pictures)}
    result.update(losses=list(LOSSES), repeats=repeats, workers=args.workers, rounds=args.rounds)
    serial_threads = [int(t) for t in args.serial_threads.split(",")]
    ray_name = f"ray, {args.workers} workers x {args.threads} thread{'s' * (args.threads > 1)}"
    names = {t: f"serial, {t} thread{'s' * (t > 1)}" for t in serial_threads}
    variants = {n: {"kind": "serial", "threads": t, "seconds": []} for t, n in names.items()}
    variants[ray_name] = {"kind": "ray", "threads": args.threads, "workers": args.workers}
    variants[ray_name].update(seconds=[], ray_start_s=[], ray_stop_s=[], cells_status=[])
    rows = {}
    for r in range(args.rounds):  # variants alternate, so a change of load hits all of them
        for threads, name in names.items():
            t0 = time.perf_counter()
            out = run_sweep(pictures, spec, threads=threads)
            seconds = time.perf_counter() - t0
            variants[name]["seconds"].append(seconds)
            rows[name] = out["rows"]
            report(r, name, seconds, cells)
        ray = variants[ray_name]
        t0 = time.perf_counter()
        with ray_runner.connected("local", args.workers):
            started = time.perf_counter() - t0
            out = run_sweep(pictures, spec, threads=args.threads, distribute=ray_runner.executor())
            measured = time.perf_counter() - t0
        seconds = time.perf_counter() - t0
        ray["seconds"].append(seconds)
        ray["ray_start_s"].append(started)
        ray["ray_stop_s"].append(seconds - measured)
        ray["cells_status"].append(out["cells"])
        rows[ray_name] = out["rows"]
        report(r, ray_name, seconds, cells)
        print(f"  (Ray start {started:.1f} s, stop {seconds - measured:.1f} s; {out['cells']})")
        print(f"  load average {os.getloadavg()}", flush=True)
        result["rounds_done"] = r + 1
        write_json(args.out, {**result, "variants": variants})  # kept if a later round dies
    for v in variants.values():
        v["median_s"] = statistics.median(v["seconds"])
        v["min_s"] = min(v["seconds"])
    ray = variants[ray_name]
    print(f"\nmedian of {args.rounds} round(s)        seconds  ms/cell  ray/this  rows")
    for name, v in variants.items():
        line = f"{name:<30} {v['median_s']:8.1f} {1000 * v['median_s'] / cells:8.1f}"
        if v["kind"] == "serial":
            v["ray_over_serial"] = ray["median_s"] / v["median_s"]
            v["ray_over_serial_min"] = ray["min_s"] / v["min_s"]
            v["rows_equal_ray"] = json.dumps(rows[name]) == json.dumps(rows[ray_name])
            same = "equal Ray's" if v["rows_equal_ray"] else "differ from Ray's"
            line += f" {v['ray_over_serial']:9.2f}  {same}"
        print(line)
    print("target: ray/serial <= 0.6 on 2 cores, rows equal")
    result["variants"] = variants
    result["machine"]["load_average_end"] = os.getloadavg()
    print(f"JSON: {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
