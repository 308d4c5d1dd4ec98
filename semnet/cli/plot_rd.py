"""RD curves for `semnet plot` on a `semnet rd` JSON: PSNR and MS-SSIM against bpp on the wire.

One line per family (cnn-rd-q1..q4 joined in bpp order, each classical codec over its matched
points), a fixed-rate codec as a single marker, CompressAI's published Kodak curves dashed.
Imports nothing heavy at module level: `semnet` loads every module of semnet.cli.
"""

from collections import defaultdict
from pathlib import Path

import click

from semnet.cli.plot import colours, save, short

PANELS = (("psnr_db", "PSNR (dB)", 1, "rd_psnr.png"), ("ms_ssim", "MS-SSIM", 2, "rd_ms_ssim.png"))
DASHES = ("--", "-.", ":", (0, (6, 2, 1, 2, 1, 2)))
REACH = 1.3  # x axis ends this far beyond our highest bpp; published points beyond are cut


def complete(points: list[dict], image_count: int) -> tuple[list[dict], list[dict]]:
    """(kept, dropped): a point averaged over fewer images than the run has is not comparable."""
    kept = [p for p in points if p["image_count"] == image_count]
    return kept, [p for p in points if p["image_count"] != image_count]


def families(points: list[dict]) -> dict[str, list[dict]]:
    """family -> its points in bpp order (semnet families first, as the rows come)."""
    out: dict[str, list[dict]] = defaultdict(list)
    for p in points:
        out[p["family"]].append(p)
    return {name: sorted(ps, key=lambda p: p["bpp"]) for name, ps in out.items()}


def clipped(points: list, xmax: float) -> list:
    """Published points up to ``xmax`` and the first one past it, so the line reaches the edge."""
    inside = [p for p in points if p[0] <= xmax]
    beyond = [p for p in points if p[0] > xmax][:1]
    return inside + beyond


def plot_panel(
    plt, points: list[dict], published: list[dict], panel: tuple, images: int, path: Path
):
    """One metric against bpp, each point the mean of ``images`` images; None when no point has
    the metric (images under 161 px)."""
    metric, ylabel, index, _ = panel
    ours = [p for p in points if p[metric] is not None]
    if not ours:
        return None
    xmax = REACH * max(p["bpp"] for p in ours)
    fig, ax = plt.subplots(figsize=(9, 5))
    lines = families(ours)
    for colour, (name, ps) in zip(colours(plt, len(lines)), lines.items(), strict=True):
        style = {"marker": "o" if ps[0]["kind"] == "semnet" else "s", "color": colour}
        label = name if ps[0]["kind"] == "semnet" else f"{name} (matched bytes)"
        if len(ps) == 1:
            ax.plot([ps[0]["bpp"]], [ps[0][metric]], linestyle="none", label=label, **style)
        else:
            ax.plot([p["bpp"] for p in ps], [p[metric] for p in ps], label=label, **style)
    ours = {name: line.get_color() for name, line in zip(lines, ax.get_lines(), strict=True)}
    greys = plt.get_cmap("Greys")
    for i, curve in enumerate(published):
        pts = clipped(curve["points"], xmax)
        ax.plot(
            [p[0] for p in pts],
            [p[index] for p in pts],
            linestyle=DASHES[i % len(DASHES)],
            linewidth=1,
            # the published curve of a codec we also ran takes that codec's colour
            color=ours.get(curve["name"].lower(), greys(0.5 + 0.4 * i / len(published))),
            label=f"{curve['name']} (published, Kodak)",
        )
    ax.set_xlim(0, xmax)
    ax.set(title=f"{short(ylabel)} against rate, no loss: mean of {images} images")
    ax.set(xlabel="bits per pixel on the wire")
    ax.set(ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return save(plt, fig, path)


def plot_rd(plt, data: dict, folder: Path) -> list[Path]:
    """The RD PNGs of one `semnet rd` result; notes on stderr what could not be drawn."""
    from semnet.experiments.rd import rate_points

    images = len(data["images"])
    points, dropped = complete(rate_points(data["rows"]), images)
    for p in dropped:
        click.echo(
            f"not drawn: {p['codec']} matched to {p['matched_to']} "
            f"({p['image_count']} of {images} images matched)",
            err=True,
        )
    written = []
    for panel in PANELS:
        published = data.get("published") or []
        path = plot_panel(plt, points, published, panel, images, folder / panel[3])
        if path is None:
            click.echo(f"no {panel[1]} plot: no image is large enough for it", err=True)
        else:
            written.append(path)
    return written
