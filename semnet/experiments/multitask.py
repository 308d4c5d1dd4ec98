"""What a multi-task (MIJSCC) zoo entry records: Fashion-MNIST accuracy and PSNR from the
received latent against channel loss, adaptive (end index) against fixed-length, agreement with
EfficientNet-Lite0 on the evaluation photos, and the standard reconstruction measurement; and the
results of issue 19 (scripts/multitask_results.py, scripts/step_response.py): a sweep of the
threshold η against loss, equal-bytes comparisons, the settling time of the online loop.

Reads evaluation and test data only; never trains.
"""

import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
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


def fashion_test(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n, 3, 28, 28) in [0, 1], labels (n,)): the first ``limit`` Fashion-MNIST test
    images (measured only, never trained on)."""
    images, labels = fashion_mnist.load("test")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return torch.from_numpy(fashion_mnist.as_rgb(images)), torch.from_numpy(labels)


def quantized_all(model: MIJSCCCodec, x: torch.Tensor) -> torch.Tensor:
    """The wire latents of a whole set, in parts of 1000 (bounded memory)."""
    return torch.cat([quantized(model, part) for part in x.split(1000)])


@torch.no_grad()
def prefix_scores(
    model: MIJSCCCodec, y: torch.Tensor, x: torch.Tensor, t: torch.Tensor, got: torch.Tensor, k: int
) -> dict[str, float]:
    """Mean PSNR, accuracy and payload bytes when channels 0..k-1 are sent and ``got`` (n, C)
    say which would arrive: the same erasure draw for every k keeps comparisons paired."""
    h, w = x.shape[-2:]
    x_hat, logits = received_outputs(
        model, y, got & prefix_mask(k, model.latent_channels)[None], h, w
    )
    return {
        "end_index": k,
        "bytes": payload_bytes(model, k, h, w),
        "psnr_db": float(psnr_db(x_hat, x).mean()),
        "accuracy": float((logits.argmax(1) == t).float().mean()),
    }


@torch.no_grad()
def evaluate_fashion(model: MIJSCCCodec, seed: int = 1, limit: int | None = None) -> dict:
    """Fashion-MNIST test set: accuracy from the latent and PSNR against i.i.d. channel loss
    (zero fill, the receiver's attention), the same without attention, and the adaptive
    prefix against sending every channel."""
    x, t = fashion_test(limit)
    n, c = len(x), model.latent_channels
    h, w = x.shape[-2:]
    y = quantized_all(model, x)
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
    for i, p in enumerate((0.0, 0.1, 0.2, 0.3)):
        k = model.end_index((p, 1.0))
        gen = torch.Generator().manual_seed(seed + 100 + i)
        kept = erasure_mask(n, c, torch.full((n,), p), torch.ones(n), gen)
        fixed = prefix_scores(model, y, x, t, kept, c)
        adapt = prefix_scores(model, y, x, t, kept, k)
        adaptive[f"{p:g}"] = {
            "end_index": k,
            "bytes_fixed": fixed["bytes"],
            "bytes_adaptive": adapt["bytes"],
            "bytes_saved": round(1 - adapt["bytes"] / fixed["bytes"], 4),
            "psnr_fixed_db": round(fixed["psnr_db"], 3),
            "psnr_adaptive_db": round(adapt["psnr_db"], 3),
            "psnr_cost_db": round(fixed["psnr_db"] - adapt["psnr_db"], 3),
            "accuracy_fixed": round(fixed["accuracy"], 4),
            "accuracy_adaptive": round(adapt["accuracy"], 4),
        }
    return {
        "images": f"fashion-mnist test ({n})",
        "loss": "i.i.d. whole channels, zero fill, asymmetric quantizer",
        "by_loss": by_loss,
        "by_loss_without_attention": no_attention,
        "adaptive_vs_fixed": adaptive,
    }


# --- issue 19's results: η against loss, equal bytes, the online loop's settling ----------


@contextmanager
def threshold(model: MIJSCCCodec, eta: float) -> Iterator[None]:
    """``model.eta`` set to ``eta`` inside the block, restored after: zoo.load hands out one
    cached model, so a change that outlived the block would leak into every later user."""
    shipped = model.eta
    model.eta = float(eta)
    try:
        yield
    finally:
        model.eta = shipped


def prefix_scorer(
    model: MIJSCCCodec, y: torch.Tensor, x: torch.Tensor, t: torch.Tensor, got: torch.Tensor
) -> Callable[[int], dict[str, float]]:
    """k -> :func:`prefix_scores` under one erasure draw, each k decoded once (η values that
    pick the same k share it)."""
    return cache(lambda k: prefix_scores(model, y, x, t, got, k))


def time_share(lo: dict[str, float], hi: dict[str, float], target: float) -> dict[str, float]:
    """A fixed-length sender that spends ``target`` mean bytes by sending prefix ``lo`` on a
    fraction of frames and ``hi`` on the rest: its mean scores are linear in that fraction."""
    span = hi["bytes"] - lo["bytes"]
    if not lo["bytes"] <= target <= hi["bytes"]:
        raise ValueError(f"{target} bytes are not between {lo['bytes']} and {hi['bytes']}")
    a = 0.0 if span == 0 else (target - lo["bytes"]) / span
    return {key: (1 - a) * lo[key] + a * hi[key] for key in ("bytes", "psnr_db", "accuracy")}


def equal_mean_bytes(
    model: MIJSCCCodec,
    scorers: dict[float, Callable[[int], dict[str, float]]],
    adaptive: dict[float, dict[str, float]],
    h: int,
    w: int,
) -> dict[str, dict[str, float]]:
    """Adaptive against a fixed-length sender with the same mean bytes over the loss rates (a
    uniform mix of them): per loss rate, both scores. At one loss rate equal bytes would mean
    the same prefix of this nested codec, identical by construction; over a mix, the adaptive
    sender moves bytes from clean conditions to lossy ones."""
    target = sum(a["bytes"] for a in adaptive.values()) / len(adaptive)
    ks = range(1, model.latent_channels + 1)
    lo = max(k for k in ks if payload_bytes(model, k, h, w) <= target)
    hi = min(k for k in ks if payload_bytes(model, k, h, w) >= target)
    return {
        f"{p:g}": {
            "adaptive": adaptive[p],
            "fixed": time_share(score(lo), score(hi), target) | {"end_index": (lo, hi)},
        }
        for p, score in scorers.items()
    }


def rounded(scores: dict[str, Any]) -> dict[str, Any]:
    """Scores as the results files print them (PSNR in mdB, accuracy to 0.01 points)."""
    digits = {"psnr_db": 3, "accuracy": 4, "bytes": 2}
    return {k: round(v, digits[k]) if k in digits else v for k, v in scores.items()}


@torch.no_grad()
def loss_sweep(
    model: MIJSCCCodec,
    x: torch.Tensor,
    t: torch.Tensor,
    losses: Sequence[float],
    etas: Sequence[float],
    seed: int = 1,
    curve_loss: float = 0.3,
) -> dict:
    """Fixed-length (every channel) and A-MIJSCC at each threshold η against i.i.d. channel
    loss, one paired erasure draw per loss rate; the fixed-length family at every prefix at
    ``curve_loss`` (PSNR against bytes); adaptive against fixed at equal mean bytes."""
    n, c = len(x), model.latent_channels
    h, w = x.shape[-2:]
    y = quantized_all(model, x)
    scorers = {}
    for i, p in enumerate(losses):
        gen = torch.Generator().manual_seed(seed + 200 + i)
        got = erasure_mask(n, c, torch.full((n,), float(p)), torch.ones(n), gen)
        scorers[p] = prefix_scorer(model, y, x, t, got)
    rows, equal = [], {}
    for p, score in scorers.items():
        rows.append({"loss": p, "scheme": "fixed", "eta": None, **rounded(score(c))})
    for eta in etas:
        with threshold(model, eta):
            adaptive = {p: score(model.end_index((p, 1.0))) for p, score in scorers.items()}
        rows += [
            {"loss": p, "scheme": "adaptive", "eta": eta, **rounded(a)} for p, a in adaptive.items()
        ]
        pairs = equal_mean_bytes(model, scorers, adaptive, h, w)
        equal[f"{eta:g}"] = {p: {s: rounded(v) for s, v in d.items()} for p, d in pairs.items()}
    curve = (
        [rounded(scorers[curve_loss](k)) for k in range(1, c + 1)] if curve_loss in scorers else []
    )
    return {
        "images": f"fashion-mnist test, the first {n}",
        "loss": "i.i.d. whole latent channels, zero fill, receiver attention, asymmetric quantizer",
        "shipped_eta": model.eta,
        "rows": rows,
        "equal_mean_bytes": equal,
        "prefix_curve": {"loss": curve_loss, "points": curve},
    }


def steady_value(values: Sequence[float]) -> float | None:
    """The level a stepped signal settled at: the median (low) of the last half of the samples.
    Not the mode: an end index chosen from per-report loss estimates flickers over several
    values, and the most common one changes from run to run."""
    tail = values[len(values) // 2 :]
    return statistics.median_low(tail) if tail else None


def settling_time(
    times: Sequence[float], values: Sequence[float], t_step: float, steady: float | None = None
) -> dict[str, float | None]:
    """The levels before and after a step (:func:`steady_value` of the samples on each side of
    ``t_step``, or the given ``steady``, e.g. what the new condition should give) and the time
    from the step until the value first reaches the new level (at or beyond it, seen from the
    old); None where no sample is there to tell."""
    before = steady_value([v for tt, v in zip(times, values, strict=True) if tt < t_step])
    after = [(tt, v) for tt, v in zip(times, values, strict=True) if tt >= t_step]
    if steady is None:
        steady = steady_value([v for _, v in after])
    up = before is None or steady is None or steady >= before
    first = next((tt for tt, v in after if (v >= steady if up else v <= steady)), None)
    return {
        "before": before,
        "steady": steady,
        "settling_s": None if first is None else first - t_step,
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
