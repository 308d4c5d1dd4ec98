"""How unevenly a codec spreads the picture over its latent channels (paper 001 §IV-A).

For each codec and photo: quantize the latent as the sender does, then zero one channel at a
time (what the receiver's zero fill does when that channel's datagram is lost) and record the
PSNR drop. An even codec loses about the same whatever channel goes; the paper's CNN baseline
has a few dominant channels whose loss costs far more than the rest.

    python scripts/channel_importance.py --codec cnn-c64,cnn-sem,swin \
        --images astronaut,coffee,china --out results/partitioning/channel_importance.json
"""

import json
import statistics
from pathlib import Path

import click
import numpy as np
import torch

from semnet.core import quant
from semnet.core.quant import QuantKind
from semnet.eval_images import eval_image
from semnet.models import zoo
from semnet.models.metrics import psnr
from semnet.pipeline.tensors import to_image, to_tensor

CHUNK = 8  # decodes per batch: 8 latents of a 512x768 photo fit well within a few GB
CPU = torch.device("cpu")


def psnr_db(image: np.ndarray, decoded: torch.Tensor) -> float:
    """PSNR of the uint8 picture the receiver would save, as the pipeline scores it."""
    return psnr(to_tensor(to_image(decoded), CPU), to_tensor(image, CPU))


def quantized_latent(codec, image: np.ndarray) -> torch.Tensor:
    """The latent as the receiver sees it with nothing lost (uniform quantizer of the codec)."""
    with torch.inference_mode():
        y = codec.encode(to_tensor(image, CPU))[0].float().numpy()
    q = codec.quant
    spec = quant.fit(QuantKind[q.kind.upper()], q.bits, y=None, lo=q.lo, hi=q.hi)
    return torch.from_numpy(quant.dequantize(spec, quant.quantize(spec, y)))


def drops(codec, image: np.ndarray) -> tuple[float, list[float]]:
    """Lossless PSNR and, per channel, the PSNR lost when that channel alone is zeroed."""
    y = quantized_latent(codec, image)
    h, w = image.shape[:2]
    with torch.inference_mode():
        full = psnr_db(image, codec.decode(y[None], h, w))
        out = []
        for start in range(0, y.shape[0], CHUNK):
            batch = y[None].repeat(min(CHUNK, y.shape[0] - start), 1, 1, 1)
            for j in range(batch.shape[0]):
                batch[j, start + j] = 0
            decoded = codec.decode(batch, h, w)
            out += [full - psnr_db(image, decoded[j : j + 1]) for j in range(len(batch))]
    return full, out


def summary(per_image: dict[str, list[float]]) -> dict:
    """Spread of the per-channel drops (averaged over photos): mean, worst, sd, and how many
    channels cost more than 0.1 dB (a drop can be negative: a channel erasure-trained codecs
    learned to do without)."""
    mean = np.mean(list(per_image.values()), axis=0)
    return {
        "mean_drop_db": float(mean.mean()),
        "max_drop_db": float(mean.max()),
        "sd_drop_db": float(mean.std()),
        "channels_over_0.1_db": int((mean > 0.1).sum()),
    }


@click.command()
@click.option("--codec", "codecs", default=zoo.DEFAULT_CODEC, help="zoo codecs, comma-separated")
@click.option("--images", default="astronaut,coffee,china", help="evaluation photo names")
@click.option("--threads", default=2, show_default=True)
@click.option("--out", default="channel_importance.json", type=click.Path(dir_okay=False))
def main(codecs: str, images: str, threads: int, out: str) -> None:
    torch.set_num_threads(threads)
    photos = {n: eval_image(n) for n in images.split(",")}
    result = {}
    for name in codecs.split(","):
        codec = zoo.load(name)
        lossless, per_image = {}, {}
        for n, image in photos.items():
            lossless[n], per_image[n] = drops(codec, image)
        result[name] = {"lossless_psnr_db": lossless, "drops_db": per_image, **summary(per_image)}
        s = result[name]
        click.echo(
            f"{name:10s} lossless {statistics.fmean(lossless.values()):.2f} dB  one channel lost:"
            f" mean {s['mean_drop_db']:.3f} max {s['max_drop_db']:.3f} sd {s['sd_drop_db']:.3f}"
            f" dB, {s['channels_over_0.1_db']} channels over 0.1 dB"
        )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"images": list(photos), "codecs": result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
