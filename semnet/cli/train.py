"""`semnet train` (train a codec and ship it to the zoo), `semnet train-imputer` (the same for a
codec's diffusion imputer), `semnet zoo list` and `semnet zoo import` (outside weights as a zoo
entry). Both training commands run under torchrun too (``semnet.models.distributed``): every
process trains, rank 0 alone writes the run's files and the zoo entry."""

import json
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from semnet.errors import SemnetError

if TYPE_CHECKING:  # torch is imported inside the commands
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
    lineage = []
    if cfg.train.init_from is not None:
        parent = zoo.entry(cfg.train.init_from)
        step = {"command": parent.command, "steps": parent.steps, "sha256": parent.sha256}
        lineage = [*parent.lineage, step]
    entry = new_entry(
        cfg,
        steps=done,
        config=yaml.safe_load(Path(config_path).read_text()),
        data_manifest_sha256=photos.manifest_sha256,
        lineage=lineage,
        data_manifest=photos.manifest,
    )
    publish(model, entry, target, measure)


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


@click.group()
def zoo() -> None:
    """The codecs of the zoos: semnet's own, $SEMNET_ZOO's and --zoo's, plug-ins'."""


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--zoo",
    "zoo_dirs",
    multiple=True,
    type=click.Path(exists=True),
    help="a zoo folder or manifest searched first (repeatable)",
)
def zoo_list(as_json: bool, zoo_dirs: tuple[str, ...]) -> None:
    """List the zoos' codecs and diffusion imputers with their measured metrics and where each
    comes from; * marks the default codec (what every command sends unless told otherwise).
    Architectures from plug-ins, and what could not be used, follow."""
    from semnet.models import registry, zoopath
    from semnet.models.zoo import DEFAULT_CODEC, catalog, imputer_entries

    zoopath.use(zoo_dirs, "--zoo")
    found, imputers = catalog(), imputer_entries()
    added = registry.plugin_architectures()
    if as_json:
        items = [
            {
                "kind": "codec",
                "default": f.entry.name == DEFAULT_CODEC,
                "source": f.zoo.source,
                **asdict(f.entry),
            }
            for f in found.found
        ]
        items += [{"kind": "imputer", **asdict(e)} for e in imputers]
        items += [
            {
                "kind": "architecture",
                "name": name,
                "package": loaded.plugin.package,
                "version": loaded.plugin.version,
                "object": loaded.plugin.value,
                "error": loaded.error,
            }
            for name, loaded in added.items()
        ]
        items += [{"kind": "problem", "error": p} for p in found.problems]
        click.echo(json.dumps(items, indent=1))
        return
    click.echo(
        f"  {'codec':<20} {'id':>5} {'architecture':<13} {'bpp':>6} {'lossless dB':>11} "
        f"{'PSNR kept':>9} {'at loss':>7}  {'file':<40} source"
    )
    for f in found.found:
        e = f.entry
        m = e.metrics.get("by_loss", {})
        lossless = m.get("0", {}).get("psnr_db", float("nan"))
        kept = e.metrics.get("psnr_kept_at_max_loss", float("nan"))
        at = max(map(float, m), default=float("nan"))
        mark = "*" if e.name == DEFAULT_CODEC else " "
        click.echo(
            f"{mark} {e.name:<20} {e.codec_id:>5} {e.architecture:<13} "
            f"{e.metrics.get('bpp_on_wire', float('nan')):>6.3f} {lossless:>11.2f} "
            f"{kept:>9.1%} {at:>7.0%}  {e.file:<40} {f.zoo.source}"
        )
    click.echo(f"* the default codec\n\n  {'imputer':<26} {'for codec':<20} {'steps':>6}  file")
    for e in imputers:
        click.echo(f"  {e.name:<26} {e.codec:<20} {e.steps:>6}  {e.file}")
    if added:
        click.echo(f"\n  {'architecture':<20} {'from plug-in':<30} status")
        for name, loaded in added.items():
            package = f"{loaded.plugin.package} {loaded.plugin.version}"
            click.echo(f"  {name:<20} {package:<30} {loaded.error or 'ok'}")
    if found.problems:
        click.echo("\nnot usable:")
        for problem in found.problems:
            click.echo(f"  {problem}")


@zoo.command("import")
@click.option(
    "--architecture",
    required=True,
    help="architecture name (semnet's or a plug-in's); overrides the config's",
)
@click.option(
    "--weights",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="safetensors file with the architecture's state dict",
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="model config: name, codec_id, params (and quant)",
)
@zoo_option("zoo folder to write the entry to (default: the first of $SEMNET_ZOO, else built-in)")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="precision of the weights written to the zoo",
)
@click.option(
    "--measure/--no-measure",
    default=False,
    show_default=True,
    help="measure on the evaluation photos and record the metrics in the manifest",
)
def zoo_import(
    architecture: str,
    weights: str,
    config_path: str,
    zoo_dir: str | None,
    dtype: str,
    measure: bool,
) -> None:
    """Make outside weights a zoo entry: build the architecture from the config's params, load
    the weights (every tensor must fit), write them with a manifest (sha256, params, command)."""
    import torch

    from semnet.config import load, read_yaml
    from semnet.models import zoo
    from semnet.models.config import ModelConfig

    use_zoo(zoo_dir)
    data = read_yaml(config_path)
    data["architecture"] = architecture
    cfg = load(ModelConfig, data)
    target = zoo.check_new(cfg.name, cfg.codec_id)
    quant = cfg.quant.as_dict() if cfg.quant is not None else None
    model = zoo.imported(cfg.architecture, cfg.params, quant, Path(weights))
    # steps 0 and no data manifest: trained elsewhere
    entry = new_entry(cfg, steps=0, config=data, data_manifest_sha256="")
    publish(model, entry, target, measure, getattr(torch, dtype))


COMMANDS = (train, train_imputer, zoo)
