"""Regenerate results/multitask/table.json, psnr_accuracy_vs_loss.png and claims.md (issue 19,
paper 004 Tables III/IV, Fig. 12): MIJSCC fixed-length against A-MIJSCC at several thresholds η
under i.i.d. loss of latent channels, on the first N Fashion-MNIST test images.

    .venv/bin/python scripts/multitask_results.py [--images 2000] [--etas 0.5 1 1.5 2]

Reads the shipped zoo entry mijscc-fmnist (never trains); about 2 min on one thread.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from semnet.experiments.multitask import fashion_test, loss_sweep
from semnet.models import zoo

CODEC = "mijscc-fmnist"
LOSSES = (0.0, 0.1, 0.2, 0.3)


def row(sweep: dict, loss: float, eta: float | None) -> dict:
    """The table row of a scheme (eta None: fixed-length) at a loss rate."""
    return next(r for r in sweep["rows"] if r["loss"] == loss and r["eta"] == eta)


def claims(sweep: dict) -> list[dict]:
    """The issue's targets against the shipped threshold's measurements."""
    eta = sweep["shipped_eta"]
    fixed0, fixed30 = row(sweep, 0.0, None), row(sweep, 0.3, None)
    adapt0, adapt30 = row(sweep, 0.0, eta), row(sweep, 0.3, eta)
    saved = 1 - adapt0["bytes"] / fixed0["bytes"]
    cost = fixed0["psnr_db"] - adapt0["psnr_db"]
    equal = sweep["equal_mean_bytes"][f"{eta:g}"]["0.3"]
    d_psnr = equal["adaptive"]["psnr_db"] - equal["fixed"]["psnr_db"]
    d_acc = equal["adaptive"]["accuracy"] - equal["fixed"]["accuracy"]
    drop_fixed = 100 * (fixed0["accuracy"] - fixed30["accuracy"])
    drop_adapt = 100 * (adapt0["accuracy"] - adapt30["accuracy"])
    return [
        {
            "claim": "Fashion-MNIST accuracy from the latent (clean, fixed / adaptive)",
            "target": ">= 85%",
            "measured": f"{100 * fixed0['accuracy']:.1f}% / {100 * adapt0['accuracy']:.1f}%",
            "met": min(fixed0["accuracy"], adapt0["accuracy"]) >= 0.85,
        },
        {
            "claim": f"clean channel: adaptive (eta {eta:g}) bytes saved, PSNR cost",
            "target": ">= 30% fewer, <= 0.5 dB",
            "measured": f"{100 * saved:.0f}% fewer ({fixed0['bytes']} -> {adapt0['bytes']}), "
            f"{cost:.2f} dB",
            "met": saved >= 0.3 and cost <= 0.5,
        },
        {
            "claim": "30% loss: adaptive - fixed at equal mean bytes (PSNR, accuracy)",
            "target": ">= 0",
            "measured": f"{d_psnr:+.2f} dB, {100 * d_acc:+.1f} points",
            "met": d_psnr >= 0 and d_acc >= 0,
        },
        {
            "claim": "accuracy lost from 0% to 30% loss (fixed / adaptive)",
            "target": "<= 10 points",
            "measured": f"{drop_fixed:.1f} / {drop_adapt:.1f} points",
            "met": max(drop_fixed, drop_adapt) <= 10,
        },
    ]


def mean_scores(rows: list[dict]) -> dict:
    """PSNR and accuracy averaged over the loss rates (the uniform mix equal bytes refers to)."""
    return {key: sum(r[key] for r in rows) / len(rows) for key in ("psnr_db", "accuracy")}


def markdown(sweep: dict, checks: list[dict]) -> str:
    """claims.md: the table, the equal-bytes comparison and the claims, as the README shows."""
    lines = [
        f"Images: {sweep['images']}; loss: {sweep['loss']}.",
        "",
        "| loss | scheme | eta | k | bytes | PSNR (dB) | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(sweep["rows"], key=lambda r: (r["loss"], r["eta"] or 0)):
        eta = "-" if r["eta"] is None else f"{r['eta']:g}"
        lines.append(
            f"| {100 * r['loss']:.0f}% | {r['scheme']} | {eta} | {r['end_index']} | {r['bytes']} "
            f"| {r['psnr_db']:.2f} | {100 * r['accuracy']:.1f}% |"
        )
    lines += [
        "",
        "Equal mean bytes over the four loss rates (fixed: a constant prefix, time-shared "
        "between two lengths when the mean falls between them):",
        "",
        "| eta | mean bytes | loss | adaptive k: PSNR, accuracy | fixed k: PSNR, accuracy |",
        "|---|---|---|---|---|",
    ]
    for eta, by_loss in sweep["equal_mean_bytes"].items():
        for loss, d in by_loss.items():
            a, f = d["adaptive"], d["fixed"]
            lo, hi = f["end_index"]
            lines.append(
                f"| {eta} | {f['bytes']:g} | {100 * float(loss):.0f}% | {a['end_index']}: "
                f"{a['psnr_db']:.2f} dB, {100 * a['accuracy']:.1f}% | "
                f"{lo if lo == hi else f'{lo}/{hi}'}: {f['psnr_db']:.2f} dB, "
                f"{100 * f['accuracy']:.1f}% |"
            )
        a, f = (mean_scores([d[s] for d in by_loss.values()]) for s in ("adaptive", "fixed"))
        lines.append(
            f"| {eta} | | mean | {a['psnr_db']:.2f} dB, {100 * a['accuracy']:.1f}% "
            f"| {f['psnr_db']:.2f} dB, {100 * f['accuracy']:.1f}% |"
        )
    lines += ["", "| claim | target | measured | met |", "|---|---|---|---|"]
    for c in checks:
        lines.append(
            f"| {c['claim']} | {c['target']} | {c['measured']} | {'yes' if c['met'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def plot(sweep: dict, path: Path) -> None:
    """PSNR, accuracy and bytes against loss per scheme; PSNR against bytes at the curve's loss
    (the fixed-length family at every prefix, the adaptive points on it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    schemes = [None, *sorted({r["eta"] for r in sweep["rows"] if r["eta"] is not None})]
    for eta in schemes:
        rows = sorted((r for r in sweep["rows"] if r["eta"] == eta), key=lambda r: r["loss"])
        loss = [100 * r["loss"] for r in rows]
        label = "fixed (all channels)" if eta is None else f"adaptive eta {eta:g}"
        if eta == sweep["shipped_eta"]:
            label += " (shipped)"
        style = "ks-" if eta is None else "o-"
        axes[0, 0].plot(loss, [r["psnr_db"] for r in rows], style, label=label)
        axes[0, 1].plot(loss, [100 * r["accuracy"] for r in rows], style, label=label)
        axes[1, 0].plot(loss, [r["bytes"] for r in rows], style, label=label)
    curve = sweep["prefix_curve"]
    axes[1, 1].plot(
        [p["bytes"] for p in curve["points"]],
        [p["psnr_db"] for p in curve["points"]],
        "k.-",
        label="fixed length, prefix k = 1..C",
    )
    for r in sweep["rows"]:
        if r["eta"] is not None and r["loss"] == curve["loss"]:
            axes[1, 1].plot(r["bytes"], r["psnr_db"], "o", label=f"adaptive eta {r['eta']:g}")
    titles = (
        ("PSNR (dB)", "channel loss (%)"),
        ("accuracy from the latent (%)", "channel loss (%)"),
        ("payload bytes per image", "channel loss (%)"),
        (f"PSNR (dB) at {100 * curve['loss']:.0f}% loss", "payload bytes per image"),
    )
    for ax, (ylabel, xlabel) in zip(axes.flat, titles, strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[1, 1].legend(fontsize=8)
    fig.suptitle(f"MIJSCC / A-MIJSCC ({CODEC}), {sweep['images']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/multitask")
    ap.add_argument("--images", type=int, default=2000, help="the first N test images")
    ap.add_argument("--etas", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    model = zoo.load(CODEC)
    x, t = fashion_test(args.images)
    sweep = loss_sweep(model, x, t, LOSSES, args.etas, args.seed)
    checks = claims(sweep)
    sweep.update(codec=CODEC, seed=args.seed, claims=checks)
    sweep["seconds"] = round(time.monotonic() - start, 1)
    (out / "table.json").write_text(json.dumps(sweep, indent=1) + "\n")
    (out / "claims.md").write_text(markdown(sweep, checks))
    plot(sweep, out / "psnr_accuracy_vs_loss.png")
    print(markdown(sweep, checks))


if __name__ == "__main__":
    main()
