"""Fill: what the receiver puts where units were lost, before decoding.

A fill sees the dequantized latent (anything where lost), the received mask and the codec, so
later fills can start from F(0) (the codec's latent of a zero image, paper 002 eq. 17) or run a
diffusion imputer. Register new fills in FILLS.
"""

from collections.abc import Callable

import torch

from semnet.errors import ConfigError
from semnet.models.codec import Codec

Fill = Callable[[torch.Tensor, torch.Tensor, Codec], torch.Tensor]


def zero_fill(y: torch.Tensor, received: torch.Tensor, codec: Codec) -> torch.Tensor:
    """Lost entries become 0, the centre of the quantizer range (paper 001's erasure model)."""
    return torch.where(received, y, torch.zeros((), dtype=y.dtype))


def mean_fill(y: torch.Tensor, received: torch.Tensor, codec: Codec) -> torch.Tensor:
    """Lost entries become their channel's training-data mean (works for whole lost channels)."""
    mean = codec.channel_mean.to(y.dtype).view(1, -1, 1, 1)
    return torch.where(received, y, mean.expand_as(y))


FILLS: dict[str, Fill] = {"zero": zero_fill, "mean": mean_fill}


def get_fill(name: str) -> Fill:
    try:
        return FILLS[name]
    except KeyError:
        raise ConfigError(f"fill: unknown {name!r} (known: {', '.join(FILLS)})") from None
