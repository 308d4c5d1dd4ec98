"""Named architectures: a model config's ``architecture`` key picks the builder, ``params`` are
its keyword arguments."""

from collections.abc import Callable
from typing import Any

from semnet.errors import ConfigError
from semnet.models.cnn import CNNCodec, cnn_nsb, cnn_scale, cnn_sem
from semnet.models.codec import Codec
from semnet.models.rd import RDCodec
from semnet.models.swin import SwinCodec

ARCHITECTURES: dict[str, Callable[..., Codec]] = {
    "cnn": CNNCodec,
    "cnn-scale": cnn_scale,  # + Dynamic Scale (paper 001 §IV-B)
    "cnn-nsb": cnn_nsb,  # + Neighbouring Semantic Broadcast (§IV-C)
    "cnn-sem": cnn_sem,  # + both (§IV)
    "swin": SwinCodec,  # SwinJSCC-like Transformer (§III-A)
    "cnn-rd": RDCodec,  # + learned gain and factorized prior: entropy coded (issue 16)
}


def build(architecture: str, params: dict[str, Any]) -> Codec:
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ConfigError(f"architecture: unknown {architecture!r} (known: {known})") from None
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:  # unknown keyword, or a value the model refuses
        raise ConfigError(f"params: {exc}") from None
