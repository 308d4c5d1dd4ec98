"""Regenerate results/multitask/step.json and step_response.png (issue 19): the A-MIJSCC loop
through the real daemons. A sender with mijscc-fmnist streams Fashion-MNIST test images through
the proxy; a third of the way in the proxy's forward loss steps from 1% to 30% (as `semnet ctl
proxy set`); the receiver's reports come back over the reverse path and the sender's end index
follows. Per frame: send time, end index, PSNR, the loss setting; and the settling time.

    .venv/bin/python scripts/step_response.py [--seconds 24] [--report-interval 0.2]

About 35 s of wall time on 2 cores (daemon start, the stream, shutdown).
"""

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from semnet.client import png_bytes, send_image
from semnet.experiments.multitask import settling_time
from semnet.models import fashion_mnist, zoo
from semnet.testbed import LocalTestbed

CODEC = "mijscc-fmnist"
BEFORE, AFTER = 0.01, 0.30  # the proxy's forward loss before and after the step


def write_pngs(folder: Path, n: int) -> list[tuple[Path, str]]:
    """The first n Fashion-MNIST test images (measured only) as RGB PNG files, with their
    class names."""
    images, labels = fashion_mnist.load("test")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (image, label) in enumerate(zip(images[:n], labels[:n], strict=True)):
        path = folder / f"fmnist-test-{i:05d}.png"
        path.write_bytes(png_bytes(np.repeat(image[:, :, None], 3, axis=2)))
        out.append((path, fashion_mnist.CLASS_NAMES[int(label)]))
    return out


def spec(loss: float) -> str:
    """The proxy's forward impairment for a loss rate (netem syntax)."""
    return f"loss random {100 * loss:g}%"


def frame_record(t: float, loss: float, report: dict, channels: int, label: str) -> dict:
    """What the results keep of one frame's report."""
    k = report.get("end_index")
    feedback = report.get("receiver_report") or {}
    top = (report.get("classes") or [{}])[0].get("label")
    return {
        "t": round(t, 3),
        "loss_setting": loss,
        "end_index": k,
        "channels": channels if k is None else k,  # None: no fresh report, every channel
        "psnr_db": report.get("psnr_db"),
        "bytes_sent": report.get("bytes_sent"),
        "datagram_loss": report.get("loss_ratio"),
        "reported_fraction_lost": feedback.get("fraction_lost"),
        "top_class": top,
        "correct": top == label,
        "error": report.get("error"),
    }


def stream(
    bed: LocalTestbed, images: list[tuple[Path, str]], args, channels: int
) -> tuple[list, float]:
    """Send the images in turn for ``args.seconds``, stepping the loss at a third of the way;
    (frame records, the step's time)."""
    frames, loss, t_step = [], BEFORE, None
    start = time.monotonic()
    i = 0
    while (t := time.monotonic() - start) < args.seconds:
        if t_step is None and t >= args.seconds / 3:
            bed.set_impairment(spec(AFTER))
            loss, t_step = AFTER, t
        path, label = images[i % len(images)]
        report = send_image(bed.http["sender"], path.name, path.read_bytes())
        frames.append(frame_record(t, loss, report, channels, label))
        i += 1
        time.sleep(args.gap)
    return frames, t_step


def mean_of(rows: list[dict], key: str) -> float | None:
    """The mean of a field over frame records (None for none)."""
    return round(sum(r[key] for r in rows) / len(rows), 3) if rows else None


def phase(frames: list[dict]) -> dict:
    """Means over the frames of one loss setting; PSNR and bytes over those decoded."""
    ok = [f for f in frames if f["psnr_db"] is not None]
    return {
        "frames": len(frames),
        "errors": sum(f["error"] is not None for f in frames),
        "mean_end_index": mean_of(frames, "channels"),
        "end_index_counts": dict(sorted(Counter(f["channels"] for f in frames).items())),
        "mean_psnr_db": mean_of(ok, "psnr_db"),
        "mean_bytes_sent": mean_of(ok, "bytes_sent"),
        "accuracy": mean_of(frames, "correct"),
    }


def running_mean(points: list[tuple[float, float]], n: int) -> tuple[list, list]:
    """(times, means over the last n values): per-frame PSNR varies more by image than by
    channel, the running mean shows the step."""
    values = [v for _, v in points]
    means = [sum(values[max(0, i - n + 1) : i + 1]) / min(n, i + 1) for i in range(len(values))]
    return [t for t, _ in points], means


def plot(result: dict, path: Path) -> None:
    """End index and PSNR against time, the step as a vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames, t_step = result["frames"], result["t_step"]
    t = [f["t"] for f in frames]
    fig, (ax_k, ax_p) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax_k.step(t, [f["channels"] for f in frames], where="post", label="end index k (sent)")
    ax_r = ax_k.twinx()
    lost = [(f["t"], f["reported_fraction_lost"]) for f in frames]
    lost = [(a, b) for a, b in lost if b is not None]
    ax_r.plot(*zip(*lost, strict=True), "C1.", ms=3, label="reported fraction lost")
    ax_r.set_ylabel("reported fraction lost", color="C1")
    ax_k.set_ylabel("end index k (channels sent)")
    ok = [(f["t"], f["psnr_db"]) for f in frames if f["psnr_db"] is not None]
    ax_p.plot(*zip(*ok, strict=True), ".", ms=3, label="per frame")
    ax_p.plot(*running_mean(ok, 20), "k-", label="mean of the last 20 frames")
    ax_p.legend(fontsize=8, loc="lower left")
    ax_p.set_ylabel("PSNR (dB)")
    ax_p.set_xlabel("time (s)")
    settle = result["settling"]
    for ax in (ax_k, ax_p):
        ax.axvline(t_step, color="r", ls="--")
        ax.grid(alpha=0.3)
    if settle["settling_s"] is not None:
        ax_k.axvline(t_step + settle["settling_s"], color="g", ls=":")
    ax_k.axhline(settle["steady"], color="g", ls=":", lw=1, label="level after the step (median)")
    ax_k.axhline(
        result["end_index_for_setting"]["after"],
        color="0.4",
        ls="-.",
        lw=1,
        label=f"k the codec gives for {100 * AFTER:g}% loss",
    )
    ax_k.legend(fontsize=8, loc="upper left")
    ax_k.set_title(
        f"{CODEC}: forward loss {100 * BEFORE:g}% -> {100 * AFTER:g}% at {t_step:.1f} s; "
        f"k settles at {settle['steady']} after {settle['settling_s']:.2f} s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/multitask")
    ap.add_argument("--seconds", type=float, default=24.0)
    ap.add_argument("--report-interval", type=float, default=0.2)
    ap.add_argument("--gap", type=float, default=0.02, help="seconds between frames")
    ap.add_argument(
        "--deadline",
        type=float,
        default=0.1,
        help="the receiver's frame deadline: a frame that lost a datagram waits this long, so "
        "it sets the frame rate under loss and with it the datagrams each report counts",
    )
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    codec = zoo.load(CODEC)
    channels = codec.latent_channels
    k_before, k_after = (codec.end_index((loss, 1.0)) for loss in (BEFORE, AFTER))
    sender = {"codec": CODEC, "threads": 1, "backend": "eager", "datagram_size": 100}
    receiver = {
        "threads": 1,
        "backend": "eager",
        "report_interval": args.report_interval,
        "deadline": args.deadline,
        "perceptual": False,
        "save_images": False,
    }
    with tempfile.TemporaryDirectory() as tmp:
        images = write_pngs(Path(tmp) / "images", args.images)
        bed_args = {"impair": spec(BEFORE), "seed": args.seed, "sender": sender}
        with LocalTestbed(Path(tmp) / "bed", receiver=receiver, **bed_args) as bed:
            frames, t_step = stream(bed, images, args, channels)
    times = [f["t"] for f in frames]
    ks = [f["channels"] for f in frames]
    result = {
        "codec": CODEC,
        "images": f"fashion-mnist test, the first {args.images}, in turn",
        "loss_before": BEFORE,
        "loss_after": AFTER,
        "report_interval_s": args.report_interval,
        "receiver_deadline_s": args.deadline,
        "datagram_size": sender["datagram_size"],
        "t_step": round(t_step, 3),
        # the new level the loop settles around, and the one the codec gives for the set loss
        "settling": settling_time(times, ks, t_step),
        "end_index_for_setting": {"before": k_before, "after": k_after},
        "settling_to_setting": settling_time(times, ks, t_step, steady=k_after),
        "phases": {
            "before": phase([f for f in frames if f["t"] < t_step]),
            "after": phase([f for f in frames if f["t"] >= t_step]),
        },
        "frames": frames,
    }
    (out / "step.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out / "step_response.png")
    print(json.dumps({k: v for k, v in result.items() if k != "frames"}, indent=1))


if __name__ == "__main__":
    main()
