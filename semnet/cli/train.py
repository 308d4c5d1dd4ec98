"""`semnet train` (train a codec and ship it to the zoo) and `semnet zoo list`."""

import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import click


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="model config, e.g. configs/models/cnn-c64.yaml",
)
@click.option("--steps", type=int, help="stop after this many steps (default: the config's)")
@click.option(
    "--run-dir", type=click.Path(file_okay=False), help="resumable state (default: runs/<name>)"
)
@click.option("--threads", default=2, show_default=True, help="torch CPU threads")
@click.option(
    "--export/--no-export",
    default=True,
    show_default=True,
    help="measure on the evaluation photos and write the zoo entry",
)
def train(
    config_path: str, steps: int | None, run_dir: str | None, threads: int, export: bool
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

    torch.set_num_threads(threads)
    cfg = load_model_config(config_path)
    run = Path(run_dir or Path("runs") / cfg.name)
    model = run_training(cfg, run, steps=steps, progress=sys.stderr.isatty())
    if not export:
        return
    done = steps if steps is not None else cfg.train.steps
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
    )
    entry = zoo.export(model, entry)
    shipped = zoo.load(cfg.name)  # measure what ships (fp16 weights), not the fp32 model
    metrics = measure(shipped, cfg.codec_id, eval_images())
    entry = zoo.export(model, zoo.ZooEntry(**{**asdict(entry), "metrics": metrics}))
    click.echo(json.dumps(metrics, indent=1))
    click.echo(f"zoo entry written: {entry.name} ({entry.file})", err=True)


@click.group()
def zoo() -> None:
    """The shipped codecs."""


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True)
def zoo_list(as_json: bool) -> None:
    """List the zoo's codecs with their measured metrics."""
    from semnet.models.zoo import entries

    items = entries()
    if as_json:
        click.echo(json.dumps([asdict(e) for e in items], indent=1))
        return
    for e in items:
        m = e.metrics.get("by_loss", {})
        lossless = m.get("0", {}).get("psnr_db")
        click.echo(
            f"{e.name:<16} id {e.codec_id:<4} {e.architecture:<6} "
            f"{e.metrics.get('bpp_on_wire', float('nan')):.3f} bpp  "
            f"lossless {lossless} dB  ({e.file})"
        )


COMMANDS = (train, zoo)
