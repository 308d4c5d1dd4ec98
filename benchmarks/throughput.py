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

``--streams N`` (or ``--counts 1,8``) measures many streams instead (issue 23: "eight
concurrent streams at 0.5 frame/s each: every frame decoded, none late"): 1, 2, 4, ... N
streams side by side, each its own sender daemon (its own stream id and ports) through one
proxy (no impairment) to one receiver (``LocalTestbed(senders=n)``), each offering ``--rate``
frames/s on a fixed schedule (stream s's phase is s/n of a period, so the streams do not all
start a frame at once), for ``--frames`` frames per stream. A frame's latency runs from the
moment it was due (not when a client thread got round to it) to its report; a frame is *late*
when its latency exceeds the stream's frame period (1/rate: 2 s at 0.5 frame/s), i.e. it is not
back before the stream's next frame is due. Per run: frames decoded (a report without error,
per stream), frames complete (no datagram lost), late frames, achieved frames/s, latency
p50/p99/max, CPU seconds per frame of all daemons together and the CPU load (CPU s per wall s,
out of os.cpu_count()), and each daemon's peak RSS; the load average before and after each run
(other work on the machine shows there). ``--stream-variant`` picks configs (default: the
daemons' defaults).

    .venv/bin/python benchmarks/throughput.py [--frames 20] [--offered 4] [--out FILE]
    .venv/bin/python benchmarks/throughput.py --streams 8 --rate 0.5 [--frames 10] [--counts 8]

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
from semnet.errors import SemnetError
from semnet.images import image_files, load_image
from semnet.models.backends import installed
from semnet.testbed import LocalTestbed

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "throughput.json"
STREAMS_OUT = ROOT / "benchmarks" / "results" / "throughput_streams.json"
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
    "window 2, score every 4th": (2, {}, {"score_every": 4}),
}
INT8 = {"backend": "openvino-int8"}  # opt-in: the int8 extra and the training photos
if installed("openvino-int8"):
    VARIANTS["window 2, score every 4th, int8"] = (2, INT8, {"score_every": 4, **INT8})
# --streams: name -> (sender config, receiver config) of every stream count
STREAM_VARIANTS = {
    "default": ({}, {}),
    "1 thread each, no perceptual": ({"threads": 1}, {"threads": 1, "perceptual": False}),
    "1 thread each, score every 4th": ({"threads": 1}, {"threads": 1, "score_every": 4}),
    "1 thread each, score every 4th, int8": (
        {"threads": 1, **INT8},
        {"threads": 1, "score_every": 4, **INT8},
    ),
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
        cpu0 = {d: cpu_seconds(bed.pid(d)) for d in bed.names}
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
        cpu = sum(cpu_seconds(bed.pid(d)) - cpu0[d] for d in bed.names)
        rss = {d: bed.memory(d)["hwm"] / 2**20 for d in bed.names}
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


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_streams(n: int, rate: float, count: int, sender: dict, receiver: dict) -> dict:
    """``n`` streams (one sender each) at ``rate`` frames/s each, ``count`` frames per stream,
    on schedule; see the module's docstring for what is measured."""
    files = frames()
    period = 1.0 / rate
    load_before = load_average()
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalTestbed(
            tmp, sender=sender, receiver={"save_images": False, **receiver}, senders=n
        ) as bed,
    ):
        with ThreadPoolExecutor(n) as pool:  # models loaded, caches warm, in every daemon
            list(pool.map(lambda s: send_image(bed.http[s], "warm.png", files[0]), bed.senders))
        cpu0 = {d: cpu_seconds(bed.pid(d)) for d in bed.names}
        results: list[tuple[str, int, float, dict]] = []
        lock = threading.Lock()

        def one(job: tuple[int, int]) -> None:
            s, i = job
            due = start + (s / n + i) * period  # stream s's phase: s/n of a period
            time.sleep(max(0.0, due - time.perf_counter()))
            name = bed.senders[s]
            report = send_image(bed.http[name], f"s{s}f{i}.png", files[(s + i) % len(files)])
            with lock:
                results.append((name, i, time.perf_counter() - due, report))

        jobs = [(s, i) for i in range(count) for s in range(n)]  # in the order they fall due
        start = time.perf_counter() + 0.5
        with ThreadPoolExecutor(n * 4) as pool:  # up to 4 frames in flight per stream
            list(pool.map(one, jobs))
        wall = time.perf_counter() - start
        cpu = sum(cpu_seconds(bed.pid(d)) - cpu0[d] for d in bed.names)
        rss = {d: round(bed.memory(d)["hwm"] / 2**20, 1) for d in bed.names}
        streams = {name: bed.streams[name] for name in bed.senders}
    latencies = [r[2] for r in results]
    reports = [r[3] for r in results]
    ok = [r for r in results if "error" not in r[3] and r[3].get("psnr_db") is not None]
    timing = [r.get("timings", {}) for r in reports]
    senders_rss = [rss[name] for name in streams]
    return {
        "streams": n,
        "rate_fps_per_stream": rate,
        "offered_fps": n * rate,
        "sender": sender,
        "receiver": receiver,
        "frames": len(results),
        "decoded": len(ok),
        "decoded_per_stream": {
            str(stream): sum(r[0] == name for r in ok) for name, stream in streams.items()
        },
        "complete": sum(r[3].get("datagrams_received") == r[3].get("datagrams_sent") for r in ok),
        "failed": len(results) - len(ok),
        "errors": sorted({str(r["error"]) for r in reports if "error" in r})[:5],
        "late_after_s": period,
        "late": sum(lat > period for lat in latencies),
        "fps": len(results) / wall,
        "latency_p50_s": float(np.percentile(latencies, 50)),
        "latency_p99_s": float(np.percentile(latencies, 99)),
        "latency_max_s": max(latencies),
        "encode_s": median_of(timing, "encode"),  # of the frames that have one
        "decode_s": median_of(timing, "decode"),
        "cpu_s_per_frame": cpu / len(results),
        "cpu_load": cpu / wall,  # out of os.cpu_count() cores
        "rss_peak_mib": rss,
        "rss_peak_mib_senders_max": max(senders_rss),
        "rss_peak_mib_all": round(sum(rss.values()), 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def median_of(timings: list[dict], key: str) -> float | None:
    values = [t[key] for t in timings if key in t]
    return statistics.median(values) if values else None


def stream_counts(most: int) -> list[int]:
    """1, 2, 4, ... up to ``most``, and ``most`` itself."""
    counts = [1]
    while counts[-1] * 2 < most:
        counts.append(counts[-1] * 2)
    return sorted({*counts, most})


def main_streams(args: argparse.Namespace) -> None:
    variants = args.stream_variant or ["default"]
    runs: dict[str, dict] = {}
    failed: dict[str, str] = {}

    def save() -> Path:  # after every run: a later one that fails loses nothing
        return write_json(
            args.out or STREAMS_OUT,
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "size": SIZE,
                "frames_per_stream": args.frames,
                "late": "latency (from the frame's due time to its report) > 1/rate",
                "runs": runs,
                "runs_failed": failed,
            },
        )

    for name in variants:
        sender, receiver = STREAM_VARIANTS[name]
        counts = args.counts or stream_counts(args.streams)
        for n in counts:
            key = f"{n} streams x {args.rate:g}/s, {name}"
            try:
                runs[key] = r = run_streams(n, args.rate, args.frames, sender, receiver)
            except SemnetError as exc:  # e.g. a daemon that did not start on a loaded machine
                failed[key] = str(exc)[:500]
                print(f"{key}: failed: {exc}", flush=True)
                save()
                continue
            print(f"{key}: {r['decoded']}/{r['frames']} decoded, {r['late']} late", flush=True)
            save()
    print(
        f"{'run':<48}{'fps':>6}{'p50 s':>7}{'p99 s':>7}{'late':>6}{'fail':>6}{'cpu s/f':>8}"
        f"{'load':>6}{'RSS tx':>8}{'RSS rx':>8}"
    )
    for name, r in runs.items():
        print(
            f"{name:<48}{r['fps']:>6.2f}{r['latency_p50_s']:>7.2f}{r['latency_p99_s']:>7.2f}"
            f"{r['late']:>6}{r['failed']:>6}{r['cpu_s_per_frame']:>8.2f}{r['cpu_load']:>6.2f}"
            f"{r['rss_peak_mib_senders_max']:>8.0f}{r['rss_peak_mib']['receiver']:>8.0f}"
        )
    print(f"wrote {save()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="per stream with --streams")
    parser.add_argument("--offered", type=float, default=4.0, help="frames/s; 0: skip that run")
    parser.add_argument("--out", default=None, help=f"default {DEFAULT_OUT.name}")
    parser.add_argument(
        "--streams", type=int, default=0, help="N: runs of 1, 2, 4 .. N streams instead"
    )
    parser.add_argument("--rate", type=float, default=0.5, help="frames/s per stream (--streams)")
    parser.add_argument(
        "--counts",
        type=lambda v: [int(n) for n in v.split(",")],
        help="stream counts to run instead of 1, 2, 4 .. N, e.g. 1,8",
    )
    parser.add_argument(
        "--stream-variant",
        action="append",
        choices=sorted(STREAM_VARIANTS),
        help="configs of a --streams run (repeat for several; default: default)",
    )
    args = parser.parse_args()
    if args.streams:
        main_streams(args)
        return
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
        args.out or DEFAULT_OUT,
        {"machine": platform.platform(), "cpus": os.cpu_count(), "size": SIZE, "runs": runs},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
