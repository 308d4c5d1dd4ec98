"""What a multi-task (MIJSCC) zoo entry records: Fashion-MNIST accuracy and PSNR from the
received latent against channel loss, adaptive (end index) against fixed-length, agreement with
EfficientNet-Lite0 on the evaluation photos, and the standard reconstruction measurement.

Reads evaluation and test data only; never trains.
"""

import math
from typing import Any

import torch

from semnet.models import fashion_mnist
from semnet.models.mijscc import MIJSCCCodec, prefix_mask
from semnet.models.mijscc_train import (
    MultitaskConfig,
    erasure_mask,
    psnr_db,
    quantized,
    receive,
)

EVAL_LOSSES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def payload_bytes(model: MIJSCCCodec, k: int, h: int, w: int) -> int:
    """Bytes of a k-channel prefix of an h x w image's latent at the codec's bits (no headers)."""
    _, lh, lw = model.latent_shape(h, w)
    return math.ceil(k * lh * lw * model.quant.bits / 8)


@torch.no_grad()
def received_outputs(
    model: MIJSCCCodec, y: torch.Tensor, got: torch.Tensor, h: int, w: int, attention: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstructions, logits) of quantized latents ``y`` with channels ``got`` (n, C)."""
    if attention:
        z = receive(model, y, got)
    else:
        z = torch.where(got[:, :, None, None], y, torch.zeros(()))
    return model.decoder(z)[..., :h, :w].clamp(0, 1), model.head(z)


@torch.no_grad()
def evaluate_fashion(model: MIJSCCCodec, seed: int = 1, limit: int | None = None) -> dict:
    """Fashion-MNIST test set: accuracy from the latent and PSNR against i.i.d. channel loss
    (zero fill, the receiver's attention), the same without attention, and the adaptive
    prefix against sending every channel."""
    images, labels = fashion_mnist.load("test")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(fashion_mnist.as_rgb(images))
    t = torch.from_numpy(labels)
    n, c = len(x), model.latent_channels
    h, w = x.shape[-2:]
    y = torch.cat([quantized(model, part) for part in x.split(1000)])
    by_loss, no_attention = {}, {}
    for i, p in enumerate(EVAL_LOSSES):
        gen = torch.Generator().manual_seed(seed + i)
        got = erasure_mask(n, c, torch.full((n,), p), torch.ones(n), gen)
        for out, att in ((by_loss, True), (no_attention, False)):
            x_hat, logits = received_outputs(model, y, got, h, w, att)
            out[f"{p:g}"] = {
                "accuracy": round(float((logits.argmax(1) == t).float().mean()), 4),
                "psnr_db": round(float(psnr_db(x_hat, x).mean()), 3),
            }
    adaptive = {}
    full_bytes = payload_bytes(model, c, h, w)
    for i, p in enumerate((0.0, 0.1, 0.2, 0.3)):
        k = model.end_index((p, 1.0))
        gen = torch.Generator().manual_seed(seed + 100 + i)
        kept = erasure_mask(n, c, torch.full((n,), p), torch.ones(n), gen)
        fixed = received_outputs(model, y, kept, h, w)
        adapt = received_outputs(model, y, kept & prefix_mask(k, c)[None], h, w)
        psnr_fixed = float(psnr_db(fixed[0], x).mean())
        psnr_adapt = float(psnr_db(adapt[0], x).mean())
        adaptive[f"{p:g}"] = {
            "end_index": k,
            "bytes_fixed": full_bytes,
            "bytes_adaptive": payload_bytes(model, k, h, w),
            "bytes_saved": round(1 - payload_bytes(model, k, h, w) / full_bytes, 4),
            "psnr_fixed_db": round(psnr_fixed, 3),
            "psnr_adaptive_db": round(psnr_adapt, 3),
            "psnr_cost_db": round(psnr_fixed - psnr_adapt, 3),
            "accuracy_fixed": round(float((fixed[1].argmax(1) == t).float().mean()), 4),
            "accuracy_adaptive": round(float((adapt[1].argmax(1) == t).float().mean()), 4),
        }
    return {
        "images": f"fashion-mnist test ({n})",
        "loss": "i.i.d. whole channels, zero fill, asymmetric quantizer",
        "by_loss": by_loss,
        "by_loss_without_attention": no_attention,
        "adaptive_vs_fixed": adaptive,
    }


@torch.no_grad()
def evaluate_photos_agreement(model: MIJSCCCodec, seed: int = 1) -> dict:
    """Evaluation photos: does the head's class on the received latent match EfficientNet-
    Lite0's top-1 on the original photo? (at each loss rate, i.i.d. channels, zero fill)."""
    from semnet.eval_images import eval_images
    from semnet.models import classifier

    images = eval_images()
    agree: dict[str, list[bool]] = {f"{p:g}": [] for p in EVAL_LOSSES}
    for j, (_, image) in enumerate(sorted(images.items())):
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        want = int(classifier.logits(x).argmax(1))
        y = quantized(model, x)
        for i, p in enumerate(EVAL_LOSSES):
            gen = torch.Generator().manual_seed(seed + 10 * j + i)
            c = model.latent_channels
            got = erasure_mask(1, c, torch.full((1,), p), torch.ones(1), gen)
            logits = model.head(receive(model, y, got))
            agree[f"{p:g}"].append(int(logits.argmax(1)) == want)
    return {
        "images": sorted(images),
        "agreement_by_loss": {p: round(sum(v) / len(v), 4) for p, v in agree.items()},
    }


def evaluate(model: MIJSCCCodec, cfg: MultitaskConfig, photos: bool = True) -> dict:
    """The manifest's metrics: the multi-task numbers, and with ``photos`` the standard
    reconstruction measurement on the evaluation photos (by_loss, bpp_on_wire)."""
    metrics: dict[str, Any] = {}
    if photos:
        from semnet.eval_images import eval_images
        from semnet.pipeline.measure import measure

        metrics.update(measure(model, cfg.codec_id, eval_images()))
    if cfg.data == "fashion-mnist":
        metrics["fashion_mnist"] = evaluate_fashion(model, cfg.train.seed)
    else:
        metrics["photo_agreement"] = evaluate_photos_agreement(model, cfg.train.seed)
    return metrics
