"""The one codec interface every architecture implements.

A codec maps an image batch (N, 3, H, W) in [0, 1] to a latent (N, C, h, w) inside the
quantizer range and back. Training adds quantization noise and unit erasures between the
two halves; at run time the pipeline quantizes, packetizes, fills and decodes.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class QuantDefaults:
    """How the codec's latent is quantized on the wire unless a config says otherwise."""

    kind: str  # "round" | "uniform" | "asymmetric" (see semnet.core.quant)
    bits: int
    lo: float
    hi: float


class Codec(nn.Module):
    """Base class: subclasses define ``encoder``, ``decoder``, ``latent_channels``, ``stride``."""

    stride: int
    latent_channels: int
    quant: QuantDefaults
    zoo_name: str | None = None  # set when loaded from the zoo (fills look up its imputer)

    def __init__(
        self,
        cbr: float | None = None,
        stride: int = 16,
        bits: int = 5,
        *,
        channels: int | None = None,
    ) -> None:
        """C = cbr * 3 * stride^2 latent channels (or C = ``channels``), quantized to ``bits``
        over [-1, 1] (tanh); a codec whose latent has another range sets ``self.quant`` to
        another quantizer (e.g. asymmetric: each frame's own range) after this."""
        super().__init__()
        if (cbr is None) == (channels is None):
            raise ValueError("give one of cbr and channels")
        latent_channels = round(cbr * 3 * stride**2) if channels is None else channels
        if latent_channels < 1:
            given = f"cbr {cbr}" if channels is None else f"channels {channels}"
            raise ValueError(f"{given} gives no latent channels at stride {stride}")
        self.latent_channels, self.stride = latent_channels, stride
        self.quant = QuantDefaults(kind="uniform", bits=bits, lo=-1.0, hi=1.0)
        # Per-channel mean of the latent over the training data: the "mean" fill uses it, so it
        # works even when a whole channel is lost. Set by training, saved in checkpoints.
        self.register_buffer("channel_mean", torch.zeros(latent_channels))

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        s = self.stride
        return (self.latent_channels, -(-height // s), -(-width // s))

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad to a multiple of the stride; ``decode`` output is cropped back later."""
        s = self.stride
        h, w = x.shape[-2:]
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    # channels_last: encode and decode run about 35% faster on CPU (benchmarks/frame_time.py)
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.pad(x).contiguous(memory_format=torch.channels_last))

    def synthesize(self, y: torch.Tensor) -> torch.Tensor:
        """The decoder on a latent in the quantizer's range, uncropped and unclamped (training)."""
        return self.decoder(y)

    def decode(self, y: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = self.synthesize(y.contiguous(memory_format=torch.channels_last))
        return x[..., :height, :width].clamp(0.0, 1.0)

    def rate_bits(self, y_noisy: torch.Tensor) -> torch.Tensor | None:
        """Information content in bits of a noisy latent under the codec's learned entropy
        model (the rate term of training); None for a fixed-rate codec."""
        return None

    def rate_parameters(self) -> list[nn.Parameter]:
        """Parameters of the rate model (entropy model, gains): they start far from what a
        trained transform needs, so training lets them learn faster. None for a fixed rate."""
        return []

    def update_table(self) -> None:
        """Refresh the coder's tables from the entropy model once training changed it."""

    def entropy_table(self) -> np.ndarray | None:
        """(C, 2^bits) symbol probabilities per channel for the entropy coder, or None when the
        latent goes on the wire as plain fixed-width values."""
        return None
