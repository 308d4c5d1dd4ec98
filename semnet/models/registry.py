"""Named architectures: a model config's ``architecture`` key picks the class."""

from typing import Any

from semnet.errors import ConfigError
from semnet.models.cnn import CNNCodec
from semnet.models.codec import Codec

ARCHITECTURES: dict[str, type[Codec]] = {"cnn": CNNCodec}


def build(architecture: str, params: dict[str, Any]) -> Codec:
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ConfigError(f"architecture: unknown {architecture!r} (known: {known})") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"params: {exc}") from None
