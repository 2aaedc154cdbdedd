"""Probe (issue 31): how much could adapting the colour model to each photograph buy the codec?

A backward-adaptive codec (encoder and decoder both update the model on the pixels already coded) can only learn
from what lies above. For each Wikimedia validation photograph, its central crop (--crop) is split into a top and
a bottom half; a copy of `photo_colour` is trained with Adam on the top half (dequantised, the trainer's objective;
all parameters), and the bottom half's code length (coded as a picture of its own, the same for both models) is
measured before and after every --eval-every steps. The best step per photograph is an oracle choice: the figure
bounds what such an adaptation (or a per-image fine-tune sent in the header, which would also cost its parameters'
bits) could save with this model and optimiser. The model is never updated on the bottom half.

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/colour_adapt_probe.py --crop 256 --steps 40
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from ride.data.photos import WikipediaPhotos
from ride.model_zoo import pretrained


def bits(model: torch.nn.Module, values: torch.Tensor) -> float:
    """Exact code length in bits per sub-pixel of the predicted pixels of uint8 RGB [1, 3, H, W]."""
    with torch.no_grad():
        log_p = model.log_prob_discrete_pixels(values).double()  # [1, Hp, Wp, 3] nats
    return -log_p.mean().item() / math.log(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--limit", type=int, default=0, help="first photographs only (0: all 10)")
    args = parser.parse_args()
    crop_size, steps, every = args.crop, args.steps, args.eval_every
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = pretrained("photo_colour")
    photos = WikipediaPhotos(split="val", grey=False)
    limit = args.limit or len(photos)
    before_total = best_total = last_total = 0.0
    for k in range(limit):
        image = photos[k]
        _, h, w = image.shape
        i, j = h // 2 - crop_size // 2, w // 2 - crop_size // 2
        crop = image[:, i : i + crop_size, j : j + crop_size][None]
        top, bottom = crop[:, :, : crop_size // 2], crop[:, :, crop_size // 2 :]
        model = copy.deepcopy(base)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        start = time.perf_counter()
        curve = [bits(model, bottom)]
        for step in range(1, steps + 1):
            opt.zero_grad()
            # the trainer's objective: the density of uniformly dequantised pixels (the discrete probabilities'
            # interval bounds give NaN gradients at the range's ends)
            loss = -model.log_prob_pixels((top.double() + torch.rand(top.shape, dtype=torch.double)) / 256).mean()
            loss.backward()
            opt.step()
            if step % every == 0:
                curve.append(bits(model, bottom))
        before_total += curve[0]
        best_total += min(curve)
        last_total += curve[-1]
        print(f"{photos.ids[k]}: bottom half {curve[0]:.4f} bits per sub-pixel before; "
              f"after {', '.join(f'{s * every}: {100 * (c / curve[0] - 1):+.2f}%' for s, c in enumerate(curve))}"
              f" ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"{limit} photographs, crop {crop_size}, Adam {args.lr:g}: bottom halves' code length after {steps} steps "
          f"{100 * (last_total / before_total - 1):+.2f}%, at the best step per photograph (oracle) "
          f"{100 * (best_total / before_total - 1):+.2f}%")


if __name__ == "__main__":
    main()
