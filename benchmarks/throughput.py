"""Frames per second through the real sender -> proxy -> receiver, variants side by side.

Each variant starts a fresh local testbed (three subprocess daemons on loopback, default
configs but for what the variant changes) and sends ``--frames`` 512x768 frames (the demo photos,
resized with Lanczos, in turn) the way `semnet send` does, with ``window`` requests in flight:
window 1 is stop-and-wait (the sender's old behaviour), larger windows let the sender encode one
frame while it paces another and the receiver decodes a third. ``--offered R`` adds a run that
offers R frames/s on a schedule instead of as fast as possible, for latency at a given load.

Per variant: frames/s over the whole run, latency p50/p99 (request to report), the sender's
encode and the receiver's decode time per frame (medians of their own timings), CPU seconds per
frame of the three daemons together (from /proc) and their peak RSS.

    .venv/bin/python benchmarks/throughput.py [--frames 20] [--offered 4] [--out FILE]

Loopback only, bounded in count and time. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from results_io import write_json  # noqa: E402 (sibling module; benchmarks run as scripts)

from semnet.client import png_bytes, send_image
from semnet.images import image_files, load_image
from semnet.testbed import DAEMONS, LocalTestbed

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "throughput.json"
SIZE = (768, 512)  # width, height
TICKS = os.sysconf("SC_CLK_TCK")

# name -> (window, sender config, receiver config); backend auto unless eager is named
EAGER = {"backend": "eager"}
VARIANTS = {
    "stop-and-wait, eager": (1, EAGER, EAGER),
    "stop-and-wait": (1, {}, {}),
    "window 2": (2, {}, {}),
    "window 2, 1 thread each": (2, {"threads": 1}, {"threads": 1}),
    "window 2, 1 thread, no perceptual": (2, {"threads": 1}, {"threads": 1, "perceptual": False}),
}


def frames() -> list[bytes]:
    """The demo photos at 512x768, as PNG files, the way a client sends them."""
    photos = [load_image(p) for p in image_files(ROOT / "semnet" / "demo_images")]
    resized = [
        np.asarray(Image.fromarray(p).resize(SIZE, Image.Resampling.LANCZOS)) for p in photos
    ]
    return [png_bytes(p) for p in resized]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def run(window: int, sender: dict, receiver: dict, count: int, offered: float | None) -> dict:
    files = frames()
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalTestbed(tmp, sender=sender, receiver={"save_images": False, **receiver}) as bed,
    ):
        address = bed.http["sender"]
        send_image(address, "warm.png", files[0])  # models loaded, caches warm
        cpu0 = {d: cpu_seconds(bed.pid(d)) for d in DAEMONS}
        latencies, reports = [], []
        lock = threading.Lock()

        def one(i: int) -> None:
            if offered is not None:  # on schedule: frame i is offered at i / offered
                time.sleep(max(0.0, start + i / offered - time.perf_counter()))
            t0 = time.perf_counter()
            report = send_image(address, f"f{i}.png", files[i % len(files)])
            with lock:
                latencies.append(time.perf_counter() - t0)
                reports.append(report)

        workers = window if offered is None else max(window, 16)
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(count)))
        wall = time.perf_counter() - start
        cpu = sum(cpu_seconds(bed.pid(d)) - cpu0[d] for d in DAEMONS)
        rss = {d: bed.memory(d)["hwm"] / 2**20 for d in DAEMONS}
    failed = [r for r in reports if "error" in r]
    timing = [r.get("timings", {}) for r in reports]
    return {
        "window": window,
        "offered_fps": offered,
        "sender": sender,
        "receiver": receiver,
        "frames": count,
        "failed": len(failed),
        "errors": sorted({r["error"] for r in failed})[:5],
        "fps": count / wall,
        "latency_p50_s": float(np.percentile(latencies, 50)),
        "latency_p99_s": float(np.percentile(latencies, 99)),
        "encode_s": statistics.median(t.get("encode", np.nan) for t in timing),
        "decode_s": statistics.median(t.get("decode", np.nan) for t in timing),
        "cpu_s_per_frame": cpu / count,
        "rss_peak_mib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--offered", type=float, default=4.0, help="frames/s; 0: skip that run")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    runs = {name: run(*v, args.frames, None) for name, v in VARIANTS.items()}
    if args.offered:
        best = max(runs, key=lambda n: runs[n]["fps"])
        window, sender, receiver = VARIANTS[best]
        runs[f"{best}, offered {args.offered:g}/s"] = run(
            window, sender, receiver, args.frames, args.offered
        )
    base = runs["stop-and-wait, eager"]["fps"]
    print(
        f"{'variant':<46}{'fps':>6}{'x':>6}{'p50 s':>7}{'p99 s':>7}{'enc s':>7}{'dec s':>7}"
        f"{'cpu s/f':>8}  failed"
    )
    for name, r in runs.items():
        print(
            f"{name:<46}{r['fps']:>6.2f}{r['fps'] / base:>6.2f}{r['latency_p50_s']:>7.2f}"
            f"{r['latency_p99_s']:>7.2f}{r['encode_s']:>7.3f}{r['decode_s']:>7.3f}"
            f"{r['cpu_s_per_frame']:>8.2f}  {r['failed']}"
        )
    path = write_json(
        args.out,
        {"machine": platform.platform(), "cpus": os.cpu_count(), "size": SIZE, "runs": runs},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
