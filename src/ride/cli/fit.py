"""`ride fit-mcgsm`: the MCGSM baseline on whole images (a RIDE with num_layers=0), fitted with L-BFGS.

Spec §5: a causal window (nb_size 9: the 5x9 window, 40 inputs), conditional whitening, then the MCGSM with
L-BFGS and early stopping on validation pairs. Checkpoints are written atomically every few minutes and at the
end; `--resume` continues from the checkpoint (same pairs: they are drawn from `--seed`; L-BFGS's curvature
history restarts). A CSV log records the learning curve.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..checkpoint import load, load_payload, save
from ..data import BSDS300, DeadLeaves, ImageFolder
from ..model import RIDE
from ..protocols import tiles
from ..train.config import TrainConfig
from ..train.tasks import load_images
from ..units import dequantize


def _dequantised(data, limit: int, seed: int) -> list[torch.Tensor]:
    """Float images [1, H, W] on [0,1) with fixed dequantisation noise from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    count = min(limit, len(data)) if limit else len(data)
    return [dequantize(data[k], generator) for k in range(count)]


def _train_val(args: argparse.Namespace) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """BSDS300 train (180) / val (20) images, dead leaves (train 900: the first 810 / the last 90), or an image
    folder split 90/10."""
    if args.data == "deadleaves":
        source = DeadLeaves("train")
        count = min(args.limit, len(source)) if args.limit else len(source)
        images = [source[k] for k in range(len(source))]
        n_val = len(images) // 10
        generator = torch.Generator().manual_seed(args.seed)
        return ([dequantize(img, generator) for img in images[:-n_val][:count]],
                [dequantize(img, generator) for img in images[-n_val:]])
    if args.data == "photos" and args.images is None:
        # BSDS300 train + the Wikimedia photographs' training images; validation pairs from both val sets. Pairs
        # are drawn in equal shares per image, so the images are cut into 128x128 tiles first: every pixel then
        # weighs the same, as in `ride train`'s patches (the photographs are 7x BSDS300's size)
        train, val_sets = load_images(TrainConfig(data="photos", data_root=args.data_root, aerials=args.aerials))
        val = [img for images in val_sets.values() for img in images]
        train, val = ([tile for img in images for tile in tiles(img, 128)] for images in (train, val))
        return _dequantised(train, args.limit, args.seed), _dequantised(val, args.limit, args.seed + 1)
    if args.images is None:
        return (_dequantised(BSDS300(args.data_root, "train"), args.limit, args.seed),
                _dequantised(BSDS300(args.data_root, "val"), args.limit, args.seed + 1))
    images = _dequantised(ImageFolder(args.images), args.limit, args.seed)
    if len(images) < 2:
        raise ValueError(f"need at least 2 images in {args.images} (training and validation), found {len(images)}")
    n_val = max(1, len(images) // 10)
    return images[:-n_val], images[-n_val:]


def _check_budgets(args: argparse.Namespace) -> None:
    """ValueError for budgets that cannot run, before the data are read."""
    for name, minimum in (("max_iter", 0), ("limit", 0), ("pairs", 1), ("val_pairs", 1), ("val_every", 1),
                          ("patience", 1), ("chunk", 1)):
        if getattr(args, name) < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {minimum}, found {getattr(args, name)}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise ValueError(f"--max-seconds must be positive, found {args.max_seconds}")
    if not args.save_every >= 0:
        raise ValueError(f"--save-every must be >= 0 seconds, found {args.save_every}")


def _fit(args: argparse.Namespace) -> int:
    _check_budgets(args)
    out = Path(args.out)
    log_path = out.with_suffix(".csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.resume and out.exists():
        model = load(out)
        if not isinstance(model, RIDE) or model.layers:
            raise ValueError(f"{out} is not an MCGSM baseline (a RIDE with num_layers=0)")
        extra = load_payload(out)["extra"]
        done, iterations_done = extra.get("elapsed_s", 0.0), extra.get("iterations_done", 0)
        print(f"resuming {out} ({done:.0f} s of fitting so far)", file=sys.stderr)
    else:
        model = RIDE(num_layers=0, nb_size=args.nb_size, num_components=args.components, num_scales=args.scales,
                     num_features=args.features)
        done, iterations_done = 0.0, 0
    generator = torch.Generator().manual_seed(args.seed)
    train, val = _train_val(args)
    x, y = model.training_pairs(train, args.pairs, generator)
    vx, vy = model.training_pairs(val, args.val_pairs, generator)
    if not (args.resume and out.exists()):
        model.preconditioner.fit(x, y)
    x, y = model.preconditioner(x, y)
    vx, vy = model.preconditioner(vx, vy)
    log_jacobian = float(model.preconditioner.log_jacobian)
    print(f"{len(x)} training and {len(vx)} validation pairs of {x.shape[1]} inputs; log-Jacobian "
          f"{log_jacobian:.4f} nats/px", file=sys.stderr)

    config = {k: v for k, v in vars(args).items() if k != "func"}
    start, last_save = time.monotonic(), time.monotonic()
    new_log = not (args.resume and log_path.exists())
    log_file = log_path.open("w" if new_log else "a", newline="")
    writer = csv.writer(log_file)
    if new_log:
        writer.writerow(["elapsed_s", "iteration", "train_bits_per_pixel", "val_bits_per_pixel"])
    bar = tqdm(total=args.max_iter, desc="MCGSM L-BFGS", unit="it")

    def rate(nll_nats: float) -> float:  # mean NLL of y~ (nats) -> log-likelihood rate of pixels (bit/px)
        return (log_jacobian - nll_nats) / math.log(2)

    current = {"iteration": 0}

    def checkpoint(extra: dict) -> None:
        save(model, out, extra={"command": " ".join(sys.argv), "config": config,
                                "elapsed_s": done + time.monotonic() - start,
                                "iterations_done": iterations_done + current["iteration"], **extra})

    def progress(info: dict) -> None:
        nonlocal last_save
        elapsed = done + info["elapsed_s"]
        current["iteration"] = info["iteration"]
        val = info.get("val_nll_nats")
        writer.writerow([f"{elapsed:.1f}", iterations_done + info["iteration"], f"{rate(info['train_nll_nats']):.5f}",
                         "" if val is None else f"{rate(val):.5f}"])
        log_file.flush()
        bar.update(1)
        bar.set_postfix_str(f"train {rate(info['train_nll_nats']):.4f} bit/px"
                            + ("" if val is None else f", val {rate(val):.4f} bit/px"), refresh=False)
        if time.monotonic() - last_save > args.save_every:
            checkpoint({"status": "fitting"})
            last_save = time.monotonic()

    history = model.mcgsm.fit(x, y, vx, vy, max_iter=args.max_iter, val_every=args.val_every,
                              patience=args.patience, callback=progress, init=not (args.resume and out.exists()),
                              max_seconds=args.max_seconds, batch_size=args.chunk, generator=generator)
    bar.close()
    log_file.close()
    best = history["best_val_nll_nats"]
    checkpoint({"status": "done", "stop_reason": history["stop_reason"], "iterations": history["iterations"],
                "best_val_bits_per_pixel": None if best is None else rate(best)})
    print(f"stopped ({history['stop_reason']}) after {history['iterations']} iterations; best validation rate "
          f"{rate(best) if best is not None else float('nan'):.4f} bit/px (pairs, not the tiles64 protocol); "
          f"saved {out}, log {log_path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fit-mcgsm", help="fit the MCGSM baseline (RIDE with num_layers=0) with L-BFGS",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="checkpoint to write (a CSV log goes beside it)")
    p.add_argument("--data-root", default=None, help="folder holding bsds300/ (default: $RIDE_DATA)")
    p.add_argument("--data", choices=("bsds300", "photos", "deadleaves"), default="bsds300",
                   help="named data set (default bsds300; photos: BSDS300 train + the Wikimedia photographs' "
                        "training images, as `ride train`'s data=photos; deadleaves: the built-in generator's "
                        "training images)")
    p.add_argument("--aerials", action="store_true", help="--data photos: add the USC-SIPI aerials' training images")
    p.add_argument("--images", default=None, help="fit on this image folder instead of a named data set")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images of each split")
    p.add_argument("--nb-size", type=int, default=9, help="odd neighbourhood size (9: the 5x9 window)")
    p.add_argument("--components", type=int, default=128)
    p.add_argument("--scales", type=int, default=4)
    p.add_argument("--features", type=int, default=48)
    p.add_argument("--pairs", type=int, default=1_000_000, help="training pairs")
    p.add_argument("--val-pairs", type=int, default=200_000, help="validation pairs")
    p.add_argument("--max-iter", type=int, default=3000)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--val-every", type=int, default=10)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--chunk", type=int, default=200_000, help="rows per chunk of the objective (memory)")
    p.add_argument("--save-every", type=float, default=300.0, help="seconds between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.set_defaults(func=_fit)
