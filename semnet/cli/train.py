"""`semnet train` (train a codec and ship it to the zoo) and `semnet train-imputer` (the same for
a codec's diffusion imputer). Both run under torchrun too (``semnet.models.distributed``): every
process trains, rank 0 alone writes the run's files and the zoo entry."""

import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from semnet.errors import SemnetError

if TYPE_CHECKING:  # torch is imported inside the commands
    from semnet.models import zoo
    from semnet.models.distributed import World


def zoo_option(text: str):
    return click.option("--zoo", "zoo_dir", type=click.Path(file_okay=False), help=text)


def use_zoo(zoo_dir: str | None) -> None:
    """Search (and write to) this zoo folder first; it is made if missing."""
    if zoo_dir is not None:
        from semnet.models import zoopath

        Path(zoo_dir).mkdir(parents=True, exist_ok=True)
        zoopath.use([zoo_dir], "--zoo")


def command_line() -> str:
    """The command line of this process, as a manifest's ``command`` records it."""
    return "semnet " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def training_options(example: str, export_help: str):
    """The options every training command shares: config, steps, run folder, threads, export."""

    def decorate(command):
        options = [
            click.option(
                "--config",
                "config_path",
                required=True,
                type=click.Path(dir_okay=False),
                help=f"config, e.g. {example}",
            ),
            click.option("--steps", type=int, help="stop after this many steps (default: config)"),
            click.option(
                "--run-dir",
                type=click.Path(file_okay=False),
                help="resumable state (default: runs/<name>)",
            ),
            click.option("--threads", default=2, show_default=True, help="torch CPU threads"),
            click.option("--export/--no-export", default=True, show_default=True, help=export_help),
            click.option(
                "--data",
                type=click.Path(file_okay=False),
                help="train on every image in this folder and below (default: the config's "
                "data:, else the Debian photos `make train-data` installs)",
            ),
            zoo_option(
                "zoo folder to write the entry to, searched first (default: the first of "
                "$SEMNET_ZOO, else the built-in zoo)"
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@click.command()
@training_options(
    "configs/models/cnn-rd-q4.yaml",
    "write the zoo entry (measured unless --no-measure)",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when present",
)
@click.option(
    "--measure/--no-measure",
    default=True,
    show_default=True,
    help="measure the exported weights on the evaluation photos (the manifest's metrics)",
)
def train(
    config_path: str,
    steps: int | None,
    run_dir: str | None,
    threads: int,
    export: bool,
    data: str | None,
    zoo_dir: str | None,
    device: str,
    measure: bool,
) -> None:
    """Train a codec from a model config (resumes from its run folder). Under torchrun each
    process trains on its share of every batch (one GPU each with CUDA)."""
    import torch

    from semnet.models import distributed
    from semnet.pipeline.tensors import pick_device

    torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise SemnetError("--device cuda: no CUDA device here (use auto or cpu)")
    with distributed.session(pick_device(device)) as world:
        _train_codec(config_path, steps, run_dir, export, data, zoo_dir, world, measure)
        distributed.finish(world)  # the other processes wait for rank 0 to publish


def _train_codec(
    config_path: str,
    steps: int | None,
    run_dir: str | None,
    export: bool,
    data: str | None,
    zoo_dir: str | None,
    world: "World",
    measure: bool,
) -> None:
    """`semnet train` in one of its processes (``world``): all train, the main one publishes."""
    import yaml

    from semnet.models import zoo
    from semnet.models.config import load_model_config
    from semnet.models.train import train as run_training
    from semnet.models.train import training_data

    use_zoo(zoo_dir)
    cfg = load_model_config(config_path)
    photos = training_data(data or cfg.data)  # before any work: a missing folder is one line
    target = zoo.check_new(cfg.name, cfg.codec_id) if export else None
    run = Path(run_dir or Path("runs") / cfg.name)
    model = run_training(
        cfg,
        run,
        steps=steps,
        progress=sys.stderr.isatty(),
        files=photos.files,
        device=world.device,
    )
    if not world.main:
        return
    if photos.manifest is not None:
        (run / "data_manifest.json").write_text(json.dumps(photos.manifest, indent=1) + "\n")
    if not export:
        return
    done = steps if steps is not None else cfg.train.steps
    entry = new_entry(
        cfg,
        steps=done,
        config=yaml.safe_load(Path(config_path).read_text()),
        data_manifest_sha256=photos.manifest_sha256,
        lineage=lineage(cfg.train.init_from),
        data_manifest=photos.manifest,
    )
    publish(model, entry, target, measure)


def lineage(init_from: str | None) -> list[dict]:
    """The runs behind a fine-tuned entry's starting weights, oldest first (none from scratch)."""
    if init_from is None:
        return []
    from semnet.models import zoo

    parent = zoo.entry(init_from)
    step = {"command": parent.command, "steps": parent.steps, "sha256": parent.sha256}
    return [*parent.lineage, step]


def new_entry(cfg, **fields) -> "zoo.ZooEntry":
    """A manifest entry for ``cfg``'s codec, before its weights are written."""
    from semnet.models import zoo

    quant = cfg.quant.as_dict() if cfg.quant is not None else None
    return zoo.ZooEntry(
        name=cfg.name,
        codec_id=cfg.codec_id,
        architecture=cfg.architecture,
        params=cfg.params,
        file="",
        sha256="",
        dtype="",
        command=command_line(),
        quant=quant,
        **fields,
    )


def publish(model, entry, target: Path, measure: bool, precision=None) -> None:
    """Write the weights and the entry into ``target``, measured on the eval photos if asked."""
    import torch

    from semnet.models import zoo

    precision = precision or torch.float16
    entry = zoo.export(model, entry, precision, directory=target)
    if measure:
        entry = zoo.export(model, replace(entry, metrics=measured(entry.name)), precision, target)
        click.echo(json.dumps(entry.metrics, indent=1))
    click.echo(f"zoo entry written: {entry.name} ({target / entry.file})", err=True)


def measured(name: str) -> dict:
    """A zoo codec's metrics on the evaluation photos: what ships (e.g. fp16 weights) is
    measured, not the model in memory."""
    from semnet.eval_images import eval_images
    from semnet.models import zoo
    from semnet.pipeline.measure import measure

    images = eval_images()
    if not images:
        raise SemnetError("no evaluation photos to measure on (pip install 'semnet[eval]')")
    return measure(zoo.load(name), zoo.entry(name).codec_id, images)


IMPUTER_LOSSES = (0.1, 0.3, 0.5)
IMPUTER_FILLS = ("zero", "f0", "diffusion")
IMPUTER_PARTITIONS = ("channel", "patch:4x4")


@click.command("train-imputer")
@training_options(
    "configs/imputers/diffusion-cnn-rd-q4.yaml",
    "measure fills on the evaluation photos and write the zoo entry",
)
def train_imputer(
    config_path: str,
    steps: int | None,
    run_dir: str | None,
    threads: int,
    export: bool,
    data: str | None,
    zoo_dir: str | None,
) -> None:
    """Train a diffusion imputer (paper 002) on a zoo codec's latents (resumes). Under torchrun
    each process trains on its share of every batch (on the CPU)."""
    import torch

    from semnet.models import distributed

    torch.set_num_threads(threads)
    with distributed.session(torch.device("cpu")) as world:
        _train_imputer(config_path, steps, run_dir, export, data, zoo_dir, world)
        distributed.finish(world)  # the other processes wait for rank 0 to publish


def _train_imputer(
    config_path: str,
    steps: int | None,
    run_dir: str | None,
    export: bool,
    data: str | None,
    zoo_dir: str | None,
    world: "World",
) -> None:
    """`semnet train-imputer` in one of its processes (``world``): all train, the main one
    publishes."""
    import yaml

    from semnet.core.partition import parse_spec
    from semnet.eval_images import eval_images
    from semnet.models import zoo
    from semnet.models.config import load_imputer_config
    from semnet.models.imputer_train import train_imputer as run_training
    from semnet.models.train import training_data
    from semnet.pipeline.frames import PathSettings, perceptual_available
    from semnet.pipeline.measure import measure

    use_zoo(zoo_dir)
    cfg = load_imputer_config(config_path)
    photos = training_data(data or cfg.data)
    codec = zoo.load(cfg.codec)
    run = Path(run_dir or Path("runs") / cfg.name)
    model = run_training(
        cfg, codec, run, steps=steps, progress=sys.stderr.isatty(), files=photos.files
    )
    if not export or not world.main:
        return
    entry = zoo.ImputerEntry(
        name=cfg.name,
        codec=cfg.codec,
        codec_sha256=zoo.entry(cfg.codec).sha256,
        params={"channels": codec.latent_channels, "width": cfg.width, "kappa": cfg.kappa},
        file="",
        sha256="",
        dtype="",
        command=command_line(),
        config=yaml.safe_load(Path(config_path).read_text()),
        data_manifest_sha256=photos.manifest_sha256,
        steps=steps if steps is not None else cfg.train.steps,
    )
    entry = zoo.export_imputer(model, entry)
    images, codec_id = eval_images(), zoo.entry(cfg.codec).codec_id
    metrics = {
        f"{partition} {fill}": measure(
            codec,
            codec_id,
            images,
            IMPUTER_LOSSES,
            fill,
            PathSettings(parse_spec(partition)),
            perceptual=perceptual_available(),
        )
        for partition in IMPUTER_PARTITIONS
        for fill in IMPUTER_FILLS
    }
    entry = zoo.export_imputer(model, replace(entry, metrics=metrics))
    click.echo(json.dumps({k: v["by_loss"] for k, v in metrics.items()}, indent=1))
    click.echo(f"zoo entry written: {entry.name} ({entry.file})", err=True)


COMMANDS = (train, train_imputer)
