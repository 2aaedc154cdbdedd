"""Held-out NLL bound (bits/dim) of a colour RIDE on random 32x32 BSDS300 test patches, and a grid of samples.

    RIDE_DATA=../shared/data python experiments/colour_eval.py --checkpoint bsds300_colour \
        --num-patches 10000 --json runs/colour_eval.json --samples experiments/colour_samples.png

Protocol: `--num-patches` random 32x32 RGB patches, equal numbers per image (positions uniform), from the 100
BSDS300 test images (numeric id order), drawn with a CPU generator seeded by `--seed`; each patch is dequantised
x = (v + u) / 256 with u from the same generator and evaluated independently (zero LSTM boundary states). Only the
predicted pixels count: for nb_size 5 the top 2 rows and the 2 leftmost and 2 rightmost columns of each patch are
context only (30 x 28 = 840 of 1024 pixels). The figure is 8 - rate / 3 bits per dimension, rate the
log-likelihood in bit per RGB pixel on the [0,1) scale (`ride.colour.bits_per_dim`): an upper bound on the
discrete NLL (a dequantisation bound), not the exact discrete NLL. Standard error over patches.

Samples: ancestral sampling with `ColourRIDE.sample` on a canvas of the model's margin plus `--border` pixels on
the top, left and right, initialised with i.i.d. RGB pixels drawn jointly (whole pixels, so the colours are
natural) from the training images (dequantised), then cropped back to 32x32 (as `ride sample` does for grey
models, whose checkpoint check rejects a ColourRIDE).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor

import ride
from ride.colour import YCBCR_LOG_DET, ColourRIDE, rgb_to_ycbcr
from ride.data import BSDS300
from ride.images import grid_image, to_uint8
from ride.model_zoo import resolve_checkpoint
from ride.units import dequantize

LN2 = math.log(2)


def random_rgb_patches(images: list[Tensor], num_patches: int, size: int, generator: torch.Generator) -> Tensor:
    """Random size x size patches, equal numbers per image (the first num_patches % len(images) get one more):
    images uint8 [3, H, W] each -> uint8 [num_patches, 3, size, size], in image order."""
    share, extra = divmod(num_patches, len(images))
    out = []
    for k, img in enumerate(images):
        _, h, w = img.shape
        count = share + (k < extra)
        tops = torch.randint(0, h - size + 1, (count,), generator=generator)
        lefts = torch.randint(0, w - size + 1, (count,), generator=generator)
        out += [img[:, t : t + size, q : q + size] for t, q in zip(tops.tolist(), lefts.tolist(), strict=True)]
    return torch.stack(out)


@torch.no_grad()
def evaluate(model: ColourRIDE, patches: Tensor, generator: torch.Generator, batch_size: int = 100) -> dict:
    """Per-patch figures of uint8 patches [N, 3, P, P]: bits/dim bound, rate and its luma/chroma parts."""
    bpd, luma, chroma = [], [], []
    for chunk in patches.split(batch_size):
        x = dequantize(chunk, generator)
        lp_y, lp_c = model.log_prob_ycbcr_pixels(rgb_to_ycbcr(x))  # nats, [B, Hp, Wp] each
        rgb = lp_y + lp_c + YCBCR_LOG_DET  # ln p(rgb_ij | rgb_<ij), as model.log_prob_pixels(x)
        if not bpd:  # cross-check the split against the library's RGB density once
            torch.testing.assert_close(rgb, model.log_prob_pixels(x), rtol=1e-4, atol=1e-4)
        bpd.append(8.0 - rgb.mean((1, 2)).double() / (3 * LN2))
        luma.append(lp_y.mean((1, 2)).double() / LN2)
        chroma.append(lp_c.mean((1, 2)).double() / LN2)
    bpd_t, luma_t, chroma_t = torch.cat(bpd), torch.cat(luma), torch.cat(chroma)
    n = len(bpd_t)

    def mean_se(t: Tensor) -> tuple[float, float]:
        return float(t.mean()), float(t.std() / math.sqrt(n))

    hp, wp = model.neighbourhood.grid_shape(patches.shape[2], patches.shape[3])
    rate = 3 * (8.0 - bpd_t)  # bit per RGB pixel
    return {"num_patches": n, "counted_pixels_per_patch": hp * wp, "bits_per_dim": mean_se(bpd_t),
            "rate_bits_per_rgb_pixel": mean_se(rate), "luma_rate_bits": mean_se(luma_t),
            "chroma_rate_bits_given_luma": mean_se(chroma_t), "ycbcr_log_det_bits": YCBCR_LOG_DET / LN2}


@torch.no_grad()
def draw_samples(model: ColourRIDE, train: list[Tensor], num: int, size: int, border: int,
                 generator: torch.Generator) -> Tensor:
    """num samples [num, 3, size, size] on [0,1) (not clipped), boundary = i.i.d. training RGB pixels."""
    top, left, right = model.margin
    canvas = (top + border + size, left + border + size + border + right)
    pixels = torch.cat([img.reshape(3, -1) for img in train], 1)  # (3, all training pixels)
    idx = torch.randint(0, pixels.shape[1], (num * canvas[0] * canvas[1],), generator=generator)
    values = pixels[:, idx].view(3, num, *canvas).permute(1, 0, 2, 3)
    boundary = dequantize(values, generator)
    drawn = model.sample(boundary, generator=generator)
    r0, c0 = top + border, left + border
    return drawn[:, :, r0 : r0 + size, c0 : c0 + size]


def main() -> None:
    """Parse arguments, evaluate, sample, print and optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="bsds300_colour", help="a checkpoint file or a shipped model's name")
    p.add_argument("--data-root", default=None, help="folder holding bsds300/ (default: $RIDE_DATA)")
    p.add_argument("--num-patches", type=int, default=10_000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", default=None, help="PNG grid of samples (none when omitted)")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--border", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model = ride.load(resolve_checkpoint(args.checkpoint))
    if not isinstance(model, ColourRIDE):
        raise SystemExit(f"{args.checkpoint} holds a {type(model).__name__}, expected a ColourRIDE")
    test = BSDS300(args.data_root, "test", grey=False)
    images = [test[k] for k in range(len(test))]
    gen = torch.Generator().manual_seed(args.seed)
    start = time.monotonic()
    patches = random_rgb_patches(images, args.num_patches, args.size, gen)
    result = {"checkpoint": args.checkpoint, "seed": args.seed, "patch_size": args.size,
              **evaluate(model, patches, gen)}
    result["eval_seconds"] = time.monotonic() - start
    bpd, se = result["bits_per_dim"]
    rate, rate_se = result["rate_bits_per_rgb_pixel"]
    print(f"BSDS300 test, {result['num_patches']} random {args.size}x{args.size} RGB patches (seed {args.seed}), "
          f"{result['counted_pixels_per_patch']} predicted pixels each:")
    print(f"  log-likelihood rate {rate:.4f} ± {rate_se:.4f} bit per RGB pixel ([0,1) scale, higher is better)")
    print(f"    luma {result['luma_rate_bits'][0]:.4f} + chroma|luma {result['chroma_rate_bits_given_luma'][0]:.4f} "
          f"+ colour transform log|det| {result['ycbcr_log_det_bits']:.4f} bit")
    print(f"  NLL bound 8 - rate/3 = {bpd:.4f} ± {se:.4f} bits/dim (dequantisation upper bound on the discrete "
          f"NLL, lower is better); {result['eval_seconds']:.0f} s")

    if args.samples:
        train = BSDS300(args.data_root, "train", grey=False)
        start = time.monotonic()
        samples = draw_samples(model, [train[k] for k in range(len(train))], args.num_samples, args.size,
                               args.border, torch.Generator().manual_seed(args.seed))
        result["sample_seconds"] = time.monotonic() - start
        result["sample_clipped_fraction"] = float(((samples < 0) | (samples >= 1)).float().mean())
        from PIL import Image

        Path(args.samples).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid_image(to_uint8(samples), columns=8)).save(args.samples)
        print(f"wrote {args.num_samples} samples to {args.samples} ({result['sample_seconds']:.0f} s; "
              f"{100 * result['sample_clipped_fraction']:.2f}% of values outside [0,1) clipped for the PNG)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
