"""`ride sample`: images drawn from a saved RIDE by ancestral sampling along the skewed front (design §8).

The model only predicts pixels whose causal window lies inside the image, so each sample is drawn on a larger
canvas: the model's own margin (top, left, right) plus `--border` extra pixels on the top, left and right, whose
values are the boundary condition. The extra border is cropped off too, since the pixels next to the boundary still
remember its (unnatural) values. Boundary values:

    marginal  i.i.d. draws from the data marginal: the 8-bit histogram stored in the checkpoint under
              extra["marginal_histogram"] (see `marginal_histogram`), dequantised; without one, a Gaussian with the
              mean and covariance of the pixels the preconditioner was fitted on (mean_out and
              Syy = P P^T + (Syy - P P^T), the latter stored as its square root), clipped to [0,1)
    IMAGE     the top-left part of an image file (grey for a one-channel model), dequantised with the seed; every
              sample shares it

Writes a PNG grid of the samples (8-bit: values clipped to [0,1), times 256, floored; 2-pixel white gaps) and
optionally the raw float32 samples [N, C, H, W] as .npy. `--seed` fixes everything (a CPU generator drives all
draws, so a seed gives the same samples on CPU and CUDA up to float rounding).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..images import grid_image, to_uint8
from ..marginal import MARGINAL_KEY, marginal_boundary
from ..model import RIDE
from ..runtime import check_threads, resolve_device
from ..sampling import ancestral_sample
from ..units import dequantize
from .common import load_image_model


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `sample` subcommand to the `ride` parser's subparsers."""
    p = subparsers.add_parser(
        "sample", help="draw images from a saved RIDE (ancestral sampling along the skewed front)",
        description="Draws N images of HxW from a saved RIDE by ancestral sampling (design §8), batched. Each image "
                    "is drawn on a canvas padded by the model's margin plus --border pixels on the top, left and "
                    "right, initialised from the data marginal or from an image, then cropped back to HxW. Marginal: "
                    f"the checkpoint's extra[{MARGINAL_KEY!r}] 8-bit histogram if present, else a Gaussian with the "
                    "mean and covariance of the pixels the preconditioner was fitted on, clipped to [0,1).")
    p.add_argument("--checkpoint", required=True, metavar="M", help="RIDE model file written by ride.save")
    p.add_argument("--size", required=True, metavar="HxW", help="size of each sample, e.g. 64x64 (or 64)")
    p.add_argument("--num", type=int, default=1, metavar="N", help="number of samples (default 1)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="PNG grid of the samples")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--boundary", default="marginal", metavar="marginal|IMAGE",
                   help="boundary values: 'marginal' (default) or an image file whose top-left part is used")
    p.add_argument("--border", type=int, default=8, metavar="P",
                   help="boundary pixels cropped off beyond the model's margin (default 8)")
    p.add_argument("--npy", metavar="FILE.npy", help="also write the raw float32 samples [N, C, H, W]")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16, metavar="B",
                   help="images per batched sampling call (default 16)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- pieces

def parse_size(text: str) -> tuple[int, int]:
    """'HxW' (or 'N' for a square) -> (H, W); ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", text)
    if not match:
        raise ValueError(f"--size must be HxW with positive integers (e.g. 64x64), found {text!r}")
    h = int(match.group(1))
    w = int(match.group(2)) if match.group(2) is not None else h
    if h < 1 or w < 1:
        raise ValueError(f"--size must be HxW with positive integers (e.g. 64x64), found {text!r}")
    return h, w


def image_boundary(path: str, channels: int, canvas: tuple[int, int], generator: torch.Generator) -> Tensor:
    """The top-left canvas part of an image file, dequantised: float [C, Hc, Wc] on [0,1)."""
    from ..data import load_image

    if channels not in (1, 3):
        raise ValueError(f"--boundary IMAGE needs a 1- or 3-channel model, found {channels} channels")
    try:
        values = load_image(path, grey=channels == 1)
    except FileNotFoundError:
        raise ValueError(f"--boundary: image {path!r} does not exist") from None
    _, h, w = values.shape
    if h < canvas[0] or w < canvas[1]:
        raise ValueError(f"--boundary image {path!r} is {h}x{w}, the canvas needs at least {canvas[0]}x{canvas[1]} "
                         "(--size plus the model's margin plus --border on the top, left and right)")
    return dequantize(values[:, : canvas[0], : canvas[1]], generator).double()


def _num_fronts(model: RIDE, canvas: tuple[int, int]) -> int:
    """Sequential steps of the skewed-front sampler on a canvas (H, W)."""
    hp, wp = model.neighbourhood.grid_shape(*canvas)
    return (model.margin[2] + 1) * (hp - 1) + wp


def available_memory_bytes() -> int | None:
    """Memory the process may still allocate without swapping (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def sampling_memory_bytes(model: torch.nn.Module, num: int, batch: int, canvas: tuple[int, int],
                          size: tuple[int, int]) -> int:
    """A generous estimate of the peak memory of `ride sample`: the batch's canvases (boundary, working copy,
    result, in float64 at most), the hidden states (the full grid for models without the skewed-front sampler),
    and the kept samples with their uint8 grid."""
    channels = model.config.num_channels
    hc, wc = canvas
    per_canvas = channels * hc * wc * 8 * 4
    states = 0 if isinstance(model, RIDE) else hc * wc * model.config.num_hiddens * 8 * 4 * 2
    kept = num * channels * size[0] * size[1] * (4 + 1 + 4)
    return batch * (per_canvas + states) + kept


# ---------------------------------------------------------------------------------------------- command

def run(args: argparse.Namespace) -> int:
    """Run `ride sample` with parsed arguments; returns the exit status."""
    from PIL import Image
    from tqdm import tqdm

    if check_threads(args.threads):
        torch.set_num_threads(args.threads)
    height, width = parse_size(args.size)
    for name, value, minimum in (("--num", args.num, 1), ("--batch-size", args.batch_size, 1),
                                 ("--border", args.border, 0)):
        if value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, found {value}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, found {args.out!r}")
    device = resolve_device(args.device)
    model, extra = load_image_model(args.checkpoint, device)
    channels = model.config.num_channels
    if channels not in (1, 3):
        raise ValueError(f"the PNG grid needs a 1- or 3-channel model, found {channels} channels")
    top, left, right = model.margin
    canvas = (top + args.border + height, left + args.border + width + args.border + right)
    needed = sampling_memory_bytes(model, args.num, min(args.batch_size, args.num), canvas, (height, width))
    free = available_memory_bytes()
    if free is not None and needed > free:
        raise ValueError(f"{args.num} sample(s) of {height}x{width} need about {needed / 2**30:.1f} GiB, this machine "
                         f"has {free / 2**30:.1f} GiB available: use a smaller --size, --num or --batch-size")
    generator = torch.Generator().manual_seed(args.seed)
    fixed = None
    if args.boundary != "marginal":
        fixed = image_boundary(args.boundary, channels, canvas, generator)
    dtype = next(model.parameters()).dtype
    r0, c0 = top + args.border, left + args.border
    samples = []
    start = time.monotonic()
    # the bar counts fronts (the sampler's sequential steps), so its rate and ETA are meaningful within a batch
    batches = range(0, args.num, args.batch_size)
    per_batch = _num_fronts(model, canvas) if isinstance(model, RIDE) else 1
    with tqdm(total=len(batches) * per_batch, unit="front" if isinstance(model, RIDE) else "batch", file=sys.stderr,
              disable=not args.progress, leave=False) as bar:
        for k, first in enumerate(batches):
            n = min(args.batch_size, args.num - first)
            if fixed is None:
                boundary = marginal_boundary(model, extra, (n, channels, *canvas), generator)
            else:
                boundary = fixed.expand(n, -1, -1, -1)
            boundary = boundary.to(device=device, dtype=dtype)
            if isinstance(model, RIDE):
                model.check_images(boundary)
                done = k * per_batch

                def update(step: int, total: int, done: int = done) -> None:
                    bar.update(done + step - bar.n)

                drawn = ancestral_sample(model, boundary, generator=generator, progress=update)[0]
            else:
                drawn = model.sample(boundary, generator=generator)
                bar.update(1)
            samples.append(drawn[:, :, r0 : r0 + height, c0 : c0 + width].float().cpu())
    samples = torch.cat(samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = grid_image(to_uint8(samples))
    Image.fromarray(grid).save(out)
    if args.npy:
        Path(args.npy).parent.mkdir(parents=True, exist_ok=True)
        np.save(args.npy, samples.numpy())
    source = "data marginal" + (" (checkpoint histogram)" if MARGINAL_KEY in extra else " (Gaussian fit)")
    print(f"wrote {args.num} sample(s) of {height}x{width} to {out} (grid {grid.shape[0]}x{grid.shape[1]})"
          f"{' and ' + args.npy if args.npy else ''}; boundary: "
          f"{source if fixed is None else args.boundary}, seed {args.seed}, {time.monotonic() - start:.1f} s on "
          f"{device.type}")
    return 0
