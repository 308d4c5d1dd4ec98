"""`semnet plot`: PNGs from a `semnet sweep` or `semnet demo --json` JSON: quality against loss,
per-image ΔPSNR at one loss rate (paper 001 Fig. 9), the distribution of latent channel means
(001 Fig. 12), quality against diffusion steps (002 Fig. 5); from a `semnet rd` JSON the
rate-distortion curves (drawn by semnet.cli.plot_rd).

Every figure says what it averages (images × repeats, bits per pixel) and what its whiskers
span; lines differ in colour, marker and dash, and legends sit outside the data.
"""

import json
from collections import Counter, defaultdict
from pathlib import Path

import click

from semnet.cli.sweep import OneLineCommand
from semnet.errors import SemnetError

CONTENDER = ("codec", "partition", "fill", "interleave")
POINT = (*CONTENDER, "loss_model", "loss", "image")  # the rows of one point: its repeats
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
DASHES = ("-", "--", "-.", ":")
MODELS = {"bernoulli": "random loss (Bernoulli)", "ge": "burst loss (Gilbert)"}

PERCEPTUAL = "semnet sweep --perceptual"
SMALL = "images under 161 px a side, or a sweep older than MS-SSIM"
# (row key, axis label, file, hint when not drawn or None if always drawn, per-image whiskers)
METRICS = (
    ("psnr_db", "PSNR (dB)", "psnr_vs_loss.png", None, True),
    ("ssim", "SSIM", "ssim_vs_loss.png", None, True),
    ("ms_ssim", "MS-SSIM", "ms_ssim_vs_loss.png", SMALL, True),
    ("lpips", "LPIPS (lower is better)", "lpips_vs_loss.png", PERCEPTUAL, True),
    # each image is right or wrong: a range over images would span 0..1 and say nothing
    ("semantic_agree", "semantic accuracy", "semantic_vs_loss.png", PERCEPTUAL, False),
)


def read_results(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SemnetError(f"{path}: cannot read sweep results ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        raise SemnetError(f"{path}: not a semnet sweep, demo or rd result (no rows)")
    return data


def model_title(model: str, burst: float | None = None) -> str:
    """A panel's loss model in words, with the mean burst of Gilbert loss when known."""
    if model == "ge" and burst:
        return f"burst loss (Gilbert, mean burst {burst:g})"
    return MODELS.get(model, f"{model} loss")


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


def scope(rows: list[dict]) -> str:
    """What each point averages: '8 images × 2 repeats'."""
    images = len({r["image"] for r in rows})
    draws = max(Counter(tuple(r[f] for f in POINT) for r in rows).values())
    return f"{images} image{'s' * (images > 1)} × {draws} repeat{'s' * (draws > 1)}"


def bpps(rows: list[dict]) -> dict[tuple, float]:
    """Mean bits per pixel on the wire of each contender, to the two decimals shown."""
    sums: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        sums[tuple(r[f] for f in CONTENDER)].append(r["bpp"])
    return {key: round(sum(v) / len(v), 2) for key, v in sums.items()}


def rate(rows: list[dict]) -> str:
    """The contenders' bits per pixel for a title: one value, or their range."""
    values = sorted(set(bpps(rows).values()))
    return f"{values[0]:.2f} bpp" if len(values) == 1 else f"{values[0]:.2f}–{values[-1]:.2f} bpp"


def legend_names(rows: list[dict]) -> dict[tuple, str]:
    """labels(), with each contender's bpp when the contenders' rates differ."""
    names, rates = labels(rows), bpps(rows)
    if len(set(rates.values())) == 1:
        return names
    return {key: f"{name} ({rates[key]:.2f} bpp)" for key, name in names.items()}


def short(ylabel: str) -> str:
    """An axis label without its unit or note, for titles: 'PSNR (dB)' -> 'PSNR'."""
    return ylabel.split(" (")[0]


def colours(plt, n: int) -> list:
    """n distinct colours: matplotlib's default cycle repeats after 10 lines."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def styles(plt, n: int) -> list[dict]:
    """n line styles that differ in colour, marker and dash, so lines that coincide or print
    in grey stay apart."""
    return [
        {"color": c, "marker": MARKERS[i % len(MARKERS)], "linestyle": DASHES[i % len(DASHES)]}
        for i, c in enumerate(colours(plt, n))
    ]


def offsets(xs: list[float], n: int) -> list[float]:
    """Sideways shift of each of n contenders' points, so equal values and whiskers stay apart:
    together at most half the gap between neighbouring loss rates, each a sliver of the axis."""
    gaps = [b - a for a, b in zip(xs, xs[1:], strict=False)] or [1.0]
    step = min(min(gaps) * 0.5 / n, (xs[-1] - xs[0] or 1.0) * 0.012)
    return [(i - (n - 1) / 2) * step for i in range(n)]


def outside_legend(fig, handles: list, caption: str | None = None) -> None:
    """One legend for the whole figure, right of the panels; a caption line under them."""
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize="small")
    if caption:
        fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize="small", wrap=True)


def save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # "tight": legends outside the axes too
    plt.close(fig)
    return path


def plot_metric(
    plt,
    rows: list[dict],
    metric: str,
    ylabel: str,
    path: Path,
    whiskers: bool = True,
    burst: float | None = None,
) -> Path:
    """Mean over images and repeats against loss rate, one line per contender, whiskers from
    the worst to the best image (each image averaged over its repeats); a panel per loss model
    (``burst``: the mean burst of Gilbert loss, for its title)."""
    from matplotlib.lines import Line2D

    models = list(dict.fromkeys(r["loss_model"] for r in rows))
    names = legend_names(rows)
    width = max(6.0, 0.5 * len(names))  # wider panels for many contenders
    fig, axes = plt.subplots(1, len(models), figsize=(width * len(models), 4.5), squeeze=False)
    handles = {}
    for ax, model in zip(axes[0], models, strict=True):
        table = by_contender(rows, model)
        xs = sorted({100 * p for per_loss in table.values() for p in per_loss})
        shifts = offsets(xs, len(table))
        for style, shift, (key, per_loss) in zip(
            styles(plt, len(table)), shifts, table.items(), strict=True
        ):
            losses = sorted(per_loss)
            x = [100 * p + shift for p in losses]
            per_image = [[image_mean(per_loss[p], n, metric) for n in per_loss[p]] for p in losses]
            mean = [
                sum(r[metric] for rs in per_loss[p].values() for r in rs)
                / sum(len(rs) for rs in per_loss[p].values())
                for p in losses
            ]
            handles[key] = ax.plot(x, mean, label=names[key], markersize=5, **style)[0]
            if whiskers:
                below = [m - min(v) for m, v in zip(mean, per_image, strict=True)]
                above = [max(v) - m for m, v in zip(mean, per_image, strict=True)]
                err = {"color": style["color"], "linestyle": "none", "capsize": 2}
                ax.errorbar(x, mean, yerr=[below, above], elinewidth=0.8, alpha=0.6, **err)
        ax.set(title=model_title(model, burst), xlabel="packet loss rate (%)")
        ax.set(ylabel=ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{short(ylabel)} against packet loss: mean of {scope(rows)}, {rate(rows)}")
    legend = list(handles.values())
    caption = []
    if len(handles) > 1:
        caption.append("Points shifted sideways a little to keep the contenders apart.")
    if whiskers:
        bar = Line2D([], [], color="grey", marker="|", linestyle="none", markersize=12)
        bar.set_label("whiskers: worst to best image\n(each image: mean of its repeats)")
        legend.append(bar)
    else:
        caption.append("Each image is right or wrong, so no per-image range is drawn.")
    outside_legend(fig, legend, " ".join(caption))
    return save(plt, fig, path)


def delta_missing(rows: list[dict], at: float) -> str | None:
    """Why the sweep has no ΔPSNR plot at ``at`` and which flag gives one; None if it has."""
    model = rows[0]["loss_model"]
    rates = sorted({r["loss"] for r in rows if r["loss_model"] == model})
    lossy = ", ".join(f"{p:g}" for p in rates if p > 0)
    if 0.0 not in rates:
        return "no ΔPSNR plot: the sweep has no loss 0 to compare with (semnet sweep --loss 0,...)"
    if not lossy:
        return "no ΔPSNR plot: the sweep has loss 0 only"
    if at not in rates:
        return f"no ΔPSNR plot at loss {at:g}: pick one the sweep has with --delta-loss ({lossy})"
    return None


def plot_delta(plt, rows: list[dict], at: float, path: Path) -> Path | None:
    """Per-image PSNR at loss ``at`` minus PSNR without loss, bars per contender (first loss
    model); None when the sweep lacks either rate (delta_missing says which)."""
    if delta_missing(rows, at):
        return None
    model = rows[0]["loss_model"]
    pairs = {k: v for k, v in by_contender(rows, model).items() if 0.0 in v and at in v}
    names = legend_names(rows)
    images = list(dict.fromkeys(r["image"] for r in rows))
    width = 0.8 / len(pairs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(images) + 2), 4.5))
    handles = []
    for i, (style, (key, per_loss)) in enumerate(
        zip(styles(plt, len(pairs)), pairs.items(), strict=True)
    ):
        deltas = [
            image_mean(per_loss[at], n, "psnr_db") - image_mean(per_loss[0.0], n, "psnr_db")
            for n in images
        ]
        x = [j + i * width for j in range(len(images))]
        handles.append(ax.bar(x, deltas, width, label=names[key], color=style["color"]))
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(images))], images, rotation=30)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(alpha=0.3, axis="y")
    ax.set(ylabel="ΔPSNR (dB)")
    ax.set_title(
        f"ΔPSNR at {at:.0%} {model_title(model)} vs. no loss\n"
        f"each bar: one image, mean of its repeats; {scope(rows)}, {rate(rows)}"
    )
    outside_legend(fig, handles)
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
    """Quality against denoising steps T (paper 002 Fig. 5): mean over images, a colour per
    loss rate (and codec, partition, loss model where they vary), a dash per temperature τ; a
    panel each for PSNR and (when scored) LPIPS; None without two or more T."""
    diffusion = [r for r in rows if diffusion_steps(r["fill"]) is not None]
    if len({r["fill"] for r in diffusion}) < 2:
        return None
    metrics = [("psnr_db", "PSNR (dB)")]
    if all(r.get("lpips") is not None for r in diffusion):
        metrics.append(("lpips", "LPIPS (lower is better)"))
    fields = ("codec", "partition", "loss_model", "loss")
    groups = sorted({tuple(r[f] for f in fields) for r in diffusion})
    varying = [i for i in range(len(fields)) if len({g[i] for g in groups}) > 1]
    temperatures = sorted({diffusion_steps(r["fill"])[1] for r in diffusion}, key=float)
    colour = dict(zip(groups, colours(plt, len(groups)), strict=True))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    handles = {}
    for ax, (metric, ylabel) in zip(axes[0], metrics, strict=True):
        lines: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in diffusion:
            steps, temperature = diffusion_steps(r["fill"])
            lines[tuple(r[f] for f in fields), temperature][steps].append(r[metric])
        for (group, temperature), per_t in sorted(lines.items()):
            ts = sorted(per_t)
            words = [f"{group[i]:.0%} loss" if fields[i] == "loss" else group[i] for i in varying]
            label = ", ".join([*map(str, words), f"start noise τ = {temperature}"])
            handles[label] = ax.plot(
                ts,
                [sum(per_t[t]) / len(per_t[t]) for t in ts],
                color=colour[group],
                marker=MARKERS[temperatures.index(temperature) % len(MARKERS)],
                linestyle=DASHES[temperatures.index(temperature) % len(DASHES)],
                label=label,
            )[0]
        ax.set(title=f"{short(ylabel)} against denoising steps", xlabel="denoising steps T")
        ax.set(ylabel=ylabel)
        ax.grid(alpha=0.3)
    fixed = ", ".join(
        model_title(groups[0][i]) if fields[i] == "loss_model" else str(groups[0][i])
        for i in range(len(fields))
        if i not in varying
    )
    fig.suptitle(f"diffusion fill, {fixed}: mean of {scope(diffusion)}, {rate(diffusion)}")
    outside_legend(fig, list(handles.values()))
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
    """Plot a sweep or a demo's JSON: PSNR, SSIM (MS-SSIM, LPIPS, semantic accuracy when
    scored) against loss, per-image ΔPSNR, channel means, quality against diffusion steps.
    Plot an rd result: PSNR and MS-SSIM against bpp."""
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
    burst = (data.get("axes") or {}).get("burst_length")
    notes = []
    for metric, ylabel, name, hint, whiskers in METRICS:
        if all(r.get(metric) is not None for r in rows):
            click.echo(plot_metric(plt, rows, metric, ylabel, folder / name, whiskers, burst))
        elif hint:
            notes.append(f"no {short(ylabel)} plot: not every row has {metric} ({hint})")
    notes.append(delta_missing(rows, delta_loss))
    others = [
        plot_delta(plt, rows, delta_loss, folder / "delta_psnr.png"),
        plot_channel_means(plt, data.get("channel_means") or {}, folder / "channel_means.png"),
        plot_steps(plt, rows, folder / "quality_vs_steps.png"),
    ]
    for path in others:
        if path is not None:
            click.echo(path)
    for note in notes:
        if note:
            click.echo(note, err=True)


COMMANDS = (plot,)
