"""What forged maximum-size frames cost a receiver with its default config and no key.

A hostile peer sends, ``--rate`` times a second for ``--seconds``, one 65 KB datagram claiming a
Full HD frame (``semnet.testbed.forged_frames``) straight to the receiver's UDP port, while a
legitimate 512x768 frame goes through the whole testbed every few seconds. Two receivers run one
after the other: the default (frames nobody announced are dropped, counted) and
``decode_unannounced: true`` (every forged frame is decoded and saved, as before issue 21). For
each: the receiver's peak RSS, bytes written to its output folder, and the legitimate frames'
latency (round trip of `semnet send`) under attack against the same frames sent quietly before
and after it; the ratio of the medians, under/quiet, is the figure.

    .venv/bin/python benchmarks/forged_frames.py [--seconds 60] [--rate 2] [--out FILE]

Loopback only, bounded in count and time. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from results_io import write_json  # noqa: E402 (sibling module; benchmarks run as scripts)

from semnet.testbed import LocalTestbed, by_label, forged_frames, metric_totals

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "forged_frames.json"
LEGIT_EVERY = 3.0  # seconds between legitimate frames under attack


def photo() -> np.ndarray:
    from semnet.images import load_image

    return load_image(ROOT / "semnet" / "demo_images" / "coffee.png")[:512, :768]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def timed_send(bed: LocalTestbed, image: np.ndarray, name: str) -> float:
    t0 = time.perf_counter()
    report = bed.send(image, name)
    if "error" in report:
        raise SystemExit(f"legitimate frame failed: {report['error']}")
    return time.perf_counter() - t0


def run(receiver: dict, seconds: float, rate: float, image: np.ndarray) -> dict:
    with tempfile.TemporaryDirectory() as tmp, LocalTestbed(tmp, receiver=receiver) as bed:
        out = Path(tmp) / "received"
        timed_send(bed, image, "warm.png")
        quiet = [timed_send(bed, image, f"quiet-{i}.png") for i in range(3)]
        disk_before = folder_bytes(out)
        ammo = forged_frames(int(seconds * rate), 1080, 1920)
        stop = threading.Event()

        def attack() -> None:
            bed.inject("receiver", iter(ammo), rate=rate)
            stop.set()

        attacker = threading.Thread(target=attack)
        attacker.start()
        under = []
        while not stop.is_set():
            under.append(timed_send(bed, image, f"under-{len(under)}.png"))
            stop.wait(LEGIT_EVERY)
        attacker.join()
        time.sleep(2.0)  # the last forged frames reach their deadline
        disk = folder_bytes(out) - disk_before  # the legitimate frames' files included
        quiet += [timed_send(bed, image, f"quiet-after-{i}.png") for i in range(3)]
        totals = metric_totals(bed.metrics("receiver"))
        return {
            "receiver": receiver,
            "forged_frames": len(ammo),
            "frames_dropped": by_label(totals, "semnet_receiver_frames_dropped_total", "reason"),
            "rss_peak_mib": bed.memory("receiver")["hwm"] / 2**20,
            "disk_written_mib": disk / 2**20,
            "latency_quiet_s": statistics.median(quiet),
            "latency_under_attack_s": statistics.median(under),
            "latency_ratio": statistics.median(under) / statistics.median(quiet),
            "legitimate_frames_under_attack": len(under),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=2.0, help="forged frames per second")
    parser.add_argument("--unguarded-seconds", type=float, default=20.0)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    image = photo()
    runs = {
        "default": run({}, args.seconds, args.rate, image),
        "decode_unannounced": run(
            {"decode_unannounced": True}, args.unguarded_seconds, args.rate, image
        ),
    }
    print(f"{'receiver':<20}{'RSS peak MiB':>14}{'disk MiB':>10}{'latency x':>11}  dropped")
    for name, r in runs.items():
        print(
            f"{name:<20}{r['rss_peak_mib']:>14.0f}{r['disk_written_mib']:>10.1f}"
            f"{r['latency_ratio']:>11.2f}  {r['frames_dropped']}"
        )
    path = write_json(
        args.out,
        {"machine": platform.platform(), "rate": args.rate, "runs": runs},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
