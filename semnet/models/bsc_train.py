"""Training the source code with a bit interface (paper 003 §II-B, eq. 8-15; issue 18).

One step: random crops of the training photos (never evaluation photos), the encoder, the
bit-planes through the array of BSCs (``BSCCodec.through_bsc``), the demapper; the loss is eq. 15
``MSE + lam / M * sum (eps - 0.5)^2``. The flip probabilities learn at ``eps_lr_scale`` times the
backbone's rate (they are a handful of scalars far from where they end). A ``fixed`` interface
(Split DeepJSCC's prescribed levels) trains the same way with eps frozen.

``init_from`` starts the backbone from a zoo codec: every tensor of the same name and shape is
copied (the encoder's last convolution and the demapper's first, which see other channel
counts, start fresh). Resumable (``runs/<name>/state.pt``), seeded; reuses the crop sampler,
learning-rate schedule and state files of ``semnet.models.train``.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from semnet.config import check, load, read_yaml
from semnet.errors import ConfigError
from semnet.models.bsc import BSCCodec
from semnet.models.codec import Codec
from semnet.models.registry import build
from semnet.models.train import CropSampler, lr_at, resume, save_state

log = logging.getLogger(__name__)
positive = check(lambda v: v > 0, "must be > 0")
non_negative = check(lambda v: v >= 0, "must be >= 0")
ARCHITECTURE = "bsc"


@dataclass(frozen=True)
class InterfaceTrainSettings:
    steps: int = field(default=3000, metadata=positive)
    batch: int = field(default=8, metadata=positive)
    crop: int = field(
        default=128,
        metadata=check(lambda v: v >= 32 and v % 16 == 0, "must be a multiple of 16, >= 32"),
    )
    lr: float = field(default=3e-4, metadata=positive)
    seed: int = 1
    # eq. 9/15: loss = MSE + lam / M * sum_n (eps_n - 0.5)^2
    lam: float = field(default=0.01, metadata=non_negative)
    eps_lr_scale: float = field(default=30.0, metadata=positive)
    scales: tuple[int, ...] = (256, 384, 512)
    checkpoint_every: int = field(default=250, metadata=positive)
    init_from: str | None = None


@dataclass(frozen=True)
class InterfaceConfig:
    """configs/models/bsc-*.yaml: a model config whose architecture is ``bsc``."""

    name: str = field(
        metadata=check(
            lambda v: isinstance(v, str) and 0 < len(v) <= 64 and not v.endswith(".json"),
            "must be 1-64 characters (a file name in the zoo)",
        )
    )
    codec_id: int = field(metadata=check(lambda v: 0 < v < 65536, "must be in 1..65535"))
    architecture: str = field(
        metadata=check(lambda v: v == ARCHITECTURE, f"must be {ARCHITECTURE!r}")
    )
    params: dict[str, Any] = field(default_factory=dict)
    train: InterfaceTrainSettings = field(default_factory=InterfaceTrainSettings)
    quant = None  # the bit-planes fix the quantizer: uniform, params.bits, [-1, 1]


def load_interface_config(path: str | Path) -> InterfaceConfig:
    cfg = load(InterfaceConfig, read_yaml(path))
    build_model(cfg)  # a bad params: key is a ConfigError now, before any work
    return cfg


def build_model(cfg: InterfaceConfig) -> BSCCodec:
    model = build(cfg.architecture, cfg.params)
    if not isinstance(model, BSCCodec):
        raise ConfigError("architecture: must build a BSCCodec")
    return model


def copy_matching(model: Codec, parent: Codec) -> list[str]:
    """Copy every tensor of ``parent`` with the same name and shape; the names left fresh."""
    mine, theirs = model.state_dict(), parent.state_dict()
    same = {k: theirs[k] for k in mine if k in theirs and theirs[k].shape == mine[k].shape}
    if not same:
        raise ConfigError("train.init_from: the parent shares no tensor with this codec")
    model.load_state_dict(same, strict=False)
    return [k for k in mine if k not in same]


def train(
    cfg: InterfaceConfig,
    run_dir: Path,
    files: list[str],
    steps: int | None = None,
    progress: bool = True,
) -> BSCCodec:
    """Train (or resume) on crops of ``files``; returns the model on the CPU in eval mode."""
    s = cfg.train
    total = steps if steps is not None else s.steps
    torch.manual_seed(s.seed)
    model = build_model(cfg).to(memory_format=torch.channels_last)
    eps_params = [p for n, p in model.named_parameters() if n == "eps_logit"]
    rest = [p for n, p in model.named_parameters() if n != "eps_logit"]
    groups = [{"params": rest, "lr_scale": 1.0}]
    groups += [{"params": eps_params, "lr_scale": s.eps_lr_scale}] if eps_params else []
    opt = torch.optim.Adam(groups, lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    state_path = run_dir / "state.pt"
    mean = torch.zeros(model.latent_channels)
    if s.init_from is not None and not state_path.exists():
        from semnet.models import zoo

        fresh = copy_matching(model, zoo.load(s.init_from))
        log.info("%s: from %s, fresh: %s", cfg.name, s.init_from, ", ".join(fresh))
    start = 0
    state = resume(state_path, model, opt, gen)
    if state is not None:
        start, mean = state["step"], state["mean"]
    run_dir.mkdir(parents=True, exist_ok=True)
    sampler = CropSampler(files, s.scales, s.crop, seed=s.seed + start) if start < total else None
    bar = tqdm(range(start, total), initial=start, total=total, disable=not progress, desc=cfg.name)
    avg = None
    model.train()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, _Sched(s.lr, total)) * g["lr_scale"]
        x = sampler.batch(s.batch)
        y = model.encode(x)
        x_hat = model.through_bsc(y, gen)
        mse = F.mse_loss(x_hat, x)
        loss = mse + model.regulariser(s.lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        batch_mean = y.detach().mean(dim=(0, 2, 3))
        mean = 0.99 * mean + 0.01 * batch_mean if step else batch_mean
        avg = mse.item() if avg is None else 0.98 * avg + 0.02 * mse.item()
        eps_bits = model.interface().mean(axis=0)
        bar.set_postfix(psnr=f"{-10 * math.log10(max(avg, 1e-10)):.2f}")
        if (step + 1) % s.checkpoint_every == 0 or step + 1 == total:
            save_state(state_path, model, opt, gen, step + 1, mean=mean)
            log.info(
                "%s: step %d of %d, psnr %.2f dB (noisy bits), eps by bit %s",
                cfg.name,
                step + 1,
                total,
                -10 * math.log10(max(avg, 1e-10)),
                np.array2string(eps_bits, precision=4),
            )
    model.channel_mean.copy_(mean)
    return model.cpu().to(memory_format=torch.contiguous_format).eval()


@dataclass(frozen=True)
class _Sched:
    """What ``lr_at`` reads: the peak rate and the run's length."""

    lr: float
    steps: int


@torch.no_grad()
def evaluate(model: BSCCodec, seed: int = 1) -> dict[str, Any]:
    """The manifest's metrics: PSNR on the evaluation photos with clean bits and through the
    codec's own BSCs (its interface's flip rates), and the interface itself."""
    from semnet.core.interface import Interface, group
    from semnet.eval_images import eval_images
    from semnet.models.metrics import psnr

    clean, noisy = {}, {}
    gen = torch.Generator().manual_seed(seed)
    for name, image in sorted(eval_images().items()):
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        h, w = x.shape[-2:]
        y = model.encode(x)
        clean[name] = round(float(psnr(model.decode(y, h, w), x)), 3)
        x_noisy = model.through_bsc(y, gen)[..., :h, :w].clamp(0, 1)
        noisy[name] = round(float(psnr(x_noisy, x)), 3)
    iface = Interface(model.interface())
    classes = group(iface, min(4, iface.eps.size))
    return {
        "psnr_db_clean_bits": round(float(np.mean(list(clean.values()))), 3),
        "psnr_db_through_interface": round(float(np.mean(list(noisy.values()))), 3),
        "per_image_psnr_db_clean_bits": clean,
        "cbr_qpsk": f"{model.latent_channels * model.bits}/{2 * 3 * model.stride**2}",
        "interface": {
            **iface.as_dict(),
            "kind": model.kind,
            "eps_by_bit": [round(float(v), 6) for v in iface.by_bit()],
            "class_eps": [round(float(v), 6) for v in classes.eps],
        },
    }
