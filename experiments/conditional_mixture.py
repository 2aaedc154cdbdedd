"""Probe (issue 33): how much do photo_grey and photo_mcgsm know that the other does not?

Each pixel's conditional density is mixed, w p_RIDE(x_ij | x_<ij) + (1 - w) p_MCGSM(x_ij | x_<ij); a product of such
mixtures is again a normalised image density, so its rate is a fair figure. If the RIDE already knew what the MCGSM
knows, the best mixture would barely beat the RIDE alone. Tiles64 on the Wikimedia validation photographs, with the
tile protocol's dequantisation (seed 0), over the pixels both models predict (the MCGSM's 5x9 window predicts 60 x 56
of each 64 x 64 tile; the RIDE 62 x 60): bit/px on the [0,1) scale, higher is better. With --whole, the same on the
whole photographs (one piece each, so the RIDE's state runs across the whole image; ± over images).

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/conditional_mixture.py [--whole]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch

from ride.data.photos import WikipediaPhotos
from ride.model_zoo import pretrained
from ride.protocols import image_seed, tiles
from ride.units import dequantize

WEIGHTS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whole", action="store_true", help="whole photographs instead of 64x64 tiles")
    whole = parser.parse_args().whole
    torch.set_num_threads(1)
    ride, mcgsm = pretrained("photo_grey"), pretrained("photo_mcgsm")
    (rt, rl, rr), (mt, ml, mr) = ride.margin, mcgsm.margin
    photos = WikipediaPhotos(split="val")
    per_ride, per_mcgsm = [], []
    for k in range(len(photos)):
        image = photos[k]
        x = dequantize(image, torch.Generator().manual_seed(image_seed(0, image)))
        x = x[None] if whole else tiles(x, 64)
        for chunk in x.split(32):
            lr = ride.log_prob_pixels(chunk).double()  # [B, H - rt, W - rl - rr], nats
            lm = mcgsm.log_prob_pixels(chunk).double()  # [B, H - mt, W - ml - mr]
            lr = lr[:, mt - rt :, ml - rl : lr.shape[2] - (mr - rr)]  # the MCGSM's pixels
            per_ride.append(lr.flatten(1))
            per_mcgsm.append(lm.flatten(1))
    if whole:  # images differ in size: pool the pixels, ± over images
        print(f"{len(per_ride)} whole photographs, {sum(p.numel() for p in per_ride)} pixels; bit/px over all "
              "pixels ± standard error over images")
        for name, r, m in zip(photos.ids, per_ride, per_mcgsm, strict=True):
            print(f"  {name}: photo_grey {r.mean().item() / math.log(2):.4f}, photo_mcgsm "
                  f"{m.mean().item() / math.log(2):.4f}")
    else:
        print(f"{sum(len(p) for p in per_ride)} tiles of 64 x 64, {per_ride[0].shape[1]} pixels each; bit/px, mean "
              "over tiles ± standard error")

    def line(name: str, mix: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        pieces = [mix(r, m) for r, m in zip(per_ride, per_mcgsm, strict=True)]
        units = [p.mean().view(1) for p in pieces] if whole else [p.mean(1) for p in pieces]
        units = torch.cat(units) / math.log(2)
        rate = (torch.cat([p.flatten() for p in pieces]).mean() / math.log(2)).item()
        print(f"  {name:32s} {rate:.4f} ± {units.std().item() / math.sqrt(len(units)):.4f}")

    line("photo_grey", lambda r, m: r)
    line("photo_mcgsm", lambda r, m: m)
    for w in WEIGHTS:
        line(f"mixture, w = {w}", lambda r, m, w=w: torch.logaddexp(r + math.log(w), m + math.log(1 - w)))


if __name__ == "__main__":
    main()
