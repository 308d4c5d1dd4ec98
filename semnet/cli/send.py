"""`semnet send IMAGE... --sender HOST:PORT`: hand images to a running sender, print reports."""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from semnet.cli.auth import key_option, load_key
from semnet.errors import SemnetError


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--sender",
    "sender",
    default="127.0.0.1:7000",
    show_default=True,
    help="host:port of the sender's HTTP port",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON list of reports")
@click.option(
    "--every",
    type=click.FloatRange(min=0.1),
    help="repeat forever, this many seconds "
    "apart (a feeder that keeps dashboards filled); Ctrl-C stops",
)
@click.option("--quality", type=int, help="rate point N of the sender's codec family (-qN)")
@click.option("--bpp", type=float, help="the best rate point at most this many bits per pixel")
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="frames in flight at once: the sender encodes one while it sends another and the "
    "receiver decodes a third. Helps where cores are idle; on 2 cores the daemons are CPU-bound "
    "and 1 (stop-and-wait) is as fast with the lowest latency (benchmarks/throughput.py)",
)
@key_option
def send(
    images: tuple[str, ...],
    sender: str,
    as_json: bool,
    every: float | None,
    quality: int | None,
    bpp: float | None,
    window: int,
    auth_key_file: str | None,
) -> None:
    """Send IMAGES through the testbed and print what the receiver reported (in the order
    given, whatever order the frames finish in)."""
    from semnet.client import send_image

    key = load_key(auth_key_file)
    files = []
    for path in images:
        try:
            files.append((Path(path).name, Path(path).read_bytes()))
        except OSError as exc:
            raise SemnetError(f"{path}: cannot read ({exc.strerror})") from None

    def one(item: tuple[str, bytes]) -> dict | SemnetError:
        try:
            return send_image(sender, item[0], item[1], key=key, quality=quality, bpp=bpp)
        except SemnetError as exc:
            return exc

    pool = ThreadPoolExecutor(window, thread_name_prefix="send")
    while True:
        reports = []
        for report in pool.map(one, files):  # at most `window` requests in flight, in order
            if isinstance(report, SemnetError):
                if every is None:
                    pool.shutdown(wait=False, cancel_futures=True)  # the frames not yet asked for
                    raise report
                click.echo(f"semnet: {report} (retrying)", err=True)  # a feeder outlives restarts
                continue
            reports.append(report)
            if not as_json:
                click.echo(describe(report))
        if as_json:
            click.echo(json.dumps(reports, indent=1))
        if every is None:
            failed = [r for r in reports if "error" in r]
            if failed:  # the frame did not arrive decoded: say so in the exit status too
                raise SemnetError(f"{len(failed)} of {len(reports)} frames failed: "
                                  f"{failed[0]['name']}: {failed[0]['error']}")  # fmt: skip
            return
        try:
            time.sleep(every)
        except KeyboardInterrupt:
            return


def describe(r: dict) -> str:
    if "error" in r:
        return (
            f"{r['name']}: frame {r['frame']}, {r['datagrams_sent']} datagrams sent; {r['error']}"
        )
    psnr = "-" if r.get("psnr_db") is None else f"{r['psnr_db']:.2f} dB"
    ssim = "-" if r.get("ssim") is None else f"{r['ssim']:.4f}"
    extra = ""
    if r.get("classes"):  # a multi-task codec: the class read from the latent
        top = r["classes"][0]
        extra += f", class {top['label']} ({top['p']:.0%})"
    if r.get("end_index") is not None:
        extra += f", {r['end_index']} channels sent"
    return (
        f"{r['name']}: frame {r['frame']}, datagrams {r['datagrams_received']}/"
        f"{r['datagrams_sent']}, loss {r['loss_ratio']:.1%}, PSNR {psnr}, SSIM {ssim}, "
        f"{r['bpp']:.3f} bpp{extra}, saved {r['saved']}"
    )


COMMANDS = (send,)
