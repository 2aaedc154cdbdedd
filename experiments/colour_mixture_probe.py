"""Probe (issue 31): would coding with a mixture of the two shipped colour models pay?

Each coded channel's conditional probability is mixed, w P_a(c_k | past, c_<k) + (1 - w) P_b(c_k | past, c_<k): both
models condition on the same context, so the product of the mixtures is again an exact distribution of 8-bit RGB
images, and its code length is what a codec running both models (twice the work) would reach. Exact discrete
probabilities (`LosslessColourRIDE.log_prob_discrete_pixels`) of the central crop of each Wikimedia val photograph,
over the pixels both models predict (no frame), in bits per sub-pixel, lower is better; the per-image choice of
the better model alone (what `ride compress` does) beside it.

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/colour_mixture_probe.py --crop 384
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

import ride

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_codec_colour import wikipedia_whole  # noqa: E402 - benchmarks/
from orientation_probe import central_crop  # noqa: E402 - experiments/, the script's own folder

WEIGHTS = (0.3, 0.5, 0.7)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs=2, default=["photo_colour", "photo_colour_nojpeg"])
    parser.add_argument("--crop", type=int, default=384)
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    a, b = (ride.pretrained(name).double() for name in args.models)
    totals = {"a": 0.0, "b": 0.0, "choice": 0.0, **{w: 0.0 for w in WEIGHTS}}
    count = 0
    for name, image in wikipedia_whole(args.limit):
        crop = central_crop(image, args.crop)
        values = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
        la, lb = a.log_prob_discrete_pixels(values), b.log_prob_discrete_pixels(values)  # nats [1, H', W', 3]
        bits = {"a": -la.sum().item() / math.log(2), "b": -lb.sum().item() / math.log(2)}
        bits["choice"] = min(bits["a"], bits["b"])
        for wt in WEIGHTS:
            mix = torch.logaddexp(la + math.log(wt), lb + math.log(1 - wt))
            bits[wt] = -mix.sum().item() / math.log(2)
        n = la.numel()
        count += n
        for key in totals:
            totals[key] += bits[key]
        print(f"{name}: {args.models[0]} {bits['a'] / n:.4f}, {args.models[1]} {bits['b'] / n:.4f}, mixtures "
              + ", ".join(f"w={wt} {bits[wt] / n:.4f}" for wt in WEIGHTS), flush=True)
    best = min(WEIGHTS, key=lambda wt: totals[wt])
    print(f"pooled over {count} sub-pixels: {args.models[0]} {totals['a'] / count:.4f}, {args.models[1]} "
          f"{totals['b'] / count:.4f}, per-image choice {totals['choice'] / count:.4f}, mixtures "
          + ", ".join(f"w={wt} {totals[wt] / count:.4f}" for wt in WEIGHTS)
          + f"; best mixture against the choice {100 * (totals[best] / totals['choice'] - 1):+.2f}%")


if __name__ == "__main__":
    main()
