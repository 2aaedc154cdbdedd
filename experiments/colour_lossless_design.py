"""Issue 31, design choice of the lossless colour model: which coded channels (native R, G, B in sequence; G
first; YCoCg-R; the JPEG 2000 RCT) and whether the heads see the channels already coded at the same pixel.

Every variant is a `LosslessColourRIDE` trained the same way, from the same initial weights where shapes agree, on
the same random 32x32 patches (BSDS300 train colour + the Wikimedia photographs' training images, half and half,
random horizontal flips), Adam at a fixed learning rate for a fixed number of steps on 1 CPU thread; then the
exact discrete code length (bits per sub-pixel, the sum over the three channels' ln P / 3 ln 2, over the
predicted pixels) is measured on fixed random 64x64 tiles of held-out images: the 20 BSDS300 validation images
and the 10 Wikimedia validation images.

    RIDE_DATA=../shared/data python experiments/colour_lossless_design.py --steps 400 --json runs/design.json

Variant "ycocg_r_plain" is YCoCg-R with heads that see only the top state h (the linear conditioning on the
channels already coded, through the triangular whitening, is kept).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from ride.colour_lossless import LosslessColourRIDE
from ride.data import BSDS300, WikipediaPhotos
from ride.mcgsm import MCGSM
from ride.units import dequantize

VARIANTS = ("rgb", "grb", "ycocg_r", "rct", "ycocg_r_plain")


class PlainHeads(LosslessColourRIDE):
    """Heads on the top state h alone (no same-pixel inputs besides the whitening's linear prediction)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        c = self.config
        dim = c.num_hiddens if c.num_layers else 3 * self.neighbourhood.num_inputs
        self.heads = torch.nn.ModuleList(MCGSM(dim, 1, c.num_components, c.num_scales, c.num_features)
                                         for _ in range(3))

    def _head_input(self, hidden, y_tilde, k):
        return hidden


def build(variant: str, args: argparse.Namespace) -> LosslessColourRIDE:
    torch.manual_seed(args.seed)  # the same initial weights for every variant (where the shapes agree)
    cls, transform = (PlainHeads, "ycocg_r") if variant == "ycocg_r_plain" else (LosslessColourRIDE, variant)
    return cls(transform, num_hiddens=args.num_hiddens, num_layers=args.num_layers, num_components=args.components,
               num_scales=4, num_features=args.features, nb_size=5)


def random_patches(images: list[torch.Tensor], count: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """count uint8 patches [count, 3, size, size] from random images (uniform over the list), random positions."""
    out = torch.empty(count, 3, size, size, dtype=torch.uint8)
    for n in range(count):
        img = images[int(torch.randint(len(images), (), generator=gen))]
        i = int(torch.randint(img.shape[1] - size + 1, (), generator=gen))
        j = int(torch.randint(img.shape[2] - size + 1, (), generator=gen))
        out[n] = img[:, i : i + size, j : j + size]
    return out


def batch_of(sources: list[list[torch.Tensor]], count: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Patches from every source in equal shares, randomly flipped left-right."""
    parts = [random_patches(src, count // len(sources) + (k < count % len(sources)), size, gen)
             for k, src in enumerate(sources)]
    patches = torch.cat(parts)
    flip = torch.rand(len(patches), generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], patches.flip(-1), patches)


@torch.no_grad()
def code_length(model: LosslessColourRIDE, tiles: torch.Tensor) -> dict:
    """Exact discrete bits per sub-pixel (and per channel) over the predicted pixels of uint8 tiles [N, 3, T, T]."""
    lp = torch.cat([model.log_prob_discrete_pixels(chunk) for chunk in tiles.split(16)])  # [N, Hp, Wp, 3]
    per_tile = -lp.sum(-1).flatten(1).mean(1) / (3 * math.log(2))
    return {"bits_per_subpixel": float(per_tile.mean()),
            "stderr": float(per_tile.std() / math.sqrt(len(per_tile))),
            "bits_per_channel": (-lp.flatten(0, 2).mean(0) / math.log(2)).tolist(),
            "per_tile": per_tile.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--num-hiddens", type=int, default=32)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--tiles-per-image", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = [every(BSDS300(None, "train", grey=False)), every(WikipediaPhotos(None, "train", grey=False))]
    held_out = {"bsds300_val": every(BSDS300(None, "val", grey=False)),
                "wikipedia_val": every(WikipediaPhotos(None, "val", grey=False))}
    gen = torch.Generator().manual_seed(args.seed + 1)
    tiles = {name: random_patches_per_image(images, args.tiles_per_image, args.tile, gen)
             for name, images in held_out.items()}
    fit_patches = batch_of(train, 2000, args.patch, torch.Generator().manual_seed(args.seed + 2))
    results = {"args": vars(args), "tiles": {k: len(v) for k, v in tiles.items()}, "variants": {}}
    for variant in args.variants:
        model = build(variant, args)
        model.fit_preconditioner(dequantize(fit_patches, torch.Generator().manual_seed(3)), 200_000,
                                 torch.Generator().manual_seed(4))
        before = {name: code_length(model, t)["bits_per_subpixel"] for name, t in tiles.items()}
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        gen = torch.Generator().manual_seed(args.seed + 5)  # the same batches for every variant
        start = time.time()
        for step in range(args.steps):
            values = batch_of(train, args.batch, args.patch, gen)
            loss = -model.log_prob_pixels(dequantize(values, gen)).mean() / 3  # nats per sub-pixel (density)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 50 == 0:
                print(f"{variant} step {step}: {8 + loss.item() / math.log(2):.4f} bits/sub-pixel (bound)",
                      flush=True)
        seconds = time.time() - start
        model.eval()
        result = {name: code_length(model, t) for name, t in tiles.items()}
        mean = sum(r["bits_per_subpixel"] for r in result.values()) / len(result)
        results["variants"][variant] = {"held_out": result, "mean_bits_per_subpixel": mean,
                                        "before_training": before, "train_seconds": seconds}
        print(f"{variant}: {mean:.4f} bits/sub-pixel (exact, held-out mean of the two sets) "
              + " ".join(f"{k} {v['bits_per_subpixel']:.4f}±{v['stderr']:.4f} per channel "
                         f"{[round(b, 3) for b in v['bits_per_channel']]}" for k, v in result.items())
              + f"; before training {before}; {seconds:.0f} s", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    first = args.variants[0]
    for variant in args.variants[1:]:  # paired differences over the same tiles (mean of the two sets' means)
        diffs = []
        for name in tiles:
            a = torch.tensor(results["variants"][variant]["held_out"][name]["per_tile"])
            b = torch.tensor(results["variants"][first]["held_out"][name]["per_tile"])
            diffs.append(((a - b).mean(), (a - b).std() / math.sqrt(len(a))))
        mean = sum(d for d, _ in diffs) / len(diffs)
        stderr = math.sqrt(sum(float(e) ** 2 for _, e in diffs)) / len(diffs)
        print(f"{variant} - {first}: {float(mean):+.4f} ± {stderr:.4f} bits/sub-pixel (paired over the tiles)")


def every(source) -> list[torch.Tensor]:
    return [source[k] for k in range(len(source))]


def random_patches_per_image(images: list[torch.Tensor], per_image: int, size: int,
                             gen: torch.Generator) -> torch.Tensor:
    """per_image random size x size tiles of every image: uint8 [len(images) * per_image, 3, size, size]."""
    return torch.cat([random_patches([img], per_image, size, gen) for img in images])


if __name__ == "__main__":
    main()
