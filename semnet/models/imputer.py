"""Generative feature imputing (paper 002 §III-B): DDIM over the codec latent.

A small conditional UNet denoises a diffusion in the (channel-normalised) latent space,
conditioned on the received latent ŷ — lost entries initialised with F(0), the codec's latent of
an all-zero image (eq. 17) — and on the loss masks: the lost entries themselves and their κ×κ
dilation M (eq. 16), the region the model attends to.

The network predicts v = √ᾱ·ε − √(1−ᾱ)·y0 (Salimans & Ho), from which both the noise ε̂ and the
clean latent ŷ0 follow exactly. Training minimises, over M (eq. 22 read with M = 1 where
features are generated), the noise-prediction error of eq. 22 plus the clean-latent error —
which is the v error. The second term matters for DDIM in few steps: with the noise error alone
the clean latent at high noise is ε̂ amplified by 1/√ᾱ (≈ 300 at the first step), and sampling
from an imperfect ε̂ saturates. Sampling is DDIM (eq. 21, σ_t = 0) with T steps, starting from
noise N(0, τ² I): τ = 1 draws a posterior sample, τ = 0 follows the DDIM trajectory from the
prior's mode (the receiver's default: samples carry texture of their own into lost channels,
which the decoder renders as colour noise — measured worse in PSNR and LPIPS, see
docs/imputing.md). Received entries are held fixed at every step (the predicted clean latent is
overwritten there) and are returned exactly as received.
"""

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

from semnet.models.codec import Codec

TRAIN_STEPS = 1000  # the discrete diffusion time of training; DDIM visits T of these


def alpha_bar(t: torch.Tensor) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal): ᾱ at integer time t in [0, TRAIN_STEPS]."""
    s = 0.008
    f = torch.cos((t.float() / TRAIN_STEPS + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (f / f0).clamp(1e-5, 1.0)


def dilate(lost: torch.Tensor, kappa: int) -> torch.Tensor:
    """Eq. 16 per channel: M = 1 where a κ×κ all-ones kernel over ``lost`` sums to ≥ 1."""
    if kappa <= 1:
        return lost
    lo, hi = (kappa - 1) // 2, kappa // 2
    padded = F.pad(lost.float(), (lo, hi, lo, hi))
    return F.max_pool2d(padded, kappa, stride=1) > 0


@functools.lru_cache(maxsize=16)
def f0_latent(codec: Codec, height: int, width: int, device: str) -> torch.Tensor:
    """F(0): the codec's latent of an all-zero image of this size (cached per codec and size)."""
    with torch.inference_mode():
        zeros = torch.zeros(1, 3, height, width, device=device)
        return codec.encode(zeros).float().contiguous()


def _timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """Two 3×3 convolutions with GroupNorm and SiLU; the timestep embedding shifts the middle."""

    def __init__(self, cin: int, cout: int, temb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(temb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class LatentUNet(nn.Module):
    """v_θ(y_t, t, ŷ, masks): a two-level UNet at the latent's resolution and half of it.

    Input channels: y_t, ŷ (F(0) where lost), the lost mask and its dilation M — 4·C in all.
    """

    def __init__(self, channels: int, width: int = 64) -> None:
        super().__init__()
        temb = 4 * width
        self.width = width
        self.embed = nn.Sequential(nn.Linear(width, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.inp = nn.Conv2d(4 * channels, width, 3, padding=1)
        self.enc1 = ResBlock(width, width, temb)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.enc2 = ResBlock(2 * width, 2 * width, temb)
        self.mid = ResBlock(2 * width, 2 * width, temb)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec1 = ResBlock(2 * width, width, temb)
        self.out_norm = nn.GroupNorm(8, width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, y_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h, w = y_t.shape[-2:]
        x = F.pad(torch.cat([y_t, cond], dim=1), (0, w % 2, 0, h % 2), mode="replicate")
        emb = self.embed(_timestep_features(t, self.width))
        h1 = self.enc1(self.inp(x), emb)
        h2 = self.mid(self.enc2(self.down(h1), emb), emb)
        out = self.dec1(torch.cat([self.up(h2), h1], dim=1), emb)
        return self.out(F.silu(self.out_norm(out)))[..., :h, :w]


class DiffusionImputer(nn.Module):
    """Imputes the lost entries of one codec's latent; holds that latent's channel statistics.

    Works in normalised space z = (y - mean_c) / std_c so the diffusion sees unit-scale data;
    ``mean`` and ``std`` are set from the training latents and saved with the weights.
    """

    def __init__(self, channels: int, width: int = 64, kappa: int = 2) -> None:
        super().__init__()
        self.channels, self.kappa = channels, kappa
        self.unet = LatentUNet(channels, width)
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def _norm(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

    def _denorm(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)

    def _condition(self, y_init: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
        region = dilate(lost, self.kappa)
        return torch.cat([self._norm(y_init), lost.float(), region.float()], dim=1)

    def loss(
        self, y0: torch.Tensor, lost: torch.Tensor, f0: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        """Masked noise-prediction error (eq. 22) plus masked clean-latent error, over the
        dilated loss region M; together they are the v-prediction error."""
        n = y0.shape[0]
        t = torch.randint(1, TRAIN_STEPS + 1, (n,), generator=gen, device=y0.device)
        eps = torch.randn(y0.shape, generator=gen, device=y0.device)
        err, region = self.masked_error(y0, lost, f0, t, eps)
        return err / region.clamp(min=1.0)

    def masked_error(
        self, y0: torch.Tensor, lost: torch.Tensor, f0: torch.Tensor, t: torch.Tensor, eps
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed v-prediction error over the loss region, the region's size) at timesteps
        ``t`` with noise ``eps``: the loss before it is normalised (by one process, or by the
        whole batch across processes, semnet.models.imputer_train.shared_loss)."""
        a = alpha_bar(t).view(-1, 1, 1, 1)
        z0 = self._norm(y0)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps
        cond = self._condition(torch.where(lost, f0, y0), lost)
        region = dilate(lost, self.kappa).float()
        v = self.unet(z_t, t, cond)
        eps_hat = (1 - a).sqrt() * z_t + a.sqrt() * v
        z0_hat = a.sqrt() * z_t - (1 - a).sqrt() * v
        err = ((eps_hat - eps).square() + (z0_hat - z0).square()) * region
        return err.sum(), region.sum()

    @torch.no_grad()
    def impute(
        self,
        y: torch.Tensor,
        received: torch.Tensor,
        f0: torch.Tensor,
        bounds: tuple[float, float],
        steps: int = 10,
        gen: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """DDIM (η = 0) in ``steps`` steps from noise times ``temperature``, clamped to the
        quantizer's ``bounds``; received entries come back exactly as they were."""
        lost = ~received
        if not lost.any():
            return y
        y_init = torch.where(lost, f0.expand_as(y), y)
        cond = self._condition(y_init, lost)
        known = self._norm(y_init)
        z = temperature * torch.randn(y.shape, generator=gen, device=y.device, dtype=y.dtype)
        times = torch.linspace(TRAIN_STEPS, 0, steps + 1).round().long().tolist()
        # the predicted clean latent is clipped to the quantizer range, as DDPM clips images
        edges = torch.tensor(bounds, device=y.device, dtype=y.dtype)
        z_lo, z_hi = self._norm(edges.view(2, 1, 1, 1).expand(2, self.channels, 1, 1))
        z0 = known
        for t, t_prev in zip(times[:-1], times[1:], strict=True):
            tt = torch.full((y.shape[0],), t, device=y.device)
            a, a_prev = (float(alpha_bar(torch.tensor(i))) for i in (t, t_prev))
            v = self.unet(z, tt, cond)
            z0 = torch.clamp(math.sqrt(a) * z - math.sqrt(1 - a) * v, z_lo, z_hi)
            z0 = torch.where(lost, z0, known)  # received entries held fixed
            eps = (z - math.sqrt(a) * z0) / math.sqrt(1 - a)
            z = math.sqrt(a_prev) * z0 + math.sqrt(1 - a_prev) * eps
        return torch.where(lost, self._denorm(z0).clamp(*bounds), y)
