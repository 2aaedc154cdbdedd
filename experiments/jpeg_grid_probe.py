"""Issue 33: does RIDE's lead over the MCGSM on BSDS300 come from knowing where the JPEG blocks are?

BSDS300's pixels are decoded JPEG files: their 8x8 blocks (16x16 for the chroma that enters the grey conversion)
start at the image's top-left corner, and the tile protocol cuts 64x64 tiles at multiples of 64, so every tile
starts at the same phase of the block grid. A spatial LSTM can learn that phase from the tile's edges and predict
the block boundaries; the MCGSM, a translation-invariant function of a small window, cannot. Shifting the tiles by a
few pixels (cropping dy rows and dx columns off each image before tiling) changes the phase: every offset scores the
same number of tiles, of the same content shifted by a few pixels (which alone moves both models' rates: the MCGSM
at the same offsets is the control for that). The never-JPEG Wikimedia photographs are the control for the grid (no
grid to know).

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/jpeg_grid_probe.py \
        --models bsds300_ride2_long2 bsds300_mcgsm photo_grey photo_mcgsm --offsets 0,0 4,4 8,8 0,4 3,5

Prints tiles64 rates (bit/px on the [0,1) scale, higher is better, ± standard error over tiles) per model, set and
offset, and each RIDE's lead over the MCGSM of its data at each offset.
"""

from __future__ import annotations

import argparse
import time

from ride import protocols
from ride.checkpoint import load
from ride.data import BSDS300, WikipediaPhotos
from ride.model_zoo import resolve_checkpoint
from ride.runtime import set_threads

#: The largest offset: every image is cut to the same tiles at every offset up to it.
MAX_OFFSET = 8


def shifted(images, dy: int, dx: int, limit: int | None, size: int = 64):  # noqa: ANN001, ANN201
    """The images (uint8 [C, H, W]) from row dy and column dx on, cut to a whole number of tiles that is the same at
    every offset up to MAX_OFFSET (so that each offset scores the same tiles, shifted); the first `limit` images."""
    for index in range(len(images) if limit is None else min(limit, len(images))):
        image = images[index]
        h, w = ((n - MAX_OFFSET) // size * size for n in image.shape[1:])
        yield image[:, dy : dy + h, dx : dx + w]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bsds300_ride2_long2", "bsds300_mcgsm"])
    parser.add_argument("--offsets", nargs="+", default=["0,0", "4,4"], help="dy,dx pairs")
    parser.add_argument("--sets", nargs="+", default=["bsds300_test", "wikipedia_val"])
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    set_threads(1)
    sets = {"bsds300_test": lambda: BSDS300(args.data_root, "test"),
            "bsds300_val": lambda: BSDS300(args.data_root, "val"),
            "wikipedia_val": lambda: WikipediaPhotos(args.data_root, "val")}
    offsets = [tuple(int(v) for v in o.split(",")) for o in args.offsets]
    if any(not 0 <= v <= MAX_OFFSET for o in offsets for v in o):
        parser.error(f"offsets must lie in 0..{MAX_OFFSET}")
    print("| model | set | offset (dy, dx) | tiles64 bit/px | tiles | seconds |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model = load(resolve_checkpoint(name)).eval()
        for set_name in args.sets:
            images = sets[set_name]()
            for dy, dx in offsets:
                start = time.perf_counter()
                r = protocols.evaluate_tiles(model, shifted(images, dy, dx, args.limit))
                print(f"| {name} | {set_name} | {dy}, {dx} | {r.bits_per_pixel:.4f} ± {r.stderr:.4f} | {r.num_tiles} "
                      f"| {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
