"""The colour codec (format version 3 or 5, `LosslessColourRIDE` in exact integer arithmetic): size against JPEG XL,
WebP and PNG, and speed, in one process.

    python benchmarks/bench_codec_colour.py compare --limit 100 --wiki-limit 10   # bits per sub-pixel
    python benchmarks/bench_codec_colour.py speed --limit 2                       # 768x512 RGB crops
    python benchmarks/bench_codec_colour.py speed --limit 0 --bsds 8 --checkpoint choice  # BSDS300-sized

compare: the BSDS300 test images in colour (JPEG files: decoded pixels), the Wikimedia validation photographs (never
JPEG, whole, not trained on) and, with --aerials-limit, the USC-SIPI aerials' validation scans in colour (never
JPEG, whole, not trained on; all 7 in colour), every codec losslessly with its round trip checked: ride (default
model photo_colour, default settings; `--checkpoint choice`: what `ride compress` does by default, the shipped
candidate that codes a sample of the image smallest, `ride.codec.selection`), JPEG XL lossless at efforts 9 and 7,
WebP lossless (method 6, level 100) and PNG (level 9), all from imagecodecs. Figures are bits per sub-pixel (file
bits / (3 H W)); "vs JPEG XL e9" is the ratio of total bits. With --ideal, also the float model's exact discrete
code length (what an ideal entropy coder would reach with the same frame and one stripe).
speed: encode and decode RGB pixels per second of ride and of the other codecs on the same crops, start-up
(import, model load, integer model, first kernel call) timed separately. `--threads` sets torch's (and the
kernels') threads; the streams do not depend on it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time

T_IMPORT = time.perf_counter()
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import ride  # noqa: E402
from ride.codec import compress, decompress, ideal_code_length_bits, integer_model  # noqa: E402
from ride.codec.selection import compress_best  # noqa: E402
from ride.data.photos import (  # noqa: E402
    WIKIPEDIA_VAL_EVERY,
    WIKIPEDIA_VAL_FIRST,
    USCSIPIAerials,
    every_kth_split,
)

T_IMPORT = time.perf_counter() - T_IMPORT


def data_root() -> str:
    return os.environ.get("RIDE_DATA", "/work/shared/data")


def _rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def wikipedia_whole(limit: int, split: str = "val") -> list[tuple[str, np.ndarray]]:
    """Whole RGB Wikimedia photographs of `split` (val: the 10 that no shipped model trained on)."""
    paths = sorted(glob.glob(os.path.join(data_root(), "wikipedia_photos", "*.png")))
    paths = [paths[k] for k in every_kth_split([os.path.basename(p) for p in paths], split, WIKIPEDIA_VAL_EVERY,
                                               WIKIPEDIA_VAL_FIRST)][:limit]
    return [(os.path.basename(p), _rgb(p)) for p in paths]


def aerials_whole(limit: int) -> list[tuple[str, np.ndarray]]:
    """Whole RGB scans of the USC-SIPI aerials' validation split (all 7 are colour; a grey one would be left out)."""
    if limit <= 0:
        return []
    scans = USCSIPIAerials(data_root(), "val", grey=False)
    rgb = [(f"{name}.png", scans[k].permute(1, 2, 0).numpy().copy()) for k, name in enumerate(scans.ids)]
    return [(name, x) for name, x in rgb if not (x == x[..., :1]).all()][:limit]


def wikipedia_crops(limit: int, height: int = 512, width: int = 768) -> list[tuple[str, np.ndarray]]:
    """Central height x width RGB crops of the Wikimedia validation photographs."""
    out = []
    for name, img in wikipedia_whole(100):
        h, w, _ = img.shape
        if h >= height and w >= width:
            top, left = (h - height) // 2, (w - width) // 2
            out.append((name, np.ascontiguousarray(img[top : top + height, left : left + width])))
    return out[:limit]


def bsds_test(limit: int) -> list[tuple[str, np.ndarray]]:
    paths = sorted(glob.glob(os.path.join(data_root(), "bsds300", "images", "test", "*.jpg")),
                   key=lambda p: int(os.path.basename(p).split(".")[0]))[:limit]
    return [(os.path.basename(p), _rgb(p)) for p in paths]


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    wall = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall


def other_codecs() -> dict[str, tuple]:
    import imagecodecs as ic

    return {
        "JPEG XL lossless e9": (lambda x: ic.jpegxl_encode(x, lossless=True, effort=9), ic.jpegxl_decode),
        "JPEG XL lossless e7": (lambda x: ic.jpegxl_encode(x, lossless=True, effort=7), ic.jpegxl_decode),
        "WebP lossless (m6, q100)": (lambda x: ic.webp_encode(x, level=100, lossless=True, method=6),
                                     ic.webp_decode),
        "PNG (level 9)": (lambda x: ic.png_encode(x, level=9), ic.png_decode),
    }


REPEAT = True  # the codec's repeat flags (formats 6 / 7); --no-repeat: formats 3 / 5, as before 2026-12-07
MAPS = True  # the adaptive probability maps (colour format 8); --no-maps: format 6, as before 2026-12-08


def encode(models, image: np.ndarray):  # noqa: ANN001, ANN201
    """(stream, the model that decodes it): one model, or the encoder's choice among a list of them."""
    if isinstance(models, list):
        choice = compress_best(models, image, repeat=REPEAT, maps=REPEAT and MAPS)
        return choice.data, models[choice.index]
    return compress(models, image, repeat=REPEAT, maps=REPEAT and MAPS), models


def compare(args: argparse.Namespace, model) -> None:  # noqa: ANN001
    codecs = other_codecs()
    sets = {"BSDS300 test (colour, JPEG-decoded pixels)": bsds_test(args.limit),
            "Wikimedia photographs, validation (colour, whole, never JPEG)": wikipedia_whole(args.wiki_limit),
            "USC-SIPI aerials, validation (colour scans, whole, never JPEG)": aerials_whole(args.aerials_limit)}
    results = {}
    for set_name, images in sets.items():
        if not images:  # a limit of 0 leaves that set out
            continue
        bits = {name: 0.0 for name in ["ride", *(["ideal"] if args.ideal else []), *codecs]}
        secs = {"ride enc": 0.0, "ride dec": 0.0}
        subpixels = 0
        for k, (name, image) in enumerate(images):
            (stream, used), enc = timed(encode, model, image)
            out, dec = timed(decompress, used, stream)
            assert np.array_equal(out, image), name
            bits["ride"] += 8 * len(stream)
            if args.ideal:
                bits["ideal"] += ideal_code_length_bits(used, image)
            secs["ride enc"] += enc
            secs["ride dec"] += dec
            sizes = {}
            for cname, (e, d) in codecs.items():
                blob = e(image)
                assert np.array_equal(np.asarray(d(blob)).reshape(image.shape), image), cname
                bits[cname] += 8 * len(blob)
                sizes[cname] = 8 * len(blob) / image.size
            subpixels += image.size
            print(f"[{k + 1}/{len(images)}] {name} {image.shape[1]}x{image.shape[0]}: ride "
                  f"{8 * len(stream) / image.size:.3f}, " + ", ".join(f"{c} {b:.3f}" for c, b in sizes.items())
                  + f" bits per sub-pixel; ride {image.size / 3 / enc:,.0f} / {image.size / 3 / dec:,.0f} RGB px/s",
                  file=sys.stderr, flush=True)
        results[set_name] = {"bits": bits, "seconds": secs, "subpixels": subpixels, "images": len(images)}
    for set_name, r in results.items():
        px = r["subpixels"] / 3
        print(f"\n{set_name}: {r['images']} images, {px:,.0f} RGB pixels; ride {px / r['seconds']['ride enc']:,.0f} "
              f"RGB px/s encode, {px / r['seconds']['ride dec']:,.0f} decode (round trips checked)\n")
        print("| codec | bits per sub-pixel | vs JPEG XL e9 |")
        print("|---|---|---|")
        jxl = r["bits"]["JPEG XL lossless e9"]
        for name, b in r["bits"].items():
            label = {"ride": f"ride ({args.checkpoint})", "ideal": "ride ideal code length (float model)"}.get(
                name, name)
            print(f"| {label} | {b / r['subpixels']:.4f} | {b / jxl:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def speed(args: argparse.Namespace, model) -> None:  # noqa: ANN001
    codecs = other_codecs()
    print("| image | codec | bits per sub-pixel | encode RGB px/s | decode RGB px/s |")
    print("|---|---|---|---|---|")
    totals = {}  # codec -> [pixels, sub-pixel bits, encode s, decode s] over the BSDS300 images
    for name, image in wikipedia_crops(args.limit) + bsds_test(args.bsds):
        px = image.shape[0] * image.shape[1]
        bsds = name.endswith(".jpg")
        (stream, used), enc = timed(encode, model, image)
        out, dec = timed(decompress, used, stream)
        assert np.array_equal(out, image)
        rows = [(f"ride ({args.checkpoint})", 8 * len(stream), enc, dec)]
        print(f"| {name} {image.shape[1]}x{image.shape[0]} | {rows[0][0]} | "
              f"{8 * len(stream) / image.size:.4f} | {px / enc:,.0f} | {px / dec:,.0f} |", flush=True)
        for cname, (e, d) in codecs.items():
            blob, enc = timed(e, image)
            _, dec = timed(d, blob)
            rows.append((cname, 8 * len(blob), enc, dec))
            print(f"| | {cname} | {8 * len(blob) / image.size:.4f} | {px / enc:,.0f} | {px / dec:,.0f} |",
                  flush=True)
        for cname, bits, enc, dec in rows if bsds else []:
            t = totals.setdefault(cname, [0, 0, 0.0, 0.0])
            t[0], t[1], t[2], t[3] = t[0] + px, t[1] + bits, t[2] + enc, t[3] + dec
    if totals:
        print(f"\nBSDS300 test, the first {args.bsds} images in colour, pooled:\n")
        print("| codec | bits per sub-pixel | encode RGB px/s | decode RGB px/s |")
        print("|---|---|---|---|")
        for cname, (px, bits, enc, dec) in totals.items():
            print(f"| {cname} | {bits / (3 * px):.4f} | {px / enc:,.0f} | {px / dec:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["compare", "speed"])
    parser.add_argument("--checkpoint", default="photo_colour",
                        help="a shipped name or a .pt file, or 'choice': the codec's default choice among the shipped "
                             "colour candidates")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=3, help="BSDS300 test images (compare) or crops (speed)")
    parser.add_argument("--wiki-limit", type=int, default=10)
    parser.add_argument("--bsds", type=int, default=0,
                        help="speed: also the first N BSDS300 test images (481 x 321), each and pooled")
    parser.add_argument("--aerials-limit", type=int, default=0, help="compare: aerials' validation scans (7 in colour)")
    parser.add_argument("--ideal", action="store_true", help="compare: also the float model's ideal code length")
    parser.add_argument("--json")
    parser.add_argument("--no-repeat", action="store_true",
                        help="ride without the repeat flags (formats 3 / 5, as before 2026-12-07)")
    parser.add_argument("--no-maps", action="store_true",
                        help="ride without the adaptive probability maps (format 6, as before 2026-12-08)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global REPEAT, MAPS
    REPEAT, MAPS = not args.no_repeat, not args.no_maps
    if args.checkpoint == "choice":
        from ride.model_zoo import CODEC_CANDIDATES

        model, t_model = timed(lambda: [ride.pretrained(name) for name in CODEC_CANDIDATES[True]])
        args.checkpoint = "choice of " + " / ".join(CODEC_CANDIDATES[True])
    else:
        model, t_model = timed(lambda: ride.load(args.checkpoint) if args.checkpoint.endswith(".pt")
                               else ride.pretrained(args.checkpoint))
    _, t_int = timed(lambda: [integer_model(m) for m in (model if isinstance(model, list) else [model])])
    tiny = np.zeros((4, 4, 3), dtype=np.uint8)
    _, t_first = timed(encode, model, tiny)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} threads; start-up: import {T_IMPORT:.2f} s, model {t_model:.2f} s, integer model "
          f"{t_int:.2f} s, first kernel call {t_first:.2f} s; repeat flags {'on' if REPEAT else 'off'}, "
          f"maps {'on' if REPEAT and MAPS else 'off'}\n")
    {"compare": compare, "speed": speed}[args.what](args, model)


if __name__ == "__main__":
    main()
