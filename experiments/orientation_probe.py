"""Probe: how much would the encoder gain by choosing, per image, one of the 8 dihedral orientations to code it in?

A stream could state the orientation in its header (3 bits) and the encoder could pick the one whose code length is
smallest, as it picks the model (`ride.codec.selection`). This measures the ideal code length
(`ride.codec.ideal_code_length_bits`: the model's exact discrete probabilities, the codec's frame), or with
`--codec` the stream's size (`ride.codec.compress`, default stripes), of the central crop (or whole) of each image
in each of the 8 orientations, and reports the identity's size, the best fixed orientation, the per-image oracle and
the oracle's gain. No codec format is changed.

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/orientation_probe.py --model photo_colour_nojpeg \
        --set wikipedia_val --crop 384
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import ride
from ride.codec import compress, ideal_code_length_bits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_codec_colour import aerials_whole, wikipedia_whole  # noqa: E402 - benchmarks/

# the 8 elements of the dihedral group on an [H, W, ...] array: k quarter turns, then optionally a left-right flip
ORIENTATIONS = [(k, flip) for flip in (False, True) for k in range(4)]


def orient(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(image, k, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def central_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(size, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top : top + s, left : left + s]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="photo_colour_nojpeg")
    parser.add_argument("--set", choices=("wikipedia_val", "aerials_val"), default="wikipedia_val")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--crop", type=int, default=384, help="side of the central square crop (0: whole image)")
    parser.add_argument("--grey", action="store_true", help="code the luma (Pillow convert('L')) with a grey model")
    parser.add_argument("--codec", action="store_true",
                        help="the codec's stream (default stripes, integer model) instead of the ideal code length")
    args = parser.parse_args()
    model = ride.pretrained(args.model)
    images = wikipedia_whole(args.limit) if args.set == "wikipedia_val" else aerials_whole(args.limit)
    sizes = []
    start = time.perf_counter()
    for name, image in images:
        if args.grey:
            from PIL import Image

            image = np.asarray(Image.fromarray(image).convert("L"))
        crop = central_crop(image, args.crop) if args.crop else image
        if args.codec:
            bits = [8 * len(compress(model, orient(crop, k, flip))) for k, flip in ORIENTATIONS]
        else:
            bits = [ideal_code_length_bits(model, orient(crop, k, flip)) for k, flip in ORIENTATIONS]
        sizes.append(bits)
        best = int(np.argmin(bits))
        print(f"{name} {crop.shape}: identity {bits[0] / crop.size:.4f} bits per sub-pixel, best {ORIENTATIONS[best]} "
              f"{bits[best] / crop.size:.4f} ({100 * (bits[best] / bits[0] - 1):+.2f}%), worst "
              f"{100 * (max(bits) / bits[0] - 1):+.2f}%; all (k, flip) in order {ORIENTATIONS}: "
              f"{' '.join(f'{b / crop.size:.4f}' for b in bits)}", flush=True)
    table = np.asarray(sizes)
    total = table.sum(0)
    fixed = int(np.argmin(total))
    oracle = table.min(1).sum()
    # identity or its transpose-like quarter turns only: the choice a 1-bit field (rows or columns first) would allow
    pairs = {f"{ORIENTATIONS[a]} or {ORIENTATIONS[b]}": 100 * (table[:, [a, b]].min(1).sum() / total[0] - 1)
             for a, b in ((0, 1), (0, 3), (0, 4))}
    ranks = (table.argsort(1).argsort(1)[:, 0] + 1).tolist()
    print(f"identity's rank per image (1 = smallest of 8): {ranks}; two-way oracles: "
          + ", ".join(f"{k} {v:+.3f}%" for k, v in pairs.items()))
    print(f"{args.model} on {len(sizes)} {args.set} crops of {args.crop or 'whole'}: identity {total[0]:.0f} bits; "
          f"best fixed orientation {ORIENTATIONS[fixed]} {100 * (total[fixed] / total[0] - 1):+.3f}%; per-image "
          f"oracle {100 * (oracle / total[0] - 1):+.3f}%; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
