"""The encoder's choice of model (`ride.codec.selection.compress_best`): sizes and time against each candidate alone.

    RIDE_DATA=../shared/data python benchmarks/bench_codec_choice.py --mode rgb --limit 100 --wiki-limit 10 \
        --aerials-limit 7 --threads 1
    RIDE_DATA=../shared/data python benchmarks/bench_codec_choice.py --mode grey ...

Every image is coded whole by every candidate (default settings), which gives each candidate's size and the
oracle (the per-image best); then `compress_best` codes it, choosing on its sample. Sets: the BSDS300 test images
(JPEG files: decoded pixels), the Wikimedia validation photographs and the USC-SIPI aerials' validation scans (never
JPEG, whole, not trained on by the shipped models). Figures: pooled bits per sub-pixel (colour) or per pixel (grey)
per set, the number of images where the choice was the oracle's, and the time of the choice (coding the sample with
every candidate) against the time of coding the image once. Round trips of the chosen streams are checked.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from bench_codec_colour import aerials_whole, bsds_test, data_root, wikipedia_whole  # benchmarks/

from ride.codec import compress, decompress
from ride.codec.selection import compress_best, sample_bytes, sample_windows
from ride.model_zoo import CODEC_CANDIDATES, pretrained


def _grey(rgb: np.ndarray) -> np.ndarray:
    """The data loaders' grey conversion: BT.601 luma as Pillow's convert("L")."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).convert("L")).copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("rgb", "grey"), default="rgb")
    parser.add_argument("--candidates", nargs="+", default=None, help="shipped model names (default: the codec's)")
    parser.add_argument("--limit", type=int, default=20, help="BSDS300 test images")
    parser.add_argument("--wiki-limit", type=int, default=10)
    parser.add_argument("--aerials-limit", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-repeat", action="store_true",
                        help="without the codec's repeat flags (formats 2/4, 3/5, as before 2026-12-07)")
    parser.add_argument("--no-maps", action="store_true",
                        help="colour without the adaptive probability maps (format 6, as before 2026-12-08)")
    parser.add_argument("--samples", nargs="*", default=[], metavar="BANDSxROWSxWIDTH",
                        help="other sample shapes to report (their choice's size, agreement and time), e.g. 2x32x256")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeat = not args.no_repeat
    colour = args.mode == "rgb"
    maps = repeat and colour and not args.no_maps
    names = args.candidates or list(CODEC_CANDIDATES[colour])
    models = [pretrained(name) for name in names]
    sets = {"BSDS300 test (JPEG)": bsds_test(args.limit), "Wikimedia val": wikipedia_whole(args.wiki_limit),
            "aerials val": aerials_whole(args.aerials_limit)}
    print(f"mode {args.mode}, candidates {', '.join(names)}; data {data_root()}; {platform.machine()}, "
          f"{args.threads} thread(s), torch {torch.__version__}; repeat flags {'on' if repeat else 'off'}, "
          f"maps {'on' if maps else 'off'}")
    unit = "bits per sub-pixel" if colour else "bits/px"
    shapes = [tuple(int(v) for v in text.split("x")) for text in args.samples]
    others = "".join(f" | sample {b}x{r}x{w}: size, = oracle, time / one encode" for b, r, w in shapes)
    print(f"| set | images | {' | '.join(names)} | oracle | choice | choice = oracle | choice time / one encode"
          f"{others} |")
    print("|---|---|" + "---|" * (len(names) + 4 + len(shapes)))
    for set_name, images in sets.items():
        if not images:
            continue
        totals = np.zeros(len(names) + 2)
        agree, t_choice, t_encode, values = 0, 0.0, 0.0, 0
        alt = np.zeros((len(shapes), 3))  # chosen bytes, agreements, seconds of the sample
        for _name, rgb in images:
            image = rgb if colour else _grey(rgb)
            sizes = []
            for model in models:
                start = time.perf_counter()
                sizes.append(len(compress(model, image, repeat=repeat, maps=maps)))
                t_encode += time.perf_counter() - start
            start = time.perf_counter()
            choice = compress_best(models, image, repeat=repeat, maps=maps)
            t_choice += time.perf_counter() - start
            assert np.array_equal(decompress(models[choice.index], choice.data), image), "round trip failed"
            totals[: len(names)] += sizes
            totals[-2] += min(sizes)
            totals[-1] += len(choice.data)
            agree += sizes[choice.index] == min(sizes)
            values += image.size
            for k, (bands, rows, width) in enumerate(shapes):
                start = time.perf_counter()
                windows = sample_windows(image.shape[0], image.shape[1], bands, rows, width)
                on_sample = sample_bytes(models, image, windows, repeat, maps)
                alt[k, 2] += time.perf_counter() - start
                pick = int(np.argmin(on_sample))  # the first of equals, as compress_best
                alt[k, :2] += sizes[pick], sizes[pick] == min(sizes)
        rates = " | ".join(f"{8 * t / values:.4f}" for t in totals)
        t_one = t_encode / len(models)  # one encode of every image
        rest = "".join(f" | {8 * a[0] / values:.4f}, {int(a[1])}/{len(images)}, {(a[2] + t_one) / t_one:.2f}"
                       for a in alt)
        print(f"| {set_name} | {len(images)} | {rates} | {agree}/{len(images)} | {t_choice / t_one:.2f} "
              f"({t_choice:.0f} s / {t_one:.0f} s){rest} |", flush=True)
    print(f"(rates in {unit}, pooled over each set; 'choice time' includes the final encode; the other samples' "
          "time is that of the sample plus one encode)")


if __name__ == "__main__":
    main()
