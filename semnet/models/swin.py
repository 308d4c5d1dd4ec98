"""Swin Transformer codec, a small SwinJSCC (paper 001 §III-A, Table I) without its rate and SNR
adaptation modules.

Encoder: 2x2 patch embedding, then four stages of Swin blocks (windowed self-attention, W-MSA
and shifted SW-MSA alternating, relative position bias) with patch merging between them, down to
1/16 resolution; "Norm & FC" maps each token to the C latent channels and tanh squashes it into
the quantizer range. The latent is (C, h, w) with one token per spatial position, so the channel,
token, intra-token, spatial and patch partitioners all apply. The decoder mirrors it with patch
expanding (Swin-Unet) and a 2x2 patch reversal to RGB.

Same interface, stride (16), channel-bandwidth ratio (C / (3 * 16^2)) and quantizer as the CNN
codec. Sizes that are not multiples of the window are padded per block and the padded keys masked
out, so any image size works; training crops (multiples of 128) never need it.
"""

import functools

import torch
from torch import nn
from torch.nn import functional as F

from semnet.models.codec import Codec
from semnet.models.layers import mlp

STRIDE = 16  # patch embedding 2x2, then three merges


@functools.lru_cache(maxsize=64)
def window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor | None:
    """Which keys each query may see, per window: (nW, ws², ws²) bool, None when all may.

    The map (h, w) is padded to window multiples (hp, wp); padded keys are masked. With a shift
    the map is rolled by -shift and tokens that came from different regions (Swin's cyclic-shift
    trick) may not attend to each other. Every token may attend to itself.
    """
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    if shift == 0 and (hp, wp) == (h, w):
        return None
    valid = torch.zeros(hp, wp, dtype=torch.bool)
    valid[:h, :w] = True
    region = torch.zeros(hp, wp, dtype=torch.long)
    if shift:
        valid = valid.roll((-shift, -shift), dims=(0, 1))
        cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
        for i, rows in enumerate(cuts):
            for j, cols in enumerate(cuts):
                region[rows, cols] = 3 * i + j
    region, valid = partition(region[None, ..., None], ws), partition(valid[None, ..., None], ws)
    region, valid = region[0, ..., 0], valid[0, ..., 0]  # (nW, ws²)
    allowed = (region[:, :, None] == region[:, None, :]) & valid[:, None, :]
    return allowed | torch.eye(ws * ws, dtype=torch.bool)


def partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, ws², C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).transpose(2, 3)
    return x.reshape(b, (h // ws) * (w // ws), ws * ws, c)


def merge(x: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`partition`."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // ws, w // ws, ws, ws, c).transpose(2, 3)
    return x.reshape(b, h, w, c)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with Swin's relative position bias."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        )
        rel = (coords.flatten(1)[:, :, None] - coords.flatten(1)[:, None, :]) + (window - 1)
        self.register_buffer("bias_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, nW, N, C); mask (nW, N, N) bool or None."""
        b, nw, n, c = x.shape
        q, k, v = (
            self.qkv(x).view(b, nw, n, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        )
        bias = self.bias_table[self.bias_index].permute(2, 0, 1)  # (heads, N, N)
        if mask is not None:
            bias = bias.masked_fill(~mask.to(x.device)[:, None], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


class SwinBlock(nn.Module):
    """Pre-norm Swin block on (B, H, W, C): (S)W-MSA then an MLP, both residual."""

    def __init__(self, dim: int, heads: int, window: int, shift: bool, mlp_ratio: float) -> None:
        super().__init__()
        self.window, self.shift = window, window // 2 if shift else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp([dim, round(dim * mlp_ratio), dim], nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        ws = self.window
        shift = self.shift if max(h, w) > ws else 0  # one window: nothing to shift across
        y = self.norm1(x)
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        if (hp, wp) != (h, w):
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        if shift:
            y = y.roll((-shift, -shift), dims=(1, 2))
        y = merge(self.attn(partition(y, ws), window_mask(h, w, ws, shift)), ws, hp, wp)
        if shift:
            y = y.roll((shift, shift), dims=(1, 2))
        x = x + y[:, :h, :w]
        return x + self.mlp(self.norm2(x))


def stage(dim: int, depth: int, heads: int, window: int, mlp_ratio: float) -> nn.Sequential:
    return nn.Sequential(
        *(
            SwinBlock(dim, heads, window, shift=i % 2 == 1, mlp_ratio=mlp_ratio)
            for i in range(depth)
        )
    )


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, H/2, W/2, out): concatenate each 2x2 group, LayerNorm, Linear."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduce = nn.Linear(4 * dim, out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduce(self.norm(x))


class PatchExpand(nn.Module):
    """(B, H, W, C) -> (B, 2H, 2W, out): Linear to 4·out, 2x2 pixel shuffle, LayerNorm."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 4 * out, bias=False)
        self.norm = nn.LayerNorm(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        x = self.expand(x).view(b, h, w, 2, 2, -1).permute(0, 1, 3, 2, 4, 5)
        return self.norm(x.reshape(b, 2 * h, 2 * w, -1))


class SwinEncoder(nn.Module):
    """(N, 3, H, W), H and W multiples of 16 -> (N, C, H/16, W/16) in [-1, 1]."""

    def __init__(self, channels: int, dims, depths, heads, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dims[0], 2, stride=2)
        self.embed_norm = nn.LayerNorm(dims[0])
        self.stages = nn.ModuleList()
        for i, (d, n, h) in enumerate(zip(dims, depths, heads, strict=True)):
            merging = [PatchMerging(dims[i - 1], d)] if i else []
            self.stages.append(nn.Sequential(*merging, *stage(d, n, h, window, mlp_ratio)))
        self.head_norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_norm(self.embed(x).permute(0, 2, 3, 1))
        for s in self.stages:
            x = s(x)
        return torch.tanh(self.head(self.head_norm(x))).permute(0, 3, 1, 2)


class SwinDecoder(nn.Module):
    """(N, C, h, w) -> (N, 3, 16h, 16w), the encoder mirrored."""

    def __init__(self, channels: int, dims, depths, heads, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.head = nn.Linear(channels, dims[-1])
        self.stages = nn.ModuleList()
        for i in reversed(range(len(dims))):
            expanding = [PatchExpand(dims[i], dims[i - 1])] if i else []
            self.stages.append(
                nn.Sequential(*stage(dims[i], depths[i], heads[i], window, mlp_ratio), *expanding)
            )
        self.out_norm = nn.LayerNorm(dims[0])
        self.out = nn.Linear(dims[0], 3 * 4)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.head(y.permute(0, 2, 3, 1))
        for s in self.stages:
            x = s(x)
        x = self.out(self.out_norm(x)).permute(0, 3, 1, 2)  # (N, 12, H/2, W/2)
        return F.pixel_shuffle(x, 2)


class SwinCodec(Codec):
    """Swin Transformer codec (architecture ``swin``). ``dims``/``depths``/``heads``: per stage,
    at 1/2, 1/4, 1/8 and 1/16 resolution (the decoder uses the same, mirrored)."""

    def __init__(
        self,
        cbr: float = 1 / 12,
        dims: tuple[int, ...] | list[int] = (32, 48, 64, 96),
        depths: tuple[int, ...] | list[int] = (2, 2, 2, 2),
        heads: tuple[int, ...] | list[int] = (2, 3, 4, 6),
        window: int = 8,
        mlp_ratio: float = 2.0,
        bits: int = 5,
    ) -> None:
        if not len(dims) == len(depths) == len(heads) == 4:
            raise ValueError("dims, depths and heads need 4 entries each (1/2 .. 1/16 resolution)")
        if any(d % h for d, h in zip(dims, heads, strict=True)):
            raise ValueError(f"dims {list(dims)} must be multiples of heads {list(heads)}")
        if window < 1:
            raise ValueError(f"window {window} must be >= 1")
        super().__init__(cbr, STRIDE, bits)
        channels = self.latent_channels
        args = (channels, tuple(dims), tuple(depths), tuple(heads), window, mlp_ratio)
        self.encoder = SwinEncoder(*args)
        self.decoder = SwinDecoder(*args)
