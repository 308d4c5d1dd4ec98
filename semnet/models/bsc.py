"""A source code with a learned bit interface (paper 003 §II-B, eq. 8-15; issue 18).

The source mapper is the CNN encoder (``semnet.models.cnn``) down to C channels in [-1, 1]
(tanh), quantized uniformly to ``bits`` bits: the bit-planes b (N, C, bits, h, w), MSB first,
are the binary latent (eq. 1, f_theta's rounding = the quantizer). During training every bit
passes its own binary symmetric channel (eq. 8) with flip probability
``eps[c, j] = 0.5 * sigmoid(theta[c, j])`` (so in [0, 0.5]), learned (``interface: learned``)
or fixed (``interface: fixed``, Split DeepJSCC's prescribed levels by bit position, ``eps``).

The demapper (source decoder f_phi) sees both the noisy bit-planes (as +-1, C * bits channels)
and the value they dequantize to (C channels), so it can learn to distrust inconsistent bits.

Gradients (eq. 12 and the STE of eq. 15): with f the hard bit, the noisy bit is sampled from
``p = f (1 - eps) + (1 - f) eps`` and passed as ``p + (sample - p).detach()``, so the loss reaches
eps through p (d p / d eps = 1 - 2 f); the encoder is reached by the quantizer's straight-through
identity on the clean dequantized value (the flips are added on top of it). The regulariser
``lam / M * sum (eps - 0.5)^2`` (eq. 9) is :meth:`BSCCodec.regulariser`.

Channel-bandwidth ratio: with Gray QPSK (2 bits per complex channel use) a frame's L channel
uses carry its M = C * bits * h * w bits, so CBR = L / (3 H W) = C * bits / (2 * 3 * stride^2):
C = 16 at 4 bits is 1/24, C = 8 is 1/48 (stride 16).
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from semnet.models.cnn import CNNCodec
from semnet.models.layers import up

INTERFACE_KINDS = ("learned", "fixed")


class BSCCodec(CNNCodec):
    # The learned flip probabilities get gradients only through the BSCs of training
    # (through_bsc), not from encode -> decode: generic codec tests skip them.
    SIDE_MODULES = ("eps_logit",)

    def __init__(
        self,
        channels: int = 16,
        bits: int = 4,
        hidden: int = 96,
        stride: int = 16,
        blocks: int = 0,
        interface: str = "learned",
        eps: Sequence[float] | None = None,
        eps_init: float = 0.05,
    ) -> None:
        """``eps``: flip probabilities by bit position (MSB first) for a ``fixed`` interface;
        a ``learned`` one starts every (channel, bit) at ``eps_init``."""
        if interface not in INTERFACE_KINDS:
            raise ValueError(f"interface {interface!r} is not one of {', '.join(INTERFACE_KINDS)}")
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels {channels!r} must be a positive integer")
        if not 1 <= bits <= 8:
            raise ValueError(f"bits {bits!r} must be in 1..8")
        super().__init__(channels / (3 * stride**2), hidden, bits, stride, blocks=blocks)
        if self.latent_channels != channels:
            raise ValueError(f"channels {channels}: rounding gave {self.latent_channels}")
        self.bits = bits
        self.kind = interface
        self.decoder[0] = up(channels * (bits + 1), hidden)  # value + bit-planes in
        if interface == "fixed":
            if eps is None or len(eps) != bits:
                raise ValueError(f"a fixed interface needs eps: {bits} values, MSB first")
            e = torch.tensor([float(v) for v in eps])
            if not torch.all((e >= 0) & (e <= 0.5)):
                raise ValueError("eps values must lie in [0, 0.5]")
            self.register_buffer("eps_fixed", e.repeat(channels, 1))
        else:
            if eps is not None:
                raise ValueError("a learned interface takes eps_init, not eps")
            if not 0.0 < eps_init < 0.5:
                raise ValueError("eps_init must lie in (0, 0.5)")
            logit = float(np.log(2 * eps_init / (1 - 2 * eps_init)))
            self.eps_logit = nn.Parameter(torch.full((channels, bits), logit))
        weights = 2.0 ** torch.arange(bits - 1, -1, -1, dtype=torch.float32)
        self.register_buffer("place", weights, persistent=False)

    # --- the interface ----------------------------------------------------------------

    def eps(self) -> torch.Tensor:
        """(C, bits) flip probabilities in [0, 0.5]."""
        if self.kind == "fixed":
            return self.eps_fixed
        return 0.5 * torch.sigmoid(self.eps_logit)

    def interface(self) -> np.ndarray:
        return self.eps().detach().cpu().double().numpy()

    def regulariser(self, lam: float) -> torch.Tensor:
        """Eq. 9: lam / M * sum_n (eps_n - 0.5)^2 (zero for a fixed interface)."""
        if self.kind == "fixed":
            return torch.zeros(())
        return lam * (self.eps() - 0.5).square().mean()

    # --- bits -------------------------------------------------------------------------

    @property
    def levels(self) -> int:
        return 2**self.bits - 1

    def to_index(self, y: torch.Tensor) -> torch.Tensor:
        """Quantizer indices 0..2^bits-1 of a latent in [-1, 1] (as the wire's uniform one)."""
        return torch.floor((y.clamp(-1, 1) + 1) / 2 * self.levels + 0.5)

    def bitplanes(self, index: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) indices -> (N, C, bits, h, w) bits in {0, 1}, MSB first."""
        i = index.to(torch.int64).unsqueeze(2)
        shifts = torch.arange(self.bits - 1, -1, -1, device=i.device).view(1, 1, -1, 1, 1)
        return ((i >> shifts) & 1).to(index.dtype)

    def value(self, planes: torch.Tensor) -> torch.Tensor:
        """Bit-planes (N, C, bits, h, w) -> the dequantized latent in [-1, 1]."""
        index = (planes * self.place.view(1, 1, -1, 1, 1)).sum(dim=2)
        return index / self.levels * 2 - 1

    def demap(self, planes: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The source demapper on (noisy) bit-planes; ``y`` (training) is the value to feed
        in their place, carrying the straight-through gradients."""
        n, c, b, h, w = planes.shape
        v = self.value(planes) if y is None else y
        z = torch.cat([v, (planes * 2 - 1).reshape(n, c * b, h, w)], dim=1)
        return self.decoder(z.contiguous(memory_format=torch.channels_last))

    def synthesize(self, y: torch.Tensor) -> torch.Tensor:
        """The decoder on a latent on the quantizer grid (the ordinary packet path): its bits
        are read back and demapped as if the channel had flipped none (straight through to
        ``y``, so a generic trainer reaches the encoder too)."""
        planes = self.bitplanes(self.to_index(y.detach()))
        return self.demap(planes, y + (self.value(planes) - y).detach())

    # --- training ---------------------------------------------------------------------

    def through_bsc(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Quantize ``y`` to bit-planes, pass each through its BSC (eq. 8, 12), demap (eq. 6);
        returns the reconstruction. Gradients per the module docstring."""
        index = self.to_index(y.detach())
        f = self.bitplanes(index)  # hard bits (eq. 1)
        eps = self.eps().to(y.dtype).view(1, -1, self.bits, 1, 1)
        p = f * (1 - eps) + (1 - f) * eps  # eq. 12: P(noisy bit = 1)
        u = torch.rand(f.shape, generator=gen).to(y.device)
        noisy = (u < p.detach()).to(y.dtype)
        b_hat = p + (noisy - p).detach()  # STE: value = sample, gradient through p to eps
        clean = y + (index / self.levels * 2 - 1 - y).detach()  # quantizer STE to the encoder
        delta = ((b_hat - f) * self.place.view(1, 1, -1, 1, 1)).sum(dim=2) / self.levels * 2
        return self.demap(b_hat, clean + delta)
