"""Quality against loss at equal bytes: a semnet codec against the best classical contender.

Reads `semnet sweep` JSON files whose classical contenders were matched to the bytes of one
semnet codec (the sweep's ``equal_bytes_reference``), and prints, per file, loss model and loss
rate, the semnet codec's mean PSNR over images and draws, the best classical scheme's (any of
JPEG, WebP, JPEG 2000 with or without RS FEC) and the margin. Writes the same as JSON with
``--json``.

    .venv/bin/python scripts/equal_bytes_table.py results/rd/loss_q4.json [...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def table(data: dict) -> list[dict]:
    """One line per (loss model, loss): semnet codec, best classical, margin in dB."""
    reference = data["equal_bytes_reference"]
    if reference is None:
        raise SystemExit("not an equal-bytes sweep: no classical contenders were matched")
    psnr: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    realised: dict[tuple, list[float]] = defaultdict(list)
    for r in data["rows"]:
        point = (r["loss_model"], r["loss"])
        psnr[point][r["codec"]].append(r["psnr_db"])
        if r["codec"] == reference:
            realised[point].append(r["realised_loss"])
    lines = []
    for point in sorted(psnr):
        means = {codec: sum(v) / len(v) for codec, v in psnr[point].items()}
        ours = means.pop(reference)
        best = max(means, key=means.get)
        lines.append(
            {
                "loss_model": point[0],
                "loss": point[1],
                "realised_loss": sum(realised[point]) / len(realised[point]),
                "semnet": reference,
                "semnet_psnr_db": round(ours, 2),
                "best_classical": best,
                "best_classical_psnr_db": round(means[best], 2),
                "margin_db": round(ours - means[best], 2),
            }
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--json", help="write the lines as JSON here")
    args = p.parse_args()
    everything = {}
    for f in args.files:
        data = json.loads(Path(f).read_text())
        lines = everything[f] = table(data)
        bpp = [r["bpp"] for r in data["rows"] if r["codec"] == data["equal_bytes_reference"]]
        print(f"\n{f}: {lines[0]['semnet']} at {sum(bpp) / len(bpp):.3f} bpp on the wire")
        print(f"{'loss':>12} {'realised':>8} {'semnet dB':>9}  {'best classical':<16}{'dB':>6}"
              f" {'margin':>7}")  # fmt: skip
        for x in lines:
            print(
                f"{x['loss_model']:>6} {x['loss']:>5.0%} {x['realised_loss']:>8.1%}"
                f" {x['semnet_psnr_db']:>9.2f}  {x['best_classical']:<16}"
                f"{x['best_classical_psnr_db']:>6.2f} {x['margin_db']:>+7.2f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1) + "\n")


if __name__ == "__main__":
    main()
