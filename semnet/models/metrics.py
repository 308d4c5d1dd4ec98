"""Image quality metrics on (N, 3, H, W) tensors in [0, 1]; the receiver, sweeps and RD curves
share them."""

import math

import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from torch.nn import functional as F


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB with MAX = 1 (same as 255 on 8-bit images); capped at 100 dB when identical."""
    mse = F.mse_loss(x.float(), ref.float()).item()
    return 100.0 if mse <= 1e-10 else 10.0 * math.log10(1.0 / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - size // 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, ref: torch.Tensor) -> float:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, per channel.

    An image smaller than the window gets the largest odd window that fits it, so a tiny
    image still has a score rather than a convolution error."""
    x, ref = x.float(), ref.float()
    c = x.shape[1]
    g = _gaussian(min(11, (min(x.shape[-2:]) - 1) // 2 * 2 + 1))
    win = (g[:, None] * g[None, :]).expand(c, 1, -1, -1).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)

    mu_x, mu_y = blur(x), blur(ref)
    sxx = blur(x * x) - mu_x**2
    syy = blur(ref * ref) - mu_y**2
    sxy = blur(x * ref) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean().item()


MS_SSIM_MIN_SIDE = 161  # 11-px window after 4 halvings: a shorter side cannot take 5 scales


def ms_ssim(x: torch.Tensor, ref: torch.Tensor) -> float | None:
    """MS-SSIM (Wang et al. 2003, 5 scales, the standard weights) via pytorch_msssim.

    None when the shorter side is under :data:`MS_SSIM_MIN_SIDE` px: fewer scales would give a
    different metric, not comparable with published MS-SSIM, so we report none rather than that.
    """
    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return None
    return _ms_ssim(x.float(), ref.float(), data_range=1.0).item()
