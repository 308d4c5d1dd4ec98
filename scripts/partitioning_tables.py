"""Markdown tables for results/partitioning/README.md from the study's sweep JSON files.

    python scripts/partitioning_tables.py results/partitioning/sweep.json \
        results/partitioning/bursts.json

Per (codec, partition, fill, loss model, interleave): mean PSNR and SSIM at each loss rate, the
realised loss, the share of lossless PSNR kept at 40%, and the per-image spread of
the drop at 10% (mean, worst, standard deviation: paper 001 Fig. 9). Then each classical codec's
gap to every semantic codec at 10% loss, at equal bytes.

    python scripts/partitioning_tables.py --drops results/partitioning/sweep.json \
        results/partitioning/sem_res_at10.json

pools the draws of several files (rows deduplicated by their seed) and prints, per codec, each
image's drop at 10% averaged over its draws, the worst image by that average, and the worst
single frame with the loss it realised.
"""

import json
import statistics
import sys
from collections import defaultdict

KEY = ("codec", "partition", "fill", "loss_model", "interleave")


def groups(rows: list[dict]) -> dict[tuple, dict[float, list[dict]]]:
    out: dict[tuple, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        out[tuple(r[k] for k in KEY)][r["loss"]].append(r)
    return out


def mean(rows: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def lossless(rows: list[dict]) -> dict[tuple, dict[str, float]]:
    """Per (codec, partition, fill): image -> PSNR at 0 loss (the reference for drops)."""
    ref: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["loss"] == 0:
            ref[(r["codec"], r["partition"], r["fill"])][r["image"]] = r["psnr_db"]
    return ref


def quality_table(rows: list[dict]) -> list[str]:
    g, ref = groups(rows), lossless(rows)
    losses = sorted({r["loss"] for r in rows})
    head = " | ".join(f"{100 * p:g}%" for p in losses)
    lines = [
        f"| codec | partition | fill | loss model | interleave | PSNR {head} | SSIM at 40%"
        " | PSNR kept at 40% | drop at 10%: mean / worst / sd | realised loss % |",
        "|" + "---|" * (len(losses) + 9),
    ]
    for key, by_loss in g.items():
        codec, partition, fill, model, inter = key
        psnr = " | ".join(
            f"{mean(by_loss[p], 'psnr_db'):.2f}" if p in by_loss else "" for p in losses
        )
        base = ref.get((codec, partition, fill), {})
        top = by_loss.get(0.4)
        ssim = f"{mean(top, 'ssim'):.3f}" if top else ""
        kept = (
            f"{mean(top, 'psnr_db') / statistics.fmean(base.values()):.1%}" if top and base else ""
        )
        drop = ""
        if 0.1 in by_loss and base:
            d = [base[r["image"]] - r["psnr_db"] for r in by_loss[0.1]]
            drop = f"{statistics.fmean(d):.2f} / {max(d):.2f} / {statistics.pstdev(d):.2f}"
        realised = " ".join(
            f"{100 * mean(by_loss[p], 'realised_loss'):.0f}" for p in sorted(by_loss)
        )
        inter = {True: "on", False: "off", None: "-"}[inter]
        lines.append(
            f"| {codec} | {partition} | {fill} | {model} | {inter} | {psnr} | {ssim} "
            f"| {kept} | {drop} | {realised} |"
        )
    return lines


def classical_gap(rows: list[dict], loss: float = 0.1) -> list[str]:
    at = [r for r in rows if r["loss"] == loss and r["partition"] in ("channel:1", "-")]
    codecs = dict.fromkeys(r["codec"] for r in at)
    psnr = {c: mean([r for r in at if r["codec"] == c], "psnr_db") for c in codecs}
    classical = [c for c in codecs if any(r["codec"] == c and r["partition"] == "-" for r in at)]
    semantic = [c for c in codecs if c not in classical]
    lines = [
        f"| at {100 * loss:g}% loss | " + " | ".join(semantic) + " |",
        "|---|" + "---|" * len(semantic),
    ]
    for c in classical:
        gaps = " | ".join(f"{psnr[s] - psnr[c]:+.2f}" for s in semantic)
        lines.append(f"| {c} ({psnr[c]:.2f} dB) | {gaps} |")
    return lines


def image_drops(rows: list[dict], loss: float = 0.1) -> list[str]:
    """The per-image drop at ``loss`` averaged over the draws, and the worst image by it.

    A frame of a small image (~16 datagrams) can realise 25% loss at a nominal 10%: the worst
    single frame says how unlucky one draw was, the worst image's average how sensitive it is.
    """
    unique = {tuple(r[k] for k in (*KEY, "loss", "image", "seed")): r for r in rows}
    rows = [r for r in unique.values() if r["partition"] != "-"]
    ref = lossless(rows)
    lines = [
        f"| codec | partition | draws per image | mean drop at {100 * loss:g}% | worst image "
        "(mean over its draws) | worst frame (realised loss) |",
        "|---|---|---|---|---|---|",
    ]
    for key, by_loss in groups(rows).items():
        codec, partition, fill = key[:3]
        base, at = ref.get((codec, partition, fill)), by_loss.get(loss)
        if not base or not at:
            continue
        per_image: dict[str, list[float]] = defaultdict(list)
        for r in at:
            per_image[r["image"]].append(base[r["image"]] - r["psnr_db"])
        worst = max(per_image, key=lambda i: statistics.fmean(per_image[i]))
        frame = max(at, key=lambda r: base[r["image"]] - r["psnr_db"])
        draws = min(len(v) for v in per_image.values())
        every = statistics.fmean(d for v in per_image.values() for d in v)
        lines.append(
            f"| {codec} | {partition} | {draws} | {every:.2f} dB "
            f"| {worst} {statistics.fmean(per_image[worst]):.2f} dB "
            f"| {frame['image']} {base[frame['image']] - frame['psnr_db']:.2f} dB "
            f"({100 * frame['realised_loss']:.0f}%) |"
        )
    return lines


def main(paths: list[str]) -> None:
    if paths[:1] == ["--drops"]:
        rows = []
        for path in paths[1:]:
            with open(path) as f:
                rows += json.load(f)["rows"]
        print("\n".join(image_drops(rows)))
        return
    for path in paths:
        with open(path) as f:
            rows = json.load(f)["rows"]
        print(f"## {path}\n")
        print("\n".join(quality_table(rows)), end="\n\n")
        if any(r["partition"] == "-" for r in rows):
            print("\n".join(classical_gap(rows)), end="\n\n")


if __name__ == "__main__":
    main(sys.argv[1:])
