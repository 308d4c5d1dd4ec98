"""The zoo: shipped checkpoints (safetensors) with a JSON manifest entry each.

A checkpoint is named ``<name>-<sha256[:8]>.safetensors`` (content-hashed, as CompressAI does);
its entry ``<name>.json`` records the architecture config, the training command, the training
data manifest hash, the steps and the measured metrics. Codec ids on the wire map to entries.
Diffusion imputers (``imputers/``) are shipped the same way, each tied to one codec's weights.
"""

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from semnet.errors import ModelError
from semnet.models import DEFAULT_CODEC  # zoo.DEFAULT_CODEC is the public name too
from semnet.models.codec import Codec
from semnet.models.imputer import DiffusionImputer
from semnet.models.registry import build

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
IMPUTER_DIR = ZOO_DIR / "imputers"


@dataclass(frozen=True, kw_only=True)
class Shipped:
    """What every shipped checkpoint's manifest records."""

    name: str
    params: dict[str, Any]
    file: str
    sha256: str
    dtype: str
    command: str
    config: dict[str, Any]
    data_manifest_sha256: str
    steps: int
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ZooEntry(Shipped):
    codec_id: int
    architecture: str
    # Earlier runs this one was fine-tuned from, oldest first: {command, steps, sha256} each.
    lineage: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ImputerEntry(Shipped):
    """A diffusion imputer trained on one codec's latents (that codec's weights, by sha256)."""

    codec: str
    codec_sha256: str


def entries(zoo_dir: Path = ZOO_DIR) -> list[ZooEntry]:
    """The zoo's codec entries, by name; manifests are read once per process (a receiver asks
    per frame), and again after this process exports an entry."""
    return list(_read_entries(zoo_dir))


@functools.lru_cache(maxsize=4)
def _read_entries(zoo_dir: Path) -> tuple[ZooEntry, ...]:
    return tuple(ZooEntry(**json.loads(p.read_text())) for p in sorted(zoo_dir.glob("*.json")))


def entry(name: str) -> ZooEntry:
    for e in entries():
        if e.name == name:
            return e
    known = ", ".join(e.name for e in entries()) or "none"
    raise ModelError(f"codec {name!r} is not in the zoo (known: {known})")


def entry_by_id(codec_id: int) -> ZooEntry:
    for e in entries():
        if e.codec_id == codec_id:
            return e
    raise ModelError(f"no zoo codec has id {codec_id}")


# The entropy-coded family whose rate points --quality and --bpp pick from by default.
RATE_FAMILY = "cnn-rd"


def family(name: str) -> str:
    """The family a rate point ``<family>-q<N>`` belongs to; any other name is its own."""
    stem, sep, number = name.rpartition("-q")
    return stem if sep and number.isdigit() else name


def rate_points(family_name: str) -> dict[int, ZooEntry]:
    """A family's rate points by quality: the entries named ``<family>-q<N>``."""
    points = {}
    for e in entries():
        if e.name != family_name and family(e.name) == family_name:
            points[int(e.name.rpartition("-q")[2])] = e
    return dict(sorted(points.items()))


def rate_point(codec: str, quality: int | None = None, bpp: float | None = None) -> str:
    """The zoo codec to send: ``codec`` itself, or with ``quality`` (N of ``-qN``) or ``bpp``
    (the best rate point whose measured lossless bits per pixel on the wire are at most bpp,
    else the smallest) a rate point of the family ``codec`` names, or belongs to (the default
    codec stands for RATE_FAMILY). ModelError names what exists when nothing fits."""
    if quality is None and bpp is None:
        return codec
    if quality is not None and bpp is not None:
        raise ModelError("give quality or bpp, not both")
    name = family(codec)  # a rate point stands for its family
    name = RATE_FAMILY if name == DEFAULT_CODEC else name
    points = rate_points(name)
    if not points:
        raise ModelError(f"codec {name!r} has no rate points (try {RATE_FAMILY!r})")
    if quality is not None:
        if quality not in points:
            known = ", ".join(map(str, points))
            raise ModelError(f"quality {quality}: {name} has qualities {known}")
        return points[quality].name
    measured = {q: e.metrics.get("bpp_on_wire") for q, e in points.items()}
    fits = [q for q, b in measured.items() if b is not None and b <= bpp]
    return points[max(fits) if fits else min(points)].name


@functools.lru_cache(maxsize=8)
def load(name: str) -> Codec:
    """Build the architecture and load its weights (float32 for compute), in eval mode."""
    e = entry(name)
    model = build(e.architecture, e.params)
    model.load_state_dict(_load_weights(ZOO_DIR / e.file))
    model.zoo_name = name  # lets a fill find what the zoo ships for this codec (its imputer)
    return model.to(memory_format=torch.channels_last).eval()


def _save_weights(model: torch.nn.Module, directory: Path, name: str, dtype: torch.dtype):
    """Write ``<name>-<sha256[:8]>.safetensors`` (replacing older ones); returns (file, sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    tmp = directory / f"{name}.tmp"
    save_file(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    for old in directory.glob(f"{name}-*.safetensors"):
        old.unlink()
    final = directory / f"{name}-{digest[:8]}.safetensors"
    tmp.replace(final)
    final.chmod(0o644)  # safetensors writes 0600; shipped weights are world-readable
    return final.name, digest


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise ModelError(f"{path}: checkpoint file missing")
    return {k: v.float() for k, v in load_file(path).items()}


def _publish(model: torch.nn.Module, e: Shipped, directory: Path, dtype: torch.dtype):
    """Write the weights (in ``dtype``) and the manifest entry; returns the entry as written."""
    file, digest = _save_weights(model, directory, e.name, dtype)
    e = replace(e, file=file, sha256=digest, dtype=str(dtype).removeprefix("torch."))
    (directory / f"{e.name}.json").write_text(json.dumps(asdict(e), indent=1) + "\n")
    for cache in (load, load_imputer, _read_entries, _read_imputer_entries):
        cache.cache_clear()
    return e


def export(model: Codec, e: ZooEntry, dtype: torch.dtype = torch.float16) -> ZooEntry:
    return _publish(model, e, ZOO_DIR, dtype)


def imputer_entries(zoo_dir: Path = IMPUTER_DIR) -> list[ImputerEntry]:
    return list(_read_imputer_entries(zoo_dir))


@functools.lru_cache(maxsize=4)
def _read_imputer_entries(zoo_dir: Path) -> tuple[ImputerEntry, ...]:
    return tuple(ImputerEntry(**json.loads(p.read_text())) for p in sorted(zoo_dir.glob("*.json")))


def imputer_entry(codec: str) -> ImputerEntry:
    """The imputer shipped for ``codec``; ModelError if none, or if it was trained on other
    weights than the codec ships now (a retrained codec needs its imputer retrained too)."""
    found = [e for e in imputer_entries() if e.codec == codec]
    if not found:
        raise ModelError(
            f"no diffusion imputer in the zoo for codec {codec!r} "
            f"(train one: semnet train-imputer --config configs/imputers/<name>.yaml)"
        )
    e = found[0]
    if e.codec_sha256 != entry(codec).sha256:
        raise ModelError(
            f"imputer {e.name!r} was trained on other weights of {codec!r}: retrain it "
            f"({e.command})"
        )
    return e


@functools.lru_cache(maxsize=8)
def load_imputer(codec: str) -> DiffusionImputer:
    """The imputer for a zoo codec, float32, in eval mode (cached)."""
    e = imputer_entry(codec)
    model = DiffusionImputer(**e.params)
    model.load_state_dict(_load_weights(IMPUTER_DIR / e.file))
    return model.eval()


def export_imputer(
    model: DiffusionImputer, e: ImputerEntry, dtype: torch.dtype = torch.float16
) -> ImputerEntry:
    return _publish(model, e, IMPUTER_DIR, dtype)
