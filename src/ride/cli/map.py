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
                    "(LosslessColourRIDE) the image must be RGB and each pixel's code length is the sum over its "
                    "three sub-pixels (bits per RGB pixel); the mean is printed in bits per sub-pixel, and "
                    "--per-channel maps each coded channel apart. Border pixels the model does not predict are "
                    "left blank (NaN in --npy).")
    p.add_argument("image", help="an 8-bit image file (colour images are converted to luma for a grey model, with "
                                 "a notice; a lossless colour model needs a colour image)")
    p.add_argument("-o", "--out", metavar="MAP.png", help="PNG of the heat map (needs matplotlib: ride[plot])")
    p.add_argument("--npy", metavar="MAP.npy", help="the map as a float64 [H, W] array in bits (NaN at the border; "
                                                    "with --per-channel [3, H, W], see there)")
    p.add_argument("--checkpoint", default=DEFAULT_CODEC_MODEL, metavar="M",
                   help=f"model file or shipped model name (default {DEFAULT_CODEC_MODEL}; see `ride models`)")
    p.add_argument("--per-channel", dest="per_channel", action="store_true",
                   help="lossless colour model only: also map each coded channel (bits per sub-pixel, in the "
                        "model's coding order, e.g. R, G, B): the PNG gets one panel per channel and --npy holds "
                        "float64 [3, H, W] (channel k at index k; their sum is the default [H, W] map)")
    p.add_argument("--vmax", type=float, default=None, help="upper end of the colour scale in bits (default: the "
                   "99th percentile); with --per-channel the channel panels share vmax/3 (per sub-pixel)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 1)")
    p.set_defaults(func=run)


def _plot(image: np.ndarray, panels: list[tuple[np.ndarray, str, str, float | None]], title: str,
          path: Path) -> None:
    """The image beside one heat map per panel (map [H, W] in bits, panel title, colour bar label, upper end of
    the colour scale: None for the map's 99th percentile)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ValueError("the PNG map needs matplotlib: pip install 'ride[plot]' (or use --npy)") from err
    h, w = panels[0][0].shape
    n = 1 + len(panels)
    fig, axes = plt.subplots(1, n, figsize=(n * 4.5 * w / max(h, w) + 1.5 * len(panels), 4.5 * h / max(h, w) + 0.8),
                             constrained_layout=True)
    if image.ndim == 3:  # RGB [H, W, 3]
        axes[0].imshow(image, interpolation="nearest")
    else:
        axes[0].imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[0].set_title("image")
    for ax, (bits, label, unit, vmax) in zip(axes[1:], panels, strict=True):
        top = vmax if vmax is not None else float(np.percentile(bits[np.isfinite(bits)], 99))
        shown = ax.imshow(bits, cmap="inferno", vmin=0, vmax=top, interpolation="nearest")
        ax.set_title(label)
        fig.colorbar(shown, ax=ax, label=unit, shrink=0.9)
    for ax in axes:
        ax.set_axis_off()
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
    if args.per_channel:
        raise ValueError(f"--per-channel maps the coded channels of a lossless colour model (LosslessColourRIDE); "
                         f"{args.checkpoint} is a grey model with one channel")
    values, mode = read_image(args.image, grey=True)
    if mode not in GREY_MODES:
        print(f"ride map: note: {args.image} is a colour image ({mode}); using its luma (ITU-R BT.601) for the grey "
              "model (a lossless colour model, LosslessColourRIDE, maps its RGB code length)", file=sys.stderr)
    start = time.perf_counter()
    bits = code_length_map(model, values).numpy()
    seconds = time.perf_counter() - start
    mean = float(np.nanmean(bits))
    counted = int(np.isfinite(bits).sum())
    if args.npy:
        np.save(args.npy, bits)
    if args.out:
        title = f"{Path(args.image).name}: mean {mean:.3f} bit/px over {counted} predicted pixels"
        _plot(values[0].numpy(), [(bits, "code length -log2 P", "bits per pixel", args.vmax)], title, Path(args.out))
    print(f"{args.image}: mean code length {mean:.4f} bit/px (-log2 P of the 8-bit values) over {counted} predicted "
          f"pixels ({values.shape[1]}x{values.shape[2]} image), {seconds:.1f} s")
    for target in (args.out, args.npy):
        if target:
            print(f"wrote {target}")
    if not math.isfinite(mean):
        raise ValueError("the map holds no finite value")
    return 0


def _run_colour(args: argparse.Namespace, model: LosslessColourRIDE) -> int:
    """`ride map` with a lossless colour model: the RGB image, each pixel's code length summed over its channels
    (and, with --per-channel, each coded channel's map)."""
    from ..data import GREY_MODES, read_image
    from ..maps import colour_channel_code_length_maps

    values, mode = read_image(args.image, grey=False)
    if mode in GREY_MODES:  # R = G = B would be a valid RGB image, but not what a grey image's code length means
        raise ValueError(f"{args.image} is a grey image (mode {mode}) and {args.checkpoint} is a lossless colour "
                         f"model of RGB images: map it with a grey model (--checkpoint {DEFAULT_CODEC_MODEL}), or "
                         "save it as RGB first to map it as a colour image with R = G = B")
    if mode != "RGB":
        print(f"ride map: note: {args.image} has mode {mode}; mapped as its RGB conversion (alpha or palette "
              "dropped)", file=sys.stderr)
    start = time.perf_counter()
    channel_bits = colour_channel_code_length_maps(model, values).numpy()  # [3, H, W] bits per sub-pixel
    bits = channel_bits.sum(0)  # [H, W] bits per RGB pixel
    seconds = time.perf_counter() - start
    per_subpixel = float(np.nanmean(bits)) / 3
    per_channel = [float(np.nanmean(b)) for b in channel_bits]
    counted = int(np.isfinite(bits).sum())
    names = model.channel_names
    if args.npy:
        np.save(args.npy, channel_bits if args.per_channel else bits)
    if args.out:
        title = (f"{Path(args.image).name}: {per_subpixel:.3f} bits per sub-pixel (exact) over {counted} predicted "
                 "pixels")
        panels = [(bits, "code length -log2 P of each RGB pixel", "bits per RGB pixel (sum of its 3 sub-pixels)",
                   args.vmax)]
        if args.per_channel:
            # the channels share one scale, so that they compare; an RGB pixel's total is about three times theirs
            top = (args.vmax / 3 if args.vmax is not None
                   else float(np.percentile(channel_bits[np.isfinite(channel_bits)], 99)))
            panels += [(b, f"channel {name}{_given(names[:k])}", f"bits per sub-pixel ({name})", top)
                       for k, (name, b) in enumerate(zip(names, channel_bits, strict=True))]
        _plot(values.permute(1, 2, 0).numpy(), panels, title, Path(args.out))
    print(f"{args.image}: exact code length {per_subpixel:.4f} bits per sub-pixel (exact discrete, RGB: -log2 P of "
          f"the 8-bit R, G, B values / 3, not a bound) over {counted} predicted pixels "
          f"({values.shape[1]}x{values.shape[2]} image), {seconds:.1f} s")
    print("per channel: " + ", ".join(f"{name} {b:.4f}" for name, b in zip(names, per_channel, strict=True))
          + " bits per sub-pixel (coded in this order, each given the ones before it)")
    shown = ("bits of each coded channel, [3, H, W]" if args.per_channel
             else "bits per RGB pixel (the sum over its 3 sub-pixels)")
    for target, what in ((args.out, "the heat map shows bits per RGB pixel (the sum over its 3 sub-pixels)"
                          + (" and each coded channel in bits per sub-pixel" if args.per_channel else "")),
                         (args.npy, shown)):
        if target:
            print(f"wrote {target} ({what})")
    if not math.isfinite(per_subpixel):
        raise ValueError("the map holds no finite value")
    return 0


def _given(earlier: tuple[str, ...]) -> str:
    """' given R, G' for the channels coded before one at the same pixel (empty for the first)."""
    return f" given {', '.join(earlier)}" if earlier else ""
