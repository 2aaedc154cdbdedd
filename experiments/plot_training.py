"""Training curves of `ride train` runs from their CSV logs (the copies committed beside the models).

    python experiments/plot_training.py --out experiments/training_curves.png \
        models/bsds300_ride1_64.csv:"RIDE 1 layer" models/bsds300_ride2_64.csv:"RIDE 2 layers"

Left: the running training rate (bit/dim of the training patches' predicted pixels, which grow with the
curriculum's patch size) against training time; right: the validation rate (tiles64 protocol on the held-out
training images, or nats per patch for the 63-dim mode converted to bit/dim) after every stage, or with
--val-time against training time. A run continued from another's model is one curve: join the logs with "+"
(models/bsds300_ride2_128.csv+models/bsds300_ride2_128_long.csv:"RIDE 128 x 2"); each continuation's stages and
seconds count on from the run before, and its initial validation (a re-measurement of the start) is left out.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_log(path: Path) -> list[dict[str, str]]:
    """The rows of a learning curve: a `ride train` run's log.csv, or a model's .csv beside it."""
    with path.open() as f:
        return list(csv.DictReader(f))


def read_chain(paths: list[Path]) -> list[dict[str, str]]:
    """The rows of a run's log followed by those of each continuation, stages and elapsed_s counted on."""
    rows = read_log(paths[0])
    for path in paths[1:]:
        stages = 1 + max(int(r["stage"]) for r in rows)
        seconds = max(float(r["elapsed_s"]) for r in rows)
        rows += [{**r, "stage": str(int(r["stage"]) + stages), "elapsed_s": f"{float(r['elapsed_s']) + seconds:g}"}
                 for r in read_log(path) if int(r["stage"]) >= 0]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", help="CSV log (or logs joined by +), optionally followed by :label")
    parser.add_argument("--val-time", action="store_true", help="plot validation against training time [h]")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    trained = []  # validation rates after the first stage: the right panel's range (the start is far below)
    for item in args.logs:
        path, _, label = item.partition(":")
        rows = read_chain([Path(p) for p in path.split("+")])
        label = label or Path(path.split("+")[-1]).stem
        train = [(float(r["elapsed_s"]) / 60, float(r["train_bits_per_dim"])) for r in rows
                 if r["event"] == "train" and r["train_bits_per_dim"]]
        val = [(float(r["elapsed_s"]) / 3600 if args.val_time else int(r["stage"]) + 1, float(r["val_bits_per_dim"]))
               for r in rows if r["event"] == "val" and r["val_bits_per_dim"]]
        if train:
            # a running mean over 25 logged steps: single batches are noisy
            xs, ys = zip(*train, strict=True)
            smooth = [sum(ys[max(0, k - 24) : k + 1]) / len(ys[max(0, k - 24) : k + 1]) for k in range(len(ys))]
            left.plot(xs, smooth, label=label)
        if val:
            xs, ys = zip(*val, strict=True)
            right.plot(xs, ys, marker="o", label=None if train else label)
            trained += [y for _, y in val[2:]]  # from stage 2 on
    left.set_xlabel("training time [min]")
    left.set_ylabel("training rate [bit/dim] (running mean)")
    right.set_xlabel("training time [h]" if args.val_time else "stage (0 = before training)")
    right.set_ylabel("validation rate [bit/dim]")
    if trained:
        low, high = min(trained), max(trained)
        pad = 0.1 * (high - low) + 1e-3
        right.set_ylim(low - pad, high + pad)
        right.set_title("from stage 2 on (earlier points lie below)", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    more_handles, more_labels = right.get_legend_handles_labels()
    fig.legend(handles + more_handles, labels + more_labels, loc="lower center", ncol=2, fontsize=9)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
