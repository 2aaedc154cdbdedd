"""Codec format 2 (portable integer model): speed, size against the float model's ideal code length, stripe and
digit settings, and the same run's float32 GEMM rate.

    python benchmarks/bench_codec_v2.py speed --baselines     # 768x512 grey crops of wikipedia_photos ($RIDE_DATA)
    python benchmarks/bench_codec_v2.py speed --whole         # whole (~1.1 Mpx) grey wikipedia photographs
    python benchmarks/bench_codec_v2.py settings              # stripes x digit bits on one crop: bits and px/s
    python benchmarks/bench_codec_v2.py rate --limit 10       # BSDS300 test + wikipedia crops: file vs ideal bits
    python benchmarks/bench_codec_v2.py compare --limit 100   # against PNG, JPEG-LS, JPEG XL e7/e9 (imagecodecs)

Start-up (import, model load, integer model) is timed separately. Wall seconds and the process's CPU seconds are
both printed (the machine may be shared). `--threads` sets torch's threads (the streams do not depend on it).
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
from ride.codec import compress, compress_v1, decompress, ideal_code_length_bits, integer_model, kernels  # noqa: E402
from ride.data.photos import WIKIPEDIA_VAL_EVERY, WIKIPEDIA_VAL_FIRST, every_kth_split  # noqa: E402

T_IMPORT = time.perf_counter() - T_IMPORT


def data_root() -> str:
    return os.environ.get("RIDE_DATA", "/work/shared/data")


def wikipedia_crops(limit: int, height: int = 512, width: int = 768) -> list[tuple[str, np.ndarray]]:
    """Central height x width crops of the grey (convert("L")) never-JPEG wikipedia photographs."""
    out = []
    for path in sorted(glob.glob(os.path.join(data_root(), "wikipedia_photos", "*.png")))[:limit]:
        img = np.asarray(Image.open(path).convert("L"))
        h, w = img.shape
        if h < height or w < width:
            continue
        top, left = (h - height) // 2, (w - width) // 2
        out.append((os.path.basename(path), np.ascontiguousarray(img[top : top + height, left : left + width])))
    return out


def wikipedia_whole(limit: int, split: str = "val") -> list[tuple[str, np.ndarray]]:
    """Whole grey wikipedia photographs of `split` (val: the 10 that no shipped model trained on; all: 001, ...)."""
    paths = sorted(glob.glob(os.path.join(data_root(), "wikipedia_photos", "*.png")))
    paths = [paths[k] for k in every_kth_split([os.path.basename(p) for p in paths], split, WIKIPEDIA_VAL_EVERY,
                                               WIKIPEDIA_VAL_FIRST)][:limit]
    return [(os.path.basename(p), np.asarray(Image.open(p).convert("L")).copy()) for p in paths]


def bsds_test(limit: int) -> list[tuple[str, np.ndarray]]:
    paths = sorted(glob.glob(os.path.join(data_root(), "bsds300", "images", "test", "*.jpg")),
                   key=lambda p: int(os.path.basename(p).split(".")[0]))[:limit]
    return [(os.path.basename(p), np.asarray(Image.open(p).convert("L")).copy()) for p in paths]


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def gemm_rate(rows: int = 512, k: int = 192, n: int = 320, reps: int = 50) -> float:
    """float32 GEMM multiply-adds per second of [rows, k] @ [k, n] in this process (the LSTM's shape)."""
    a, b = torch.randn(rows, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return reps * rows * k * n / (time.perf_counter() - start)


def macs_per_pixel(model) -> int:  # noqa: ANN001
    """Multiply-adds per pixel of the network's GEMMs (input map, LSTM layers, MCGSM)."""
    cfg = model.config
    d, k = cfg.num_hiddens, model.neighbourhood.num_inputs
    layers = cfg.num_layers
    total = k * (5 * d + 1) + 2 * d * 5 * d + (layers - 1) * 3 * d * 5 * d
    return total + d * (cfg.num_features + cfg.num_components) + cfg.num_features * cfg.num_components


def speed(args: argparse.Namespace, model) -> None:  # noqa: ANN001
    """Per image: the default codec (compiled kernels when numba is there) and, with --baselines, the same
    integer model through torch operations (the portable coder before the kernels, same stream) and the float
    format-1 coder, all in this process."""
    rate = gemm_rate()
    macs = macs_per_pixel(model)
    images = wikipedia_whole(args.limit) if args.whole else wikipedia_crops(args.limit)
    # the default format: 7 (the repeat flags) since 2026-12-07, 2 or 4 before; the portable integer model either way
    coders = [("default format, " + ("kernels" if kernels.available() else "torch (numba missing)"), "auto")]
    if args.baselines:
        coders += [("default format, torch backend", "torch"), ("format 1 (float)", "v1")]
    for name, image in images:
        for label, backend in coders:
            if backend == "v1":
                stream, enc_wall, enc_cpu = timed(compress_v1, model, image)
                out, dec_wall, dec_cpu = timed(decompress, model, stream)
            else:
                stream, enc_wall, enc_cpu = timed(compress, model, image, stripes=args.stripes,
                                                  digit_bits=args.digit_bits, backend=backend)
                out, dec_wall, dec_cpu = timed(decompress, model, stream, backend=backend)
            assert np.array_equal(out, image)
            px = image.size
            label = label.replace("default format", f"format {stream[4]}")
            print(f"| {name} {image.shape[1]}x{image.shape[0]} | {label} | {8 * len(stream) / px:.4f} | "
                  f"{px / enc_wall:,.0f} | {px / dec_wall:,.0f} | {px / enc_cpu:,.0f} | {px / dec_cpu:,.0f} | "
                  f"{px * macs / dec_wall / rate:.3f} |", flush=True)
    print(f"\nsame-run float32 GEMM [512x192]@[192x320]: {rate / 1e9:.1f} G multiply-adds/s; network "
          f"{macs:,} multiply-adds per pixel; last column: the decoder's network multiply-adds per wall second as "
          f"a fraction of that GEMM rate")


def settings(args: argparse.Namespace, model) -> None:  # noqa: ANN001
    name, image = wikipedia_crops(1)[0] if not args.bsds else bsds_test(1)[0]
    ideal = ideal_code_length_bits(model, image)
    print(f"{name} {image.shape}: ideal (float model, exact probabilities) {ideal / image.size:.4f} bits/px")
    print("| stripes | digit bits | bits/px | vs ideal | encode px/s | decode px/s | decode px/s (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for stripes in [int(s) for s in args.stripes_list.split(",")]:
        for bits in [int(b) for b in args.digits_list.split(",")]:
            stream, enc_wall, _ = timed(compress, model, image, stripes=stripes, digit_bits=bits)
            out, dec_wall, dec_cpu = timed(decompress, model, stream)
            assert np.array_equal(out, image)
            b = 8 * len(stream)
            print(f"| {stripes} | {bits} | {b / image.size:.4f} | {100 * (b - ideal) / ideal:+.2f}% | "
                  f"{image.size / enc_wall:,.0f} | {image.size / dec_wall:,.0f} | {image.size / dec_cpu:,.0f} |",
                  flush=True)


def rate(args: argparse.Namespace, model) -> None:  # noqa: ANN001
    images = [("bsds " + n, im) for n, im in bsds_test(args.limit)]
    images += [("wiki " + n, im) for n, im in wikipedia_crops(args.limit, 256, 384)]
    print("| image | pixels | ideal float bits/px | format 2, 1 stripe | rel | format 2, default stripes | rel |")
    print("|---|---|---|---|---|---|---|")
    sums = np.zeros(3)
    for name, image in images:
        ideal = ideal_code_length_bits(model, image)
        one = 8 * len(compress(model, image, stripes=1))
        default = 8 * len(compress(model, image))
        sums += [ideal, one, default]
        px = image.size
        print(f"| {name} | {px} | {ideal / px:.4f} | {one / px:.4f} | {100 * (one - ideal) / ideal:+.3f}% | "
              f"{default / px:.4f} | {100 * (default - ideal) / ideal:+.3f}% |", flush=True)
    print(f"\nall: one stripe {100 * (sums[1] - sums[0]) / sums[0]:+.3f}%, default stripes "
          f"{100 * (sums[2] - sums[0]) / sums[0]:+.3f}% over the ideal float code length")


def nblic(binary: str, image: np.ndarray) -> bytes:
    """NBLIC -e3's stream of a grey image (the program built outside the repository; see
    shared/tools/nblic/README.md), checked to decode exactly."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        Image.fromarray(image, mode="L").save(os.path.join(tmp, "in.pgm"))
        subprocess.run([binary, "-c", "-n0", "-e3", "in.pgm", "out.nblic"], cwd=tmp, check=True, capture_output=True)
        subprocess.run([binary, "-d", "out.nblic", "back.pgm"], cwd=tmp, check=True, capture_output=True)
        assert np.array_equal(np.asarray(Image.open(os.path.join(tmp, "back.pgm"))), image)
        with open(os.path.join(tmp, "out.nblic"), "rb") as f:
            return f.read()


def compare(args: argparse.Namespace, model) -> None:  # noqa: ANN001
    import imagecodecs as ic

    codecs = {
        "PNG (level 9)": (lambda x: ic.png_encode(x, level=9), ic.png_decode),
        "JPEG-LS": (lambda x: ic.jpegls_encode(x, level=0), ic.jpegls_decode),
        "JPEG XL lossless e7": (lambda x: ic.jpegxl_encode(x, lossless=True, effort=7), ic.jpegxl_decode),
        "JPEG XL lossless e9": (lambda x: ic.jpegxl_encode(x, lossless=True, effort=9), ic.jpegxl_decode),
    }
    if args.nblic:
        codecs["NBLIC -e3"] = (lambda x: nblic(args.nblic, x), None)
    sets = {"BSDS300 test (grey)": bsds_test(args.limit),
            "wikipedia photos, validation (grey, whole)": wikipedia_whole(args.wiki_limit)}
    results = {}
    for set_name, images in sets.items():
        bits = {name: 0 for name in ["ride", "ideal", *codecs]}
        secs = {"ride enc": 0.0, "ride dec": 0.0}
        pixels = 0
        for k, (name, image) in enumerate(images):
            stream, enc, _ = timed(compress, model, image)
            out, dec, _ = timed(decompress, model, stream)
            assert np.array_equal(out, image), name
            bits["ride"] += 8 * len(stream)
            bits["ideal"] += ideal_code_length_bits(model, image)
            secs["ride enc"] += enc
            secs["ride dec"] += dec
            sizes = {}
            for cname, (e, d) in codecs.items():
                blob = e(image)
                if d is not None:
                    assert np.array_equal(np.asarray(d(blob)).reshape(image.shape), image)
                bits[cname] += 8 * len(blob)
                sizes[cname] = 8 * len(blob) / image.size
            pixels += image.size
            print(f"[{set_name} {k + 1}/{len(images)}] {name} ride {8 * len(stream) / image.size:.3f} bits/px, "
                  + ", ".join(f"{c} {b:.3f}" for c, b in sizes.items()) + ", ride "
                  f"{image.size / enc:,.0f} / {image.size / dec:,.0f} px/s", file=sys.stderr, flush=True)
        results[set_name] = (bits, secs, pixels, len(images))
    for set_name, (bits, secs, pixels, count) in results.items():
        print(f"\n{set_name}: {count} images, {pixels} pixels; ride: {pixels / secs['ride enc']:,.0f} px/s encode, "
              f"{pixels / secs['ride dec']:,.0f} px/s decode\n")
        print("| codec | bits/px | vs JPEG XL e9 |")
        print("|---|---|---|")
        jxl = bits["JPEG XL lossless e9"]
        for name, b in bits.items():
            label = "ride ideal code length (float model)" if name == "ideal" else name
            print(f"| {label} | {b / pixels:.4f} | {b / jxl:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: [v[0], v[1], v[2], v[3]] for k, v in results.items()}, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["speed", "settings", "rate", "compare"])
    parser.add_argument("--checkpoint", default="photo_grey")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--wiki-limit", type=int, default=10)
    parser.add_argument("--stripes", type=int, default=None)
    parser.add_argument("--digit-bits", type=int, default=2)
    parser.add_argument("--stripes-list", default="1,2,4,8,16")
    parser.add_argument("--digits-list", default="1,2,4")
    parser.add_argument("--bsds", action="store_true", help="settings: a BSDS300 test image instead")
    parser.add_argument("--json")
    parser.add_argument("--whole", action="store_true", help="speed: whole wikipedia photographs, not 768x512 crops")
    parser.add_argument("--baselines", action="store_true",
                        help="speed: also the torch backend and the float format-1 coder, same images, same run")
    parser.add_argument("--nblic", help="compare: path of an NBLIC binary built outside the repository")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_wall = time.perf_counter()
    model = ride.load(args.checkpoint) if args.checkpoint.endswith(".pt") else ride.pretrained(args.checkpoint)
    load_wall = time.perf_counter() - load_wall
    _, quant_wall, _ = timed(integer_model, model)
    tiny = np.full((2, 2), 128, dtype=np.uint8)  # the first call loads the compiled kernels (numba's cache)
    _, first_wall, _ = timed(lambda: decompress(model, compress(model, tiny)))
    print(f"{platform.machine()}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{args.threads} thread(s), load average {os.getloadavg()[0]:.1f}; model {args.checkpoint}; start-up: "
          f"import {T_IMPORT:.2f} s, model load {load_wall:.2f} s, integer model {quant_wall:.2f} s, first "
          f"2x2 round trip (kernels loaded or compiled) {first_wall:.2f} s\n")
    if args.what == "speed":
        print("| image | coder | bits/px | encode px/s | decode px/s | encode px/CPU-s | decode px/CPU-s | "
              "GEMM fraction |")
        print("|---|---|---|---|---|---|---|---|")
    {"speed": speed, "settings": settings, "rate": rate, "compare": compare}[args.what](args, model)


if __name__ == "__main__":
    main()
