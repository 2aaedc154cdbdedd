"""Probe (issue 31): would a per-image precision factor, chosen by the encoder and sent in the header, shrink the
colour codec's files?

For each Wikimedia validation photograph (its central 384x384 crop), every head's MCGSM log-precisions alpha of
`photo_colour` are shifted by the same delta (precisions times e^delta; each shifted model is still a normalised
distribution), and the exact discrete code length of each coded channel is measured. A channel's code length
depends only on its own head (the earlier channels are given), so the best delta per head and image is an oracle
bound on what such a header field could save.

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/colour_scale_probe.py
"""

from __future__ import annotations

import math

import torch

from ride.data.photos import WikipediaPhotos
from ride.model_zoo import pretrained

DELTAS = (-0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2)
CROP = 384


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(1)
    model = pretrained("photo_colour")
    photos = WikipediaPhotos(split="val", grey=False)
    alphas = [head.scales.detach().clone() for head in model.heads]
    base = DELTAS.index(0.0)
    totals = []
    for k in range(len(photos)):
        image = photos[k]
        _, h, w = image.shape
        crop = image[:, h // 2 - CROP // 2 : h // 2 + CROP // 2, w // 2 - CROP // 2 : w // 2 + CROP // 2][None]
        bits = []
        for delta in DELTAS:
            for head, alpha in zip(model.heads, alphas, strict=True):
                head.scales.copy_(alpha + delta)
            log_p = model.log_prob_discrete_pixels(crop)  # [1, Hp, Wp, 3] nats
            bits.append(-log_p.double().sum((0, 1, 2)) / math.log(2))
        bits = torch.stack(bits)  # [deltas, 3] bits per coded channel
        totals.append(bits)
        best = bits.min(0)
        print(f"{photos.ids[k]}: {bits[base].sum().item() / (3 * log_p[0, ..., 0].numel()):.4f} bits per sub-pixel; "
              f"best delta per head {[DELTAS[i] for i in best.indices.tolist()]}, saving "
              f"{100 * (1 - best.values.sum().item() / bits[base].sum().item()):.2f}%", flush=True)
    for head, alpha in zip(model.heads, alphas, strict=True):
        head.scales.copy_(alpha)
    totals = torch.stack(totals)  # [images, deltas, 3]
    at_zero = totals[:, base].sum()
    oracle = totals.min(1).values.sum()
    shared = totals.sum(0).min(0)  # one delta per head for all images
    saving = 100 * (1 - shared.values.sum() / at_zero).item()
    print(f"per image and head (oracle): {100 * (1 - oracle / at_zero).item():.2f}% smaller; one delta per head for "
          f"all images {[DELTAS[i] for i in shared.indices.tolist()]}: {saving:.2f}%")


if __name__ == "__main__":
    main()
