"""`ride map`: a heat map of each pixel's code length -log2 P (bits) under a model, as PNG (matplotlib) or .npy."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load
from ..colour_lossless import LosslessColourRIDE
from ..model_zoo import DEFAULT_CODEC_MODEL, resolve_checkpoint
from ..runtime import check_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `map` subcommand to the `ride` parser's subparsers."""
    p = subparsers.add_parser(
        "map", help="heat map of each pixel's code length -log2 P (bits) under a model",
        description="Computes each pixel's code length -log2 P(v_ij | v_<ij) in bits under a grey model (the "
                    "model's discrete probability of the 8-bit value given the pixels before it) and writes it as "
                    "a heat map with a colour bar, the image's mean in the title. With a lossless colour model "
                    "(LosslessColourRIDE) the image is read as RGB and each pixel's code length is the sum over its "
                    "three sub-pixels; the mean is printed in bits per sub-pixel. Border pixels the model does not "
                    "predict are left blank (NaN in --npy).")
    p.add_argument("image", help="an 8-bit image file (colour images are converted to luma for a grey model, with "
                                 "a notice)")
    p.add_argument("-o", "--out", metavar="MAP.png", help="PNG of the heat map (needs matplotlib: ride[plot])")
    p.add_argument("--npy", metavar="MAP.npy", help="the map as a float64 [H, W] array in bits (NaN at the border)")
    p.add_argument("--checkpoint", default=DEFAULT_CODEC_MODEL, metavar="M",
                   help=f"model file or shipped model name (default {DEFAULT_CODEC_MODEL}; see `ride models`)")
    p.add_argument("--vmax", type=float, default=None, help="upper end of the colour scale in bits (default: the "
                                                             "99th percentile)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 1)")
    p.set_defaults(func=run)


def _plot(image: np.ndarray, bits: np.ndarray, title: str, vmax: float | None, path: Path,
          label: str = "code length -log2 P") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ValueError("the PNG map needs matplotlib: pip install 'ride[plot]' (or use --npy)") from err
    finite = bits[np.isfinite(bits)]
    top = vmax if vmax is not None else float(np.percentile(finite, 99))
    h, w = bits.shape
    fig, axes = plt.subplots(1, 2, figsize=(2 * 4.5 * w / max(h, w) + 1.5, 4.5 * h / max(h, w) + 0.8),
                             constrained_layout=True)
    if image.ndim == 3:  # RGB [H, W, 3]
        axes[0].imshow(image, interpolation="nearest")
    else:
        axes[0].imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[0].set_title("image")
    shown = axes[1].imshow(bits, cmap="inferno", vmin=0, vmax=top, interpolation="nearest")
    axes[1].set_title(label)
    for ax in axes:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[1], label="bits", shrink=0.9)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Run `ride map`: read, compute, write the PNG and/or the array, print the mean."""
    from ..data import GREY_MODES, read_image
    from ..maps import code_length_map

    if args.out is None and args.npy is None:
        raise ValueError("nothing to write: give -o MAP.png and/or --npy MAP.npy")
    if check_threads(args.threads):
        torch.set_num_threads(args.threads)
    model = load(resolve_checkpoint(args.checkpoint))
    if isinstance(model, LosslessColourRIDE):
        return _run_colour(args, model)
    if getattr(getattr(model, "config", None), "num_channels", None) != 1:
        raise ValueError(f"ride map needs a grey image model (RIDE) or a lossless colour model "
                         f"(LosslessColourRIDE), the checkpoint holds a {type(model).__name__}")
    values, mode = read_image(args.image, grey=True)
    if mode not in GREY_MODES:
        print(f"ride map: note: {args.image} is a colour image ({mode}); using its luma (ITU-R BT.601)",
              file=sys.stderr)
    start = time.perf_counter()
    bits = code_length_map(model, values).numpy()
    seconds = time.perf_counter() - start
    mean = float(np.nanmean(bits))
    counted = int(np.isfinite(bits).sum())
    if args.npy:
        np.save(args.npy, bits)
    if args.out:
        title = f"{Path(args.image).name}: mean {mean:.3f} bit/px over {counted} predicted pixels"
        _plot(values[0].numpy(), bits, title, args.vmax, Path(args.out))
    print(f"{args.image}: mean code length {mean:.4f} bit/px (-log2 P of the 8-bit values) over {counted} predicted "
          f"pixels ({values.shape[1]}x{values.shape[2]} image), {seconds:.1f} s")
    for target in (args.out, args.npy):
        if target:
            print(f"wrote {target}")
    if not math.isfinite(mean):
        raise ValueError("the map holds no finite value")
    return 0


def _run_colour(args: argparse.Namespace, model: LosslessColourRIDE) -> int:
    """`ride map` with a lossless colour model: the RGB image, each pixel's code length summed over its channels."""
    from ..data import GREY_MODES, read_image
    from ..maps import colour_code_length_map

    values, mode = read_image(args.image, grey=False)
    if mode in GREY_MODES:
        print(f"ride map: note: {args.image} is a grey image ({mode}); mapped as RGB with R = G = B for the colour "
              "model", file=sys.stderr)
    elif mode not in ("RGB",):
        print(f"ride map: note: {args.image} has mode {mode}; mapped as its RGB conversion (alpha or palette "
              "dropped)", file=sys.stderr)
    start = time.perf_counter()
    bits = colour_code_length_map(model, values).numpy()
    seconds = time.perf_counter() - start
    per_subpixel = float(np.nanmean(bits)) / 3
    counted = int(np.isfinite(bits).sum())
    if args.npy:
        np.save(args.npy, bits)
    if args.out:
        title = (f"{Path(args.image).name}: {per_subpixel:.3f} bits per sub-pixel (exact) over {counted} predicted "
                 "pixels")
        _plot(values.permute(1, 2, 0).numpy(), bits, title, args.vmax, Path(args.out),
              label="code length -log2 P per RGB pixel (3 sub-pixels)")
    print(f"{args.image}: exact code length {per_subpixel:.4f} bits per sub-pixel (-log2 P of the 8-bit R, G, B "
          f"values / 3, not a bound; the map shows bits per RGB pixel) over {counted} predicted pixels "
          f"({values.shape[1]}x{values.shape[2]} image), {seconds:.1f} s")
    for target in (args.out, args.npy):
        if target:
            print(f"wrote {target}")
    if not math.isfinite(per_subpixel):
        raise ValueError("the map holds no finite value")
    return 0
