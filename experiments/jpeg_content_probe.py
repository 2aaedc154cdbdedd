"""Issue 33: is the RIDE's larger lead on BSDS300 what JPEG did to the pixels, or the kind of content?

On BSDS300 test a 2 x 64 RIDE leads the MCGSM of its data by ~0.09-0.11 bit/px, on the never-JPEG Wikimedia
photographs by ~0.03 (RESULTS.md, issue 33); the JPEG grid's phase explains ~0.01 of it (jpeg_grid_probe.py). Here
the Wikimedia validation photographs go through the same JPEG processing as BSDS300's files (their quantisation
tables are IJG quality 95, chroma subsampled 4:2:0; checked by reading the files' tables) and are scored again: RGB
-> JPEG at --quality in memory (Pillow) -> decoded RGB -> luma (Pillow convert("L"), as the loaders do) -> tiles64.
If the leads on the JPEG-decoded photographs approach BSDS300's, the processing explains the difference; if they stay
at ~0.03, the content does.

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/jpeg_content_probe.py \
        --models photo_grey photo_mcgsm bsds300_ride2_long2 bsds300_mcgsm --qualities 0 95 75

Quality 0 means the photographs as they are (no JPEG). Prints tiles64 rates (bit/px on the [0,1) scale, higher is
better, ± standard error over tiles) per model and quality.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from ride import protocols
from ride.checkpoint import load
from ride.data import WikipediaPhotos
from ride.model_zoo import resolve_checkpoint
from ride.runtime import set_threads


def jpeg_luma(images: WikipediaPhotos, quality: int, limit: int | None) -> Iterator[torch.Tensor]:
    """Each RGB photograph [3, H, W] through JPEG at `quality` (4:2:0; 0: no JPEG), then to luma uint8 [1, H, W]."""
    for index in range(len(images) if limit is None else min(limit, len(images))):
        rgb = Image.fromarray(images[index].permute(1, 2, 0).numpy(), mode="RGB")
        if quality:
            buffer = io.BytesIO()
            rgb.save(buffer, format="JPEG", quality=quality, subsampling=2)
            rgb = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        yield torch.from_numpy(np.asarray(rgb.convert("L")).copy())[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["photo_grey", "photo_mcgsm"])
    parser.add_argument("--qualities", nargs="+", type=int, default=[0, 95])
    parser.add_argument("--limit", type=int, default=None, help="only the first N photographs")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    set_threads(1)
    photos = WikipediaPhotos(args.data_root, "val", grey=False)
    print("| model | JPEG quality (0: none) | tiles64 bit/px | tiles | seconds |")
    print("|---|---|---|---|---|")
    for name in args.models:
        model = load(resolve_checkpoint(name)).eval()
        for quality in args.qualities:
            start = time.perf_counter()
            r = protocols.evaluate_tiles(model, jpeg_luma(photos, quality, args.limit))
            print(f"| {name} | {quality} | {r.bits_per_pixel:.4f} ± {r.stderr:.4f} | {r.num_tiles} "
                  f"| {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
