"""Probe: the colour codec's payload size at several cell clips (RESULTS.md, "The colour models' cell clip").

Codes each image with a shipped colour model's integer form, its cell clip replaced (`IntColourRIDE.cell_clip`, at
2^-15), with `engine.encode_colour` in the default stripes (or `--stripes`), and prints the payload bytes per clip;
sizes do not depend on the machine.

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/colour_clip_probe.py --model photo_colour \
        --clips 1e4 1000 100 30 10 5 3 --bsds 86000
    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/colour_clip_probe.py --model photo_colour \
        --clips 1e4 10 --wiki-limit 10 --aerials-limit 7
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import ride
from ride.codec import engine, integer_model
from ride.codec.coder import _to_coded, default_stripes
from ride.codec.fixedpoint import cell_clip_int

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_codec_colour import aerials_whole, data_root, wikipedia_whole  # noqa: E402 - benchmarks/


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="photo_colour")
    parser.add_argument("--clips", type=float, nargs="+", default=[1e4, 10.0])
    parser.add_argument("--bsds", nargs="*", default=[], help="BSDS300 test image ids")
    parser.add_argument("--wiki-limit", type=int, default=0)
    parser.add_argument("--aerials-limit", type=int, default=0)
    parser.add_argument("--stripes", type=int, default=None, help="default: the codec's (about one per 512 rows)")
    args = parser.parse_args()
    base = integer_model(ride.pretrained(args.model))
    models = [dataclasses.replace(base, cell_clip=cell_clip_int(c)) for c in args.clips]
    images = [(f"{i}.jpg", np.asarray(Image.open(Path(data_root()) / "bsds300" / "images" / "test" / f"{i}.jpg")
                                      .convert("RGB"))) for i in args.bsds]
    images += list(wikipedia_whole(args.wiki_limit)) + list(aerials_whole(args.aerials_limit))
    totals, sub_pixels = np.zeros(len(models)), 0
    for name, image in images:
        coded = _to_coded(image, base.transform)
        pads = tuple(int(round(float(coded[..., k].mean()))) for k in range(3))
        height = image.shape[0]
        stripes = engine.stripe_layout(height, args.stripes or default_stripes(height, colour=True))[1]
        sizes = [len(engine.encode_colour(im, coded, pads, stripes, 2)) for im in models]
        totals += sizes
        sub_pixels += image.size
        print(f"{name} {image.shape[:2]}, {stripes} stripe(s): "
              + ", ".join(f"clip {c:g} {n:,} bytes" for c, n in zip(args.clips, sizes, strict=True)), flush=True)
    print(f"{args.model}, {len(images)} images, pooled bits per sub-pixel: "
          + ", ".join(f"clip {c:g} {8 * t / sub_pixels:.5f}" for c, t in zip(args.clips, totals, strict=True)))


if __name__ == "__main__":
    main()
