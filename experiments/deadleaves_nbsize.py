"""The dead-leaves neighbourhood-size experiment's two last steps (experiments/deadleaves_nbsize.sh).

    python experiments/deadleaves_nbsize.py select runs/deadleaves     # choose each n's RIDE seed on validation
    python experiments/deadleaves_nbsize.py table runs/deadleaves --out-table experiments/deadleaves_nbsize.md \
        --out-plot experiments/deadleaves_nbsize.png

`select` reads each run's best validation rate (log.csv) and copies the better seed's model and learning curve to
models/deadleaves/ride_nb{n}.pt, the other to ride_nb{n}_seed1.pt, and records the choice in selection.json; the
test set plays no part in it. `table` reads the `ride eval --json` files.

Rates are log-likelihood rates in bit/px on the [0,1) scale (tiles64 protocol on the 100 test images), and on
unit-variance data: rate + log2(std of the test pixels) (spec §9.3).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
from pathlib import Path

import torch

from ride.datasets import DeadLeaves


def test_pixel_std() -> float:
    """Standard deviation of the dequantised test pixels, (v + 1/2)/256 plus uniform noise of variance 1/12/256^2."""
    values = torch.stack([DeadLeaves("test")[k] for k in range(len(DeadLeaves("test")))]).double()
    return math.sqrt(((values + 0.5) / 256).var().item() + 1 / 12 / 256**2)


def best_validation(run: Path) -> float:
    """The best validation rate [bit/px] a `ride train` run logged (the model it kept, as it rolls back)."""
    with open(run / "log.csv") as f:
        return max(float(r["val_bits_per_dim"]) for r in csv.DictReader(f) if r["val_bits_per_dim"])


def select(runs: Path, models: Path = Path("models/deadleaves")) -> None:
    """Per n: the seed with the better validation rate becomes ride_nb{n}.pt, the other ride_nb{n}_seed1.pt."""
    choice = {}
    for n in (3, 5, 7, 9):
        seeds = sorted(int(p.name.rsplit("_s", 1)[1]) for p in runs.glob(f"ride_nb{n}_s*") if p.is_dir())
        if not seeds:
            continue
        val = {s: best_validation(runs / f"ride_nb{n}_s{s}") for s in seeds}
        ranked = sorted(seeds, key=lambda s: -val[s])
        for seed, name in zip(ranked, (f"ride_nb{n}", f"ride_nb{n}_seed1"), strict=False):
            shutil.copyfile(runs / f"ride_nb{n}_s{seed}" / "model.pt", models / f"{name}.pt")
            shutil.copyfile(runs / f"ride_nb{n}_s{seed}" / "log.csv", models / f"{name}.csv")
        choice[n] = {"validation_bits_per_pixel": val, "chosen_seed": ranked[0]}
        rates = ", ".join(f"seed {s} {val[s]:.4f}" for s in seeds)
        print(f"n = {n}: validation {rates}; chose seed {ranked[0]}")
    (runs / "selection.json").write_text(json.dumps(choice, indent=1) + "\n")


def table(args: argparse.Namespace) -> None:
    """Markdown table and plot of the test rates."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("select").add_argument("runs", type=Path)
    p = sub.add_parser("table")
    p.add_argument("runs", type=Path)
    p.add_argument("--out-table", type=Path, required=True)
    p.add_argument("--out-plot", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "select":
        select(args.runs)
    else:
        table(args)


if __name__ == "__main__":
    main()
