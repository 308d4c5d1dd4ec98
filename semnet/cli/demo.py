"""`semnet demo`: the bundled photos (or a folder) through a local testbed at several loss rates.

With ``--json`` it prints a table's numbers and every frame as a sweep row, so `semnet plot`
draws the demo's own output.
"""

import json
import math
import tempfile
from pathlib import Path

import click

from semnet.cli.sweep import repeats_option
from semnet.cli.zoos import use_zoo, zoo_option
from semnet.errors import SemnetError
from semnet.models import DEFAULT_CODEC

DEFAULT_LOSSES = "0,0.05,0.1,0.2,0.3,0.4"
DEMO_IMAGES = Path(__file__).resolve().parent.parent / "demo_images"


def parse_losses(text: str) -> list[float]:
    try:
        losses = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SemnetError(f"--loss: {text!r} is not a comma-separated list of numbers") from None
    if not losses or any(not 0.0 <= p <= 1.0 for p in losses):
        raise SemnetError(f"--loss: {text!r}: each rate must be in 0..1")
    return losses


def mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


@click.command()
@click.option(
    "--images",
    type=click.Path(file_okay=False),
    help="folder of images (default: the bundled demo photos)",
)
@click.option(
    "--loss",
    "losses",
    default=DEFAULT_LOSSES,
    show_default=True,
    help="comma-separated random loss rates (0..1)",
)
@click.option(
    "--codec", default=DEFAULT_CODEC, show_default=True, help="zoo codec name or manifest path"
)
@zoo_option
@click.option("--quality", type=int, help="rate point N of an entropy-coded family (cnn-rd-qN)")
@click.option("--bpp", type=float, help="the best rate point at most this many bits per pixel")
@click.option("--fill", default="zero", show_default=True)
@click.option("--partition", default="channel", show_default=True)
@click.option("--seed", default=1, show_default=True)
@repeats_option(
    4,
    "send each image this many times per loss rate, so the realised loss rests on more "
    "datagrams (each send is a new frame with its own interleaving and losses)",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    help="keep configs, logs and reconstructions here (default: a temporary folder)",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def demo(
    images, losses, codec, zoo_path, quality, bpp, fill, partition, seed, repeats, workdir, as_json
) -> None:
    """Send photos through sender -> proxy -> receiver processes on loopback, and tabulate
    quality against loss."""
    use_zoo(zoo_path)
    from semnet.core.partition import parse_spec, spec_name
    from semnet.images import image_files, load_image
    from semnet.testbed import LocalTestbed

    if quality is not None or bpp is not None:
        from semnet.models import zoo

        codec = zoo.rate_point(codec, quality, bpp)
    rates = parse_losses(losses)
    files = image_files(images or DEMO_IMAGES)
    pictures = [(f.name, load_image(f)) for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        bed = LocalTestbed(
            workdir or tmp,
            seed=seed,
            # frame ids (and so each frame's interleaving) from 0, not the boot clock: the same
            # --seed gives the same rows on every run
            sender={"codec": codec, "partition": partition, "first_frame": 0, "interleave": True},
            receiver={"fill": fill},
        )
        point = {"codec": codec, "partition": spec_name(parse_spec(partition)), "fill": fill}
        with bed:
            results, rows = [], []
            for p in rates:
                bed.set_impairment(f"loss random {p * 100:g}%")
                sends = [(r, name, im) for r in range(repeats) for name, im in pictures]
                reports = [bed.send(im, name) for _, name, im in sends]
                failed = [r for r in reports if "error" in r]
                if failed:
                    raise SemnetError(f"{failed[0]['name']}: {failed[0]['error']}")
                results.append(summarise(p, reports))
                pairs = zip(sends, reports, strict=True)
                rows += [frame_row(point, p, r, report) for (r, _, _), report in pairs]
                if not as_json:
                    click.echo(f"loss {p:.0%}: done ({len(reports)} frames)", err=True)
    result = {
        **point,
        "images": [name for name, _ in pictures],
        "repeats": repeats,
        "bpp": mean([r["bpp"] for r in rows]),
        "results": results,
        "rows": rows,
    }
    click.echo(json.dumps(result, indent=1) if as_json else table(result))


def summarise(p: float, reports: list[dict]) -> dict:
    """One loss rate's frames: datagram totals, realised loss from the totals (a frame of many
    datagrams weighs more than a frame of few), mean quality."""
    sent = sum(r["datagrams_sent"] for r in reports)
    received = sum(r["datagrams_received"] for r in reports)
    return {
        "loss": p,
        "datagrams_sent": sent,
        "datagrams_received": received,
        "realised_loss": 1 - received / sent,
        "psnr_db": mean([r["psnr_db"] for r in reports]),
        "ssim": mean([r["ssim"] for r in reports]),
        "bpp": mean([r["bpp"] for r in reports]),
    }


def frame_row(point: dict, p: float, repeat: int, report: dict) -> dict:
    """One frame as a `semnet sweep` row (the keys `semnet plot` reads)."""
    return {
        **point,
        "interleave": True,
        "loss_model": "bernoulli",
        "loss": p,
        "image": report["name"],
        "repeat": repeat,
        "psnr_db": report["psnr_db"],
        "ssim": report["ssim"],
        "ms_ssim": report.get("ms_ssim"),
        "bpp": report["bpp"],
        "realised_loss": report["loss_ratio"],
        "datagrams_sent": report["datagrams_sent"],
        "datagrams_received": report["datagrams_received"],
    }


def table(result: dict) -> str:
    head = (
        f"codec {result['codec']}, fill {result['fill']}, partition {result['partition']}, "
        f"{len(result['images'])} images x {result['repeats']}, "
        f"{result['bpp']:.3f} bits per pixel on the wire"
    )
    lines = [
        head,
        "",
        f"{'loss':>6} {'sent':>7} {'received':>9} {'realised':>9} "
        f"{'PSNR dB':>8} {'SSIM':>7} {'bpp':>6}",
    ]
    for r in result["results"]:
        lines.append(
            f"{r['loss']:>6.0%} {r['datagrams_sent']:>7} {r['datagrams_received']:>9} "
            f"{r['realised_loss']:>9.1%} {r['psnr_db']:>8.2f} {r['ssim']:>7.4f} "
            f"{r['bpp']:>6.3f}"
        )
    return "\n".join(lines)


COMMANDS = (demo,)
