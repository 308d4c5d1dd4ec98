"""Sweeps: contenders x partitions x fills x loss models x loss rates x interleaving, over images.

Offline by default, through :func:`semnet.pipeline.offline.transmit` (classical codecs through
:func:`semnet.baselines.stream.transmit`, the same deliver/reassembly path); ``online`` runs the
semantic codecs through real daemons on loopback instead.

Same losses: the impairment of each (image, loss model, rate) is seeded from ``seed`` alone,
never from the codec, partition, fill or interleaving, and every contender gets a fresh model
with that seed. With loss only, a datagram's fate depends on its ordinal alone, so datagram i
of every contender meets the same fate; a contender that sends n datagrams sees the first n
fates of that one sequence.

Work is never lost late: every codec is loaded, every fill tried on every codec and every
classical contender matched to its byte budget before the first cell runs, and each row goes to
a JSON Lines journal (:mod:`semnet.experiments.journal`) as soon as it is measured.

One cell function, :func:`measure_cell`, serves every path: the serial loop here and the Ray
tasks of :mod:`semnet.experiments.ray_runner` (given to :func:`run_sweep` as ``distribute``).
A cell that raises is recorded as a ``failed`` row and the others go on. Rows depend on the
seeds and on ``threads`` (the compute threads of the process that measures them: torch's and
the codec engine's float reductions follow it), never on who measured them or when.
"""

import hashlib
import itertools
import logging
import platform
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, astuple, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import features
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from semnet import __version__
from semnet.baselines import stream
from semnet.core.impair import Impairment
from semnet.core.impair import parse_spec as parse_impairment
from semnet.core.partition import parse_spec as parse_partition
from semnet.core.partition import spec_name
from semnet.core.wire import MAX_DATAGRAM
from semnet.errors import ConfigError, SemnetError
from semnet.experiments.journal import Journal
from semnet.models import backends, zoo
from semnet.models.codec import Codec
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit
from semnet.pipeline.report import FrameReport
from semnet.pipeline.tensors import to_tensor
from semnet.testbed import LocalTestbed

log = logging.getLogger(__name__)

LOSS_MODELS = ("bernoulli", "ge")
NOT_APPLICABLE = "-"  # partition and fill of classical rows
# (name, threads) -> (codec, codec id, zoo entry); threads: the codec engine's thread count
Loader = Callable[[str, int], tuple[Codec, int, dict]]
STATUSES = ("ok", "retried", "failed")  # a row's status; failed rows are measured again on resume


def zoo_codec(name: str, threads: int = backends.DEFAULT_THREADS) -> tuple[Codec, int, dict]:
    """A shipped codec on the daemons' default backend with ``threads`` engine threads (the
    daemons' default 2, so offline rows equal online ones), its wire id and manifest entry."""
    entry = zoo.entry(name)
    return backends.load(name, threads=threads), entry.codec_id, asdict(entry)


@contextmanager
def compute_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def impairment_text(model: str, rate: float, burst_length: float | None) -> str:
    """The netem spec of one loss point: Bernoulli, or Gilbert with mean rate and burst."""
    if rate == 0:
        return ""
    if model == "bernoulli":
        return f"loss random {rate * 100:g}%"
    return f"loss burst {rate * 100:g}% {burst_length:g}"


def derive_seed(*parts: object) -> int:
    """A u32 from the parts' text: stable across runs, Python versions and machines."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "big")


def impairment_seed(seed: int, image: str, model: str, rate: float) -> int:
    """Seed of the losses at one (image, loss model, rate): no contender field goes in."""
    return derive_seed(seed, "impair", image, model, f"{rate:g}")


def interleave_seed(seed: int, image: str) -> int:
    """Seed of the interleaving permutation of one image, the same at every loss point."""
    return derive_seed(seed, "interleave", image)


@dataclass(frozen=True)
class SweepSpec:
    """The axes of a sweep; validated whole at construction, so a bad point fails before work."""

    codecs: tuple[str, ...] = (zoo.DEFAULT_CODEC,)
    partitions: tuple[str, ...] = ("channel",)
    fills: tuple[str, ...] = ("zero",)
    loss_models: tuple[str, ...] = ("bernoulli",)
    losses: tuple[float, ...] = (0.0, 0.1, 0.4)
    burst_length: float | None = None
    interleave: tuple[bool, ...] = (True,)
    seed: int = 1
    # Independent draws of losses and interleaving per point: repeat r is seeded by seed + r.
    # Eight photos of ~40 datagrams each leave a 40% point's realised loss a few points off.
    repeats: int = 1
    datagram_size: int = 1200
    perceptual: bool = False  # LPIPS and semantic agreement per row (optional weights)

    def __post_init__(self) -> None:
        for axis in ("codecs", "partitions", "fills", "loss_models", "losses", "interleave"):
            values = getattr(self, axis)
            if not values or len(set(values)) != len(values):
                raise ConfigError(f"{axis}: must be a non-empty list without repeats")
        for name in self.codecs:
            if stream.is_classical(name):
                stream.parse_contender(name)
            elif "+" in name:
                raise ConfigError(f"codec {name!r}: FEC (+rsN) is for classical codecs only")
        object.__setattr__(
            self, "partitions", tuple(spec_name(parse_partition(p)) for p in self.partitions)
        )
        for fill in self.fills:
            get_fill(fill)
        unknown = set(self.loss_models) - set(LOSS_MODELS)
        if unknown:
            raise ConfigError(f"loss model {unknown.pop()!r}: one of {', '.join(LOSS_MODELS)}")
        if ("ge" in self.loss_models) != (self.burst_length is not None):
            raise ConfigError("burst length: needed with loss model ge, and only with it")
        if self.burst_length is not None:
            object.__setattr__(self, "burst_length", float(self.burst_length))
            if not self.burst_length >= 1:
                raise ConfigError(f"burst length: {self.burst_length:g} must be >= 1 datagram")
        object.__setattr__(self, "losses", tuple(float(p) for p in self.losses))
        if any(not 0 <= p <= 1 for p in self.losses):
            raise ConfigError(f"losses: {list(self.losses)}: each rate must be in 0..1")
        for model, rate in self.loss_points():
            parse_impairment(impairment_text(model, rate, self.burst_length))
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed: {self.seed} is not a u32")
        if not 1 <= self.repeats <= 2**32 - self.seed:
            raise ConfigError(f"repeats: {self.repeats} must be >= 1 (seed + repeats - 1 a u32)")
        if not 100 <= self.datagram_size <= MAX_DATAGRAM:
            raise ConfigError(f"datagram size: {self.datagram_size} is not in 100..{MAX_DATAGRAM}")

    def loss_points(self) -> list[tuple[str, float]]:
        return list(itertools.product(self.loss_models, self.losses))

    def seeds(self) -> range:
        return range(self.seed, self.seed + self.repeats)

    @property
    def semantic(self) -> list[str]:
        return [c for c in self.codecs if not stream.is_classical(c)]

    @property
    def classical(self) -> list[str]:
        return [c for c in self.codecs if stream.is_classical(c)]


@dataclass(frozen=True)
class Cell:
    """One row to measure; its fields are the row's point fields, its key the row's key."""

    codec: str
    partition: str
    fill: str
    interleave: bool | None
    loss_model: str
    loss: float
    image: str
    seed: int

    @property
    def key(self) -> tuple:
        return astuple(self)

    @property
    def combination(self) -> tuple:
        """What the cells of one decoder (offline) or one testbed (online) share."""
        return self.codec, self.partition, self.fill, self.interleave


POINT = tuple(f.name for f in fields(Cell))


def row_key(row: dict) -> tuple:
    return tuple(row[name] for name in POINT)


def cells(spec: SweepSpec, images: dict) -> list[Cell]:
    """Every row of the sweep in row order: ``--codec`` order, then partition, fill and
    interleaving, then draw, loss point and image (classical codecs: one configuration)."""
    out = []
    for name in spec.codecs:
        configs = (
            [(NOT_APPLICABLE, NOT_APPLICABLE, None)]
            if name in spec.classical
            else itertools.product(spec.partitions, spec.fills, spec.interleave)
        )
        draws = itertools.product(spec.seeds(), spec.loss_points(), images)
        for (partition, fill, interleave), (seed, (model, rate), image) in itertools.product(
            configs, draws
        ):
            out.append(Cell(name, partition, fill, interleave, model, rate, image, seed))
    return out


def _row(cell: Cell, measured: dict) -> dict:
    """One result row; every row has the same keys, classical-only ones None elsewhere."""
    return {
        "codec": cell.codec,
        "partition": cell.partition,
        "fill": cell.fill,
        "interleave": cell.interleave,
        "loss_model": cell.loss_model,
        "loss": cell.loss,
        "image": cell.image,
        "psnr_db": measured["psnr_db"],
        "ssim": measured["ssim"],
        "ms_ssim": measured.get("ms_ssim"),
        "lpips": measured.get("lpips"),
        "semantic_agree": measured.get("semantic_agree"),
        "bpp": measured["bpp"],
        "realised_loss": measured["realised_loss"],
        "datagrams_sent": measured["datagrams_sent"],
        "datagrams_received": measured["datagrams_received"],
        "bytes_sent": measured["bytes_sent"],
        "decoded": measured.get("decoded", True),
        "quality": measured.get("quality"),
        "target_bytes": measured.get("target_bytes"),
        "seed": cell.seed,
        "impairment_seed": impairment_seed(cell.seed, cell.image, cell.loss_model, cell.loss),
        "status": "ok",
        "error": None,
    }


def failed_row(cell: Cell, error: str) -> dict:
    """The row of a cell that could not be measured: its point, no metrics, the error text."""
    row = _row(cell, defaultdict(type(None)))  # every metric None
    return {**row, "decoded": None, "status": "failed", "error": error}


def measure_cell(run: Callable[[Cell], dict], cell: Cell) -> dict:
    """The one cell function of every path: ``run``'s row for the cell, or a ``failed`` row
    with the error's text when it raises (the sweep goes on; an interrupt does not)."""
    try:
        return run(cell)
    except Exception as exc:  # recorded in the row, counted, and the command exits non-zero
        text = str(exc) if isinstance(exc, SemnetError) else f"{type(exc).__name__}: {exc}"
        where = (
            f"{_describe(cell)}, {cell.loss_model} {cell.loss:g}, {cell.image}, seed {cell.seed}"
        )
        log.warning("sweep: cell failed (%s): %s", where, text)
        return failed_row(cell, text)


def _measured(r: FrameReport) -> dict:
    return {
        "psnr_db": r.psnr_db,
        "ssim": r.ssim,
        "ms_ssim": r.ms_ssim,
        "lpips": r.lpips,
        "semantic_agree": r.semantic_agree,
        "bpp": r.bpp,
        "realised_loss": r.loss_ratio,
        "datagrams_sent": r.datagrams_sent,
        "datagrams_received": r.datagrams_received,
        "bytes_sent": r.bytes_sent,
    }


def _losses(spec: SweepSpec, cell: Cell) -> tuple[str, int]:
    """(netem spec, impairment seed) of a cell's loss point on its image, in its draw."""
    text = impairment_text(cell.loss_model, cell.loss, spec.burst_length)
    return text, impairment_seed(cell.seed, cell.image, cell.loss_model, cell.loss)


def _impairment(spec: SweepSpec, cell: Cell) -> Impairment:
    text, seed = _losses(spec, cell)
    return Impairment(parse_impairment(text), seed)


def check_fill(fill: str, name: str, codec: Codec) -> None:
    """Fill one tiny, wholly lost latent now: a fill that needs a model of its own (diffusion:
    the codec's imputer) loads it here, so a missing one fails before the first cell."""
    y = torch.zeros(1, *codec.latent_shape(64, 64))
    try:
        with torch.inference_mode():
            get_fill(fill)(y, torch.zeros_like(y, dtype=torch.bool), codec)
    except SemnetError as exc:
        raise ConfigError(f"fill {fill!r} with codec {name!r}: {exc}") from None


@dataclass
class Prepared:
    """What the cells need, all loaded or matched before the first one runs."""

    loaded: dict[str, tuple[Codec, int, dict]]  # semantic codecs and the equal-bytes reference
    reference: str
    targets: dict[str, int]  # image -> the reference's bytes on the wire (with classical codecs)
    matched: dict[tuple[str, str], tuple[int, bytes]]  # (classical, image) -> (quality, stream)


def prepare(images: dict[str, np.ndarray], spec: SweepSpec, load: Loader, threads: int) -> Prepared:
    """Load every codec, try every fill on every semantic codec and match every classical
    contender's bytes on every image; a SemnetError here names the bad value."""
    reference = (spec.semantic or [zoo.DEFAULT_CODEC])[0]
    loaded = {name: load(name, threads) for name in dict.fromkeys([*spec.semantic, reference])}
    for name in spec.semantic:
        for fill in spec.fills:
            check_fill(fill, name, loaded[name][0])
    targets: dict[str, int] = {}
    matched = {}
    if spec.classical:
        codec, codec_id, _ = loaded[reference]
        path = PathSettings(datagram_size=spec.datagram_size)
        targets = {
            n: FrameEncoder(codec, codec_id, path).encode(image).bytes_sent
            for n, image in images.items()
        }
    for name in spec.classical:
        log.info("sweep: %s at equal bytes with %s", name, reference)
        contender = stream.parse_contender(name)
        for image_name, image in images.items():
            try:
                matched[name, image_name] = stream.match_bytes(
                    contender, image, targets[image_name], spec.datagram_size
                )
            except SemnetError as exc:
                raise SemnetError(f"{image_name}: {exc}") from None
    return Prepared(loaded, reference, targets, matched)


class Offline:
    """Cells through the in-process chain: semantic codecs via :mod:`semnet.pipeline.offline`,
    classical ones via :mod:`semnet.baselines.stream`."""

    def __init__(self, spec: SweepSpec, images: dict[str, np.ndarray], ready: Prepared) -> None:
        self.spec, self.images, self.ready = spec, images, ready
        self.decoders: dict[tuple[str, str], FrameDecoder] = {}  # keeps the coder's tables

    def __call__(self, cell: Cell) -> dict:
        image = self.images[cell.image]
        impairment = _impairment(self.spec, cell)
        if cell.codec in self.spec.classical:
            quality, data = self.ready.matched[cell.codec, cell.image]
            contender = stream.parse_contender(cell.codec)
            size, perceptual = self.spec.datagram_size, self.spec.perceptual
            r = stream.transmit(image, contender, data, impairment, size, perceptual=perceptual)
            extra = {"quality": quality, "target_bytes": self.ready.targets[cell.image]}
            return _row(cell, {**_measured(r), "decoded": r.decoded, **extra})
        codec, codec_id, _ = self.ready.loaded[cell.codec]
        shared = cell.codec, cell.fill
        if shared not in self.decoders:
            self.decoders[shared] = FrameDecoder(lambda _: codec, get_fill(cell.fill))
        path = PathSettings(
            parse_partition(cell.partition), cell.interleave, self.spec.datagram_size
        )
        encoder = FrameEncoder(codec, codec_id, path, seed=interleave_seed(cell.seed, cell.image))
        r = transmit(
            image, encoder, self.decoders[shared], impairment, perceptual=self.spec.perceptual
        )
        return _row(cell, _measured(r))


class Online:
    """Semantic cells through sender -> proxy -> receiver processes on loopback: a testbed per
    combination, started at its first cell; before each image the proxy gets the cell's loss
    spec carrying the offline impairment seed, so it drops what offline drops."""

    def __init__(self, spec: SweepSpec, images: dict[str, np.ndarray], workdir: Path) -> None:
        self.spec, self.images, self.workdir = spec, images, workdir
        self.stack = ExitStack()
        self.current: tuple | None = None
        self.started = 0
        self.bed: LocalTestbed | None = None

    def __call__(self, cell: Cell) -> dict:
        if cell.combination != self.current:
            self.stack.close()
            sender = {
                "codec": cell.codec,
                "partition": cell.partition,
                "interleave": cell.interleave,
                "datagram_size": self.spec.datagram_size,
                "first_frame": 0,  # interleaving from the seed alone, as offline: runs repeat
            }
            receiver = {"fill": cell.fill, "save_images": False, "perceptual": self.spec.perceptual}
            folder = self.workdir / f"{cell.codec}-{self.started}"
            bed = LocalTestbed(folder, seed=self.spec.seed, sender=sender, receiver=receiver)
            self.bed = self.stack.enter_context(bed)
            self.current, self.started = cell.combination, self.started + 1
        text, impairment = _losses(self.spec, cell)
        self.bed.set_impairment(f"{text} seed {impairment}".strip())
        report = self.bed.send(self.images[cell.image], cell.image)
        if "error" in report:
            raise SemnetError(f"{cell.codec} on {cell.image}: {report['error']}")
        return _row(cell, {**report, "realised_loss": report["loss_ratio"]})

    def __enter__(self) -> "Online":
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()


def channel_means(codec: Codec, image: np.ndarray) -> list[float]:
    """Mean of each latent channel over the image (paper 001 Fig. 12)."""
    with torch.inference_mode():
        y = codec.encode(to_tensor(image, torch.device("cpu")))
    return y[0].float().mean(dim=(1, 2)).tolist()


def _classical_entry(name: str) -> dict:
    contender = stream.parse_contender(name)
    codec = contender.codec
    return {
        "name": name,
        "codec_id": codec.codec_id,
        "fec_overhead_percent": contender.overhead,
        "library": f"Pillow {PIL.__version__}, {codec.feature} {features.version(codec.feature)}",
    }


def _describe(cell: Cell) -> str:
    if cell.interleave is None:
        return f"{cell.codec} at equal bytes"
    interleave = "on" if cell.interleave else "off"
    return f"{cell.codec} {cell.partition} fill {cell.fill} interleave {interleave}"


Executor = Callable[[list[Cell]], Iterable[dict]]  # cells -> their rows, as they finish


@dataclass(frozen=True)
class Work:
    """What a process needs to measure offline cells itself (a Ray worker): everything
    :func:`prepare` found but the loaded codecs, which each process loads once for itself."""

    spec: SweepSpec
    images: dict[str, np.ndarray]
    load: Loader
    threads: int
    reference: str
    targets: dict[str, int]
    matched: dict[tuple[str, str], tuple[int, bytes]]
    zoo: str = ""  # SEMNET_ZOO for a worker: the zoos --zoo put first


def offline_runner(work: Work) -> "Offline":
    """The cell runner of one worker process: its torch threads set to ``work.threads`` and
    every semantic codec loaded, once."""
    torch.set_num_threads(work.threads)
    loaded = {name: work.load(name, work.threads) for name in work.spec.semantic}
    ready = Prepared(loaded, work.reference, work.targets, work.matched)
    return Offline(work.spec, work.images, ready)


def serial(run: Callable[[Cell], dict], keep_going: bool = True) -> Executor:
    """Cells one after the other in this process, a log line per combination as it starts;
    without ``keep_going`` the first cell that raises stops the sweep."""

    def execute(todo: list[Cell]) -> Iterator[dict]:
        previous = None
        for i, cell in enumerate(todo):
            if cell.combination != previous:
                log.info("sweep: %s (cell %d of %d to run)", _describe(cell), i + 1, len(todo))
                previous = cell.combination
            yield measure_cell(run, cell) if keep_going else run(cell)

    return execute


def _measure(
    todo: list[Cell], execute: Executor, journal: Journal | None, progress: bool
) -> list[dict]:
    """Every cell's row in cell order, from the journal where it holds one that did not fail;
    the others from ``execute``, each new row going to the journal as soon as it finishes
    (in whatever order it finishes). A tqdm bar with ETA on a terminal."""
    done = journal.done if journal is not None else {}
    pending = [c for c in todo if c.key not in done]
    new: dict[tuple, dict] = {}
    with ExitStack() as stack:
        if progress:
            stack.enter_context(logging_redirect_tqdm())
        bar = stack.enter_context(
            tqdm(
                total=len(todo),
                initial=len(todo) - len(pending),
                disable=not progress,
                unit="cell",
                desc="sweep",
                smoothing=0.05,
            )
        )
        finished = stack.enter_context(closing(iter(execute(pending))))  # closed on interrupt
        for row in finished:
            if journal is not None:
                journal.append(row)
            new[row_key(row)] = row
            bar.update()
    missing = [c for c in pending if c.key not in new]
    if missing:  # an executor that lost cells: never a silently short result
        raise SemnetError(f"sweep: {len(missing)} cells gave no row (first: {missing[0]})")
    return [done.get(c.key) or new[c.key] for c in todo]


def run_sweep(
    images: dict[str, np.ndarray],
    spec: SweepSpec,
    load: Loader = zoo_codec,
    online: Path | None = None,
    command: str = "",
    journal: Journal | None = None,
    resume: bool = False,
    progress: bool = False,
    threads: int = backends.DEFAULT_THREADS,
    distribute: Callable[[Work], Executor] | None = None,
) -> dict:
    """Every row of the sweep plus the metadata that reproduces it. ``online`` is a work folder
    for the daemons (semantic codecs only); ``journal`` gets each row as it finishes, once every
    check has passed, and with ``resume`` its rows are kept instead of measured again (failed
    ones are measured again). ``threads``: torch and codec engine threads of whatever measures
    the cells (rows depend on it). ``distribute`` turns the prepared :class:`Work` into an
    executor elsewhere (:func:`semnet.experiments.ray_runner.executor`); serial without it.

    ``rows`` are the measured rows (status ok or retried) in cell order; ``failed`` the rows of
    cells that failed, with their error text; ``cells`` counts each status."""
    if not images:
        raise ConfigError("sweep: no images")
    if threads < 1:
        raise ConfigError(f"threads: {threads} must be >= 1")
    if online is not None and spec.classical:
        raise ConfigError(
            f"--online: the daemons carry zoo codecs only, not {spec.classical[0]!r}; "
            "run classical baselines offline"
        )
    if online is not None and resume:
        raise ConfigError(
            "--resume: offline sweeps only (online, the daemons number the frames, so the "
            "interleaving of a cell depends on the cells sent before it)"
        )
    if online is not None and distribute is not None:
        raise ConfigError("--ray: offline sweeps only (online sweeps run their own daemons)")
    with compute_threads(threads):
        ready = prepare(images, spec, load, threads)
        mode = "online" if online is not None else "offline"
        shapes = {n: list(image.shape[:2]) for n, image in images.items()}
        with ExitStack() as stack:
            if journal is not None:
                header = {"sweep": mode, "axes": asdict(spec), "images": shapes}
                stack.enter_context(journal.open({**header, "threads": threads}, row_key, resume))
            if online is not None:
                # the first failure stops an online sweep: its daemons are likely gone
                execute = serial(stack.enter_context(Online(spec, images, online)), False)
            elif distribute is not None:
                work = Work(
                    spec, images, load, threads, ready.reference, ready.targets, ready.matched
                )
                execute = distribute(work)
            else:
                execute = serial(Offline(spec, images, ready))
            every = _measure(cells(spec, images), execute, journal, progress)
            if journal is not None:
                journal.settle(every)  # the journal in cell order, as a serial run leaves it
        first = next(iter(images))
        means = {
            n: {"image": first, "means": channel_means(ready.loaded[n][0], images[first])}
            for n in spec.semantic
        }
    rows = [r for r in every if r["status"] != "failed"]
    return {
        "command": command,
        "semnet_version": __version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mode": mode,
        "seed": spec.seed,
        "axes": asdict(spec),
        "impairment": {
            m: impairment_text(m, 1, spec.burst_length).replace("100%", "<100*loss>%")
            for m in spec.loss_models
        },
        "images": shapes,
        "codecs": {
            **{n: ready.loaded[n][2] for n in spec.semantic},
            **{n: _classical_entry(n) for n in spec.classical},
        },
        "equal_bytes_reference": ready.reference if spec.classical else None,
        "target_bytes": ready.targets or None,
        "channel_means": means,
        "threads": threads,
        "cells": {status: sum(r["status"] == status for r in every) for status in STATUSES},
        "rows": rows,
        "failed": [r for r in every if r["status"] == "failed"],
    }
