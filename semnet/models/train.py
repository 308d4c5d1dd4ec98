"""Training: random crops of the training photos, quantization noise, unit erasures, MSE.

Resumable (state in ``runs/<name>/state.pt`` every ``checkpoint_every`` steps), seeded, with a
progress bar. At the end the weights are exported to the zoo (see ``semnet.models.zoo``). Under
torchrun the global batch is split over the processes (``semnet.models.distributed``).
"""

import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm import tqdm

from semnet.errors import SemnetError
from semnet.images import IMAGE_SUFFIXES
from semnet.models import distributed, zoo
from semnet.models.codec import Codec, QuantDefaults
from semnet.models.config import ImputerTrainSettings, ModelConfig, TrainSettings
from semnet.models.distributed import Share
from semnet.models.registry import build
from semnet.models.sem import DynamicScaleConv

log = logging.getLogger(__name__)
DATA_MANIFEST = Path(__file__).resolve().parents[2] / "data" / "training_photos.json"


DEFAULT_HINT = "without --data, semnet trains on the Debian photos `make train-data` installs"


def data_manifest_hash(path: Path = DATA_MANIFEST) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def training_files() -> list[str]:
    """The training photos the manifest lists (scripts/install_training_photos.py writes it);
    SemnetError saying how to install them when they are not all there."""
    if not DATA_MANIFEST.exists():
        raise SemnetError(
            f"{DATA_MANIFEST} missing: `make train-data` installs the training photos and writes "
            "it, or train on a folder of yours with --data DIR"
        )
    files = [e["file"] for e in json.loads(DATA_MANIFEST.read_text())]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise SemnetError(
            f"the training photos are not installed ({len(missing)} of {len(files)} missing, "
            f"e.g. {missing[0]}): `make train-data` installs them, or train on a folder of yours "
            "with --data DIR"
        )
    return files


@dataclass(frozen=True)
class TrainingData:
    """What a run trains on: the files, and the manifest (file, sha256, size) that names them,
    whose hash goes into the zoo entry."""

    files: list[str]
    manifest_sha256: str
    manifest: list[dict] | None = None  # for a folder of one's own; None: data/training_photos


def folder_data(folder: str | Path) -> TrainingData:
    """Every image under ``folder``, recursively (hidden files and folders skipped), sorted by
    path; the manifest names them relative to ``folder``, so the same photos give the same hash
    wherever the folder is. SemnetError (one line) for a missing or empty folder."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise SemnetError(f"training data {folder}: no such folder ({DEFAULT_HINT})")
    found = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not found:
        raise SemnetError(
            f"training data {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or below "
            f"it ({DEFAULT_HINT})"
        )
    manifest = []
    for p in found:
        data = p.read_bytes()
        rel = p.relative_to(root).as_posix()
        manifest.append(
            {"file": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        )
    text = json.dumps(manifest, indent=1) + "\n"  # the layout of data/training_photos.json
    digest = hashlib.sha256(text.encode()).hexdigest()
    return TrainingData([str(p) for p in found], digest, manifest)


def training_data(folder: str | Path | None = None) -> TrainingData:
    """A folder of one's own, or (None) the Debian photos of data/training_photos.json."""
    if folder is not None:
        return folder_data(folder)
    return TrainingData(training_files(), data_manifest_hash())


class CropSampler:
    """Random crops from photos held in memory at a few scales, drawn from a seeded generator."""

    def __init__(self, files: list[str], scales: tuple[int, ...], crop: int, seed: int) -> None:
        self.crop = crop
        self.rng = random.Random(seed)
        self.images: list[torch.Tensor] = []
        for f in files:
            with Image.open(f) as im:
                im = im.convert("RGB")
                for s in scales:
                    k = s / min(im.size)
                    size = (max(crop, round(im.width * k)), max(crop, round(im.height * k)))
                    scaled = np.asarray(im.resize(size, Image.Resampling.LANCZOS))
                    self.images.append(torch.from_numpy(scaled.copy()).permute(2, 0, 1))

    def batch(self, n: int, rows: slice | None = None) -> torch.Tensor:
        """``n`` crops (N, 3, crop, crop) in [0, 1], channels_last; with ``rows``, only those of
        the ``n`` drawn (the draws are all ``n``'s: processes keeping their rows share a batch)."""
        keep = range(n) if rows is None else range(n)[rows]
        out = []
        for i in range(n):
            img = self.rng.choice(self.images)
            y = self.rng.randrange(img.shape[1] - self.crop + 1)
            x = self.rng.randrange(img.shape[2] - self.crop + 1)
            flip = self.rng.random() < 0.5
            if i in keep:
                patch = img[:, y : y + self.crop, x : x + self.crop]
                out.append(patch.flip(2) if flip else patch)
        batch = torch.stack(out).float().div_(255.0)
        return batch.contiguous(memory_format=torch.channels_last)


def rand(
    shape: tuple[int, ...] | torch.Size, gen: torch.Generator, share: Share | None = None
) -> torch.Tensor:
    """Uniform [0, 1) numbers of ``shape`` (batch rows first) from ``gen``; with a ``share``,
    this process's rows of the draw one process makes for the whole batch."""
    if share is None:
        return torch.rand(shape, generator=gen)
    return share.mine(torch.rand(share.whole(shape), generator=gen))


def channel_erasure(
    y: torch.Tensor, s: TrainSettings, gen: torch.Generator, share: Share | None = None
) -> torch.Tensor:
    """Zero whole channels of part of the batch, as channel-wise packets lost in the network do."""
    n, c = y.shape[:2]
    p = rand((n, 1), gen, share) * s.erasure_max
    p = p * (rand((n, 1), gen, share) < s.erasure_fraction)
    keep = (rand((n, c), gen, share) >= p).to(device=y.device, dtype=y.dtype)
    return y * keep[:, :, None, None]


def noise_step(q: QuantDefaults, y: torch.Tensor) -> torch.Tensor | float:
    """The quantizer's step, the width of training's additive noise: fixed for uniform and
    round; for asymmetric, each image's own latent range (what its frame would be sent with)."""
    levels = 2**q.bits - 1
    if q.kind != "asymmetric":
        return (q.hi - q.lo) / levels
    flat = y.detach().flatten(1)
    span = (flat.amax(dim=1) - flat.amin(dim=1)).clamp_min(1e-6)
    return (span / levels).view(-1, *([1] * (y.dim() - 1)))


def train_step(
    model: Codec,
    x: torch.Tensor,
    s: TrainSettings,
    gen: torch.Generator,
    share: Share | None = None,
) -> tuple:
    """(loss, latent, bits per pixel or None). A fixed-rate codec learns MSE through additive
    quantization noise. A codec with an entropy model learns λ·255²·MSE + bpp: the rate of the
    noisy latent, while the decoder sees the rounded one (straight through), as on the wire.
    With a ``share``, ``x`` is this process's rows of the batch and the noise and erasures are
    its rows of the whole batch's; the loss is the mean over its rows (bpp too)."""
    y = model.encode(x)
    step = noise_step(model.quant, y)
    noisy = y + (rand(y.shape, gen, share).to(y.device) - 0.5) * step
    bits = model.rate_bits(noisy)
    if bits is None:
        x_hat = model.synthesize(channel_erasure(noisy, s, gen, share))
        return F.mse_loss(x_hat, x), y.detach(), None
    rounded = y + (torch.round(y) - y).detach()
    x_hat = model.synthesize(channel_erasure(rounded, s, gen, share))
    bpp = bits / (x.shape[0] * x.shape[2] * x.shape[3])
    return s.rate_lambda * 255**2 * F.mse_loss(x_hat, x) + bpp, y.detach(), bpp.detach()


# The entropy model and the gains start far from what a trained transform needs: they learn at
# ten times the backbone's rate (CompressAI trains its entropy model's tails at 1e-3 likewise).
FAST_LR_SCALE = 10.0


def _param_groups(model: Codec) -> list[dict]:
    fast = model.rate_parameters()
    slow = [p for p in model.parameters() if all(p is not f for f in fast)]
    groups = [{"params": slow, "lr_scale": 1.0}]
    return groups + ([{"params": fast, "lr_scale": FAST_LR_SCALE}] if fast else [])


def lr_at(step: int, s: TrainSettings | ImputerTrainSettings) -> float:
    """Cosine decay from lr to lr/30 over the run (a function of the step, so resume is exact)."""
    return s.lr * (1 / 30 + (1 - 1 / 30) * 0.5 * (1 + math.cos(math.pi * step / s.steps)))


def save_state(path: Path, model, opt, gen: torch.Generator, step: int, **extra) -> None:
    """Write a resumable training state atomically (a crash mid-write keeps the old one)."""
    state = {
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "gen": gen.get_state(),
        "step": step,
        **extra,
    }
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def resume(path: Path, model, opt, gen: torch.Generator) -> dict | None:
    """Load a saved state into the model, optimiser and generator; the state, or None."""
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False, map_location="cpu")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    gen.set_state(state["gen"])
    return state


def init_from(model: Codec, parent: Codec) -> list[str]:
    """Start ``model`` from ``parent``'s weights; the names of the tensors it starts fresh.

    A SEM variant shares the baseline's backbone, so every tensor with the same name and shape
    is copied; tensors only the model has (Dynamic Scale's Γ) keep their initialisation, and a
    Dynamic Scale layer then takes the copied convolution's per-channel gains.

    A model with a wider latent (more channels, same backbone) is widened: a tensor whose
    shapes differ only where the latent channel count is takes the parent's values in its
    leading channels. The encoder's new channels keep their initialisation; the decoder's
    weights for them start at zero, so the widened codec starts as the parent and learns to
    use the new channels. Any other shape difference means the architectures do not match.
    """
    mine, theirs = model.state_dict(), parent.state_dict()
    widened = {k for k in mine if k in theirs and mine[k].shape != theirs[k].shape}
    clash = [k for k in widened if not _widens(theirs[k].shape, mine[k].shape, parent, model)]
    if clash:
        raise ValueError(f"init_from: shapes differ for {', '.join(sorted(clash))}")
    fresh = [k for k in mine if k not in theirs]
    if len(fresh) == len(mine):
        raise ValueError("init_from: the parent shares no tensor with this architecture")
    decoder = {f"decoder.{k}" for k in model.decoder.state_dict()}
    copied = {}
    for k in mine:
        if k in widened:
            t = torch.zeros_like(mine[k]) if k in decoder else mine[k].clone()
            t[tuple(slice(0, n) for n in theirs[k].shape)] = theirs[k]
            copied[k] = t
        elif k in theirs:
            copied[k] = theirs[k]
    model.load_state_dict(copied, strict=False)
    for module in model.modules():
        if isinstance(module, DynamicScaleConv):
            module.take_conv_gains()
    return fresh


def _widens(old: torch.Size, new: torch.Size, parent: Codec, model: Codec) -> bool:
    """Whether ``new`` is ``old`` with the latent channel dimension grown."""
    a, b = parent.latent_channels, model.latent_channels
    if b <= a or len(old) != len(new):
        return False
    return all(x == y or (x, y) == (a, b) for x, y in zip(old, new, strict=True))


def train(
    cfg: ModelConfig,
    run_dir: Path,
    steps: int | None = None,
    progress: bool = True,
    files: list[str] | None = None,
    device: torch.device | None = None,
) -> Codec:
    """Train (or resume) on crops of ``files`` (default: the training-photo manifest), on
    ``device`` (default CPU; random draws stay on the CPU generator, so a run is seeded the same
    anywhere). Returns the model on the CPU.

    In a process group (torchrun, ``semnet.models.distributed``) each process trains on its
    share of every batch on its own ``device``, the gradients averaged; only rank 0 writes the
    state and logs."""
    s = cfg.train
    device = device or torch.device("cpu")
    world = distributed.world(device)
    share = distributed.share(s.batch, world)  # before any work: an uneven split is one line
    total = steps if steps is not None else s.steps
    torch.manual_seed(s.seed)
    # channels_last: about 1.9x faster CPU training steps than the default layout (measured)
    quant = cfg.quant.as_dict() if cfg.quant is not None else None
    model = build(cfg.architecture, cfg.params, quant).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(_param_groups(model), lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    state_path = run_dir / "state.pt"
    start, mean = 0, torch.zeros(model.latent_channels)
    if s.init_from is not None and not state_path.exists():
        init_from(model, zoo.load(s.init_from))
        mean = model.channel_mean.clone()
    model.to(device)
    state = resume(state_path, model, opt, gen)
    if state is not None:
        start, mean = state["step"], state["mean"]
    mean = mean.to(device)
    # a finished run only needs exporting: skip loading the photos
    sampler = None
    if start < total:
        photos = files if files is not None else training_files()
        sampler = CropSampler(photos, s.scales, s.crop, seed=s.seed + start)
    run_dir.mkdir(parents=True, exist_ok=True)
    step_fn = distributed.parallel(model, lambda m, x, g: train_step(m, x, s, g, share), world)
    rows = share.rows if share is not None else None
    show = progress and world.main
    bar = tqdm(range(start, total), initial=start, total=total, disable=not show, desc=cfg.name)
    avg = avg_bpp = None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s) * group["lr_scale"]
        x = sampler.batch(s.batch, rows).to(device, non_blocking=True)
        loss, y, bpp = step_fn(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        batch_mean = y.mean(dim=(0, 2, 3))
        if share is not None:  # the whole batch's, as one process sees them
            if bpp is None:
                loss, batch_mean = distributed.average(loss, batch_mean)
            else:
                loss, bpp, batch_mean = distributed.average(loss, bpp, batch_mean)
        mean = 0.99 * mean + 0.01 * batch_mean if step else batch_mean
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if bpp is None:
            bar.set_postfix(psnr=f"{-10 * math.log10(max(avg, 1e-10)):.2f}")
        else:
            avg_bpp = bpp.item() if step == start else 0.98 * avg_bpp + 0.02 * bpp.item()
            bar.set_postfix(loss=f"{avg:.3f}", bpp=f"{avg_bpp:.3f}")
        if (step + 1) % s.checkpoint_every == 0 or step + 1 == total:
            if world.main:
                save_state(state_path, model, opt, gen, step + 1, mean=mean)
                log.info("%s: step %d of %d, %s", cfg.name, step + 1, total, bar.postfix)
            distributed.barrier()
    model.channel_mean.copy_(mean)
    model.cpu()
    model.update_table()
    return model.to(memory_format=torch.contiguous_format).eval()
