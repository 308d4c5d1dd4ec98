"""`semnet rd`: the rate-distortion curve, every codec sent losslessly, classical ones at matching
bytes on the wire, to JSON (plot it with `semnet plot`). See docs/rd.md."""

import json
from pathlib import Path

import click

from semnet.cli.sweep import OneLineCommand, invocation, load_images, split
from semnet.cli.zoos import use_zoo, zoo_option

DEFAULT_CLASSICAL = "jpeg,webp,jpeg2000"


def _value(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(points: list[dict]) -> str:
    """Mean over images per rate point: codec (and the rate it was matched to), bpp, quality."""
    row = "{:<20} {:<20} {:>6} {:>7} {:>7} {:>6}"
    lines = [row.format("codec", "matched to", "bpp", "PSNR", "MS-SSIM", "images")]
    for p in points:
        lines.append(
            row.format(
                p["codec"],
                p["matched_to"] or "-",
                _value(p["bpp"], ".3f"),
                _value(p["psnr_db"], ".2f"),
                _value(p["ms_ssim"], ".4f"),
                p["image_count"],
            )
        )
    return "\n".join(lines)


@click.command(cls=OneLineCommand)
@click.option(
    "--codec",
    "codecs",
    default=None,
    help="zoo codecs or manifest paths (default: every cnn-rd and the default)",
)
@zoo_option
@click.option(
    "--classical",
    default=DEFAULT_CLASSICAL,
    show_default=True,
    help="jpeg, webp, jpeg2000 at matching bytes, or none",
)
@click.option("--images", default=None, help="folder, eval or eval:NAME,... (default: demo photos)")
@click.option("--datagram-size", type=int, default=1200, show_default=True)
@click.option("--out", default="rd.json", show_default=True, type=click.Path(dir_okay=False))
def rd(codecs, zoo_path, classical, images, datagram_size, out) -> None:
    """Measure the rate-distortion curve: each codec on each image through the real packet chain
    without loss, bpp counted on the wire. Writes JSON rows and prints the mean per rate point."""
    from semnet.experiments.rd import default_codecs, rate_points, run_rd
    from semnet.models import zoo

    use_zoo(zoo_path)
    # a manifest path stands for the codec it holds (that manifest then searched first)
    names = [zoo.canonical(n) for n in split(codecs, "--codec")] if codecs else default_codecs()
    contenders = [] if classical == "none" else split(classical, "--classical")
    pictures = load_images(images)
    command = invocation(click.get_current_context())
    result = run_rd(pictures, names, contenders, datagram_size, command=command)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    click.echo(table(rate_points(result["rows"])))
    for miss in result["unmatched"]:
        click.echo(
            f"no {miss['classical']} point at {miss['matched_to']}'s rate on {miss['image']}: "
            f"{miss['reason']}",
            err=True,
        )
    click.echo(f"{len(result['rows'])} rows written to {out}", err=True)


COMMANDS = (rd,)
