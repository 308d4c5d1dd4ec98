"""Regenerate results/interface/ (issue 18, paper 003 Fig. 5/6): PSNR vs SNR over AWGN and block
Rayleigh for the learned interface, the prescribed one (Split DeepJSCC) and none, at two CBRs,
and packet-level unequal vs equal protection at the same bytes; JSON, PNG plots, claims.md.

    .venv/bin/python scripts/interface_results.py [--out results/interface] [--threads 2]

or in parallel: ``--part w24``, ``w48``, ``uep``, ``uep_prescribed``, ``packet`` (each writes
its JSON; ``packet`` is the CBR 1/24 curves again through the daemons' packet chain: bit-plane
datagrams and the proxy's ``errors bits`` access node), then ``--part report`` (plots and
claims.md from the JSON). Reads the shipped zoo entries (PARTS, UEP_PARTS below); an entry that
is missing is skipped (said so).
"""

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from semnet.core import interface as itf
from semnet.errors import SemnetError
from semnet.eval_images import eval_images
from semnet.experiments.interface import Scheme, packet_curve, uep_curve, wireless_curve
from semnet.models import zoo

SNRS = (0.0, 5.0, 7.5, 10.0, 12.5, 15.0, 20.0)
LOSSES = (0.0, 0.05, 0.1, 0.2, 0.3)
# each part: CBR, [(label, zoo entry, allocation)]; "equal power" = the node ignores the interface
PARTS = {
    "w24": (
        "1/24",
        [
            ("learned", "bsc-learned", "match"),
            ("learned, equal power", "bsc-learned", "equal"),
            ("prescribed", "bsc-prescribed", "match"),
            ("none", "bsc-none", "equal"),
        ],
    ),
    "w24lam": ("1/24", [("learned lam 0.005", "bsc-lam005-learned", "match")]),
    "w48": (
        "1/48",
        [
            ("learned", "bsc48-learned", "match"),
            ("learned, equal power", "bsc48-learned", "equal"),
            ("prescribed", "bsc48-prescribed", "match"),
        ],
    ),
}
UEP_PARTS = {"uep": "bsc-learned", "uep_prescribed": "bsc-prescribed"}
PACKET_SNRS = (0.0, 5.0, 10.0, 15.0, 20.0)
PACKET_ENTRIES = [e for e in PARTS["w24"][1] if e[0] != "learned, equal power"]


def load(name: str):
    try:
        codec = zoo.load(name)
    except SemnetError as exc:
        print(f"skipping {name}: {exc}", file=sys.stderr)
        return None
    return codec, itf.from_manifest(asdict(zoo.entry(name)))


def load_schemes(entries: list[tuple[str, str, str]]) -> list[Scheme]:
    """The schemes of the shipped entries present; ``equal`` power: the node gets no interface
    (every eps equal)."""
    schemes = []
    for label, name, allocation in entries:
        got = load(name)
        if got is None:
            continue
        codec, iface = got
        if allocation == "equal":
            iface = itf.Interface(np.zeros_like(iface.eps))
        schemes.append(Scheme(label, codec, iface, allocation))
    return schemes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/interface")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--images", type=int, default=0, help="use only the first N photos (0: all)")
    ap.add_argument(
        "--part",
        choices=["all", *PARTS, *UEP_PARTS, "packet", "report"],
        default="all",
        help="one piece (run w24, w48, uep, uep_prescribed in parallel, then report), or all",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = dict(sorted(eval_images().items()))
    if args.images:
        images = dict(list(images.items())[: args.images])
    t0 = time.time()
    for part, (cbr, entries) in PARTS.items():
        if args.part not in ("all", part):
            continue
        schemes = load_schemes(entries)
        result = {
            "cbr": cbr,
            "snrs_db": list(SNRS),
            "images": list(images),
            "codecs": {label: name for label, name, _ in entries},
            "schemes": wireless_curve(schemes, images, SNRS, seed=args.seed),
        }
        (out / f"wireless_{part}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"CBR {cbr}: done at {time.time() - t0:.0f} s", file=sys.stderr)
    for part, name in UEP_PARTS.items():
        if args.part not in ("all", part):
            continue
        got = load(name)
        if got is not None:
            uep = uep_curve(got[0], got[1], images, LOSSES, seed=args.seed)
            uep["codec"] = name
            (out / f"{part}.json").write_text(json.dumps(uep, indent=1) + "\n")
        print(f"{part}: done at {time.time() - t0:.0f} s", file=sys.stderr)
    if args.part in ("all", "packet"):
        result = {
            "cbr": "1/24",
            "snrs_db": list(PACKET_SNRS),
            "images": list(images),
            "codecs": {label: name for label, name, _ in PACKET_ENTRIES},
            "schemes": packet_curve(
                load_schemes(PACKET_ENTRIES), images, PACKET_SNRS, seed=args.seed
            ),
        }
        (out / "packet_path.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"packet path: done at {time.time() - t0:.0f} s", file=sys.stderr)
    if args.part in ("all", "report"):
        wireless = {"cbr": {}}
        for part in PARTS:
            f = out / f"wireless_{part}.json"
            if f.exists():
                data = json.loads(f.read_text())
                wireless["cbr"].setdefault(data["cbr"], {}).update(data["schemes"])
        packet = out / "packet_path.json"
        if packet.exists():  # drawn and claimed as one more CBR column
            data = json.loads(packet.read_text())
            wireless["cbr"][f"{data['cbr']}, packet chain"] = data["schemes"]
        uep = {}
        for part in UEP_PARTS:
            f = out / f"{part}.json"
            if f.exists():
                uep[part] = json.loads(f.read_text())
        plot(wireless, uep, out)
        table = claims(wireless, uep)
        (out / "claims.md").write_text(table)
        print(table)


def plot(wireless: dict, uep: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "learned": "o-",
        "prescribed": "s--",
        "none": "^:",
        "learned, equal power": "x-.",
        "learned lam 0.005": "d-",
    }
    for ch, title in (("awgn", "AWGN"), ("rayleigh", "block Rayleigh")):
        cbrs = list(wireless["cbr"])
        fig, axes = plt.subplots(1, len(cbrs), figsize=(5.2 * len(cbrs), 4), squeeze=False)
        for ax, cbr in zip(axes[0], cbrs, strict=True):
            for label, res in wireless["cbr"][cbr].items():
                xs = [float(s) for s in res[ch]]
                ys = [r["psnr_db"] for r in res[ch].values()]
                ax.plot(xs, ys, styles.get(label, "-"), label=label)
            ax.set_title(f"{title}, CBR {cbr} (QPSK)")
            ax.set_xlabel("SNR (dB)")
            ax.set_ylabel("PSNR (dB)")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"psnr_snr_{ch}.png", dpi=110)
        plt.close(fig)
    if uep:
        fig, axes = plt.subplots(1, len(uep), figsize=(5.5 * len(uep), 4), squeeze=False)
        for ax, one in zip(axes[0], uep.values(), strict=True):
            for label, rows in one["curves"].items():
                xs = [100 * float(p) for p in rows]
                ys = [r["psnr_db"] for r in rows.values()]
                ax.plot(xs, ys, "o-" if label == "uep" else "--", label=label)
            ax.set_title(f"zfec, {one['overhead_percent']}% parity budget ({one['codec']})")
            ax.set_xlabel("datagram loss (%)")
            ax.set_ylabel("PSNR (dB)")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / "uep_vs_equal.png", dpi=110)
        plt.close(fig)


def claims(wireless: dict, uep: dict) -> str:
    lines = ["| claim | target | measured | met |", "|---|---|---|---|"]
    for cbr, res in wireless["cbr"].items():
        for learned in ("learned", "learned lam 0.005"):
            if learned not in res or "prescribed" not in res:
                continue
            a, b = res[learned]["awgn"], res["prescribed"]["awgn"]
            gap10 = a["10"]["psnr_db"] - b["10"]["psnr_db"]
            lines.append(
                f"| {learned} - prescribed at 10 dB AWGN, CBR {cbr} | >= 1 dB | {gap10:+.2f} dB "
                f"| {'yes' if gap10 >= 1 else 'no'} |"
            )
            band = [s for s in a if 5 <= float(s) <= 20]
            worst = min(a[s]["psnr_db"] - b[s]["psnr_db"] for s in band)
            lines.append(
                f"| {learned} never below prescribed, 5-20 dB AWGN, CBR {cbr} | >= 0 dB | worst "
                f"{worst:+.2f} dB | {'yes' if worst >= 0 else 'no'} |"
            )
    for cbr, res in wireless["cbr"].items():
        for ch in ("awgn", "rayleigh"):
            row = ", ".join(
                f"{label} "
                + "/".join(f"{res[label][ch][s]['psnr_db']:.2f}" for s in ("5", "10", "20"))
                for label in res
            )
            lines.append(f"| PSNR at 5/10/20 dB, {ch}, CBR {cbr} | - | {row} | - |")
    for one in (uep or {}).values():
        c = one["curves"]
        eq, un = c["equal"], c["uep"]
        gap = un["0.2"]["psnr_db"] - eq["0.2"]["psnr_db"]
        same = all(un[p]["bytes_sent"] == eq[p]["bytes_sent"] for p in eq)
        lines.append(
            f"| UEP - equal protection at 20% loss, {one['codec']}, same bytes: {same} | "
            f">= 1.5 dB | {gap:+.2f} dB | {'yes' if gap >= 1.5 and same else 'no'} |"
        )
        for p in ("0.1", "0.2", "0.3"):
            lines.append(
                f"| PSNR at {float(p):.0%} loss, {one['codec']}: equal / uep / uep-importance / "
                f"no FEC (fewer bytes) | - | {eq[p]['psnr_db']:.2f} / {un[p]['psnr_db']:.2f} / "
                f"{c['uep-importance'][p]['psnr_db']:.2f} / {c['none'][p]['psnr_db']:.2f} | - |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
