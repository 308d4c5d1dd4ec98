"""The zoo: shipped checkpoints (safetensors) with a JSON manifest entry each.

A checkpoint is named ``<name>-<sha256[:8]>.safetensors`` (content-hashed, as CompressAI does);
its entry ``<name>.json`` records the architecture config, the training command, the training
data manifest hash, the steps and the measured metrics. Codec ids on the wire map to entries.
"""

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from semnet.errors import ModelError
from semnet.models.codec import Codec
from semnet.models.registry import build

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
DEFAULT_CODEC = "cnn-c64"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    codec_id: int
    architecture: str
    params: dict[str, Any]
    file: str
    sha256: str
    dtype: str
    command: str
    config: dict[str, Any]
    data_manifest_sha256: str
    steps: int
    metrics: dict[str, Any] = field(default_factory=dict)


def entries(zoo_dir: Path = ZOO_DIR) -> list[ZooEntry]:
    return [ZooEntry(**json.loads(p.read_text())) for p in sorted(zoo_dir.glob("*.json"))]


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


@functools.lru_cache(maxsize=8)
def load(name: str) -> Codec:
    """Build the architecture and load its weights (float32 for compute), in eval mode."""
    e = entry(name)
    path = ZOO_DIR / e.file
    if not path.exists():
        raise ModelError(f"{path}: checkpoint file missing")
    model = build(e.architecture, e.params)
    state = {k: v.float() for k, v in load_file(path).items()}
    model.load_state_dict(state)
    return model.to(memory_format=torch.channels_last).eval()


def export(model: Codec, e: ZooEntry, dtype: torch.dtype = torch.float16) -> ZooEntry:
    """Write the weights (in ``dtype``) and the manifest entry; returns the entry as written."""
    ZOO_DIR.mkdir(exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    tmp = ZOO_DIR / f"{e.name}.tmp"
    save_file(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    for old in ZOO_DIR.glob(f"{e.name}-*.safetensors"):
        old.unlink()
    final = ZOO_DIR / f"{e.name}-{digest[:8]}.safetensors"
    tmp.replace(final)
    final.chmod(0o644)  # safetensors writes 0600; shipped weights are world-readable
    e = ZooEntry(
        **{
            **asdict(e),
            "file": final.name,
            "sha256": digest,
            "dtype": str(dtype).removeprefix("torch."),
        }
    )
    (ZOO_DIR / f"{e.name}.json").write_text(json.dumps(asdict(e), indent=1) + "\n")
    load.cache_clear()
    return e
