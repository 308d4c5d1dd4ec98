"""Training the MIJSCC multi-task codec (paper 004, issue 19): eq. 18 plus the channel.

One step (Algorithm 1 and 3 with our packet channel):

* E_ω(s) = f, E_φ(f) = z; the global and local JS MI estimates Ω^global(s, z), Ω^local(f, z)
  (eq. 13-17) with fake pairs from the batch rolled by one;
* z + uniform noise of the asymmetric quantizer's step (§II-B: each image's own range);
* the channel: a random end index k per sample (nested-dropout style, so the prefix learns to
  carry the most; A-MIJSCC's mask), then channel erasures at a random rate (i.i.d. or in
  bursts along the channel order), zero fill (Alg. 3 step 12);
* the receiver's attention N_attn on the received channels, then D_β and the classifier ψ;
* loss = MSE(s, ŝ) - λ (μ₁ Ω^global + μ₂ Ω^local) + w_ce · CE(ψ(ẑ*), label) over the samples
  with a label (semi-supervised: the rest only feed the unsupervised terms).

After training, :func:`calibrate` fits the condition encoder N_enc: on held-out training images
it measures PSNR against the end index k for a grid of channel conditions and asks, per
condition, for the smallest prefix within ``adapt_tolerance_db`` of sending every channel,
made monotone (a worse channel never gets fewer channels); N_enc (monotone by construction) is
then fitted so that |{j : g̃_j > η}| hits that k.

Data: Fashion-MNIST (``data: fashion-mnist``, labels) or training-photo crops (``data:
photos``, EfficientNet-Lite0's top-1 of each crop as its pseudo-label). Never evaluation
images. Seeded: one torch generator draws every batch, mask and noise.
"""

import hashlib
import json
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
from semnet.errors import ConfigError, SemnetError
from semnet.models import fashion_mnist
from semnet.models.config import QuantChoice
from semnet.models.mijscc import (
    GlobalDiscriminator,
    LocalDiscriminator,
    MIJSCCCodec,
    condition_features,
    prefix_mask,
    suffix_sum,
)
from semnet.models.registry import build
from semnet.models.train import lr_at, noise_step, resume, save_state

log = logging.getLogger(__name__)
positive = check(lambda v: v > 0, "must be > 0")
non_negative = check(lambda v: v >= 0, "must be >= 0")
probability = check(lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
DATA_KINDS = ("fashion-mnist", "photos")
ARCHITECTURE = "mijscc"


@dataclass(frozen=True)
class MultitaskTrainSettings:
    steps: int = field(default=6000, metadata=positive)
    batch: int = field(default=64, metadata=positive)
    lr: float = field(default=1e-3, metadata=positive)
    seed: int = 1
    # eq. 18: MSE - lam * (mu1 * global MI + mu2 * local MI); the paper's λ, μ₁, μ₂
    lam: float = field(default=0.05, metadata=non_negative)
    mu1: float = field(default=0.01, metadata=non_negative)
    mu2: float = field(default=1.0, metadata=non_negative)
    # + ce_weight * cross-entropy of the classifier on the received latent, labelled samples only
    ce_weight: float = field(default=0.05, metadata=non_negative)
    labelled_fraction: float = field(default=1.0, metadata=probability)
    # The channel: this fraction of samples gets a random end index k in min_channels..C ...
    nested_fraction: float = field(default=0.5, metadata=probability)
    # ... and this fraction loses channels at a rate uniform in [0, erasure_max], in bursts of
    # mean length uniform in [1, max_burst] along the channel order burst_fraction of the time.
    erasure_fraction: float = field(default=0.5, metadata=probability)
    erasure_max: float = field(default=0.5, metadata=probability)
    burst_fraction: float = field(default=0.3, metadata=probability)
    max_burst: float = field(default=4.0, metadata=check(lambda v: v >= 1, "must be >= 1"))
    # Fashion-MNIST: the last `holdout` training images are kept out of training (calibration)
    holdout: int = field(default=2000, metadata=positive)
    # A-MIJSCC: the smallest prefix within this many dB of sending every channel
    adapt_tolerance_db: float = field(default=0.5, metadata=positive)
    calibration_images: int = field(default=300, metadata=positive)
    calibration_steps: int = field(default=8, metadata=positive)  # L-BFGS iterations
    # photos: crops of this size from the photos scaled to these shorter sides, a bank of this
    # many crops with their pseudo-labels computed once
    crop: int = field(
        default=128,
        metadata=check(lambda v: v >= 32 and v % 16 == 0, "must be a multiple of 16, >= 32"),
    )
    scales: tuple[int, ...] = (256, 384, 512)
    bank: int = field(default=2048, metadata=positive)
    checkpoint_every: int = field(default=250, metadata=positive)


@dataclass(frozen=True)
class MultitaskConfig:
    """configs/models/mijscc-*.yaml: a model config (name, codec_id, architecture, params,
    quant) whose ``train:`` carries eq. 18's weights and the A-MIJSCC calibration."""

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
    data: str = field(metadata=check(lambda v: v in DATA_KINDS, "is not fashion-mnist or photos"))
    params: dict[str, Any] = field(default_factory=dict)
    quant: QuantChoice | None = None
    train: MultitaskTrainSettings = field(default_factory=MultitaskTrainSettings)


def load_multitask_config(path: str | Path) -> MultitaskConfig:
    cfg = load(MultitaskConfig, read_yaml(path))
    if cfg.quant is None or cfg.quant.kind != "asymmetric":
        raise ConfigError("quant: the MIJSCC codec is sent with the asymmetric quantizer (§II-B)")
    return cfg


# --- data ---------------------------------------------------------------------------------


def fashion_manifest() -> tuple[list[dict], str]:
    """(manifest of the four idx files: file, sha256, size; its sha256) as the zoo records."""
    manifest = []
    for pair in fashion_mnist.FILES.values():
        for name in pair:
            data = (fashion_mnist.ROOT / name).read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            manifest.append({"file": name, "sha256": sha, "size": len(data)})
    text = json.dumps(manifest, indent=1) + "\n"
    return manifest, hashlib.sha256(text.encode()).hexdigest()


class FashionData:
    """Fashion-MNIST training images minus the held-out tail, labels for a seeded subset."""

    def __init__(self, s: MultitaskTrainSettings) -> None:
        if not fashion_mnist.available():
            raise SemnetError(f"Fashion-MNIST is not installed: {fashion_mnist.HINT}")
        images, labels = fashion_mnist.load("train")
        if s.holdout >= len(images):
            raise ConfigError(f"train.holdout: {s.holdout} leaves no training images")
        cut = len(images) - s.holdout
        self.x = torch.from_numpy(fashion_mnist.as_rgb(images[:cut]))
        self.y = torch.from_numpy(labels[:cut])
        self.held_x = torch.from_numpy(fashion_mnist.as_rgb(images[cut:]))
        rng = np.random.default_rng(s.seed)
        labelled = np.zeros(cut, bool)
        labelled[rng.permutation(cut)[: round(s.labelled_fraction * cut)]] = True
        self.labelled = torch.from_numpy(labelled)

    def batch(self, n: int, gen: torch.Generator):
        i = torch.randint(len(self.x), (n,), generator=gen)
        return self.x[i], self.y[i], self.labelled[i]


class PhotoData:
    """A bank of training-photo crops (never evaluation photos), each with EfficientNet-Lite0's
    top-1 on the crop as its pseudo-label, computed once."""

    def __init__(self, s: MultitaskTrainSettings, files: list[str]) -> None:
        from semnet.models import classifier
        from semnet.models.train import CropSampler

        if not classifier.available():
            raise SemnetError("pseudo-labels need EfficientNet-Lite0: make metrics-extra")
        sampler = CropSampler(files, s.scales, s.crop, seed=s.seed)
        crops, labels = [], []
        for start in range(0, s.bank, 32):
            x = sampler.batch(min(32, s.bank - start)).contiguous()
            crops.append((x * 255).round().to(torch.uint8))
            labels.append(classifier.logits(x).argmax(1))
        self.x = torch.cat(crops)
        self.y = torch.cat(labels)
        self.labelled = torch.ones(len(self.y), dtype=torch.bool)

    def batch(self, n: int, gen: torch.Generator):
        i = torch.randint(len(self.x), (n,), generator=gen)
        x = self.x[i].float() / 255.0
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x, self.y[i], self.labelled[i]


# --- the channel --------------------------------------------------------------------------


def erasure_mask(
    n: int, c: int, loss: torch.Tensor, burst: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """(n, c) bool, True = kept: channels lost at rate ``loss`` (n,), i.i.d. where the mean
    burst ``burst`` (n,) is at most an i.i.d. channel's 1/(1 - loss), else a two-state
    Gilbert chain along the channel order with that mean burst and stationary loss rate."""
    loss = loss.clamp(0.0, 0.999)
    r = 1.0 / burst.clamp(min=1.0)  # bad -> good
    q = (loss * r / (1.0 - loss)).clamp(max=1.0)  # good -> bad
    iid = burst <= 1.0 / (1.0 - loss)
    u = torch.rand(n, c, generator=gen)
    lost = torch.zeros(n, c, dtype=torch.bool)
    bad = torch.rand(n, generator=gen) < loss  # start in the stationary distribution
    for j in range(c):
        bad = torch.where(bad, u[:, j] >= r, u[:, j] < q)
        lost[:, j] = torch.where(iid, u[:, j] < loss, bad)
    return ~lost


def training_channel(
    n: int, c: int, s: MultitaskTrainSettings, min_channels: int, gen: torch.Generator
) -> torch.Tensor:
    """(n, c) bool received mask of one training batch: nested prefix, then erasures."""
    k = torch.randint(min_channels, c + 1, (n,), generator=gen)
    k = torch.where(torch.rand(n, generator=gen) < s.nested_fraction, k, torch.full_like(k, c))
    loss = torch.rand(n, generator=gen) * s.erasure_max
    loss = loss * (torch.rand(n, generator=gen) < s.erasure_fraction)
    burst = 1.0 + torch.rand(n, generator=gen) * (s.max_burst - 1.0)
    burst = torch.where(torch.rand(n, generator=gen) < s.burst_fraction, burst, torch.ones(n))
    return prefix_mask(k, c) & erasure_mask(n, c, loss, burst, gen)


def receive(model: MIJSCCCodec, y: torch.Tensor, got: torch.Tensor) -> torch.Tensor:
    """Zero fill what did not arrive, then the attention: ẑ* as decoder and classifier see it."""
    got4 = got[:, :, None, None].expand_as(y)
    return model.attention(torch.where(got4, y, torch.zeros((), dtype=y.dtype)), got4)


# --- one step -----------------------------------------------------------------------------


class Critics(torch.nn.Module):
    """The training-only MI estimators of eq. 15 and 17 (not shipped)."""

    def __init__(self, model: MIJSCCCodec) -> None:
        super().__init__()
        n = model.encoder.features[0].out_channels
        self.glob = GlobalDiscriminator(model.latent_channels)
        self.local = LocalDiscriminator(n, model.latent_channels)


def step_loss(
    model: MIJSCCCodec,
    critics: Critics,
    x: torch.Tensor,
    labels: torch.Tensor,
    labelled: torch.Tensor,
    s: MultitaskTrainSettings,
    gen: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """(loss of eq. 18 + the supervised term, its parts, the clean latent) of one batch."""
    h, w = x.shape[-2:]
    f, z = model.encode_features(x)
    mi_g = critics.glob.mi(model.pad(x), z) if s.mu1 and s.lam else z.new_zeros(())
    mi_l = critics.local.mi(f, z) if s.mu2 and s.lam else z.new_zeros(())
    step = noise_step(model.quant, z)
    noisy = z + (torch.rand(z.shape, generator=gen) - 0.5) * step
    got = training_channel(len(x), model.latent_channels, s, model.min_channels, gen)
    y = receive(model, noisy, got)
    x_hat = model.decoder(y)[..., :h, :w]
    mse = F.mse_loss(x_hat, x)
    loss = mse - s.lam * (s.mu1 * mi_g + s.mu2 * mi_l)
    parts = {"mse": mse.item(), "mi_g": mi_g.item(), "mi_l": mi_l.item()}
    if s.ce_weight and bool(labelled.any()):
        logits = model.head(y)[labelled]
        ce = F.cross_entropy(logits, labels[labelled])
        loss = loss + s.ce_weight * ce
        parts["ce"] = ce.item()
        parts["acc"] = (logits.argmax(1) == labels[labelled]).float().mean().item()
    return loss, parts, z.detach()


def train(
    cfg: MultitaskConfig,
    run_dir: Path,
    steps: int | None = None,
    progress: bool = True,
    files: list[str] | None = None,
) -> tuple[MIJSCCCodec, Any]:
    """Train (or resume) the codec and its critics on CPU; (model, data) at the end."""
    s = cfg.train
    total = steps if steps is not None else s.steps
    torch.manual_seed(s.seed)
    model = build(cfg.architecture, cfg.params, cfg.quant.as_dict() if cfg.quant else None)
    if not isinstance(model, MIJSCCCodec):
        raise ConfigError(f"architecture: {cfg.architecture!r} is not the MIJSCC codec")
    critics = Critics(model)
    both = torch.nn.ModuleDict({"model": model, "critics": critics})
    # N_enc gets no gradient from eq. 18 (the hard threshold of eq. 21): :func:`calibrate` fits
    # it after training, so it stays out of the optimiser
    fitted_later = {id(p) for p in model.condition.parameters()}
    opt = torch.optim.Adam([p for p in both.parameters() if id(p) not in fitted_later], lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.pt"
    state = resume(state_path, both, opt, gen)
    start = state["step"] if state else 0
    mean = state["mean"] if state else torch.zeros(model.latent_channels)
    if cfg.data == "fashion-mnist":
        data = FashionData(s)
    else:
        if files is None:
            from semnet.models.train import training_files

            files = training_files()
        data = PhotoData(s, files)
    bar = tqdm(range(start, total), initial=start, total=total, disable=not progress, desc=cfg.name)
    avg: dict[str, float] = {}
    both.train()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        x, labels, labelled = data.batch(s.batch, gen)
        loss, parts, z = step_loss(model, critics, x, labels, labelled, s, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        batch_mean = z.mean(dim=(0, 2, 3))
        mean = 0.99 * mean + 0.01 * batch_mean if step else batch_mean
        avg = {k: v if k not in avg else 0.98 * avg[k] + 0.02 * v for k, v in parts.items()}
        if progress:
            bar.set_postfix(psnr=f"{-10 * math.log10(max(avg['mse'], 1e-10)):.2f}", **{
                k: f"{v:.3f}" for k, v in avg.items() if k != "mse"})  # fmt: skip
        if (step + 1) % s.checkpoint_every == 0 or step + 1 == total:
            save_state(state_path, both, opt, gen, step + 1, mean=mean)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in avg.items())
            log.info("%s: step %d of %d: %s", cfg.name, step + 1, total, shown)
    model.channel_mean.copy_(mean)
    return model.eval(), data


# --- A-MIJSCC calibration of N_enc ----------------------------------------------------------

CAL_LOSSES = tuple(round(0.1 * i, 2) for i in range(7))  # effective loss 0 .. 0.6
CAL_BURSTS = (1.0, 4.0)
FIT_LOSSES = tuple(round(0.05 * i, 2) for i in range(11))  # reported loss 0 .. 0.5
FIT_BURSTS = (1.0, 2.0, 4.0, 8.0, 16.0)
FIT_SNRS = (None, 30.0, 20.0, 15.0, 10.0, 7.0, 5.0, 3.0, 0.0)
LINK_BLOCKLENGTH, LINK_CODERATE = 1024, 0.4375  # the proxy's link defaults (paper 002)


def link_loss(snr_db: float | None) -> float:
    """Mean packet error rate of the proxy's default link (Rayleigh block fading, D = 1024,
    R = 0.4375) at ``snr_db``: the finite-blocklength PER averaged over the fading gain."""
    if snr_db is None:
        return 0.0
    from semnet.core import wireless

    gains = -np.log1p(-(np.arange(400) + 0.5) / 400)  # Exp(1) quantiles
    snr = 10 ** (snr_db / 10) * gains
    return float(np.mean(wireless.per(snr, LINK_BLOCKLENGTH, LINK_CODERATE)))


def psnr_db(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (peak 1)."""
    mse = (x_hat - x).square().flatten(1).mean(1).clamp(min=1e-10)
    return -10 * torch.log10(mse)


@torch.no_grad()
def quantized(model: MIJSCCCodec, x: torch.Tensor) -> torch.Tensor:
    """The latent as the wire carries it: asymmetric q-bit quantization of each image."""
    from semnet.core import quant
    from semnet.core.wire import QuantKind

    z = model.encode(x).contiguous()
    out = torch.empty_like(z)
    for i in range(len(z)):
        a = z[i].numpy()
        spec = quant.fit(QuantKind.ASYMMETRIC, model.quant.bits, y=a)
        out[i] = torch.from_numpy(quant.dequantize(spec, quant.quantize(spec, a)))
    return out


@torch.no_grad()
def psnr_table(
    model: MIJSCCCodec, x: torch.Tensor, seed: int, losses=CAL_LOSSES, bursts=CAL_BURSTS
) -> torch.Tensor:
    """Mean PSNR (len(losses), len(bursts), C) of prefix k = 1..C under each condition; one
    erasure draw per image shared by every k (paired)."""
    c = model.latent_channels
    y = quantized(model, x)
    h, w = x.shape[-2:]
    table = torch.zeros(len(losses), len(bursts), c)
    for i, p in enumerate(losses):
        for j, b in enumerate(bursts):
            gen = torch.Generator().manual_seed(seed + 1000 * i + j)
            n = len(x)
            kept = erasure_mask(n, c, torch.full((n,), p), torch.full((n,), b), gen)
            for k in range(1, c + 1):
                got = kept & prefix_mask(k, c)[None]
                x_hat = model.decoder(receive(model, y, got))[..., :h, :w]
                table[i, j, k - 1] = psnr_db(x_hat, x).mean()
    return table


def targets(table: torch.Tensor, tolerance_db: float, min_channels: int) -> torch.Tensor:
    """k*(loss, burst): the smallest k whose PSNR is within ``tolerance_db`` of all C
    channels', then made non-decreasing along loss and burst (a worse channel never gets a
    shorter prefix)."""
    full = table[..., -1:]
    ok = table >= full - tolerance_db
    k = ok.float().argmax(-1) + 1  # first k that is within the tolerance
    k = k.clamp(min=min_channels)
    k = torch.cummax(k, dim=0).values
    return torch.cummax(k, dim=1).values


def _between(grid: tuple[float, ...], value: float) -> tuple[int, int, float]:
    """(i, i + 1, fraction) of ``value`` on a sorted ``grid``, clamped to its ends."""
    value = min(max(value, grid[0]), grid[-1])
    i = max(0, min(int(np.searchsorted(grid, value, side="right")) - 1, len(grid) - 2))
    return i, i + 1, (value - grid[i]) / (grid[i + 1] - grid[i])


def fit_grid(k_star: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (M, 3), target k (M,)) over reported conditions: loss, burst, SNR. The
    effective loss 1 - (1 - loss)(1 - link PER(SNR)) and log2 of the burst are interpolated
    on the calibration grid, rounded up (never fewer channels than the grid says)."""
    feats, ks = [], []
    k = k_star.float()
    log_bursts = tuple(math.log2(b) for b in CAL_BURSTS)
    for snr in FIT_SNRS:
        link = link_loss(snr)
        for p in FIT_LOSSES:
            i0, i1, a = _between(CAL_LOSSES, 1 - (1 - p) * (1 - link))
            for b in FIT_BURSTS:
                j0, j1, c = _between(log_bursts, math.log2(b))
                row0 = k[i0, j0] * (1 - c) + k[i0, j1] * c
                row1 = k[i1, j0] * (1 - c) + k[i1, j1] * c
                feats.append(condition_features(p, b, snr))
                ks.append(math.ceil(float(row0 * (1 - a) + row1 * a) - 1e-6))
    return torch.stack(feats), torch.tensor(ks)


def fit_condition_encoder(
    model: MIJSCCCodec, feats: torch.Tensor, ks: torch.Tensor, steps: int, seed: int
) -> dict[str, float]:
    """Fit N_enc so that |{j : g̃_j > η}| = k* on the grid. With g = d(u) · p (the encoder's
    product form), g̃_j = d(u) S_j, S_j = Σ_{i >= j} e^{a_i}, so k* holds exactly when
    η / S_{k*-1} < d(u) <= η / S_{k*}: log d is regressed onto the middle of that interval,
    then pushed inside it (squared hinge, margin 0.03), ``steps`` L-BFGS iterations each (the
    profile stays at its initialisation). Returns how well it fits."""
    torch.manual_seed(seed)
    c = model.latent_channels
    enc = model.condition
    enc.reset()
    with torch.no_grad():
        log_s = torch.log(suffix_sum(torch.exp(enc.profile)))  # (C,), decreasing
        lo = math.log(model.eta) - log_s[ks - 1]  # log d must be above this ...
        hi = math.log(model.eta) - log_s[ks.clamp(max=c - 1)]  # ... and at most this
        hi = torch.where(ks < c, hi, torch.full_like(hi, math.inf))
        middle = torch.where(ks < c, (lo + hi) / 2, lo + 0.5)
    params = [p for n, p in enc.named_parameters() if n != "profile"]

    def middle_loss() -> torch.Tensor:
        return F.mse_loss(enc.demand(feats), middle)

    def hinge_loss() -> torch.Tensor:
        d = enc.demand(feats)
        return (F.relu(lo + 0.03 - d).square() + F.relu(d - hi + 0.03).square()).mean()

    with torch.enable_grad():
        for objective in (middle_loss, hinge_loss):
            opt = torch.optim.LBFGS(
                params, lr=1, max_iter=50, history_size=50, line_search_fn="strong_wolfe"
            )

            def closure(objective=objective, opt=opt) -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                loss = objective()
                loss.backward()
                return loss

            for _ in range(steps):
                opt.step(closure)
    with torch.no_grad():
        got = model.end_indices(feats)
    return {
        "fit_exact": round(float((got == ks).float().mean()), 4),
        "fit_max_error_channels": int((got - ks).abs().max()),
        "fit_mean_error_channels": round(float((got - ks).float().mean()), 3),
    }


def calibrate(model: MIJSCCCodec, x: torch.Tensor, s: MultitaskTrainSettings) -> dict[str, Any]:
    """Measure PSNR(k | condition) on held-out training images, fit N_enc to the targets."""
    table = psnr_table(model, x[: s.calibration_images], s.seed)
    k_star = targets(table, s.adapt_tolerance_db, model.min_channels)
    feats, ks = fit_grid(k_star)
    fit = fit_condition_encoder(model, feats, ks, s.calibration_steps, s.seed)
    return {
        "tolerance_db": s.adapt_tolerance_db,
        "losses": list(CAL_LOSSES),
        "bursts": list(CAL_BURSTS),
        "k_star": k_star.tolist(),
        **fit,
    }
