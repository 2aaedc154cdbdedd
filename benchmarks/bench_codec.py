"""Lossless codec benchmark: ride's real file sizes against PNG, WebP, JPEG-LS, JPEG 2000 and JPEG XL (imagecodecs).

    python benchmarks/bench_codec.py                        # the 100 grey BSDS300 test images ($RIDE_DATA)
    python benchmarks/bench_codec.py --limit 10             # the first 10 (numeric id order)
    python benchmarks/bench_codec.py --images DIR           # any folder of images (read as luma)

Grey images come from the project's loaders (ride.data: BT.601 luma rounded as Pillow's convert("L")). For
each codec: bits/px of the real files (ride: header included), encode and decode seconds per image, all measured
in this run; ride's stream is decoded and checked to be exact. Also the model's ideal code length -log2 P (exact
discrete probabilities, same frame) and the coder's overhead above it. Prints a markdown table (--json: figures).
Needs the `bench` extra (imagecodecs).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import imagecodecs as ic
import numpy as np
import torch

from ride.checkpoint import load
from ride.codec import compress, decompress, ideal_code_length_bits
from ride.data import BSDS300, ImageFolder
from ride.model_zoo import DEFAULT_CODEC_MODEL, resolve_checkpoint

CODECS = {  # name: (encode, decode)
    "PNG (level 9)": (lambda x: ic.png_encode(x, level=9), ic.png_decode),
    # WebP has no grey mode: the grey image as RGB with three equal channels (its lossless mode codes them once)
    "WebP lossless": (lambda x: ic.webp_encode(np.repeat(x[..., None], 3, 2), lossless=True, level=100),
                      lambda b: ic.webp_decode(b)[..., 0]),
    "JPEG-LS": (lambda x: ic.jpegls_encode(x, level=0), ic.jpegls_decode),
    "JPEG 2000 lossless": (lambda x: ic.jpeg2k_encode(x, level=0, reversible=True), ic.jpeg2k_decode),
    "JPEG XL lossless e9": (lambda x: ic.jpegxl_encode(x, lossless=True, effort=9), ic.jpegxl_decode),
}


def timed(fn, *args):  # noqa: ANN001, ANN002, ANN201
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", metavar="DIR", help="a folder of images instead of the BSDS300 test set")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    parser.add_argument("--checkpoint", default=DEFAULT_CODEC_MODEL, help="model file or shipped model name")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the codec codes on one)")
    parser.add_argument("--json", help="also write the per-image figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = ImageFolder(args.images) if args.images else BSDS300(split="test")
    count = len(data) if args.limit is None else min(args.limit, len(data))
    model = load(resolve_checkpoint(args.checkpoint))
    rows = []
    for k in range(count):
        image = np.ascontiguousarray(data[k][0].numpy())
        row = {"pixels": image.size}
        stream, row["ride_enc_s"] = timed(compress, model, image)
        out, row["ride_dec_s"] = timed(decompress, model, stream)
        if not np.array_equal(out, image):
            sys.exit(f"image {k}: ride round trip is not exact")
        row["ride_bits"] = 8 * len(stream)
        row["ideal_bits"] = ideal_code_length_bits(model, image)
        for name, (enc, dec) in CODECS.items():
            blob, row[f"{name}_enc_s"] = timed(enc, image)
            back, row[f"{name}_dec_s"] = timed(dec, blob)
            if not np.array_equal(np.asarray(back).reshape(image.shape), image):
                sys.exit(f"image {k}: {name} is not lossless")
            row[f"{name}_bits"] = 8 * len(blob)
        rows.append(row)
        print(f"[{k + 1}/{count}] ride {row['ride_bits'] / image.size:.3f} bits/px (ideal "
              f"{row['ideal_bits'] / image.size:.3f}), JPEG XL {row['JPEG XL lossless e9_bits'] / image.size:.3f}, "
              f"encode {row['ride_enc_s']:.1f} s, decode {row['ride_dec_s']:.1f} s", file=sys.stderr, flush=True)
    pixels = sum(r["pixels"] for r in rows)

    def rate(key: str) -> float:
        return sum(r[key] for r in rows) / pixels

    def secs(key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    source = args.images or "BSDS300 test (grey)"
    print(f"\n{count} images of {source}, {pixels} pixels; model {args.checkpoint}; {platform.machine()}, torch "
          f"{torch.__version__}, {args.threads} torch thread(s); imagecodecs {ic.__version__}\n")
    print("| codec | bits/px | vs JPEG XL | encode s/image | decode s/image |")
    print("|---|---|---|---|---|")
    jxl = rate("JPEG XL lossless e9_bits")
    for name in ["ride", *CODECS]:
        r = rate(f"{name}_bits")
        print(f"| {name} | {r:.3f} | {r / jxl:.3f} | {secs(f'{name}_enc_s'):.3f} | {secs(f'{name}_dec_s'):.3f} |")
    ideal = rate("ideal_bits")
    print(f"\nride ideal code length -log2 P: {ideal:.4f} bits/px; coder overhead (file incl. header - ideal): "
          f"{rate('ride_bits') - ideal:.4f} bits/px; ride decode {pixels / sum(r['ride_dec_s'] for r in rows):.0f} "
          f"px/s, encode {pixels / sum(r['ride_enc_s'] for r in rows):.0f} px/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
