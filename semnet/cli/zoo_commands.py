"""`semnet zoo list` (the zoos' codecs and imputers), `semnet zoo show NAME` (one entry's
manifest; ``--interface`` its learned bit interface) and `semnet zoo import` (outside weights as
a zoo entry)."""

import json
from dataclasses import asdict
from pathlib import Path

import click

from semnet.cli.train import new_entry, publish, use_zoo, zoo_option


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
        lossless = m.get("0", {}).get("psnr_db")
        kept = e.metrics.get("psnr_kept_at_max_loss")
        at = max(map(float, m)) if m else None
        mark = "*" if e.name == DEFAULT_CODEC else " "
        click.echo(
            f"{mark} {e.name:<20} {e.codec_id:>5} {e.architecture:<13} "
            f"{shown(e.metrics.get('bpp_on_wire'), '.3f'):>6} {shown(lossless, '.2f'):>11} "
            f"{shown(kept, '.1%'):>9} {shown(at, '.0%'):>7}  {e.file:<40} {f.zoo.source}"
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


def shown(value: float | None, spec: str) -> str:
    """A metric as the table prints it; - where the entry did not measure it."""
    return "-" if value is None else format(value, spec)


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


@zoo.command("show")
@click.argument("name")
@click.option("--interface", "show_interface", is_flag=True, help="print the bit interface")
@click.option("--json", "as_json", is_flag=True)
def zoo_show(name: str, show_interface: bool, as_json: bool) -> None:
    """One zoo entry's manifest; with --interface the learned flip probabilities eps
    (channel x bit, MSB first) and importance 1 - 2 eps, by bit position and by class."""
    from semnet.core.interface import from_manifest, group
    from semnet.errors import SemnetError
    from semnet.models import zoo as zoo_lib

    found = zoo_lib.where(name)
    manifest = asdict(found.entry)
    if not show_interface:
        click.echo(json.dumps(manifest, indent=1))
        return
    try:
        iface = from_manifest(manifest)
    except SemnetError as exc:
        raise SemnetError(f"{exc} (not a bit-interface codec?)") from None
    classes = group(iface, min(4, iface.eps.size))
    if as_json:
        data = iface.as_dict()
        data["importance"] = [[round(float(v), 6) for v in r] for r in iface.importance]
        data["class_eps"] = [round(float(v), 6) for v in classes.eps]
        click.echo(json.dumps(data, indent=1))
        return
    kind = manifest["metrics"]["interface"].get("kind", "?")
    click.echo(
        f"{name}: {kind} interface, {iface.channels} channels x {iface.bits} bits (MSB first)"
    )
    click.echo("eps by bit:        " + " ".join(f"{v:.4g}" for v in iface.by_bit()))
    click.echo("importance by bit: " + " ".join(f"{1 - 2 * v:.4g}" for v in iface.by_bit()))
    click.echo("classes (most important first): eps " + " ".join(f"{v:.4g}" for v in classes.eps))
    click.echo(f"{'channel':>7}  eps (bit 0 = MSB ...)")
    for c, row in enumerate(iface.eps):
        click.echo(f"{c:>7}  " + " ".join(f"{v:.4g}" for v in row))


COMMANDS = (zoo,)
