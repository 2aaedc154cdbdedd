"""Issue 10 ablation: does rounding BT.601 luma to integers (design §9, the official protocol) change the rate?

Two grey versions of BSDS300, the same dequantisation noise u ~ U[0,1) for both:
    rounded  x = (round(L) + u) / 256, L = 0.299 R + 0.587 G + 0.114 B  (Pillow convert("L"): the project's protocol)
    float    x = (L + u) / 256                                           (L unrounded, a float in [0, 255])
For each, a small MCGSM (RIDE with num_layers=0, nb_size 5, 16 components) is fitted with L-BFGS on 200,000 pairs
of the 180 training images, early stopping on 50,000 pairs of the 20 validation images; then both are scored on
the validation images and on the 100 test images with the tile protocol's cut (64x64 tiles, each on its own),
bit/px on the [0,1) scale. A measurement for the report, not a selection: nothing is chosen on test.

    RIDE_DATA=../shared/data python experiments/luma_rounding.py [--pairs 200000] [--iter 300]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from ride import RIDE
from ride.data import BSDS300, load_image
from ride.protocols import tiles


def luma(files: list, rounded: bool) -> list[np.ndarray]:
    """Luma [H, W] as float64 values on [0, 255]: Pillow's integer luma, or the unrounded BT.601 sum."""
    out = []
    for f in files:
        if rounded:
            out.append(load_image(f, grey=True)[0].numpy().astype(np.float64))
        else:
            rgb = load_image(f, grey=False).numpy().astype(np.float64)
            out.append(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    return out


def dequantised(values: list[np.ndarray], seed: int) -> list[torch.Tensor]:
    """x = (L + u) / 256 [1, H, W] float32, u from a generator seeded per image (the same u for both versions)."""
    out = []
    for k, v in enumerate(values):
        u = torch.rand(v.shape, generator=torch.Generator().manual_seed(seed * 100_003 + k), dtype=torch.float64)
        out.append(((torch.from_numpy(v) + u) / 256).clamp_max(1 - 2**-24).float()[None])
    return out


@torch.no_grad()
def tile_rate(model: RIDE, images: list[torch.Tensor]) -> tuple[float, float]:
    """Mean log2 p over the predicted pixels of all 64x64 tiles (bit/px) and its standard error over tiles."""
    rates = []
    for image in images:
        t = tiles(image, 64)
        if t.shape[0]:
            lp = model.log_prob_pixels(t).double().flatten(1)
            rates.append(lp.mean(1) / math.log(2))
    r = torch.cat(rates)
    return float(r.mean()), float(r.std() / math.sqrt(r.numel()))


def run(rounded: bool, args: argparse.Namespace) -> dict:
    start = time.time()
    splits = {s: BSDS300(args.data_root, s) for s in ("train", "val", "test")}
    data = {s: dequantised(luma(d.files, rounded), seed) for (s, d), seed in zip(splits.items(), (1, 2, 3),
                                                                                 strict=True)}
    gen = torch.Generator().manual_seed(0)
    model = RIDE(num_layers=0, nb_size=5, num_components=16, num_scales=4, num_features=16)
    model.fit_preconditioner(data["train"], num_pairs=args.pairs, generator=gen)
    x, y = model.training_pairs(data["train"], args.pairs, gen)
    vx, vy = model.training_pairs(data["val"], args.pairs // 4, gen)
    wx, wy = model.preconditioner(x, y)
    wvx, wvy = model.preconditioner(vx, vy)
    info = model.mcgsm.fit(wx, wy, wvx, wvy, max_iter=args.iter, val_every=5, patience=10, generator=gen)
    model.eval()
    val, val_se = tile_rate(model, data["val"])
    test, test_se = tile_rate(model, data["test"])
    return {"luma": "rounded" if rounded else "float", "iterations": info["iterations"],
            "stop": info["stop_reason"], "val_bits_per_pixel": val, "val_stderr": val_se,
            "test_bits_per_pixel": test, "test_stderr": test_se, "seconds": time.time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--iter", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for rounded in (True, False):
        print(json.dumps(run(rounded, args)), flush=True)


if __name__ == "__main__":
    main()
