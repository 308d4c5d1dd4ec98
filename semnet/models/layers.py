"""Building blocks shared by the codecs."""

import torch
from torch import nn
from torch.nn import functional as F


class GDN(nn.Module):
    """Generalised divisive normalisation (Ballé et al.), the compression-friendly activation.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); ``inverse`` multiplies instead (IGDN).
    beta and gamma are kept non-negative by squaring a reparametrised value.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter(0.1 * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta_root.square() + 1e-6
        gamma = self.gamma_root.square()[:, :, None, None]
        norm = torch.sqrt(F.conv2d(x.square(), gamma, beta))
        return x * norm if self.inverse else x / norm


def down(cin: int, cout: int) -> nn.Conv2d:
    """5x5 stride-2 convolution: halves height and width."""
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def up(cin: int, cout: int) -> nn.ConvTranspose2d:
    """5x5 stride-2 transposed convolution: doubles height and width exactly."""
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class ResidualBlock(nn.Module):
    """x + conv(act(conv(x))), 3x3, with the second convolution zero-initialised.

    Zero-initialised, the block is the identity: inserted into a trained codec it changes
    nothing until fine-tuning teaches it something, so ``init_from`` can grow a network.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


def mlp(dims: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Fully connected layers ``dims[0] -> dims[1] -> ... -> dims[-1]``, ``act`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        if i:
            layers.append(act())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)
