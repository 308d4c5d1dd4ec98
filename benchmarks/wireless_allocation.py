"""Power allocation on the wireless link: equal vs water-filling vs semantic-aware (paper 002).

Over i.i.d. block Rayleigh fading at average SNR 0, 5, 10, 15, 20 dB, the same seeded channel
draws and the same seeded random importances (uniform in [0, 1], one per packet; the sender's
CAM importances come later) are given to each scheme. For each it reports the
importance-weighted error ``sum w_i rho_i / sum w_i`` and the mean PER (exact eq. 6), averaged
over the slots, with the ratio to equal power, and the time per slot. ``semantic-uniform`` is
the same solver given uniform importances: it separates what finite-blocklength-aware power
control gains on its own from what the importances add.

    .venv/bin/python benchmarks/wireless_allocation.py [--slots 2000] [--seed 0] [--out FILE]

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
from results_io import write_json  # sibling module; benchmarks run as scripts

from semnet.core import wireless as W

SNRS_DB = (0, 5, 10, 15, 20)
DEFAULT_OUT = Path(__file__).parent / "results" / "wireless_allocation.json"


def run(slots: int, seed: int, blocklength: int, rate: float, subcarriers: int) -> list[dict]:
    rows = []
    for snr_db in SNRS_DB:
        rng = np.random.default_rng([seed, snr_db + 100])
        gains = 10 ** (snr_db / 10) * W.draw_gains(rng, "rayleigh", (slots, subcarriers))
        weights = rng.random((slots, subcarriers))
        base = None
        for scheme in (*W.POWER_SCHEMES, "semantic-uniform"):
            start = time.perf_counter()
            if scheme == "semantic-uniform":  # PER-aware but blind to importance
                powers = W.semantic_power(gains, np.ones_like(gains), blocklength, rate)
            else:
                powers = W.allocate(scheme, gains, weights, blocklength, rate)
            seconds = time.perf_counter() - start
            rho = W.per(gains * powers, blocklength, rate)
            weighted = float(np.mean(np.sum(weights * rho, -1) / np.sum(weights, -1)))
            row = {
                "snr_db": snr_db,
                "scheme": scheme,
                "weighted_error": weighted,
                "mean_per": float(rho.mean()),
                "budget_max_error": float(np.max(np.abs(powers.mean(-1) - 1.0))),
                "us_per_slot": 1e6 * seconds / slots,
            }
            if scheme == "semantic":
                row["slots_equal_fallback"] = int(np.sum(np.all(powers == 1.0, axis=-1)))
            base = base or row
            row["weighted_vs_equal"] = weighted / base["weighted_error"]
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blocklength", type=int, default=1024)
    ap.add_argument("--coderate", type=float, default=0.4375)
    ap.add_argument("--subcarriers", type=int, default=16)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    rows = run(args.slots, args.seed, args.blocklength, args.coderate, args.subcarriers)
    print(
        f"block Rayleigh, D={args.blocklength}, R_c={args.coderate}, B={args.subcarriers}, "
        f"{args.slots} slots per SNR, seed {args.seed}, importances ~ U[0, 1]"
    )
    print("| SNR dB | scheme | weighted error | vs equal | mean PER | us/slot |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['snr_db']} | {r['scheme']} | {r['weighted_error']:.4f} | "
            f"{r['weighted_vs_equal']:.3f} | {r['mean_per']:.4f} | {r['us_per_slot']:.0f} |"
        )
    meta = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "slots": args.slots,
        "seed": args.seed,
        "blocklength": args.blocklength,
        "coderate": args.coderate,
        "subcarriers": args.subcarriers,
        "channel": "rayleigh",
        "importance": "uniform random in [0, 1]",
    }
    print(f"wrote {write_json(args.out, {'meta': meta, 'rows': rows})}")


if __name__ == "__main__":
    main()
