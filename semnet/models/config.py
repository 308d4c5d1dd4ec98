"""Model configs (configs/models/*.yaml): architecture, its parameters and how to train it."""

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semnet.config import check, load, read_yaml
from semnet.errors import ConfigError

positive = check(lambda v: v > 0, "must be > 0")
probability = check(lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")


@dataclass(frozen=True)
class TrainSettings:
    steps: int = field(default=8000, metadata=positive)
    batch: int = field(default=8, metadata=positive)
    crop: int = field(
        default=128,
        metadata=check(lambda v: v >= 32 and v % 16 == 0, "must be a multiple of 16, >= 32"),
    )
    lr: float = field(default=3e-4, metadata=positive)
    seed: int = 1
    # Erasure training: this fraction of each batch loses each latent channel with a
    # probability drawn uniformly from [0, erasure_max], so the codec degrades gracefully.
    erasure_fraction: float = field(default=0.5, metadata=probability)
    erasure_max: float = field(default=0.5, metadata=probability)
    # Photos are pre-scaled so the shorter side is one of these lengths (pixels).
    scales: tuple[int, ...] = (512, 768, 1024)
    checkpoint_every: int = field(default=250, metadata=positive)
    # Rate-distortion trade-off of codecs with an entropy model: the loss is
    # rate_lambda * 255^2 * MSE + bits per pixel (CompressAI's scale of λ).
    rate_lambda: float = field(default=0.01, metadata=positive)
    # Fine-tuning: a zoo entry whose weights start the run (its lineage goes into the manifest).
    init_from: str | None = None


@dataclass(frozen=True)
class QuantChoice:
    """The quantizer a codec is sent with, replacing the one its architecture declares:
    ``asymmetric`` takes each frame's own min and max (any latent range, no tanh needed),
    ``uniform`` a fixed [lo, hi] (default: the codec's), ``round`` the integer grid."""

    kind: str = field(
        metadata=check(
            lambda v: v in ("uniform", "round", "asymmetric"), "is not uniform, round or asymmetric"
        )
    )
    bits: int = field(metadata=check(lambda v: 1 <= v <= 16, "must be in 1..16"))
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        if self.kind != "uniform" and (self.lo is not None or self.hi is not None):
            raise ConfigError(f"quant: a {self.kind} quantizer sets its own range; give no lo, hi")
        if self.lo is not None and self.hi is not None and not self.lo < self.hi:
            raise ConfigError(f"quant: lo {self.lo} must be below hi {self.hi}")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(
        metadata=check(
            lambda v: (
                re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v) is not None
                and not v.endswith(".json")
            ),
            "must be 1-64 letters, digits, '.', '_' or '-' (a file name in the zoo)",
        )
    )
    codec_id: int = field(metadata=check(lambda v: 0 < v < 65536, "must be in 1..65535"))
    architecture: str
    params: dict[str, Any] = field(default_factory=dict)
    # Train on every image under this folder (recursively) instead of the Debian photos
    # (`make train-data`); `semnet train --data DIR` overrides it. Relative to the working folder.
    data: str | None = None
    quant: QuantChoice | None = None
    train: TrainSettings = field(default_factory=TrainSettings)


def load_model_config(path: str | Path) -> ModelConfig:
    return load(ModelConfig, read_yaml(path))


# Architectures trained by a command of their own, with its own train: keys; `semnet train`
# trains the rest.
TRAIN_COMMANDS = {"bsc": "train-interface", "mijscc": "train-multitask"}


def train_command(architecture: str) -> str:
    """The `semnet` command that trains (and ships) an architecture."""
    return TRAIN_COMMANDS.get(architecture, "train")


def load_any_config(path: str | Path):
    """A shipped model config, read by the loader of the command that trains it."""
    architecture = read_yaml(path).get("architecture")
    if architecture == "bsc":
        from semnet.models.bsc_train import load_interface_config

        return load_interface_config(path)
    if architecture == "mijscc":
        from semnet.models.mijscc_train import load_multitask_config

        return load_multitask_config(path)
    return load_model_config(path)


@dataclass(frozen=True)
class ImputerTrainSettings:
    steps: int = field(default=6000, metadata=positive)
    batch: int = field(default=32, metadata=positive)
    lr: float = field(default=2e-4, metadata=positive)
    seed: int = 1
    # Latents of this many random training-photo crops are computed once, then sampled from.
    bank: int = field(default=2048, metadata=positive)
    crop: int = field(
        default=256,
        metadata=check(lambda v: v >= 64 and v % 32 == 0, "must be a multiple of 32, >= 64"),
    )
    scales: tuple[int, ...] = (512, 768, 1024)
    # Masks are drawn as the network draws them: units of these partitions, lost at a rate
    # uniform in [0, max_loss], i.i.d. (interleaved) or in bursts of mean length up to
    # max_burst (not interleaved), burst_fraction of the time.
    partitions: tuple[str, ...] = ("channel", "patch:4x4")
    max_loss: float = field(default=0.6, metadata=probability)
    burst_fraction: float = field(default=0.3, metadata=probability)
    max_burst: float = field(default=4.0, metadata=check(lambda v: v >= 1, "must be >= 1"))
    checkpoint_every: int = field(default=500, metadata=positive)


@dataclass(frozen=True)
class ImputerConfig:
    name: str
    codec: str
    width: int = field(
        default=64,
        metadata=check(lambda v: v > 0 and v % 8 == 0, "must be a positive multiple of 8"),
    )
    kappa: int = field(default=2, metadata=positive)
    data: str | None = None  # as ModelConfig's: a folder of one's own instead of the Debian photos
    train: ImputerTrainSettings = field(default_factory=ImputerTrainSettings)


def load_imputer_config(path: str | Path) -> ImputerConfig:
    return load(ImputerConfig, read_yaml(path))
