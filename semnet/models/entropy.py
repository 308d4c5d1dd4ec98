"""A learned factorized prior over integer latents (Ballé et al. 2018, appendix 6.1).

Each latent channel c has its own cumulative distribution c_c(v) = sigmoid(f_c(v)), with f_c a
small monotone network: affine maps with positive (softplus) weights, each hidden layer followed
by v + tanh(a) * tanh(v), which keeps f_c increasing. The probability of an integer symbol k is
the mass of the unit bin around it, c_c(k + 1/2) - c_c(k - 1/2); during training the latent
carries uniform noise instead of being rounded and the same expression is its density, so
-log2 of it is a differentiable rate.

At run time nothing of this is evaluated per frame: :meth:`FactorizedPrior.table` turns it into
one probability table per channel over the quantizer's finite alphabet, which the entropy coder
(``semnet.core.entropy``, numpy only) reads.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

LIKELIHOOD_FLOOR = 1e-9  # keeps -log2 finite for values the model finds very unlikely


class FactorizedPrior(nn.Module):
    def __init__(
        self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0
    ) -> None:
        super().__init__()
        dims = (1, *filters, 1)
        # Spread the initial density over about ±init_scale: each layer scales by the same root.
        per_layer = init_scale ** (1 / (len(dims) - 1))
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.gates = nn.ParameterList()
        for k in range(len(dims) - 1):
            start = math.log(math.expm1(1 / per_layer / dims[k + 1]))
            self.weights.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), start)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(dims) - 2:
                self.gates.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        """f_c(v) for v of shape (C, 1, N): the logit of each channel's CDF at each value."""
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            v = torch.matmul(F.softplus(w), v) + b
            if k < len(self.gates):
                v = v + torch.tanh(self.gates[k]) * torch.tanh(v)
        return v

    def _bin_mass(self, v: torch.Tensor) -> torch.Tensor:
        """c(v + 1/2) - c(v - 1/2), computed on the side of the sigmoid where it is accurate."""
        lower, upper = self.logits(v - 0.5), self.logits(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        return (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """Probability of each element of y (N, C, h, w) under its channel's model."""
        n, c, h, w = y.shape
        v = y.transpose(0, 1).reshape(c, 1, -1)
        p = self._bin_mass(v).clamp_min(LIKELIHOOD_FLOOR)
        return p.reshape(c, n, h, w).transpose(0, 1)

    def bits(self, y: torch.Tensor) -> torch.Tensor:
        """Total information content of y in bits (the rate term of the training loss)."""
        return -torch.log2(self.likelihood(y)).sum()

    @torch.no_grad()
    def table(self, lo: int, levels: int) -> torch.Tensor:
        """(C, levels) probabilities of the integers lo .. lo + levels - 1, each channel summing
        to one: the end symbols take the tails, as the quantizer clamps values beyond them."""
        c = self.weights[0].shape[0]
        edges = torch.arange(levels + 1, dtype=torch.float32) + (lo - 0.5)
        cdf = torch.sigmoid(self.logits(edges.expand(c, 1, -1)))[:, 0, :]
        cdf[:, 0], cdf[:, -1] = 0.0, 1.0
        return (cdf[:, 1:] - cdf[:, :-1]).clamp_min(0.0)
