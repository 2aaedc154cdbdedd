"""Table and plot of the dead-leaves neighbourhood-size experiment from the `ride eval --json` files it wrote.

    python experiments/deadleaves_nbsize.py runs/deadleaves --out-table experiments/deadleaves_nbsize.md \
        --out-plot experiments/deadleaves_nbsize.png

Rates are log-likelihood rates in bit/px on the [0,1) scale (tiles64 protocol on the 100 test images), and on
unit-variance data: rate + log2(std of the test pixels) (spec §9.3).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from ride.datasets import DeadLeaves


def test_pixel_std() -> float:
    """Standard deviation of the dequantised test pixels, (v + 1/2)/256 plus uniform noise of variance 1/12/256^2."""
    values = torch.stack([DeadLeaves("test")[k] for k in range(len(DeadLeaves("test")))]).double()
    return math.sqrt(((values + 0.5) / 256).var().item() + 1 / 12 / 256**2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out-table", type=Path, required=True)
    parser.add_argument("--out-plot", type=Path, required=True)
    args = parser.parse_args()
    sizes = sorted({int(p.stem.split("_nb")[1]) for p in args.runs.glob("eval_*_nb*.json")})
    results = {kind: {n: json.loads((args.runs / f"eval_{kind}_nb{n}.json").read_text()) for n in sizes
                      if (args.runs / f"eval_{kind}_nb{n}.json").exists()} for kind in ("mcgsm", "ride")}
    shift = math.log2(test_pixel_std())
    lines = ["| n | MCGSM [bit/px] | RIDE [bit/px] | MCGSM, unit variance | RIDE, unit variance |",
             "|---|---|---|---|---|"]
    for n in sizes:
        cells = []
        for kind in ("mcgsm", "ride"):
            r = results[kind].get(n)
            cells.append("n/a" if r is None else f"{r['bits_per_pixel']:.3f} ± {r['stderr']:.3f}")
        for kind in ("mcgsm", "ride"):
            r = results[kind].get(n)
            cells.append("n/a" if r is None else f"{r['bits_per_pixel'] + shift:.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Unit-variance rate = rate + log2(std), std of the test pixels = {2**shift:.4f} "
                 f"(log2 = {shift:.4f}). tiles64 protocol, 100 test images, standard error over tiles.")
    args.out_table.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for kind, label, marker in (("mcgsm", "MCGSM", "s"), ("ride", "RIDE (1 layer)", "o")):
        ns = sorted(results[kind])
        if ns:
            ax.errorbar(ns, [results[kind][n]["bits_per_pixel"] for n in ns],
                        yerr=[results[kind][n]["stderr"] for n in ns], marker=marker, label=label, capsize=3)
    ax.set_xlabel("neighbourhood size n (n x n window, causal half)")
    ax.set_ylabel("log-likelihood rate [bit/px], [0,1) scale")
    ax.set_xticks(sizes)
    ax.set_title("Dead leaves, test set (tiles64)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out_plot, dpi=120)
    print(f"wrote {args.out_table} and {args.out_plot}")


if __name__ == "__main__":
    main()
