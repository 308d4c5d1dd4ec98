"""Semantic Equalization Mechanism (paper 001 §IV): Dynamic Scale and Neighbouring Semantic
Broadcast. ``semnet.models.cnn`` builds the CNN codecs that use them (``cnn-scale``, ``cnn-nsb``,
``cnn-sem``) from constructor flags.

Both modules sit where Algorithm 1 puts SEM: after the semantic encoder, before quantization
(F = E(I); F_eq = SEM(F); Z = Q(F_eq)). The decoder is the plain CNN decoder. With both, Dynamic
Scale is the encoder's last layer (it produces the tanh-squashed Z, §IV-B2) and the broadcast then
mixes that Z (§IV-C, "given the encoded feature tensor Z").
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from semnet.models.layers import mlp

# Γ's layer widths (d0, d1, d2, d3) before the output width c (§IV-B3).
GAMMA_DIMS = (1, 16, 16, 16)


class DynamicScaleConv(nn.Module):
    """Dynamic Scale (001 §IV-B2): a weight-normalised, γ-scaled convolution; tanh follows it.

    Per output channel i, with f the input feature (a 5x5xCin patch at each position) and
    W̃_i = [W_i, b_i] the augmented row (filter and bias):

    * S(z) = W z + b = W̃ z̃ (eq. S): ``weight`` and ``bias`` form W̃, the convolution applies
      it to the augmented patch f̃ = [f, 1] at every position;
    * Ŵ_i = γ_i W̃_i / ||W̃_i||_2 (eq. Ŵ): :meth:`projection` is the unit-norm row, ``forward``
      multiplies it by γ_i before convolving;
    * z_i = tanh(γ_i W̃_i / ||W̃_i||_2 f̃) (eq. z): the codec's ``nn.Tanh`` right after this module.

    γ = Γ(s) comes from a 4-layer fully connected network with widths 1 -> 16 -> 16 -> 16 -> c
    (§IV-B3, 576 + 17c parameters), ReLU between layers. Its single input s is the *channel
    condition* ("adaptively adjusts the importance of semantic channels according to the current
    channel condition", d0 = 1): a scalar, not a summary of the image. Here the channel is packet
    loss, so s is the expected loss rate in [0, 1], held in the non-persistent buffer
    ``condition`` (default 0). Algorithm 1 trains without loss in the channel and semnet's
    trainer draws erasures after encoding, so training sees s = 0 and Γ(0) is the learned
    importance vector (Γ's first weight then gets no gradient: it only ever multiplies 0); set
    ``condition`` only for a model trained with varying s. The paper asks
    for "normalized scaling values": γ = c · softmax(Γ(s)), positive with mean 1, so the channels
    share a fixed gain budget — raising one channel's importance lowers the others'. That and the
    unit-norm rows are what equalise the channels: no channel can win by growing its weights.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 5, stride: int = 2) -> None:
        super().__init__()
        self.stride, self.padding = stride, kernel // 2
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's initialisation
        bound = 1 / math.sqrt(cin * kernel * kernel)
        nn.init.uniform_(self.bias, -bound, bound)
        self.gamma = mlp([*GAMMA_DIMS, cout])
        self.register_buffer("condition", torch.zeros(1), persistent=False)

    def scales(self) -> torch.Tensor:
        """γ (c,) = c · softmax(Γ(s)): positive, mean 1."""
        g = self.gamma(self.condition.view(1, 1)).view(-1)
        return g.numel() * torch.softmax(g, dim=0)

    def row_norms(self) -> torch.Tensor:
        """||W̃_i||_2 over the augmented row [W_i, b_i]."""
        return torch.sqrt(self.weight.square().sum(dim=(1, 2, 3)) + self.bias.square())

    def projection(self) -> torch.Tensor:
        """W̃_i / ||W̃_i||_2 as rows (c, cin·k·k + 1): each row has unit norm."""
        rows = torch.cat([self.weight.flatten(1), self.bias[:, None]], dim=1)
        return rows / self.row_norms()[:, None]

    @torch.no_grad()
    def take_conv_gains(self) -> None:
        """Set Γ(s) so γ_i ∝ ||W̃_i||: the layer then computes the plain convolution its weights
        came from, up to one gain (c / Σ||W̃||), so fine-tuning from a baseline starts near it."""
        last = self.gamma[-1]
        last.weight.zero_()
        last.bias.copy_(self.row_norms().log())

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        k = self.scales() / self.row_norms()  # γ_i / ||W̃_i||
        w = self.weight * k[:, None, None, None]
        return F.conv2d(f, w, self.bias * k, stride=self.stride, padding=self.padding)


def neighbours(channels: int, k: int, i: int) -> list[int]:
    """N_K(i): the K channels nearest to i on the channel ring, i itself included (distance 0).

    The paper's topology is predefined and non-learnable (§IV-C); the one a latent's channels
    come with is their index order. A ring (distance min(|i-j|, c-|i-j|)) gives every channel
    exactly K neighbours, so the matrix is circulant: rows and columns both sum to 1 and every
    channel is broadcast to exactly K channels. Ties (even K) go to the higher index first.
    """
    order = sorted(
        range(channels),
        key=lambda j: (min((j - i) % channels, (i - j) % channels), (j - i) % channels),
    )
    return order[:k]


def broadcast_matrix(channels: int, k: int) -> torch.Tensor:
    """B̃ (c, c): B̃_ij = 1/K if j ∈ N_K(i), else 0 (001 §IV-C)."""
    if not 1 <= k <= channels:
        raise ValueError(f"k {k} must be in 1..{channels} (the latent channels)")
    b = torch.zeros(channels, channels)
    for i in range(channels):
        b[i, neighbours(channels, k, i)] = 1.0 / k
    return b


class NeighbourBroadcast(nn.Module):
    """Neighbouring Semantic Broadcast (001 §IV-C): Z̃ = B̃ Z at every spatial position.

    B̃ is fixed: a non-persistent buffer (no gradient, not in checkpoints, rebuilt from c and K,
    so fp16 export cannot round its 1/K entries). Each output is a mean of inputs, so a latent
    inside the quantizer range stays inside it.
    """

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("matrix", broadcast_matrix(channels, k), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, self.matrix[:, :, None, None].to(z.dtype))
