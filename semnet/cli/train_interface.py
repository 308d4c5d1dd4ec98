"""`semnet train-interface`: train a source code through learned BSCs (paper 003) and ship it
with its interface (`semnet zoo show NAME --interface` prints it)."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import click

from semnet.cli.train import lineage, new_entry, publish, training_options, use_zoo


@click.command("train-interface")
@training_options("configs/models/bsc-learned.yaml", "measure and write the zoo entry")
def train_interface(
    config_path: str,
    steps: int | None,
    run_dir: str | None,
    threads: int,
    export: bool,
    data: str | None,
    zoo_dir: str | None,
) -> None:
    """Train a bit-interface codec from a config (resumes from its run folder) and ship it."""
    import torch
    import yaml

    from semnet.models import zoo as zoo_lib
    from semnet.models.bsc_train import evaluate, load_interface_config, train
    from semnet.models.train import training_data

    torch.set_num_threads(threads)
    use_zoo(zoo_dir)
    cfg = load_interface_config(config_path)
    photos = training_data(data)  # --data, else the wallpapers; never evaluation photos
    target = zoo_lib.check_new(cfg.name, cfg.codec_id) if export else None
    run = Path(run_dir or Path("runs") / cfg.name)
    model = train(cfg, run, photos.files, steps=steps, progress=sys.stderr.isatty())
    if not export:
        return
    entry = new_entry(
        cfg,
        steps=steps if steps is not None else cfg.train.steps,
        config=yaml.safe_load(Path(config_path).read_text()),
        data_manifest_sha256=photos.manifest_sha256,
        lineage=lineage(cfg.train.init_from),
    )
    publish(model, entry, target, measure=False)
    metrics = evaluate(zoo_lib.load(cfg.name), cfg.train.seed)  # what ships (fp16) is measured
    publish(model, replace(zoo_lib.entry(cfg.name), metrics=metrics), target, measure=False)
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    click.echo(json.dumps({k: v for k, v in metrics.items() if "per_image" not in k}, indent=1))


COMMANDS = (train_interface,)
