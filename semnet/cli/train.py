"""`semnet train` (train a codec and ship it to the zoo), `semnet train-imputer` (the same for a
codec's diffusion imputer) and `semnet zoo list`."""

import json
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path

import click

from semnet.errors import SemnetError


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
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@click.command()
@training_options(
    "configs/models/cnn-rd-q4.yaml",
    "measure on the evaluation photos and write the zoo entry",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when present",
)
def train(
    config_path: str,
    steps: int | None,
    run_dir: str | None,
    threads: int,
    export: bool,
    device: str,
) -> None:
    """Train a codec from a model config (resumes from its run folder)."""
    import torch
    import yaml

    from semnet.eval_images import eval_images
    from semnet.models import zoo
    from semnet.models.config import load_model_config
    from semnet.models.train import data_manifest_hash
    from semnet.models.train import train as run_training
    from semnet.pipeline.measure import measure
    from semnet.pipeline.tensors import pick_device

    torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise SemnetError("--device cuda: no CUDA device here (use auto or cpu)")
    cfg = load_model_config(config_path)
    run = Path(run_dir or Path("runs") / cfg.name)
    model = run_training(
        cfg, run, steps=steps, progress=sys.stderr.isatty(), device=pick_device(device)
    )
    if not export:
        return
    done = steps if steps is not None else cfg.train.steps
    lineage = []
    if cfg.train.init_from is not None:
        parent = zoo.entry(cfg.train.init_from)
        step = {"command": parent.command, "steps": parent.steps, "sha256": parent.sha256}
        lineage = [*parent.lineage, step]
    entry = zoo.ZooEntry(
        name=cfg.name,
        codec_id=cfg.codec_id,
        architecture=cfg.architecture,
        params=cfg.params,
        file="",
        sha256="",
        dtype="",
        steps=done,
        command="semnet train " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
        config=yaml.safe_load(Path(config_path).read_text()),
        data_manifest_sha256=data_manifest_hash(),
        lineage=lineage,
    )
    entry = zoo.export(model, entry)
    shipped = zoo.load(cfg.name)  # measure what ships (fp16 weights), not the fp32 model
    metrics = measure(shipped, cfg.codec_id, eval_images())
    entry = zoo.export(model, replace(entry, metrics=metrics))
    click.echo(json.dumps(metrics, indent=1))
    click.echo(f"zoo entry written: {entry.name} ({entry.file})", err=True)


IMPUTER_LOSSES = (0.1, 0.3, 0.5)
IMPUTER_FILLS = ("zero", "f0", "diffusion")
IMPUTER_PARTITIONS = ("channel", "patch:4x4")


@click.command("train-imputer")
@training_options(
    "configs/imputers/diffusion-cnn-rd-q4.yaml",
    "measure fills on the evaluation photos and write the zoo entry",
)
def train_imputer(
    config_path: str, steps: int | None, run_dir: str | None, threads: int, export: bool
) -> None:
    """Train a diffusion imputer (paper 002) on a zoo codec's latents (resumes)."""
    import torch
    import yaml

    from semnet.core.partition import parse_spec
    from semnet.eval_images import eval_images
    from semnet.models import zoo
    from semnet.models.config import load_imputer_config
    from semnet.models.imputer_train import train_imputer as run_training
    from semnet.models.train import data_manifest_hash
    from semnet.pipeline.frames import PathSettings, perceptual_available
    from semnet.pipeline.measure import measure

    torch.set_num_threads(threads)
    cfg = load_imputer_config(config_path)
    codec = zoo.load(cfg.codec)
    run = Path(run_dir or Path("runs") / cfg.name)
    model = run_training(cfg, codec, run, steps=steps, progress=sys.stderr.isatty())
    if not export:
        return
    entry = zoo.ImputerEntry(
        name=cfg.name,
        codec=cfg.codec,
        codec_sha256=zoo.entry(cfg.codec).sha256,
        params={"channels": codec.latent_channels, "width": cfg.width, "kappa": cfg.kappa},
        file="",
        sha256="",
        dtype="",
        command="semnet " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        config=yaml.safe_load(Path(config_path).read_text()),
        data_manifest_sha256=data_manifest_hash(),
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
    """The shipped codecs."""


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True)
def zoo_list(as_json: bool) -> None:
    """List the zoo's codecs and diffusion imputers with their measured metrics; * marks the
    default codec (what every command sends unless told otherwise)."""
    from semnet.models.zoo import DEFAULT_CODEC, entries, imputer_entries

    codecs, imputers = entries(), imputer_entries()
    if as_json:
        items = [{"kind": "codec", "default": e.name == DEFAULT_CODEC, **asdict(e)} for e in codecs]
        items += [{"kind": "imputer", **asdict(e)} for e in imputers]
        click.echo(json.dumps(items, indent=1))
        return
    click.echo(
        f"  {'codec':<20} {'id':>3} {'architecture':<13} {'bpp':>6} {'lossless dB':>11} "
        f"{'PSNR kept':>9} {'at loss':>7}  file"
    )
    for e in codecs:
        m = e.metrics.get("by_loss", {})
        lossless = m.get("0", {}).get("psnr_db", float("nan"))
        kept = e.metrics.get("psnr_kept_at_max_loss", float("nan"))
        at = max(map(float, m), default=float("nan"))
        mark = "*" if e.name == DEFAULT_CODEC else " "
        click.echo(
            f"{mark} {e.name:<20} {e.codec_id:>3} {e.architecture:<13} "
            f"{e.metrics.get('bpp_on_wire', float('nan')):>6.3f} {lossless:>11.2f} "
            f"{kept:>9.1%} {at:>7.0%}  {e.file}"
        )
    click.echo(f"* the default codec\n\n  {'imputer':<26} {'for codec':<20} {'steps':>6}  file")
    for e in imputers:
        click.echo(f"  {e.name:<26} {e.codec:<20} {e.steps:>6}  {e.file}")


COMMANDS = (train, train_imputer, zoo)
