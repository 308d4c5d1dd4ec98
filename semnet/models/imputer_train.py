"""Training a diffusion imputer on one frozen codec's latents (paper 002 eq. 22).

The codec encodes a bank of random training-photo crops once; the latents are quantized and
dequantized as the wire does. Each step draws latents from the bank and loss masks the way the
network makes them — units of a partition (channel-wise, patches, ...) lost i.i.d. (interleaved)
or in bursts (not interleaved) — and minimises the masked noise-prediction error. Resumable
(``runs/<name>/state.pt``) and seeded, and split over the processes under torchrun, like codec
training (``semnet.models.distributed``).
"""

import math
import random
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from semnet.core import partition, quant
from semnet.core.impair.loss import make_loss
from semnet.core.impair.spec import LossBurst
from semnet.core.wire import QuantKind, QuantSpec
from semnet.models import distributed
from semnet.models.codec import Codec
from semnet.models.config import ImputerConfig, ImputerTrainSettings
from semnet.models.distributed import Share
from semnet.models.imputer import TRAIN_STEPS, DiffusionImputer, dilate, f0_latent
from semnet.models.train import CropSampler, lr_at, resume, save_state, training_files


def latent_bank(
    codec: Codec, s: ImputerTrainSettings, files: list[str], chunk: int = 16
) -> torch.Tensor:
    """Quantized-then-dequantized latents of ``s.bank`` random crops, (N, C, h, w) float32."""
    sampler = CropSampler(files, s.scales, s.crop, seed=s.seed)
    d = codec.quant
    spec = QuantSpec(QuantKind[d.kind.upper()], d.bits, d.lo, d.hi)  # the codec's own range
    out = []
    with torch.inference_mode():
        for start in range(0, s.bank, chunk):
            y = codec.encode(sampler.batch(min(chunk, s.bank - start))).float().numpy()
            out.append(torch.from_numpy(quant.dequantize(spec, quant.quantize(spec, y))))
    return torch.cat(out).contiguous()


class MaskSampler:
    """Lost-entry masks for (C, h, w) latents, drawn unit by unit as packet loss makes them."""

    def __init__(self, shape: tuple[int, int, int], s: ImputerTrainSettings, seed: int) -> None:
        self.shape, self.s = shape, s
        self.units = [partition.units(shape, partition.parse_spec(p)) for p in s.partitions]
        self.rng = random.Random(seed)

    def _lost_units(self, n: int) -> list[int]:
        rate = self.rng.uniform(0.0, self.s.max_loss)
        if self.rng.random() < self.s.burst_fraction and rate > 0:
            # a mean loss f needs bursts of at least f / (1 - f) (gaps of at least one unit)
            length = max(self.rng.uniform(1.0, self.s.max_burst), 1.01 * rate / (1 - rate))
            lose = make_loss(LossBurst(100.0 * rate, length), self.rng)
            return [i for i in range(n) if lose()]
        return [i for i in range(n) if self.rng.random() < rate]

    def draw(self, count: int) -> torch.Tensor:
        masks = np.zeros((count, math.prod(self.shape)), dtype=bool)
        for row in masks:
            units = self.rng.choice(self.units)
            lost = self._lost_units(len(units))
            if lost:
                row[np.concatenate([units[i] for i in lost])] = True
        return torch.from_numpy(masks.reshape(count, *self.shape))


def shared_loss(
    model: DiffusionImputer,
    y0: torch.Tensor,
    lost: torch.Tensor,
    f0: torch.Tensor,
    gen: torch.Generator,
    share: Share,
    region: float,
) -> torch.Tensor:
    """:meth:`DiffusionImputer.loss` on this process's ``share`` of a batch: the timesteps and
    noise are its rows of those one process draws for the whole batch, and the masked error is
    divided by the whole batch's loss ``region`` (entries, at least 1) times the share's
    fraction of the batch, so that the processes' mean — what DDP's gradient averaging takes —
    is the single-process loss."""
    n = share.total
    t = share.mine(torch.randint(1, TRAIN_STEPS + 1, (n,), generator=gen, device=y0.device))
    eps = share.mine(torch.randn(share.whole(y0.shape), generator=gen, device=y0.device))
    err, _ = model.masked_error(y0, lost, f0, t, eps)
    return err * (n / y0.shape[0]) / region


def train_imputer(
    cfg: ImputerConfig,
    codec: Codec,
    run_dir: Path,
    steps: int | None = None,
    progress: bool = True,
    files: list[str] | None = None,
) -> DiffusionImputer:
    """Train (or resume) on crops of ``files`` (default: the training-photo manifest). In a
    process group (torchrun) each process trains on its share of every batch (CPU, gloo), the
    gradients averaged; only rank 0 writes the state."""
    s = cfg.train
    world = distributed.world()
    share = distributed.share(s.batch, world)  # before any work: an uneven split is one line
    total = steps if steps is not None else s.steps
    torch.manual_seed(s.seed)
    model = DiffusionImputer(codec.latent_channels, cfg.width, cfg.kappa)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    state_path = run_dir / "state.pt"
    state = resume(state_path, model, opt, gen)
    start = 0 if state is None else state["step"]
    run_dir.mkdir(parents=True, exist_ok=True)
    if start < total:
        bank = latent_bank(codec, s, files if files is not None else training_files())
        if not start:
            model.mean.copy_(bank.mean(dim=(0, 2, 3)))
            model.std.copy_(bank.std(dim=(0, 2, 3)).clamp(min=1e-3))
        masks = MaskSampler(tuple(bank.shape[1:]), s, seed=s.seed + start)
        f0 = f0_latent(codec, s.crop, s.crop, "cpu")
    if share is None:
        step_fn = distributed.parallel(model, lambda m, *args: m.loss(*args), world)
    else:
        step_fn = distributed.parallel(model, lambda m, *args: shared_loss(m, *args), world)
    show = progress and world.main
    bar = tqdm(range(start, total), initial=start, total=total, disable=not show, desc=cfg.name)
    avg = None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        pick = torch.randint(len(bank), (s.batch,), generator=gen)
        lost = masks.draw(s.batch)
        if share is None:
            loss = step_fn(bank[pick], lost, f0, gen)
        else:  # this process's rows; the loss region is the whole batch's
            region = dilate(lost, model.kappa).float().sum().clamp(min=1.0).item()
            mine = share.mine(pick)
            loss = step_fn(bank[mine], share.mine(lost), f0, gen, share, region)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if share is not None:
            (loss,) = distributed.average(loss)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        bar.set_postfix(loss=f"{avg:.4f}")
        if (step + 1) % s.checkpoint_every == 0 or step + 1 == total:
            if world.main:
                save_state(state_path, model, opt, gen, step + 1)
            distributed.barrier()
    return model.eval()
