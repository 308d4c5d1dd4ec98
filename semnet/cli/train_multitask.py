"""`semnet train-multitask`: train the MIJSCC multi-task codec (paper 004, issue 19), fit its
A-MIJSCC condition encoder, measure it and ship it to the zoo as `semnet train` ships codecs."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import click

from semnet.cli.train import new_entry, publish, training_options, use_zoo


@click.command("train-multitask")
@training_options("configs/models/mijscc-fmnist.yaml", "calibrate, measure and write the zoo entry")
@click.option(
    "--measure-photos/--no-measure-photos",
    default=True,
    show_default=True,
    help="also measure reconstruction on the evaluation photos (the manifest's by_loss)",
)
def train_multitask(
    config_path: str,
    steps: int | None,
    run_dir: str | None,
    threads: int,
    export: bool,
    data: str | None,
    measure_photos: bool,
    zoo_dir: str | None,
) -> None:
    """Train the MIJSCC codec from a config (resumes from its run folder), fit N_enc, ship."""
    import torch
    import yaml

    from semnet.experiments.multitask import evaluate
    from semnet.models import zoo
    from semnet.models.mijscc_train import calibrate, load_multitask_config, train
    from semnet.models.train import training_data

    torch.set_num_threads(threads)
    use_zoo(zoo_dir)
    cfg = load_multitask_config(config_path)
    if cfg.data == "fashion-mnist":
        from semnet.models.mijscc_train import fashion_manifest

        manifest, manifest_sha256 = fashion_manifest()
        files = None
    else:
        photos = training_data(data)
        files, manifest, manifest_sha256 = photos.files, photos.manifest, photos.manifest_sha256
    target = zoo.check_new(cfg.name, cfg.codec_id) if export else None
    run = Path(run_dir or Path("runs") / cfg.name)
    model, data = train(cfg, run, steps=steps, progress=sys.stderr.isatty(), files=files)
    if not export:
        return
    held = data.held_x if cfg.data == "fashion-mnist" else data.x.float() / 255.0
    adaptation = calibrate(model, held, cfg.train)
    (run / "calibration.json").write_text(json.dumps(adaptation, indent=1) + "\n")
    entry = new_entry(
        cfg,
        steps=steps if steps is not None else cfg.train.steps,
        config=yaml.safe_load(Path(config_path).read_text()),
        data_manifest_sha256=manifest_sha256,
        data_manifest=manifest,
    )
    publish(model, entry, target, measure=False)
    # what ships (fp16 weights) is measured, not the model in memory
    shipped = zoo.load(cfg.name)
    metrics = evaluate(shipped, cfg, photos=measure_photos)
    metrics["adaptation"] = {k: adaptation[k] for k in adaptation if k != "k_star"}
    metrics["adaptation"]["k_star"] = adaptation["k_star"]
    publish(model, replace(zoo.entry(cfg.name), metrics=metrics), target, measure=False)
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    click.echo(json.dumps({k: v for k, v in metrics.items() if k != "adaptation"}, indent=1))


COMMANDS = (train_multitask,)
