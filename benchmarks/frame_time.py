"""Where one frame's time goes on CPU: encode, packetize, send, reassemble, fill, decode.

A 512x768 photo goes through the same library calls the sender and receiver daemons make; the
datagrams leave over a real UDP socket on 127.0.0.1 (a local socket drains them after each
timed burst; only the sender side is timed). Each stage is timed over ``--repeat`` runs after
one warm-up; the table gives median and p90 in ms and each stage's share of the summed medians.
A second table times encode and decode with ``channels_last`` against the default memory
format, alternating the two in the same run, and reports the ratio.

    .venv/bin/python benchmarks/frame_time.py [--repeat 5] [--threads 2] [--out FILE]

This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from results_io import write_json  # noqa: E402 (sibling module; benchmarks run as scripts)

from semnet.core import quant
from semnet.core.reassembly import Reassembler
from semnet.images import load_image
from semnet.models import zoo
from semnet.models.cnn import CNNCodec
from semnet.models.codec import Codec
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.tensors import to_image, to_tensor

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "frame_time.json"
DEMO = ROOT / "semnet" / "demo_images" / "coffee.png"
STAGES = ("encode", "packetize", "send", "reassemble", "fill", "decode")
CPU = torch.device("cpu")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of a small sample."""
    return float(np.percentile(values, q))


def fit_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize (Lanczos) to height x width."""
    h, w = image.shape[:2]
    if w * height > h * width:  # too wide
        cw = round(h * width / height)
        image = image[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = round(w * height / width)
        image = image[(h - ch) // 2 : (h - ch) // 2 + ch]
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), Image.Resampling.LANCZOS
    )
    return np.array(resized)  # writable: torch.from_numpy warns on read-only arrays


def pick_image(path: str | None, height: int, width: int) -> tuple[np.ndarray, str]:
    if path:
        return fit_to(load_image(path), height, width), path
    try:
        from semnet.eval_images import eval_image

        return fit_to(eval_image("coffee"), height, width), "eval_images: coffee (scikit-image)"
    except Exception:  # scikit-image missing: the bundled demo copy of the same photo
        return fit_to(load_image(DEMO), height, width), f"{DEMO.relative_to(ROOT)}"


def pick_codec(name: str) -> tuple[Codec, int, dict]:
    """The shipped codec when its zoo entry exists, else a random one of the same shape."""
    if (zoo.ZOO_DIR / f"{name}.json").exists():
        codec = zoo.load(name)
        e = zoo.entry(name)
        info = {
            "source": "zoo",
            "name": name,
            "file": e.file,
            "steps": e.steps,
            "architecture": e.architecture,
            "params": e.params,
        }
        return codec.eval(), e.codec_id, info
    torch.manual_seed(0)
    params = {"cbr": 1 / 12, "hidden": 96, "bits": 5}
    codec = CNNCodec(**params).eval()
    codec.channel_mean = torch.zeros(codec.latent_channels)
    info = {
        "source": "random",
        "name": f"random CNNCodec (no zoo entry {name!r})",
        "architecture": "cnn",
        "params": params,
    }
    return codec, 1, info


class Drain:
    """A local UDP socket that receives the burst; drained outside the timed region."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(1.0)
        self.address = self.sock.getsockname()
        self.buf = bytearray(65535)

    def drain(self, expected: int) -> int:
        """Read until ``expected`` datagrams arrived or the socket stays quiet for 1 s."""
        got = 0
        while got < expected:
            try:
                self.sock.recv_into(self.buf)
            except TimeoutError:
                break
            got += 1
        return got

    def close(self) -> None:
        self.sock.close()


def one_frame(
    image: np.ndarray,
    codec: Codec,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    fill: Callable,
    sender: socket.socket,
    drain: Drain,
) -> tuple[dict[str, float], np.ndarray, list[bytes], int]:
    """Time every stage of one frame with the library calls the daemons make."""
    t: dict[str, float] = {}
    # Sender: FrameEncoder times encode (to_tensor + codec.encode) and packetize itself.
    sent = encoder.encode(image)
    t["encode"], t["packetize"] = sent.timings["encode"], sent.timings["packetize"]
    sendto, address = sender.sendto, drain.address
    t0 = time.perf_counter()
    for data in sent.datagrams:
        sendto(data, address)
    t["send"] = time.perf_counter() - t0
    arrived = drain.drain(len(sent.datagrams))
    # Receiver: reassembly of every datagram, then depacketize + dequantize + fill, then decode.
    reassembler = Reassembler(deadline=10.0)
    frames = []
    t0 = time.perf_counter()
    for data in sent.datagrams:
        frames += reassembler.ingest(data, time.monotonic())
    t["reassemble"] = time.perf_counter() - t0
    (frame,) = frames
    desc = frame.descriptor
    t0 = time.perf_counter()
    q, mask, _ = decoder.depacketize(frame)  # fixed-width or entropy coded
    y = torch.from_numpy(quant.dequantize(desc.quant, q))[None]
    received = torch.from_numpy(mask)[None]
    with torch.inference_mode():
        filled = fill(y, received, codec)
        t["fill"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = to_image(codec.decode(filled, desc.image_h, desc.image_w))
    t["decode"] = time.perf_counter() - t0
    return t, out, sent.datagrams, arrived


def time_call(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def memory_formats(codec: Codec, image: np.ndarray, repeat: int) -> dict:
    """Encode and decode in the default format and in channels_last, alternating per run."""
    h, w = image.shape[:2]
    last = copy.deepcopy(codec).to(memory_format=torch.channels_last)
    x = to_tensor(image, CPU)
    x_last = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = codec.encode(x)
        y_last = y.contiguous(memory_format=torch.channels_last)
        variants = {
            ("encode", "default"): lambda: codec.encode(x),
            ("encode", "channels_last"): lambda: last.encode(x_last),
            ("decode", "default"): lambda: codec.decode(y, h, w),
            ("decode", "channels_last"): lambda: last.decode(y_last, h, w),
        }
        agree = {
            "encode_max_abs_diff": float((last.encode(x_last) - y).abs().max()),
            "decode_max_abs_diff": float(
                (last.decode(y_last, h, w) - codec.decode(y, h, w)).abs().max()
            ),
        }
        for fn in variants.values():  # warm-up
            fn()
        samples: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
        for _ in range(repeat):
            for key, fn in variants.items():
                samples[key].append(time_call(fn))
    result: dict = {"agreement": agree}
    for stage in ("encode", "decode"):
        d, c = samples[(stage, "default")], samples[(stage, "channels_last")]
        result[stage] = {
            "default_ms": summary(d),
            "channels_last_ms": summary(c),
            "ratio_channels_last_over_default": statistics.median(c) / statistics.median(d),
        }
    return result


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1e3 for s in seconds]
    return {"median": statistics.median(ms), "p90": percentile(ms, 90), "min": min(ms)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="timed runs per stage (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--image", help="photo to use (centre-cropped and resized to --size)")
    p.add_argument("--size", default="512x768", help="HxW of the frame (default 512x768)")
    p.add_argument(
        "--codec", default=zoo.DEFAULT_CODEC, help="zoo codec name (default: the zoo default)"
    )
    p.add_argument("--datagram-size", type=int, default=1200)
    p.add_argument("--fill", default="zero")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output file")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    height, width = (int(v) for v in args.size.lower().split("x"))

    torch.set_num_threads(args.threads)
    image, image_source = pick_image(args.image, height, width)
    load_at_start = os.getloadavg()[0]
    codec, codec_id, codec_info = pick_codec(args.codec)
    path = PathSettings(datagram_size=args.datagram_size)
    encoder = FrameEncoder(codec, codec_id, path, stream=1, seed=1)
    fill = get_fill(args.fill)
    print(
        f"codec: {codec_info['name']} ({codec_info['source']}), image: {image_source}, "
        f"{height}x{width}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {load_at_start:.2f}"
    )

    drain = Drain()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 2**20)
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    lost_on_loopback = 0
    try:
        decoder = FrameDecoder(lambda _: codec, fill)
        _, out, datagrams, _ = one_frame(image, codec, encoder, decoder, fill, sender, drain)
        # The hand-timed receiver chain must be the pipeline's: compare with FrameDecoder.
        check = FrameEncoder(codec, codec_id, path, stream=1, seed=1)
        frames = []
        r = Reassembler(deadline=10.0)
        for data in check.encode(image).datagrams:
            frames += r.ingest(data, 0.0)
        reference = FrameDecoder(lambda _: codec, fill).decode(frames[0]).image
        if not np.array_equal(out, reference):
            raise SystemExit("timed chain disagrees with FrameDecoder: benchmark is wrong")
        for _ in range(args.repeat):
            t, _, datagrams, arrived = one_frame(
                image, codec, encoder, decoder, fill, sender, drain
            )
            lost_on_loopback += len(datagrams) - arrived
            for stage in STAGES:
                samples[stage].append(t[stage])
        formats = memory_formats(codec, image, args.repeat)
    finally:
        sender.close()
        drain.close()

    stages = {s: summary(v) for s, v in samples.items()}
    total = sum(v["median"] for v in stages.values())
    for v in stages.values():
        v["share"] = v["median"] / total
    n_bytes = sum(len(d) for d in datagrams)

    print(
        f"\n{len(datagrams)} datagrams, {n_bytes} bytes ({8 * n_bytes / (height * width):.3f} "
        f"bpp), {args.repeat} runs after 1 warm-up; {lost_on_loopback} lost on loopback"
    )
    print(f"{'stage':<12}{'median ms':>11}{'p90 ms':>10}{'share':>8}")
    for s, v in stages.items():
        print(f"{s:<12}{v['median']:>11.2f}{v['p90']:>10.2f}{v['share']:>8.1%}")
    print(f"{'total':<12}{total:>11.2f}")
    print(f"\n{'memory format':<14}{'default ms':>11}{'channels_last ms':>18}{'ratio':>8}")
    for s in ("encode", "decode"):
        f = formats[s]
        print(
            f"{s:<14}{f['default_ms']['median']:>11.1f}{f['channels_last_ms']['median']:>18.1f}"
            f"{f['ratio_channels_last_over_default']:>8.2f}"
        )
    a = formats["agreement"]
    print(
        f"(ratio = channels_last / default, medians; max |diff| encode "
        f"{a['encode_max_abs_diff']:.1e}, decode {a['decode_max_abs_diff']:.1e})"
    )

    result = {
        "benchmark": "frame_time",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1m_at_start": load_at_start,
        },
        "codec": codec_info,
        "image": {"source": image_source, "height": height, "width": width},
        "path": {
            "datagram_size": args.datagram_size,
            "partition": path.partition_name,
            "interleave": path.interleave,
            "fill": args.fill,
        },
        "repeat": args.repeat,
        "datagrams": len(datagrams),
        "bytes": n_bytes,
        "lost_on_loopback": lost_on_loopback,
        "stages_ms": stages,
        "total_median_ms": total,
        "memory_format": formats,
    }
    print(f"\nwrote {write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
