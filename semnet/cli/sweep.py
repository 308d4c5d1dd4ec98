"""`semnet sweep`: codecs x partitions x fills x loss models x rates x interleaving, to JSON.

See docs/sweep.md for the axes, the classical baselines and what "same losses" means.
"""

import json
import shlex
import sys
import tempfile
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import click

from semnet.cli.zoos import use_zoo, zoo_option
from semnet.errors import SemnetError

DEFAULT_LOSSES = "0,0.1,0.2,0.3,0.4"


class OneLineCommand(click.Command):
    """Bad flag values become a SemnetError, so they print one line and exit 2 like the rest."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise SemnetError(exc.format_message()) from None


class HiddenAlias(click.Option):
    """An option whose spellings after the first still parse but stay out of --help: an old
    spelling keeps working while the help names one."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        opts, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = opts


def repeats_option(default: int, text: str):
    """``--repeats N``, spelled the same on every command (``--repeat`` still parses)."""
    return click.option(
        "--repeats",
        "--repeat",
        "repeats",
        cls=HiddenAlias,
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help=text,
    )


def split(text: str, flag: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise SemnetError(f"{flag}: {text!r} is not a comma-separated list")
    return items


def parse_losses(text: str) -> list[float]:
    try:
        return [float(x) for x in split(text, "--loss")]
    except ValueError:
        raise SemnetError(f"--loss: {text!r} is not a comma-separated list of numbers") from None


def rate_points(names: list[str], qualities: str | None, bpp: float | None) -> tuple[str, ...]:
    """The codec list with each zoo family replaced by its rate points at ``qualities`` (a
    comma list) or ``bpp``; classical contenders stay as they are."""
    if qualities is None and bpp is None:
        return tuple(names)
    from semnet.baselines.stream import is_classical
    from semnet.models import zoo

    try:
        levels = [int(q) for q in split(qualities, "--quality")] if qualities else [None]
    except ValueError:
        raise SemnetError(f"--quality: {qualities!r} is not a comma-separated list of N") from None
    out = []
    for name in names:
        if is_classical(name):
            out.append(name)
        else:
            out += [zoo.rate_point(name, q, bpp) for q in levels]
    return tuple(dict.fromkeys(out))


def parse_interleave(text: str) -> list[bool]:
    values = {"on": True, "off": False}
    items = split(text, "--interleave")
    bad = [i for i in items if i not in values]
    if bad:
        raise SemnetError(f"--interleave: {bad[0]!r} is not on or off")
    return [values[i] for i in items]


def load_images(where: str | None) -> dict:
    """A folder's images by file name; "eval" or "eval:NAME,NAME" for the public photos."""
    from semnet.cli.demo import DEMO_IMAGES
    from semnet.eval_images import eval_image, eval_images
    from semnet.images import image_files, load_image

    if where == "eval":
        images = eval_images()
        if not images:
            raise SemnetError("--images eval: no evaluation photos (pip install 'semnet[eval]')")
        return images
    if where is not None and where.startswith("eval:"):
        return {name: eval_image(name) for name in split(where[5:], "--images")}
    return {f.name: load_image(f) for f in image_files(where or DEMO_IMAGES)}


def invocation(ctx: click.Context) -> str:
    """The command line that reproduces this run, defaults spelled out."""
    words = ["semnet", ctx.info_name or "sweep"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Option) and param.is_flag:
            words += [param.opts[0]] if value else []
        elif value is not None:
            words += [param.opts[0], str(value)]
    return shlex.join(words)


def _mean(group: list[dict], metric: str) -> float | None:
    values = [float(r[metric]) for r in group if r.get(metric) is not None]
    return sum(values) / len(values) if values else None


# metrics that only some sweeps score: (row key, column title, width)
OPTIONAL_COLUMNS = (("ms_ssim", "MS-SSIM", 7), ("lpips", "LPIPS", 6), ("semantic_agree", "sem", 5))


def summary(rows: list[dict]) -> str:
    """Mean over images per contender and loss point, as a text table (MS-SSIM, LPIPS and
    semantic accuracy when the rows have them)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        interleave = "-" if r["interleave"] is None else ("on" if r["interleave"] else "off")
        key = (r["codec"], r["partition"], r["fill"], interleave, r["loss_model"])
        groups[(*key, f"{r['loss'] * 100:g}%")].append(r)
    optional = [
        (metric, title, width)
        for metric, title, width in OPTIONAL_COLUMNS
        if any(r.get(metric) is not None for r in rows)
    ]
    head = ["codec", "partition", "fill", "il", "model", "loss", "real", "PSNR", "SSIM", "bpp"]
    row = "{:<16} {:<12} {:<12} {:<3} {:<9} {:>5} {:>6} {:>6} {:>6} {:>6}"
    head += [title for _, title, _ in optional]
    row += "".join(f" {{:>{width}}}" for _, _, width in optional)
    lines = [(row + " decoded").format(*head)]
    for key, group in groups.items():
        n = len(group)
        metrics = ["realised_loss", "psnr_db", "ssim", "bpp", *(m for m, _, _ in optional)]
        means = [_mean(group, m) for m in metrics]
        loss, psnr_db, ssim, bpp = means[:4]
        cells = [f"{loss:.1%}", f"{psnr_db:.2f}", f"{ssim:.3f}", f"{bpp:.3f}"]
        cells += ["-" if m is None else f"{m:.3f}" for m in means[4:]]
        decoded = f"{sum(r['decoded'] for r in group)}/{n}"
        lines.append((row + " {}").format(*key, *cells, decoded))
    return "\n".join(lines)


@click.command(cls=OneLineCommand)
@click.option(
    "--codec", "codecs", default=None, help="zoo codecs (or manifests), jpeg|webp|jpeg2000[+rsN]"
)
@zoo_option
@click.option(
    "--quality",
    "qualities",
    default=None,
    help="rate points N,... of the zoo codecs given as families (cnn-rd -> cnn-rd-qN)",
)
@click.option("--bpp", type=float, default=None, help="the best rate point at most this bpp")
@click.option("--partition", "partitions", default="channel", show_default=True)
@click.option("--fill", "fills", default="zero", show_default=True)
@click.option(
    "--loss-model", "loss_models", default="bernoulli", show_default=True, help="bernoulli, ge"
)
@click.option("--loss", "losses", default=DEFAULT_LOSSES, show_default=True, help="rates in 0..1")
@click.option("--burst-length", type=float, default=None, help="mean burst (datagrams), for ge")
@click.option("--interleave", default="on", show_default=True, help="on, off or on,off")
@click.option("--images", default=None, help="folder, eval or eval:NAME,... (default: demo photos)")
@click.option("--seed", type=int, default=1, show_default=True)
@repeats_option(1, "loss draws per point (seed + r)")
@click.option("--datagram-size", type=int, default=1200, show_default=True)
@click.option("--out", default="sweep.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--online", is_flag=True, help="through sender/proxy/receiver daemons on loopback")
@click.option(
    "--resume", is_flag=True, help="keep the rows already in OUT's .jsonl journal, run the rest"
)
@click.option(
    "--perceptual", is_flag=True, help="also LPIPS and semantic accuracy (make metrics-extra)"
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS|auto|local]",
    help="each cell a Ray task: a private local Ray (alone: local), a running one (auto) or "
    "HOST:PORT (pip install 'semnet[ray]')",
)
@click.option(
    "--ray-workers",
    type=click.IntRange(min=1),
    default=None,
    help="CPUs of a --ray local Ray  [default: every core]",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch and codec engine threads per cell runner; rows depend on it  "
    "[default: 2; 1 per Ray worker]",
)
def sweep(
    codecs,
    zoo_path,
    qualities,
    bpp,
    partitions,
    fills,
    loss_models,
    losses,
    burst_length,
    interleave,
    images,
    seed,
    repeats,
    datagram_size,
    out,
    online,
    resume,
    perceptual,
    ray_address,
    ray_workers,
    threads,
) -> None:
    """Measure quality against packet loss for every combination of the axes; comma-separated
    flags give an axis several values. Writes JSON rows and prints mean quality per point; each
    row also goes to OUT with suffix .jsonl as soon as it is measured. A cell that fails is
    recorded as failed, the others go on, and the command exits 2 at the end."""
    from semnet.experiments.journal import Journal
    from semnet.experiments.sweep import SweepSpec, run_sweep
    from semnet.models import zoo
    from semnet.models.backends import DEFAULT_THREADS
    from semnet.models.zoo import DEFAULT_CODEC

    use_zoo(zoo_path)
    if ray_address is None and ray_workers is not None:
        raise SemnetError("--ray-workers: only with --ray local")
    if ray_address is not None and online:
        raise SemnetError("--ray: offline sweeps only (--online runs its own daemons)")
    ray_runner = None
    if ray_address is not None:
        from semnet.experiments import ray_runner  # SemnetError naming the extra when missing
    journal = Journal(Path(out).with_suffix(".jsonl"))
    if journal.path == Path(out):
        raise SemnetError(f"--out: {out} ends in .jsonl, the journal's suffix; name it .json")

    spec = SweepSpec(
        codecs=rate_points(
            [zoo.canonical(n) for n in split(codecs or DEFAULT_CODEC, "--codec")], qualities, bpp
        ),
        partitions=tuple(split(partitions, "--partition")),
        fills=tuple(split(fills, "--fill")),
        loss_models=tuple(split(loss_models, "--loss-model")),
        losses=tuple(parse_losses(losses)),
        burst_length=burst_length,
        interleave=tuple(parse_interleave(interleave)),
        seed=seed,
        repeats=repeats,
        datagram_size=datagram_size,
        perceptual=perceptual,
    )
    pictures = load_images(images)
    command = invocation(click.get_current_context())
    try:
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            distribute = None
            if ray_runner is not None:
                stack.enter_context(ray_runner.connected(ray_address, ray_workers))
                distribute = ray_runner.executor()
            result = run_sweep(
                pictures,
                spec,
                online=Path(tmp) if online else None,
                command=command,
                journal=journal,
                resume=resume,
                progress=sys.stderr.isatty(),
                threads=threads or (1 if ray_runner is not None else DEFAULT_THREADS),
                distribute=distribute,
            )
    except (SemnetError, KeyboardInterrupt) as exc:
        if not journal.rows:
            raise
        why = str(exc) if isinstance(exc, SemnetError) else "interrupted"
        where = f"{journal.rows} rows kept in {journal.path}"
        raise SemnetError(f"{why} ({where}{'' if online else '; --resume continues'})") from None
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    click.echo(summary(result["rows"]))
    click.echo(f"{len(result['rows'])} rows written to {out}", err=True)
    failed = result["failed"]
    if failed:
        first = failed[0]
        point = ", ".join(f"{k} {first[k]}" for k in ("codec", "loss", "image", "seed"))
        again = "run it again" if online else "--resume measures them again"
        raise SemnetError(
            f"{len(failed)} of {len(failed) + len(result['rows'])} cells failed, marked in "
            f"{journal.path} and {out} (first: {point}: {first['error']}); {again}"
        )


COMMANDS = (sweep,)
