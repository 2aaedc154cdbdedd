"""`ride inpaint`: fill the masked pixels of a grey image with a saved RIDE (design §8), or with a baseline.

Methods:
    mcmc      Metropolis-within-Gibbs (`ride.inpainting.inpaint_mcmc`): ancestral initialisation (best of
              --candidates), then --sweeps sweeps of 5x5 block proposals in 19x19 windows; a sample of the hole given
              the observed pixels
    map       gradient ascent of ln p(x) over the hole pixels (`inpaint_map`), from the harmonic fill, --steps steps
    harmonic  diffusion inpainting (Laplace's equation, observed pixels as boundary); no model needed beyond loading
    mean      the mean of the observed pixels

Observed pixels enter the model at their bin centres (v + 0.5)/256 and come back unchanged in the output PNG (a
grey PNG of the image's size; filled values clipped to [0,1), times 256, floored). The mask is an image of the same
size whose nonzero pixels (after conversion to grey) are the ones to fill.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from .. import inpainting
from ..images import to_uint8
from ..runtime import check_threads, resolve_device
from .common import load_image_model

METHODS = ("mcmc", "map", "harmonic", "mean")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `inpaint` subcommand to the `ride` parser's subparsers."""
    p = subparsers.add_parser(
        "inpaint", help="fill the masked pixels of a grey image (MCMC sample, MAP or a baseline)",
        description="Fills the pixels of --image where --mask is nonzero and writes a grey PNG of the same size. "
                    "mcmc: Metropolis-within-Gibbs with the model (design §8); map: gradient ascent of ln p over the "
                    "hole; harmonic and mean: baselines. A progress bar shows the acceptance rate and the "
                    "log-likelihood of the filled region (sum of ln p(x_ij | x_<ij) over the hole, nats).")
    p.add_argument("--checkpoint", required=True, metavar="M", help="RIDE model file written by ride.save")
    p.add_argument("--image", required=True, metavar="IMG", help="image file (read as 8-bit grey luma)")
    p.add_argument("--mask", required=True, metavar="MASK.png", help="same size; nonzero pixels are filled")
    p.add_argument("--out", required=True, metavar="OUT.png", help="the filled image (grey PNG)")
    p.add_argument("--method", choices=METHODS, default="mcmc", help="default mcmc")
    p.add_argument("--sweeps", type=int, default=10, metavar="K", help="mcmc sweeps over the hole (default 10)")
    p.add_argument("--steps", type=int, default=300, help="map gradient steps (default 300)")
    p.add_argument("--lr", type=float, default=0.01, help="map Adam step size (default 0.01)")
    p.add_argument("--candidates", type=int, default=5, help="mcmc initial fills to choose from (default 5)")
    p.add_argument("--block-size", dest="block_size", type=int, default=5, help="mcmc block size (default 5)")
    p.add_argument("--stride", type=int, default=3, help="mcmc block grid stride (default 3)")
    p.add_argument("--window", type=int, default=None,
                   help="mcmc window around each block (default max(19, block size + 4r), r = (nb_size-1)/2)")
    p.add_argument("--flips", action="store_true",
                   help="mcmc: random up-down/left-right flips between sweeps (mixes better; no longer exactly the "
                        "model's conditional, see ride.inpainting)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 1: the sweeps are loops of small operations)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    p.set_defaults(func=run)


def _read(path: str, what: str) -> torch.Tensor:
    """uint8 [1, H, W] grey luma of an image file; ValueError naming `what` when missing or unreadable."""
    from ..data import load_image

    try:
        return load_image(path, grey=True)
    except FileNotFoundError:
        raise ValueError(f"--{what}: {path!r} does not exist") from None
    except ValueError as err:
        raise ValueError(f"--{what}: {err}") from None


def run(args: argparse.Namespace) -> int:
    """Run `ride inpaint` with parsed arguments; returns the exit status."""
    from PIL import Image
    from tqdm import tqdm

    if check_threads(args.threads):
        torch.set_num_threads(args.threads)
    for name, value, minimum in (("--sweeps", args.sweeps, 0), ("--steps", args.steps, 0),
                                 ("--candidates", args.candidates, 1), ("--block-size", args.block_size, 1),
                                 ("--stride", args.stride, 1)):
        if value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, found {value}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, found {args.out!r}")
    values = _read(args.image, "image")
    mask_values = _read(args.mask, "mask")
    if mask_values.shape != values.shape:
        raise ValueError(f"--mask is {mask_values.shape[1]}x{mask_values.shape[2]} but --image is "
                         f"{values.shape[1]}x{values.shape[2]}; they must have the same size")
    mask = mask_values[0] > 0
    if not bool(mask.any()):
        raise ValueError(f"--mask {args.mask!r} has no nonzero pixel: nothing to fill")
    device = resolve_device(args.device)
    model, _ = load_image_model(args.checkpoint, device)
    if model.config.num_channels != 1:
        raise ValueError(f"ride inpaint works on grey images: the model has {model.config.num_channels} channels")
    nb = model.neighbourhood
    h, w = values.shape[1:]
    if h < nb.rows or w < nb.cols:
        raise ValueError(f"--image is {h}x{w}, smaller than the model's {nb.rows}x{nb.cols} neighbourhood")
    dtype = model.preconditioner.mean_in.dtype
    image = ((values.to(dtype) + 0.5) / 256)[None].to(device)  # (1, 1, H, W), bin centres
    mask = mask.to(device)
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    start = time.monotonic()
    summary = ""
    if args.method == "mcmc":
        bars: dict[str, tqdm] = {}  # one bar per phase: the initial fill (fronts), then the sweeps

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in bars:
                for other in bars.values():
                    other.close()
                desc = f"initial fill (best of {args.candidates})" if phase == "init" else "sweeps"
                bars[phase] = tqdm(total=total, desc=desc, unit="front" if phase == "init" else "sweep",
                                   file=sys.stderr, disable=not args.progress, leave=False)
            bars[phase].update(done - bars[phase].n)

        def show(stats: inpainting.SweepStats) -> None:
            bars["sweep"].set_postfix(acc=f"{stats.acceptance_rate:.2f}",
                                      hole_ll=f"{float(stats.hole_log_prob_nats[0]):.1f}", refresh=False)

        try:
            filled, stats = inpainting.inpaint_mcmc(
                model, image, mask, args.sweeps, generator, block_size=args.block_size, stride=args.stride,
                window=args.window, num_candidates=args.candidates, flips=args.flips, callback=show,
                progress=progress)
        finally:
            for bar in bars.values():
                bar.close()
        if stats:
            rate = sum(s.acceptance_rate * s.num_proposals for s in stats) / max(sum(s.num_proposals for s in stats),
                                                                                 1)
            summary = f"{args.sweeps} sweeps, acceptance rate {rate:.3f}; "
    elif args.method == "map":
        bar = tqdm(total=args.steps, unit="step", file=sys.stderr, disable=not args.progress, leave=False)

        def progress(step: int, log_prob: torch.Tensor) -> None:
            bar.set_postfix(log_p=f"{float(log_prob[0]):.1f}")
            bar.update(1)

        try:
            filled, _ = inpainting.inpaint_map(model, image, mask, args.steps, args.lr, callback=progress)
        finally:
            bar.close()
        summary = f"{args.steps} Adam steps; "
    elif args.method == "harmonic":
        filled = inpainting.harmonic_fill(image, mask)
    else:
        filled = inpainting.mean_fill(image, mask)
    filled = torch.where(mask, filled.to(dtype), image)  # observed pixels exactly as read
    with torch.no_grad():
        log_prob, hole_log_prob = inpainting.region_log_probs(model, filled, mask)
    num_hole = int(mask.sum())
    top, left, right = model.margin
    num_counted = int(mask[top:, left : w - right].sum())  # border pixels have no conditional of their own
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(filled)[0, 0]).save(out)
    hole_nats = float(hole_log_prob[0])
    rate = hole_nats / max(num_counted, 1) / math.log(2)
    print(f"{args.method}: filled {num_hole} pixels of a {h}x{w} image -> {out}; {summary}"
          f"log-likelihood of the filled region {hole_nats:.1f} nats ({rate:.3f} bit/px over {num_counted} predicted "
          f"hole pixels, continuous density on [0,1)), of the whole image {float(log_prob[0]):.1f} nats; "
          f"{time.monotonic() - start:.1f} s on {device.type}")
    return 0
