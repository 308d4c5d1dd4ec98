"""``cnn-rd``: the CNN codec with a rate, for entropy coding per datagram (issue 16).

The backbone is :class:`~semnet.models.cnn.CNNCodec` unchanged, so a trained fixed-rate codec
seeds it (``init_from``). Its tanh output is multiplied by a learned per-channel gain g_c, which
puts the latent on the integer grid of a ``round`` quantizer (bits wide, |values| <= g_c): a
channel whose gain shrinks spends fewer distinct symbols, and so fewer bits, on the wire. The
decoder divides by the same gain, so it sees the tanh range it was trained on. A learned
factorized prior (:mod:`semnet.models.entropy`) gives the rate; trained with
λ·255²·MSE + bits per pixel it trades quality for bytes, one λ per rate point.
"""

import math

import numpy as np
import torch
from torch import nn

from semnet.models.cnn import CNNCodec
from semnet.models.codec import QuantDefaults
from semnet.models.entropy import FactorizedPrior


class RDCodec(CNNCodec):
    def __init__(
        self,
        cbr: float = 1 / 12,
        hidden: int = 96,
        bits: int = 6,
        stride: int = 16,
        blocks: int = 0,
        gain: float = 15.5,
    ) -> None:
        super().__init__(cbr=cbr, hidden=hidden, bits=bits, stride=stride, blocks=blocks)
        half = 2 ** (bits - 1)
        if not 0 < gain <= half - 1:
            raise ValueError(f"gain {gain} outside (0, {half - 1}] for {bits}-bit symbols")
        self.quant = QuantDefaults(kind="round", bits=bits, lo=-half, hi=half - 1)
        self.max_gain = float(half - 1)
        self.log_gain = nn.Parameter(torch.full((self.latent_channels,), math.log(gain)))
        self.entropy_model = FactorizedPrior(self.latent_channels)
        # The coder's tables, frozen with the weights so that sender and receiver (possibly on
        # different devices) code with bit-identical probabilities; see update_table().
        self.register_buffer("pmf", torch.zeros(self.latent_channels, 2**bits))
        self.update_table()

    def gain(self) -> torch.Tensor:
        return self.log_gain.exp().clamp(max=self.max_gain)[None, :, None, None]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return super().encode(x) * self.gain()

    def synthesize(self, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(y / self.gain())

    def rate_bits(self, y_noisy: torch.Tensor) -> torch.Tensor:
        return self.entropy_model.bits(y_noisy)

    def rate_parameters(self) -> list[nn.Parameter]:
        return [self.log_gain, *self.entropy_model.parameters()]

    @torch.no_grad()
    def update_table(self) -> None:
        """Recompute the coder's tables from the entropy model (after training changed it)."""
        self.pmf.copy_(self.entropy_model.table(int(self.quant.lo), self.pmf.shape[1]))

    def entropy_table(self) -> np.ndarray:
        return self.pmf.detach().double().cpu().numpy()
