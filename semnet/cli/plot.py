"""`semnet plot`: PNGs from a `semnet sweep` JSON: quality against loss, per-image ΔPSNR at one
loss rate (paper 001 Fig. 9), and the distribution of latent channel means (001 Fig. 12); from a
`semnet rd` JSON the rate-distortion curves (drawn by semnet.cli.plot_rd)."""

import json
from collections import defaultdict
from pathlib import Path

import click

from semnet.cli.sweep import OneLineCommand
from semnet.errors import SemnetError

CONTENDER = ("codec", "partition", "fill", "interleave")


def read_results(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SemnetError(f"{path}: cannot read sweep results ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        raise SemnetError(f"{path}: not a semnet sweep or rd result (no rows)")
    return data


def labels(rows: list[dict]) -> dict[tuple, str]:
    """A legend label per contender naming only the fields that vary among the contenders."""
    keys = list(dict.fromkeys(tuple(r[f] for f in CONTENDER) for r in rows))
    semantic = [k for k in keys if k[1] != "-"]  # classical rows: no partition, fill, interleave
    varying = [i for i in range(1, len(CONTENDER)) if len({k[i] for k in semantic}) > 1]
    out = {}
    for key in keys:
        words = [key[0]]
        if key in semantic:
            words += [
                ("interleaved" if key[i] else "in order")
                if CONTENDER[i] == "interleave"
                else key[i]
                for i in varying
            ]
        out[key] = " ".join(str(w) for w in words)
    return out


def by_contender(rows: list[dict], model: str) -> dict[tuple, dict[float, dict[str, list]]]:
    """contender -> loss -> image -> its rows (one per loss draw), for one loss model."""
    table: dict[tuple, dict[float, dict[str, list]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in rows:
        if r["loss_model"] == model:
            table[tuple(r[f] for f in CONTENDER)][r["loss"]][r["image"]].append(r)
    return table


def image_mean(per_image: dict[str, list], image: str, metric: str) -> float:
    """One image's metric averaged over its loss draws."""
    return sum(r[metric] for r in per_image[image]) / len(per_image[image])


def colours(plt, n: int) -> list:
    """n distinct colours: matplotlib's default cycle repeats after 10 lines."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_metric(plt, rows: list[dict], metric: str, ylabel: str, path: Path) -> Path:
    """Mean over images and draws against loss rate, one line per contender, band from the worst
    to the best image; a panel per loss model."""
    models = list(dict.fromkeys(r["loss_model"] for r in rows))
    names = labels(rows)
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        table = by_contender(rows, model)
        for colour, (key, per_loss) in zip(colours(plt, len(table)), table.items(), strict=True):
            losses = sorted(per_loss)
            x = [100 * p for p in losses]
            mean = [
                sum(r[metric] for rs in per_loss[p].values() for r in rs)
                / sum(len(rs) for rs in per_loss[p].values())
                for p in losses
            ]
            ax.plot(x, mean, marker="o", label=names[key], color=colour)
            per_image = [[image_mean(per_loss[p], n, metric) for n in per_loss[p]] for p in losses]
            lows, highs = [min(v) for v in per_image], [max(v) for v in per_image]
            ax.fill_between(x, lows, highs, color=colour, alpha=0.1)
        ax.set(title=f"{model} loss", xlabel="packet loss rate (%)", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return save(plt, fig, path)


def plot_delta(plt, rows: list[dict], at: float, path: Path) -> Path | None:
    """Per-image PSNR at loss ``at`` minus PSNR without loss, bars per contender (first loss
    model); None when the sweep lacks either rate."""
    model = rows[0]["loss_model"]
    table = by_contender(rows, model)
    pairs = {k: v for k, v in table.items() if 0.0 in v and at in v}
    if not pairs:
        return None
    names = labels(rows)
    images = list(dict.fromkeys(r["image"] for r in rows))
    width = 0.8 / len(pairs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(images) + 2), 4.5))
    for i, (colour, (key, per_loss)) in enumerate(
        zip(colours(plt, len(pairs)), pairs.items(), strict=True)
    ):
        deltas = [
            image_mean(per_loss[at], n, "psnr_db") - image_mean(per_loss[0.0], n, "psnr_db")
            for n in images
        ]
        x = [j + i * width for j in range(len(images))]
        ax.bar(x, deltas, width, label=names[key], color=colour)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(images))], images, rotation=30)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(title=f"ΔPSNR at {at:.0%} {model} loss vs. lossless", ylabel="ΔPSNR (dB)")
    ax.legend(fontsize="small")
    return save(plt, fig, path)


def diffusion_steps(fill: str) -> tuple[int, str] | None:
    """(T, temperature as written) of a ``diffusion[:T[:τ]]`` fill, None for other fills."""
    from semnet.models.fill import DEFAULT_DIFFUSION_STEPS, DEFAULT_TEMPERATURE

    name, *args = str(fill).split(":")
    if name != "diffusion":
        return None
    steps = int(args[0]) if args else DEFAULT_DIFFUSION_STEPS
    return steps, args[1] if len(args) > 1 else f"{DEFAULT_TEMPERATURE:g}"


def plot_steps(plt, rows: list[dict], path: Path) -> Path | None:
    """Quality against denoising steps T (paper 002 Fig. 5): mean over images, one line per
    loss rate, a panel each for PSNR and (when scored) LPIPS; None without two or more T."""
    diffusion = [r for r in rows if diffusion_steps(r["fill"]) is not None]
    if len({r["fill"] for r in diffusion}) < 2:
        return None
    metrics = [("psnr_db", "PSNR (dB)")]
    if any(r.get("lpips") is not None for r in diffusion):
        metrics.append(("lpips", "LPIPS (lower is better)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    for ax, (metric, ylabel) in zip(axes[0], metrics, strict=True):
        lines: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in diffusion:
            steps, temperature = diffusion_steps(r["fill"])
            key = (r["codec"], r["partition"], r["loss_model"], r["loss"], temperature)
            lines[key][steps].append(r[metric])
        for (codec, partition, model, loss, temperature), per_t in sorted(lines.items()):
            ts = sorted(per_t)
            ax.plot(
                ts,
                [sum(per_t[t]) / len(per_t[t]) for t in ts],
                marker="o",
                label=f"{codec} {partition} {loss:.0%} {model} τ={temperature}",
            )
        ax.set(title="diffusion fill", xlabel="denoising steps T", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return save(plt, fig, path)


def plot_channel_means(plt, means: dict[str, dict], path: Path) -> Path | None:
    """Histogram (density) of each semantic codec's latent channel means on one image."""
    if not means:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, entry in means.items():
        ax.hist(entry["means"], bins=24, density=True, histtype="step", linewidth=1.5, label=name)
    image = next(iter(means.values()))["image"]
    ax.set(title=f"latent channel means ({image})", xlabel="channel mean", ylabel="density")
    ax.legend(fontsize="small")
    return save(plt, fig, path)


@click.command(cls=OneLineCommand)
@click.argument("results")
@click.option("--out", default=None, help="folder for the PNGs (default: beside RESULTS)")
@click.option(
    "--delta-loss", type=float, default=0.1, show_default=True, help="rate of the ΔPSNR plot"
)
def plot(results: str, out: str | None, delta_loss: float) -> None:
    """Plot a sweep: PSNR and SSIM (LPIPS, semantic accuracy when scored) against loss,
    per-image ΔPSNR, channel means, quality against diffusion steps. Plot an rd result: PSNR and
    MS-SSIM against bpp."""
    try:
        import matplotlib
    except ImportError:
        raise SemnetError("semnet plot needs matplotlib: pip install 'semnet[eval]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_results(results)
    folder = Path(out) if out else Path(results).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    if data.get("kind") == "rd":
        from semnet.cli.plot_rd import plot_rd

        for path in plot_rd(plt, data, folder):
            click.echo(path)
        return
    rows = data["rows"]
    delta = plot_delta(plt, rows, delta_loss, folder / "delta_psnr.png")
    written = [
        plot_metric(plt, rows, "psnr_db", "PSNR (dB)", folder / "psnr_vs_loss.png"),
        plot_metric(plt, rows, "ssim", "SSIM", folder / "ssim_vs_loss.png"),
        delta,
        plot_channel_means(plt, data.get("channel_means") or {}, folder / "channel_means.png"),
        plot_steps(plt, rows, folder / "quality_vs_steps.png"),
    ]
    if all(r.get("lpips") is not None for r in rows):
        written += [
            plot_metric(
                plt, rows, "lpips", "LPIPS (lower is better)", folder / "lpips_vs_loss.png"
            ),
            plot_metric(
                plt, rows, "semantic_agree", "semantic accuracy", folder / "semantic_vs_loss.png"
            ),
        ]
    for path in written:
        if path is not None:
            click.echo(path)
    if delta is None:
        click.echo(f"no ΔPSNR plot: the sweep lacks loss 0 or {delta_loss:g}", err=True)


COMMANDS = (plot,)
