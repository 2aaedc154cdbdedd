"""Issue 10: do the BSDS300 models keep their lead on natural photographs they never saw?

The photographs shipped inside scikit-image (`skimage.data`, no download: `pip install scikit-image`), read as
grey luma (Pillow convert("L"), the project's protocol), scored with the tile protocol (64x64 tiles, each on its
own, bit/px on the [0,1) scale, ± standard error over tiles), every model on the same tiles and noise.

    python experiments/other_photos.py bsds300_mcgsm models/bsds300_ride1_2ep_long.pt ... [--out X.md]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from ride import load
from ride.data import load_image
from ride.model_zoo import resolve_checkpoint
from ride.protocols import evaluate_tiles

#: Photographs of natural scenes, people, animals and objects in skimage.data (its synthetic, microscopy,
#: astronomy and text images are left out).
PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg",
          "grass.png", "gravel.png", "brick.png")


def photo_folder() -> Path:
    try:
        import skimage.data
    except ImportError as err:
        raise SystemExit("this experiment needs scikit-image: pip install scikit-image") from err
    return Path(os.path.dirname(skimage.data.__file__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--out", help="also write the markdown table here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = photo_folder()
    images = [load_image(folder / name, grey=True) for name in PHOTOS]
    rows = ["| model | tiles64 rate on the skimage photographs (bit/px) | tiles | seconds |", "|---|---|---|---|"]
    for path in args.checkpoints:
        model = load(resolve_checkpoint(path))  # a file or a shipped model's name
        start = time.time()
        with torch.no_grad():
            result = evaluate_tiles(model, images, 64, seed=0)
        rows.append(f"| `{path}` | {result.bits_per_pixel:.3f} ± {result.stderr:.3f} | {result.num_tiles} | "
                    f"{time.time() - start:.0f} |")
        print(rows[-1], flush=True)
    table = "\n".join([f"Images: {', '.join(PHOTOS)} (skimage.data)", "", *rows])
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
