"""Fill: what the receiver puts where units were lost, before decoding.

A fill sees the dequantized latent (anything where lost), the received mask and the codec.
``zero`` and ``mean`` are paper 001's erasure fills; ``f0`` puts F(0), the codec's latent of an
all-zero image (paper 002 eq. 17); ``diffusion`` runs the codec's shipped diffusion imputer
(``semnet.models.imputer``) with T DDIM steps from start noise scaled by a temperature τ,
written ``diffusion:T`` or ``diffusion:T:τ`` (default 10 steps, τ = 0: the DDIM trajectory
from the prior's mode; τ = 1 draws posterior samples, which measure worse — docs/imputing.md).
Fills are deterministic: the imputer's noise comes from a fixed seed, so offline and online
runs agree.
"""

import functools
from collections.abc import Callable

import torch

from semnet.errors import ConfigError, ModelError
from semnet.models import zoo
from semnet.models.codec import Codec
from semnet.models.imputer import f0_latent

Fill = Callable[[torch.Tensor, torch.Tensor, Codec], torch.Tensor]

DEFAULT_DIFFUSION_STEPS = 10
DEFAULT_TEMPERATURE = 0.0
NOISE_SEED = 0


def zero_fill(y: torch.Tensor, received: torch.Tensor, codec: Codec) -> torch.Tensor:
    """Lost entries become 0, the centre of the quantizer range (paper 001's erasure model)."""
    return torch.where(received, y, torch.zeros((), dtype=y.dtype))


def mean_fill(y: torch.Tensor, received: torch.Tensor, codec: Codec) -> torch.Tensor:
    """Lost entries become their channel's training-data mean (works for whole lost channels)."""
    mean = codec.channel_mean.to(y.dtype).view(1, -1, 1, 1)
    return torch.where(received, y, mean.expand_as(y))


def _f0(y: torch.Tensor, codec: Codec) -> torch.Tensor:
    """F(0) cropped to this latent: a zero image of the padded size has exactly its shape."""
    h, w = y.shape[-2] * codec.stride, y.shape[-1] * codec.stride
    return f0_latent(codec, h, w, str(y.device)).to(y.dtype)


def f0_fill(y: torch.Tensor, received: torch.Tensor, codec: Codec) -> torch.Tensor:
    """Lost entries become F(0)'s (paper 002 eq. 17), the non-generative half of imputing."""
    return torch.where(received, y, _f0(y, codec))


def diffusion_fill(
    y: torch.Tensor,
    received: torch.Tensor,
    codec: Codec,
    steps: int = DEFAULT_DIFFUSION_STEPS,
    temperature: float = DEFAULT_TEMPERATURE,
) -> torch.Tensor:
    """The codec's diffusion imputer, DDIM in ``steps`` steps from seeded noise times
    ``temperature``."""
    if bool(received.all()):
        return y
    if codec.zoo_name is None:
        raise ModelError("diffusion fill needs a zoo codec (its imputer is trained on it)")
    imputer = zoo.load_imputer(codec.zoo_name).to(y.device)
    gen = torch.Generator(y.device).manual_seed(NOISE_SEED)
    bounds = (codec.quant.lo, codec.quant.hi)
    return imputer.impute(y, received, _f0(y, codec), bounds, steps, gen, temperature)


FILLS: dict[str, Fill] = {
    "zero": zero_fill,
    "mean": mean_fill,
    "f0": f0_fill,
    "diffusion": diffusion_fill,
}


def _steps(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and 1 <= int(text) <= 1000 else None


def _temperature(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


# fills written NAME:A[:B]: each parameter's keyword, parser (None: invalid) and its rule
PARAMETERS = {
    "diffusion": (
        ("steps", _steps, "steps must be an integer in 1..1000"),
        ("temperature", _temperature, "temperature must be a number in 0..1"),
    )
}


def get_fill(spec: str) -> Fill:
    """The fill named by ``spec``: a name, or ``diffusion:T[:τ]``; ConfigError names bad text."""
    name, *args = spec.split(":")
    if name not in FILLS:
        raise ConfigError(f"fill: unknown {spec!r} (known: {', '.join(FILLS)}, diffusion:T[:τ])")
    if not args:
        return FILLS[name]
    params = PARAMETERS.get(name, ())
    if not params:
        raise ConfigError(f"fill: {name!r} takes no parameter (got {spec!r})")
    if len(args) > len(params):
        raise ConfigError(f"fill: {spec!r}: at most {len(params)} parameters")
    bound = {}
    for (keyword, parse, rule), text in zip(params, args, strict=False):
        value = parse(text)
        if value is None:
            raise ConfigError(f"fill: {spec!r}: {rule}")
        bound[keyword] = value
    return functools.partial(FILLS[name], **bound)
