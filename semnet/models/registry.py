"""Named architectures: a model config's ``architecture`` key picks the builder, ``params`` are
its keyword arguments. semnet's own are below; installed plug-ins add theirs through the
``semnet.codecs`` entry points (``semnet.models.plugins``, docs/plugins.md)."""

from collections.abc import Callable, Mapping
from typing import Any

from semnet.errors import ConfigError, ModelError
from semnet.models import plugins
from semnet.models.bsc import BSCCodec
from semnet.models.cnn import CNNCodec, cnn_nsb, cnn_scale, cnn_sem
from semnet.models.codec import Codec, QuantDefaults
from semnet.models.mijscc import MIJSCCCodec
from semnet.models.rd import RDCodec
from semnet.models.swin import SwinCodec

ARCHITECTURES: dict[str, Callable[..., Codec]] = {
    "cnn": CNNCodec,
    "cnn-scale": cnn_scale,  # + Dynamic Scale (paper 001 §IV-B)
    "cnn-nsb": cnn_nsb,  # + Neighbouring Semantic Broadcast (§IV-C)
    "cnn-sem": cnn_sem,  # + both (§IV)
    "swin": SwinCodec,  # SwinJSCC-like Transformer (§III-A)
    "cnn-rd": RDCodec,  # + learned gain and factorized prior: entropy coded (issue 16)
    "mijscc": MIJSCCCodec,  # multi-task: + classifier, A-MIJSCC mask and attention (paper 004)
    "bsc": BSCCodec,  # binary latent trained through learned BSCs: the bit interface (paper 003)
}
BUILT_IN = "built-in"
QUANT_KINDS = ("uniform", "round", "asymmetric")


def plugin_architectures() -> dict[str, plugins.Loaded]:
    """What the installed plug-ins add (or failed to), by architecture name."""
    return plugins.codecs(frozenset(ARCHITECTURES))


def architectures() -> dict[str, str]:
    """Every usable architecture name and where it comes from: ``built-in`` or the plug-in's
    package."""
    found = {name: BUILT_IN for name in ARCHITECTURES}
    for name, loaded in plugin_architectures().items():
        if loaded.error is None:
            found[name] = loaded.plugin.package
    return dict(sorted(found.items()))


def builder(architecture: str) -> Callable[..., Codec]:
    if architecture in ARCHITECTURES:
        return ARCHITECTURES[architecture]
    loaded = plugin_architectures().get(architecture)
    if loaded is None:
        known = ", ".join(architectures())
        raise ConfigError(
            f"architecture: unknown {architecture!r} (known: {known}; a plug-in's needs its "
            "package installed here, docs/plugins.md)"
        )
    if loaded.error is not None:
        raise ModelError(f"architecture {architecture!r}: {loaded.error}")
    return loaded.obj


def build(
    architecture: str, params: dict[str, Any], quant: Mapping[str, Any] | None = None
) -> Codec:
    """The architecture built with ``params``; ``quant`` ({kind, bits[, lo, hi]}, a model
    config's or manifest's ``quant``) replaces the quantizer the codec declares."""
    cls = builder(architecture)
    try:
        model = cls(**params)
    except (TypeError, ValueError) as exc:  # unknown keyword, or a value the model refuses
        raise ConfigError(f"params: {exc}") from None
    except Exception as exc:  # a plug-in's constructor may raise anything
        if architecture in ARCHITECTURES:
            raise
        raise ModelError(
            f"architecture {architecture!r}: building it failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(model, Codec):
        raise ModelError(
            f"architecture {architecture!r} built a {type(model).__name__}, not a semnet Codec "
            "(subclass semnet.models.codec.Codec)"
        )
    if quant:
        set_quant(model, quant)
    return model


def set_quant(model: Codec, quant: Mapping[str, Any]) -> None:
    """Give ``model`` the quantizer a config or manifest chooses: ``uniform`` over [lo, hi]
    (default: the codec's own range), ``round`` (integer grid) or ``asymmetric`` (each frame's
    own min and max go in its descriptor: any latent range, no tanh needed)."""
    if type(model).entropy_table is not Codec.entropy_table:
        raise ConfigError("quant: an entropy-coded codec's tables fix its quantizer")
    kind, bits = quant.get("kind"), quant.get("bits")
    lo, hi = quant.get("lo"), quant.get("hi")
    if kind not in QUANT_KINDS:
        raise ConfigError(f"quant.kind: {kind!r} is not one of {', '.join(QUANT_KINDS)}")
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 16:
        raise ConfigError(f"quant.bits: {bits!r} must be in 1..16")
    if kind != "uniform" and (lo is not None or hi is not None):
        raise ConfigError(f"quant: a {kind} quantizer sets its own range; give no lo or hi")
    if kind == "round":
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    elif kind == "uniform":
        lo = model.quant.lo if lo is None else lo
        hi = model.quant.hi if hi is None else hi
    else:  # asymmetric: the range is each frame's (lo and hi are not used)
        lo, hi = model.quant.lo, model.quant.hi
    if not lo < hi:
        raise ConfigError(f"quant: lo {lo} must be below hi {hi}")
    model.quant = QuantDefaults(kind=kind, bits=bits, lo=float(lo), hi=float(hi))
