"""The zoo: checkpoints (safetensors) with a JSON manifest entry each, in one or more zoos.

A checkpoint is named ``<name>-<sha256[:8]>.safetensors`` (content-hashed, as CompressAI does);
its entry ``<name>.json`` records the architecture config, the training command, the training
data manifest hash, the steps and the measured metrics. Codec ids on the wire map to entries.
Diffusion imputers (``imputers/``) are shipped the same way, each tied to one codec's weights.

Zoos are searched in order, the first entry of a name wins (:func:`zoos`): the folders and
manifest files of SEMNET_ZOO (which ``--zoo``, a daemon's ``zoo:`` and a manifest path given as
a codec name put first, ``semnet.models.zoopath``), then the zoos installed plug-ins ship
(``semnet.zoos`` entry points), then semnet's own, ``semnet/zoo/``.

Codec ids go on the wire, so across every zoo of a process one id names one codec:

* ``BUILT_IN_IDS`` (1..4095) are semnet's own zoo's;
* ``EXTERNAL_IDS`` (4096..65279) are for every other zoo: the entry's model config picks one;
  an entry may reuse a built-in id only to replace the built-in entry of the same name;
* 0xFF00..0xFFFF are the classical baselines' (``semnet.baselines.codecs``).

An entry whose id breaks these rules, or that shares its id with an entry of another name in
another zoo, is refused: using it (or the id) is a ModelError naming the manifests involved, and
the rest of the zoo keeps working. Weights whose sha256 is not the manifest's are refused too.
A sender and its receiver must see the same zoos (the receiver finds the codec by its id).
"""

import functools
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from semnet.errors import ModelError
from semnet.models import DEFAULT_CODEC, plugins, zoopath  # zoo.DEFAULT_CODEC: public too
from semnet.models.codec import Codec
from semnet.models.imputer import DiffusionImputer
from semnet.models.registry import build

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
IMPUTER_DIR = ZOO_DIR / "imputers"
BUILT_IN_IDS = range(1, 0x1000)
EXTERNAL_IDS = range(0x1000, 0xFF00)
BUILT_IN = "built-in"
log = logging.getLogger("semnet.zoo")


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
    # The quantizer the model config chose ({kind, bits[, lo, hi]}), replacing the codec's own.
    quant: dict[str, Any] | None = None
    # Trained on a folder of one's own (semnet train --data): its files, sha256 and sizes.
    data_manifest: list[dict[str, Any]] | None = None


@dataclass(frozen=True, kw_only=True)
class ImputerEntry(Shipped):
    """A diffusion imputer trained on one codec's latents (that codec's weights, by sha256)."""

    codec: str
    codec_sha256: str


# Keys written only when set, so manifests of codecs that do not use them stay as they were.
OPTIONAL_KEYS = ("quant", "data_manifest")


@dataclass(frozen=True)
class Zoo:
    """One place entries are looked up: a folder, or a single manifest file."""

    path: Path
    source: str  # what `semnet zoo list` shows: built-in, the path, or plug-in <package>
    built_in: bool = False  # semnet's own, semnet/zoo/

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path.is_file() else self.path


@dataclass(frozen=True)
class Found:
    """A visible zoo entry and where it lives."""

    entry: ZooEntry
    zoo: Zoo
    manifest: Path

    @property
    def weights(self) -> Path:
        return self.zoo.folder / self.entry.file


def zoos() -> tuple[Zoo, ...]:
    """The zoos of this process in search order: SEMNET_ZOO, plug-ins' zoos, the built-in."""
    return _zoos(zoopath.paths())


@functools.lru_cache(maxsize=8)
def _zoos(paths: tuple[Path, ...]) -> tuple[Zoo, ...]:
    out = []
    for p in paths:
        if p.is_dir() or (p.is_file() and zoopath.is_manifest(p.name)):
            out.append(Zoo(p.resolve(), str(p)))
        else:
            _report(f"{zoopath.ENV}: {p} is neither a zoo folder nor a .json manifest (skipped)")
    for loaded in plugins.zoos().values():
        if loaded.error is None:
            out.append(Zoo(loaded.obj, f"plug-in {loaded.plugin.package}"))
    out.append(Zoo(ZOO_DIR, BUILT_IN, built_in=True))
    seen: set[Path] = set()
    unique = []
    for z in out:
        if z.path not in seen:
            seen.add(z.path)
            unique.append(z)
    return tuple(unique)


_reported: set[str] = set()


def _report(problem: str) -> None:
    """Log a zoo problem once per process."""
    if problem not in _reported:
        _reported.add(problem)
        log.warning("%s", problem)


@functools.lru_cache(maxsize=32)
def _read_entries(path: Path) -> tuple[tuple[Path, ZooEntry | str], ...]:
    """(manifest, entry or why it is unreadable) for a zoo folder's manifests or one file."""
    manifests = [path] if path.is_file() else sorted(path.glob("*.json"))
    return tuple((m, _read_manifest(m, ZooEntry)) for m in manifests)


def _read_manifest(path: Path, cls: type) -> Any:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            return "not a manifest (a JSON object)"
        e = cls(**data)
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    except (ValueError, UnicodeDecodeError) as exc:
        return f"invalid JSON ({exc})"
    except TypeError as exc:  # unknown or missing keys
        return f"not a zoo manifest ({exc})"
    if Path(e.file).name != e.file or e.file.startswith("."):
        return f"file {e.file!r} must be a file name in the manifest's folder"
    return e


@dataclass(frozen=True)
class Catalog:
    """Every zoo's entries merged: the visible ones by name and by id, and the refused."""

    found: tuple[Found, ...]
    by_name: dict[str, Found]
    by_id: dict[int, Found]
    refused: dict[str, str]  # codec name -> why it cannot be used
    refused_ids: dict[int, str]
    problems: tuple[str, ...]  # every refusal and unreadable manifest, for `zoo list`


def catalog() -> Catalog:
    return _catalog(zoos())


def _id_problem(e: ZooEntry, z: Zoo, built_in: dict[int, str]) -> str | None:
    if z.built_in:
        if e.codec_id in BUILT_IN_IDS:
            return None
        return f"codec id {e.codec_id} is outside semnet's own {_span(BUILT_IN_IDS)}"
    if e.codec_id in EXTERNAL_IDS or built_in.get(e.codec_id) == e.name:
        return None
    owner = f" ({built_in[e.codec_id]}'s)" if e.codec_id in built_in else ""
    return (
        f"codec id {e.codec_id}{owner} is not for this zoo: zoos other than semnet's own use "
        f"{_span(EXTERNAL_IDS)} ({_span(BUILT_IN_IDS)} are semnet's, 65280.. its classical "
        "codecs'), or a built-in codec's id to replace that codec under its own name"
    )


def _span(ids: range) -> str:
    return f"{ids.start}..{ids.stop - 1}"


@functools.lru_cache(maxsize=8)
def _catalog(search: tuple[Zoo, ...]) -> Catalog:
    built_in = {e.codec_id: e.name for _, e in _read_entries(ZOO_DIR) if isinstance(e, ZooEntry)}
    problems: list[str] = []
    visible: dict[str, Found] = {}
    refused: dict[str, str] = {}
    for z in search:
        for manifest, e in _read_entries(z.path):
            if isinstance(e, str):
                problems.append(f"{manifest}: {e}")
                continue
            if e.name in visible or e.name in refused:
                continue  # an earlier zoo's entry of this name hides it
            why = _id_problem(e, z, built_in)
            if why is not None:
                refused[e.name] = f"{manifest}: {why}"
                problems.append(refused[e.name])
                continue
            visible[e.name] = Found(e, z, manifest)
    by_id: dict[int, list[Found]] = {}
    for f in visible.values():
        by_id.setdefault(f.entry.codec_id, []).append(f)
    refused_ids = {}
    for codec_id, claims in by_id.items():
        if len(claims) > 1:
            named = " and ".join(f"{f.entry.name} ({f.manifest})" for f in claims)
            why = f"codec id {codec_id} is claimed by {named}: give all but one another id"
            refused_ids[codec_id] = why
            problems.append(why)
            for f in claims:
                refused[f.entry.name] = why
                del visible[f.entry.name]
    for p in problems:
        _report(f"zoo: {p}")
    found = tuple(visible.values())
    return Catalog(
        found,
        {f.entry.name: f for f in found},
        {f.entry.codec_id: f for f in found},
        refused,
        refused_ids,
        tuple(problems),
    )


def entries(zoo_dir: Path | None = None) -> list[ZooEntry]:
    """The codec entries of every zoo, in search order (or of the one zoo ``zoo_dir``);
    manifests are read once per process (a receiver asks per frame), and again after this
    process exports an entry."""
    if zoo_dir is not None:
        return [e for _, e in _read_entries(Path(zoo_dir).resolve()) if isinstance(e, ZooEntry)]
    return [f.entry for f in catalog().found]


def canonical(name: str) -> str:
    """The codec name ``name`` stands for: itself, or for a manifest path (``path/x.json``) the
    name inside it, that manifest then searched first here and in the daemons started here."""
    if not zoopath.is_manifest(name):
        return name
    path = Path(name).expanduser()
    if not path.is_file():
        raise ModelError(f"codec {name}: no such manifest file")
    zoopath.use([path], "codec")
    ((_, e),) = _read_entries(path.resolve())
    if isinstance(e, str):
        raise ModelError(f"codec {name}: {e}")
    return e.name


def where(name: str) -> Found:
    """A codec's entry and where it lives; ModelError naming what exists if it does not."""
    name = canonical(name)
    c = catalog()
    if name in c.by_name:
        return c.by_name[name]
    if name in c.refused:
        raise ModelError(f"codec {name!r} is refused: {c.refused[name]}")
    known = ", ".join(c.by_name) or "none"
    extra = [z.source for z in zoos() if not z.built_in]
    searched = f"; zoos searched: {', '.join(extra)} and the built-in" if extra else ""
    raise ModelError(f"codec {name!r} is not in the zoo (known: {known}{searched})")


def entry(name: str) -> ZooEntry:
    return where(name).entry


def source(name: str) -> str:
    """Where a codec comes from: ``built-in``, a zoo's path, or ``plug-in <package>``."""
    return where(name).zoo.source


def entry_by_id(codec_id: int) -> ZooEntry:
    c = catalog()
    if codec_id in c.by_id:
        return c.by_id[codec_id].entry
    if codec_id in c.refused_ids:
        raise ModelError(c.refused_ids[codec_id])
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
    codec = canonical(codec)
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


def load(name: str) -> Codec:
    """Build the architecture and load its weights (float32 for compute), in eval mode; the
    weights must be the ones the manifest's sha256 names."""
    f = where(name)
    return _load(f.entry.name, f.weights, f.entry.sha256)


@functools.lru_cache(maxsize=8)
def _load(name: str, weights: Path, sha256: str) -> Codec:
    e = where(name).entry
    model = build(e.architecture, e.params, e.quant)
    model.load_state_dict(_load_weights(weights, sha256))
    model.zoo_name = name  # lets a fill find what the zoo ships for this codec (its imputer)
    return model.to(memory_format=torch.channels_last).eval()


load.cache_clear = _load.cache_clear  # type: ignore[attr-defined]


def _save_weights(model: torch.nn.Module, directory: Path, name: str, dtype: torch.dtype):
    """Write ``<name>-<sha256[:8]>.safetensors`` (replacing older ones); returns (file, sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    tmp = directory / f"{name}.tmp"
    save_file(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    own = re.compile(re.escape(name) + r"-[0-9a-f]{8}\.safetensors")
    for old in directory.glob(f"{name}-*.safetensors"):
        if own.fullmatch(old.name):  # not cnn-c64-res-*'s weights when cnn-c64 is written
            old.unlink()
    final = directory / f"{name}-{digest[:8]}.safetensors"
    tmp.replace(final)
    final.chmod(0o644)  # safetensors writes 0600; shipped weights are world-readable
    return final.name, digest


def _load_weights(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    """The weights as float32, if their sha256 is the manifest's; ModelError otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: checkpoint file missing") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelError(
            f"{path}: refused, its sha256 {digest[:16]}... is not the manifest's "
            f"{sha256[:16]}... (weights changed or swapped after the manifest was written)"
        )
    return {k: v.float() for k, v in load_safetensors(data).items()}


def _publish(model: torch.nn.Module, e: Shipped, directory: Path, dtype: torch.dtype):
    """Write the weights (in ``dtype``) and the manifest entry; returns the entry as written."""
    file, digest = _save_weights(model, directory, e.name, dtype)
    e = replace(e, file=file, sha256=digest, dtype=str(dtype).removeprefix("torch."))
    manifest = asdict(e)
    for key in OPTIONAL_KEYS:
        if manifest.get(key, 0) is None:
            del manifest[key]
    (directory / f"{e.name}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for cache in (_load, _load_imputer, _read_entries, _catalog, _read_imputer_entries):
        cache.cache_clear()
    return e


def refresh() -> None:
    """Read plug-ins and manifests again on next use (they are read once per process)."""
    plugins.forget()
    for cache in (_zoos, _load, _load_imputer, _read_entries, _catalog, _read_imputer_entries):
        cache.cache_clear()


def export_dir() -> Path:
    """Where exports go: the first zoo folder searched (SEMNET_ZOO's, so a --zoo DIR), else
    the built-in zoo; so the entry just written is the one this process then loads."""
    for p in zoopath.paths():
        if p.is_dir():
            return p.resolve()
    return ZOO_DIR


def check_new(name: str, codec_id: int, directory: Path | None = None) -> Path:
    """The folder a new entry ``name`` with ``codec_id`` goes to, checked before any training:
    ModelError if the id is not for that zoo or already names another codec."""
    directory = (directory or export_dir()).resolve()
    z = Zoo(directory, str(directory), built_in=directory == ZOO_DIR)
    built_in = {e.codec_id: e.name for e in entries(ZOO_DIR)}
    probe = ZooEntry(
        name=name,
        codec_id=codec_id,
        architecture="",
        params={},
        file="",
        sha256="",
        dtype="",
        command="",
        config={},
        data_manifest_sha256="",
        steps=0,
    )
    why = _id_problem(probe, z, built_in)
    if why is not None:
        raise ModelError(f"{name}: {why}")
    taken = catalog().by_id.get(codec_id)
    if taken is not None and taken.entry.name != name:
        raise ModelError(
            f"{name}: codec id {codec_id} is {taken.entry.name}'s ({taken.manifest}); "
            "pick another codec_id"
        )
    return directory


def export(
    model: Codec, e: ZooEntry, dtype: torch.dtype = torch.float16, directory: Path | None = None
) -> ZooEntry:
    """Write the entry to ``directory`` (default :func:`export_dir`)."""
    return _publish(model, e, check_new(e.name, e.codec_id, directory), dtype)


def _listed(what: str, keys: list[str]) -> list[str]:
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return [f"{what} {', '.join(keys[:3])}{more}"] if keys else []


def imported(
    architecture: str, params: dict[str, Any], quant: dict[str, Any] | None, weights: Path
) -> Codec:
    """The architecture built from ``params`` with outside weights (a safetensors state dict)
    loaded, in eval mode. Every tensor must fit; only ``channel_mean`` (the mean fill's, which
    semnet's training sets) may be missing: it stays zero. ModelError says what does not fit."""
    try:
        state = load_safetensors(weights.read_bytes())
    except OSError as exc:
        raise ModelError(f"{weights}: cannot read ({exc.strerror})") from None
    except Exception as exc:  # safetensors raises its own error types on a bad file
        raise ModelError(f"{weights}: not a safetensors file ({exc})") from None
    model = build(architecture, params, quant)
    own = model.state_dict()
    missing = [k for k in own if k not in state and k != "channel_mean"]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} (needs {tuple(own[k].shape)})"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    why = _listed("missing", missing) + _listed("unexpected", unexpected)
    why += _listed("other shape:", shapes)
    if why:
        raise ModelError(f"{weights}: the weights do not fit {architecture!r} ({'; '.join(why)})")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    model.update_table()
    return model.eval()


def imputer_entries() -> list[ImputerEntry]:
    """The imputer entries of every zoo folder, in search order."""
    return [e for e, _ in _imputers()]


def _imputers() -> list[tuple[ImputerEntry, Path]]:
    out = []
    for z in zoos():
        if z.path.is_dir():
            folder = z.folder / "imputers"
            out += [(e, folder) for e in _read_imputer_entries(folder)]
    return out


@functools.lru_cache(maxsize=32)
def _read_imputer_entries(zoo_dir: Path) -> tuple[ImputerEntry, ...]:
    found = []
    for p in sorted(zoo_dir.glob("*.json")):
        e = _read_manifest(p, ImputerEntry)
        if isinstance(e, str):
            _report(f"zoo: {p}: {e}")
        else:
            found.append(e)
    return tuple(found)


def imputer_entry(codec: str) -> ImputerEntry:
    """The imputer shipped for ``codec``; ModelError if none, or if it was trained on other
    weights than the codec ships now (a retrained codec needs its imputer retrained too)."""
    found = [e for e in imputer_entries() if e.codec == codec]
    if not found:
        raise ModelError(
            f"no diffusion imputer in the zoo for codec {codec!r} "
            f"(train one: semnet train-imputer --config configs/imputers/<name>.yaml)"
        )
    sha256 = entry(codec).sha256
    e = next((e for e in found if e.codec_sha256 == sha256), found[0])
    if e.codec_sha256 != sha256:
        raise ModelError(
            f"imputer {e.name!r} was trained on other weights of {codec!r}: retrain it "
            f"({e.command})"
        )
    return e


def load_imputer(codec: str) -> DiffusionImputer:
    """The imputer for a zoo codec, float32, in eval mode (cached)."""
    e = imputer_entry(codec)
    folders = [d for i, d in _imputers() if i.name == e.name and i.sha256 == e.sha256]
    return _load_imputer(e.name, (folders[0] if folders else IMPUTER_DIR) / e.file, e.sha256)


@functools.lru_cache(maxsize=8)
def _load_imputer(name: str, weights: Path, sha256: str) -> DiffusionImputer:
    e = next(i for i in imputer_entries() if i.name == name and i.sha256 == sha256)
    model = DiffusionImputer(**e.params)
    model.load_state_dict(_load_weights(weights, sha256))
    return model.eval()


load_imputer.cache_clear = _load_imputer.cache_clear  # type: ignore[attr-defined]


def export_imputer(
    model: DiffusionImputer, e: ImputerEntry, dtype: torch.dtype = torch.float16
) -> ImputerEntry:
    return _publish(model, e, export_dir() / "imputers", dtype)
